"""The register of pseudonymised extracts: immutable folders under ``extracts/``, known to the catalog.

The catalog is the truth: a folder under ``extracts/`` with no catalog row is
a leftover of an interrupted ingest, never an extract. An ingest registers an
extract first and then moves its staged folders (``extracts/.tmp-ID``,
``quarantine/.tmp-ID``) into place; if it is killed in between, the next
command that reads the extract finishes the move (:func:`finish_registrations`).
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from research_kit.core.errors import MissingData, PolicyRefusal
from research_kit.core.workspace import Workspace

STAGED = ".tmp-"  # an extract's folder (and its quarantine) while the ingest writes it
SCRATCH = ".scratch-"  # an ingest's scratch files (raw identifiers: under quarantine/ only)
MANIFEST = "manifest.json"
log = logging.getLogger("research_kit")
RECONCILIATION = "reconciliation.json"
OPTOUT_REGISTER = "optout_register"  # the manifest's record of the opt-out register an extract was built against


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


def move_into_place(ws: Workspace, extract_id: str) -> bool:
    """Move a registered extract's staged folders (extract, quarantine) to their final names; True if moved."""
    moved = False
    for base in (ws.extracts_dir, ws.quarantine_dir):
        staged, final = base / f"{STAGED}{extract_id}", base / extract_id
        if staged.is_dir() and not final.exists():
            try:
                os.replace(staged, final)
                moved = True
            except FileNotFoundError:  # another command finished it first
                pass
    return moved


def finish_registrations(ws: Workspace, *only: str) -> list[str]:
    """Finish what an ingest killed after registering left staged (all, or ``only`` these); the ids finished."""
    with ws.catalog() as conn:
        registered = {r["id"] for r in conn.execute("SELECT id FROM extracts").fetchall()}
    done = [e for e in sorted(registered & set(only) if only else registered) if move_into_place(ws, e)]
    for extract_id in done:
        log.warning("research-kit: finished registering extract %s (its ingest stopped after registering it)",
                    extract_id)  # fmt: skip
    return done


def list_extracts(ws: Workspace) -> list[Extract]:
    with ws.catalog() as conn:
        rows = conn.execute("SELECT * FROM extracts ORDER BY created_at, id").fetchall()
    extracts = [_from_row(ws, r) for r in rows]
    if any(not e.path.is_dir() for e in extracts):
        finish_registrations(ws)
    return extracts


def get_extract(ws: Workspace, extract_id: str) -> Extract:
    with ws.catalog() as conn:
        row = conn.execute("SELECT * FROM extracts WHERE id = ?", (extract_id,)).fetchone()
    if row is None:
        known = ", ".join(e.id for e in list_extracts(ws)) or "none yet"
        raise MissingData(f"no extract {extract_id!r} (registered: {known})")
    extract = _from_row(ws, row)
    if not extract.path.is_dir():
        finish_registrations(ws, extract_id)
    return extract


def is_registered(ws: Workspace, extract_id: str) -> bool:
    with ws.catalog() as conn:
        return conn.execute("SELECT 1 FROM extracts WHERE id = ?", (extract_id,)).fetchone() is not None


def unsimulated_extracts(ws: Workspace) -> list[str]:
    """Extracts whose manifest does not say that every source file came from the simulator."""
    with ws.catalog() as conn:
        rows = conn.execute("SELECT id, manifest FROM extracts ORDER BY id").fetchall()
    return [row["id"] for row in rows if json.loads(row["manifest"]).get("simulated") is not True]


@dataclass(frozen=True)
class OptoutRegister:
    """The opt-out register's state (table ``optouts``; its entries: :mod:`research_kit.pseudonymise.optouts`).

    Its *version* is its number of entries: the register only grows (an entry is never removed, and recording
    a person again adds nothing), so every addition makes a new version. ``newest`` (when the newest entry was
    recorded) tells two registers of one size apart, should one ever be restored from an older snapshot and
    added to again. This is the one definition: ingest records it in each extract's manifest
    (:data:`OPTOUT_REGISTER`), and :func:`check_current` compares it with the register's.
    """

    count: int
    newest: str  # recorded_at of the newest entry ('' when the register is empty)

    @property
    def version(self) -> int:
        return self.count

    def as_manifest(self) -> dict[str, Any]:
        return {"version": self.version, "count": self.count, "newest": self.newest}


def optout_register(conn: sqlite3.Connection) -> OptoutRegister:
    """The register's version, read in one cheap query (a count and a maximum: never an entry)."""
    row = conn.execute("SELECT COUNT(*), COALESCE(MAX(recorded_at), '') FROM optouts").fetchone()
    return OptoutRegister(count=int(row[0]), newest=str(row[1]))


def check_current(ws: Workspace, extract: Extract) -> None:
    """Refuse, in one line, research use of ``extract`` if it was built against another opt-out register than
    today's (an older one: someone has opted out since). The steward's own commands (ingest, risk, synth,
    quality) do not ask: they read the extract as it is."""
    with ws.catalog() as conn:
        current = optout_register(conn)
    built = extract.manifest.get(OPTOUT_REGISTER)
    built = built if isinstance(built, dict) else {}
    version = built.get("version")
    if version == current.version and built.get("newest", "") == current.newest:
        return
    if current.count == 0 and not version:  # no one has opted out, before or since
        return
    if isinstance(version, int) and version > current.version:
        raise PolicyRefusal(
            f"extract {extract.id!r} was built against opt-out register version {version}, but the register has "
            f"{current.count} entries: opt-outs were lost (a restore from an older snapshot?); record them again "
            "and ingest a new extract"
        )
    raise PolicyRefusal(
        f"extract {extract.id!r} was built before the latest opt-out (register version {current.version}): "
        "ingest a new one; older extracts serve only to reproduce past releases, for the steward"
    )
