"""The input view of one action: the only data its code can read, built outside the sandbox before it starts.

A view is a folder (mounted read-only at ``/rk/view`` in the sandbox)::

    view.json                what it holds: the extract's id, hash and year, its tables, the twin
    research-kit.toml        the workspace policy (thresholds the analysis helpers apply)
    extract/TABLE.parquet    the extract's tables the action may read
    twin/TABLE.parquet       the newest published synthetic twin (``rk.load(twin=True)``)
    upstream/PATH            the declared outputs of the actions it needs

Files are hard links to the stored ones, never copies of a large extract; a
file on another file system is linked by path and bound into the sandbox on
its own (:attr:`InputView.bound`). A :class:`Projection` narrows what is
there (the tables and columns a permit grants): a table cut to some columns
is written anew, with only those columns.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from research_kit.core.config import POLICY_FILE
from research_kit.core.errors import BadInput, MissingData
from research_kit.tiers import TABLES, TWIN_MANIFEST, VIEW_MANIFEST, Source


@dataclass(frozen=True)
class Projection:
    """Which tables of the extract an action sees, and which of their columns (None: all of them)."""

    tables: Mapping[str, tuple[str, ...] | None] = field(default_factory=lambda: dict.fromkeys(TABLES))

    def __post_init__(self) -> None:
        unknown = sorted(set(self.tables) - set(TABLES))
        if unknown:
            raise BadInput(f"projection: no such table {unknown[0]!r} (tables: {', '.join(TABLES)})")


@dataclass(frozen=True)
class InputView:
    folder: Path
    bound: tuple[Path, ...]  # stored files linked by path (another file system): bind them where they are


def build_view(
    folder: Path,
    *,
    source: Source,
    policy_file: Path,
    upstream: list[tuple[str, str]] = (),  # type: ignore[assignment]
    twin: Source | None = None,
    projection: Projection | None = None,
) -> InputView:
    """Make ``folder`` (replaced if there) the view of ``source``, ``twin`` and ``upstream`` under ``projection``."""
    projection = projection or Projection()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, mode=0o755)
    bound: list[Path] = []
    tables = []
    for table, columns in projection.tables.items():
        stored = source.folder / f"{table}.parquet"
        if not stored.is_file():
            raise MissingData(f"{source.name}: {table}.parquet is missing")
        target = folder / "extract" / f"{table}.parquet"
        if columns is None:
            bound += _link(stored, target)
        else:
            _project(stored, target, columns)
        tables.append(table)
    twin_facts = None
    if twin is not None:
        for name in (*(f"{t}.parquet" for t in TABLES), TWIN_MANIFEST):
            if (twin.folder / name).is_file():
                bound += _link(twin.folder / name, folder / "twin" / name)
        twin_facts = {"name": twin.name, "content_hash": twin.content_hash, "reference_year": twin.reference_year}
    for relative, stored_file in upstream:
        target = folder / "upstream" / relative
        if not target.resolve().is_relative_to((folder / "upstream").resolve()):
            raise BadInput(f"input {relative!r}: a path outside the action's folder")
        bound += _link(Path(stored_file), target)
    shutil.copyfile(policy_file, folder / POLICY_FILE)
    manifest = {
        "tier": source.tier,
        "extract": source.name,
        "content_hash": source.content_hash,
        "reference_year": source.reference_year,
        "tables": {t: (None if c is None else list(c)) for t, c in projection.tables.items()},
        "twin": twin_facts,
    }
    (folder / VIEW_MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return InputView(folder, tuple(bound))


def _link(stored: Path, target: Path) -> list[Path]:
    """Hard-link ``stored`` at ``target``; across file systems, a symlink and the file to bind (returned)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(stored, target)
        return []
    except OSError:
        absolute = stored.resolve()
        target.symlink_to(absolute)
        return [absolute]


def _project(stored: Path, target: Path, columns: tuple[str, ...]) -> None:
    import polars as pl

    target.parent.mkdir(parents=True, exist_ok=True)
    frame = pl.scan_parquet(stored)
    missing = [c for c in columns if c not in frame.collect_schema().names()]
    if missing:
        raise BadInput(f"projection of {stored.stem}: no column {missing[0]!r}")
    frame.select(list(columns)).sink_parquet(target)
