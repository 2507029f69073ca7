"""The register of pseudonymised extracts: immutable folders under ``extracts/``, known to the catalog.

The catalog is the truth: a folder under ``extracts/`` with no catalog row is
a leftover of an interrupted ingest, never an extract.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from research_kit.core.errors import MissingData
from research_kit.core.workspace import Workspace

MANIFEST = "manifest.json"
RECONCILIATION = "reconciliation.json"


@dataclass(frozen=True)
class Extract:
    id: str
    path: Path
    created_at: str
    content_hash: str
    key_fingerprint: str
    patients: int
    manifest: dict[str, Any]

    def table_path(self, table: str) -> Path:
        return self.path / f"{table}.parquet"


def _from_row(ws: Workspace, row: Any) -> Extract:
    return Extract(
        id=row["id"],
        path=ws.extracts_dir / row["id"],
        created_at=row["created_at"],
        content_hash=row["content_hash"],
        key_fingerprint=row["key_fingerprint"],
        patients=row["patients"],
        manifest=json.loads(row["manifest"]),
    )


def list_extracts(ws: Workspace) -> list[Extract]:
    with ws.catalog() as conn:
        rows = conn.execute("SELECT * FROM extracts ORDER BY created_at, id").fetchall()
    return [_from_row(ws, r) for r in rows]


def get_extract(ws: Workspace, extract_id: str) -> Extract:
    with ws.catalog() as conn:
        row = conn.execute("SELECT * FROM extracts WHERE id = ?", (extract_id,)).fetchone()
    if row is None:
        known = ", ".join(e.id for e in list_extracts(ws)) or "none yet"
        raise MissingData(f"no extract {extract_id!r} (registered: {known})")
    return _from_row(ws, row)


def is_registered(ws: Workspace, extract_id: str) -> bool:
    with ws.catalog() as conn:
        return conn.execute("SELECT 1 FROM extracts WHERE id = ?", (extract_id,)).fetchone() is not None


def unsimulated_extracts(ws: Workspace) -> list[str]:
    """Extracts whose manifest does not say that every source file came from the simulator."""
    with ws.catalog() as conn:
        rows = conn.execute("SELECT id, manifest FROM extracts ORDER BY id").fetchall()
    return [row["id"] for row in rows if json.loads(row["manifest"]).get("simulated") is not True]
