"""The input view of one action: the only data its code can read, built outside the sandbox before it starts.

A view is a folder (mounted read-only at ``/rk/view`` in the sandbox)::

    view.json                what it holds: the extract's id, hash and year, its tables, the twins
    research-kit.toml        the workspace policy (thresholds the analysis helpers apply)
    extract/TABLE.parquet    the extract's tables the action may read
    twin/TABLE.parquet       the newest published default synthetic twin (``rk.load(twin=True)``)
    twins/dp/TABLE.parquet   the DP twin, when one is published (``rk.load(twin="dp")``)
    upstream/PATH            the declared outputs of the actions it needs

Files are hard links to the stored ones, never copies of a large extract; a
file on another file system is linked by path and bound into the sandbox on
its own (:attr:`InputView.bound`). A :class:`Projection` narrows what is
there (the tables and columns a permit grants): a table cut to some columns
is written anew, with only those columns.

**Study pseudonyms.** A study's view never holds the extract's pseudonyms.
Given the study's secret (:class:`StudyPseudonyms`), the patient identifier
(``pseudonym``) of every table, the extract's and the twin's, is replaced by
its study pseudonym (HMAC-SHA256 under that secret,
:func:`~research_kit.pseudonymise.pseudonyms.study_pseudonyms`), the same in
every table, so joins within the study still work, and each table is
re-sorted by it (a patient's rows keep their order), so that row order does
not link two studies either. The rewritten tables are written once per
study and stored table (atomically, into the cache folder named by the
study's fingerprint and the table's content hash) and hard-linked into each
view from there. The secret comes from the catalog, never from the
pseudonymisation key, and never enters the sandbox.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from research_kit.core.config import POLICY_FILE
from research_kit.core.errors import BadInput, MissingData
from research_kit.model.tables import EXTRACT_KEY
from research_kit.tiers import TABLES, TWIN_MANIFEST, VIEW_MANIFEST, VIEW_TWINS, Source

if TYPE_CHECKING:
    import polars as pl


@dataclass(frozen=True)
class Projection:
    """Which tables of the extract an action sees, and which of their columns (None: all of them)."""

    tables: Mapping[str, tuple[str, ...] | None] = field(default_factory=lambda: dict.fromkeys(TABLES))

    def __post_init__(self) -> None:
        unknown = sorted(set(self.tables) - set(TABLES))
        if unknown:
            raise BadInput(f"projection: no such table {unknown[0]!r} (tables: {', '.join(TABLES)})")


@dataclass(frozen=True, repr=False)
class StudyPseudonyms:
    """The study whose pseudonyms a view shows: its secret (never shown) and where its rewritten tables are kept."""

    secret: bytes = field(repr=False)
    cache: Path  # the workspace's cache folder for study views (cache/study-views)

    @property
    def fingerprint(self) -> str:
        from research_kit.pseudonymise.pseudonyms import study_fingerprint

        return study_fingerprint(self.secret)

    def __repr__(self) -> str:
        return f"StudyPseudonyms(fingerprint={self.fingerprint!r})"


@dataclass(frozen=True)
class InputView:
    folder: Path
    bound: tuple[Path, ...]  # stored files linked by path (another file system): bind them where they are


def build_view(
    folder: Path,
    *,
    source: Source,
    policy_file: Path,
    pseudonyms: StudyPseudonyms | None,
    upstream: list[tuple[str, str]] = (),  # type: ignore[assignment]
    twin: Source | None = None,
    projection: Projection | None = None,
    dp_twin: Source | None = None,
) -> InputView:
    """Make ``folder`` (replaced if there) the view of ``source``, ``twin`` and ``upstream`` under ``projection``.

    With ``pseudonyms``, every table shows the study's pseudonyms; a view of the real extract must have them.
    ``twin`` (the default twin) is held at ``twin/``, ``dp_twin`` at ``twins/dp/``; ``view.json`` names both
    under ``twins`` and the default one under ``twin`` too (what views held before DP twins).
    """
    projection = projection or Projection()
    if pseudonyms is None and source.tier == "real":
        raise ValueError("a view of the real extract shows study pseudonyms: pass the study's secret")
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, mode=0o755)
    bound: list[Path] = []
    tables = []
    stored_tables = _tables(source, list(projection.tables), pseudonyms)
    for table, columns in projection.tables.items():
        stored = stored_tables[table]
        target = folder / "extract" / f"{table}.parquet"
        if columns is None:
            bound += _link(stored, target)
        else:
            _project(stored, target, columns)
        tables.append(table)
    twins: dict[str, dict[str, object]] = {}
    for kind, held in (("default", twin), ("dp", dp_twin)):
        if held is None:
            continue
        place = VIEW_TWINS[kind]
        present = [t for t in TABLES if (held.folder / f"{t}.parquet").is_file()]
        for table, stored in _tables(held, present, pseudonyms).items():
            bound += _link(stored, folder / place / f"{table}.parquet")
        if (held.folder / TWIN_MANIFEST).is_file():
            bound += _link(held.folder / TWIN_MANIFEST, folder / place / TWIN_MANIFEST)
        twins[kind] = {
            "name": held.name, "content_hash": held.content_hash, "reference_year": held.reference_year,
            "folder": place,
        }  # fmt: skip
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
        "twin": twins.get("default"),
        "twins": twins,
        "pseudonyms": "extract" if pseudonyms is None else "study",
    }
    (folder / VIEW_MANIFEST).write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n", encoding="utf-8")
    return InputView(folder, tuple(bound))


def _tables(source: Source, names: list[str], pseudonyms: StudyPseudonyms | None) -> dict[str, Path]:
    """Where each of ``names`` is to be read from: the stored table, or with ``pseudonyms`` its rewritten copy."""
    stored = {}
    for table in names:
        path = source.folder / f"{table}.parquet"
        if not path.is_file():
            raise MissingData(f"{source.name}: {table}.parquet is missing")
        stored[table] = path
    if pseudonyms is None:
        return stored
    import polars as pl

    kind = "extract" if source.tier == "real" else "twin"
    cached = pseudonyms.cache / pseudonyms.fingerprint / f"{kind}-{source.content_hash[:24]}"
    keyed = {t: p for t, p in stored.items() if EXTRACT_KEY in pl.read_parquet_schema(p)}
    if any(not (cached / f"{t}.parquet").is_file() for t in keyed):
        cached.mkdir(mode=0o700, parents=True, exist_ok=True)
        with open(cached / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # actions of the study starting at once: one writes, the others wait
            _write_missing(source, pseudonyms, keyed, cached)
    return stored | {t: cached / f"{t}.parquet" for t in keyed}


def _write_missing(source: Source, pseudonyms: StudyPseudonyms, keyed: dict[str, Path], cached: Path) -> None:
    """Write into ``cached`` each table of ``keyed`` not there yet, with the study's pseudonyms."""
    import polars as pl

    from research_kit.pseudonymise.pseudonyms import study_pseudonyms

    missing = [t for t in keyed if not (cached / f"{t}.parquet").is_file()]
    if missing:
        # One HMAC per patient, however many rows they have: the patients table's identifiers (every child
        # row's patient is one of them), or, should a table hold another, every identifier of the tables.
        patients = source.folder / "patients.parquet"
        scans = [pl.scan_parquet(patients)] if patients.is_file() else [pl.scan_parquet(keyed[t]) for t in missing]
        identifiers = pl.concat([scan.select(EXTRACT_KEY) for scan in scans]).unique().drop_nulls().collect()
        renamed = study_pseudonyms(pseudonyms.secret, identifiers[EXTRACT_KEY])
        for table in missing:
            try:
                _rewrite(keyed[table], cached / f"{table}.parquet", identifiers[EXTRACT_KEY], renamed)
            except pl.exceptions.InvalidOperationError:  # an identifier outside the patients table
                every = pl.scan_parquet(keyed[table]).select(EXTRACT_KEY).unique().drop_nulls().collect()
                others = every.join(identifiers, on=EXTRACT_KEY, how="anti")[EXTRACT_KEY]
                identifiers = pl.concat([identifiers, others.to_frame()])
                renamed = pl.concat([renamed, study_pseudonyms(pseudonyms.secret, others)])
                _rewrite(keyed[table], cached / f"{table}.parquet", identifiers[EXTRACT_KEY], renamed)


def _rewrite(stored: Path, target: Path, old: pl.Series, new: pl.Series) -> None:
    """Write ``stored`` at ``target`` (atomically) with its identifiers replaced and its rows in their order."""
    import polars as pl

    tmp = target.with_name(f".{target.stem}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        (
            pl.scan_parquet(stored)
            .with_columns(pl.col(EXTRACT_KEY).replace_strict(old, new, return_dtype=pl.String))
            .sort(EXTRACT_KEY, maintain_order=True, nulls_last=True)
            .sink_parquet(tmp)
        )
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


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
    tmp = target.with_name(f".{target.name}.tmp")
    # In the order of what it holds: a patient's rows as the source wrote them could follow a column left out
    # (encounters in date order would give away the first and the last centre).
    order = sorted(columns, key=lambda c: c != EXTRACT_KEY)  # a patient's rows together, then by what they hold
    frame.select(list(columns)).sort(order, nulls_last=True).sink_parquet(tmp)
    os.replace(tmp, target)
