"""``research-kit ingest``: a raw export in, a validated, pseudonymised, registered extract out.

Steps: read and check every file (nothing is written until all of them are
tables of the right shape); validate every row; stop if any table's
quarantine rate exceeds the policy; pseudonymise the accepted rows into a
temporary folder; write the quarantine (steward only, outside the extract);
then register the extract, audit it and move its folder into place in one
catalog transaction. One ingest runs at a time (a lock file); leftovers of an
interrupted ingest are cleared by the next one.

Memory: the patients table is held in memory (one row per patient); the other
tables stream from the source through Polars to Parquet.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl

from research_kit import audit
from research_kit.catalog import transaction
from research_kit.errors import BadInput, PolicyRefusal
from research_kit.extracts import MANIFEST, RECONCILIATION, is_registered
from research_kit.ingest import readers
from research_kit.ingest.validate import patient_lookup, validate_child, validate_patients
from research_kit.pseudonymise import transform
from research_kit.pseudonymise.keys import Key
from research_kit.registry.codes import load_code_systems
from research_kit.registry.schema import TABLES
from research_kit.workspace import Workspace

EXTRACT_SCHEMA_VERSION = 1
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
Step = Callable[[str], None]


@dataclass(frozen=True)
class TableCount:
    rows_in: int
    accepted: int
    quarantined: int
    withheld: int  # accepted, but left out: the patient did not consent to reuse
    reasons: dict[str, int]  # "field:reason" -> rows
    normalised: dict[str, int]  # field -> values whose whitespace or case was normalised

    @property
    def balanced(self) -> bool:
        return self.rows_in == self.accepted + self.quarantined + self.withheld


@dataclass(frozen=True)
class IngestResult:
    extract_id: str
    path: Path
    quarantine: Path
    content_hash: str
    counts: dict[str, TableCount]
    manifest: dict[str, Any]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            h.update(block)
    return h.hexdigest()


@contextmanager
def _ingest_lock(ws: Workspace) -> Iterator[None]:
    ws.extracts_dir.mkdir(mode=0o700, exist_ok=True)
    with (ws.extracts_dir / ".ingest.lock").open("w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _clear_leftovers(ws: Workspace) -> None:
    """Under the lock no other ingest runs: temporary folders and unregistered extracts are leftovers."""
    for folder in (ws.extracts_dir, ws.quarantine_dir, ws.scratch_dir):
        folder.mkdir(mode=0o700, exist_ok=True)
    for folder in (ws.extracts_dir, ws.quarantine_dir, ws.scratch_dir):
        if not folder.is_dir():
            continue
        for child in folder.iterdir():
            if (
                child.name.startswith(".tmp-")
                or (folder == ws.scratch_dir and child.is_dir())
                or (folder == ws.extracts_dir and child.is_dir() and not is_registered(ws, child.name))
            ):
                shutil.rmtree(child, ignore_errors=True)


def _count(frame: pl.LazyFrame, columns: tuple[str, ...]) -> tuple[int, int, dict[str, int], dict[str, int]]:
    totals = frame.select(
        pl.len().alias("rows"),
        (pl.col("_reasons").list.len() > 0).sum().alias("quarantined"),
        *((pl.col(c).fill_null("") != pl.col(f"_n_{c}")).sum().alias(f"norm:{c}") for c in columns),
    ).collect()
    reasons = (
        frame.select(pl.col("_reasons").explode().drop_nulls()).group_by("_reasons").len().sort("_reasons").collect()
    )
    normalised = {c: int(totals[f"norm:{c}"][0]) for c in columns if totals[f"norm:{c}"][0]}
    return (
        int(totals["rows"][0]),
        int(totals["quarantined"][0]),
        {r: int(n) for r, n in reasons.iter_rows()},
        normalised,
    )


def ingest(
    ws: Workspace,
    raw: list[Path],
    extract_id: str,
    key: Key,
    *,
    today: date | None = None,
    step: Step | None = None,
) -> IngestResult:
    """Ingest the raw export at ``raw`` as extract ``extract_id`` (see the module's docstring)."""
    say = step or (lambda _msg: None)
    if not _ID.match(extract_id):
        raise BadInput(f"extract id {extract_id!r}: use letters, digits, '.', '_' or '-' (at most 64)")
    policy = ws.policy()
    today = today or date.today()
    with _ingest_lock(ws):
        if is_registered(ws, extract_id):
            raise PolicyRefusal(f"extract {extract_id!r} already exists; extracts are immutable, choose a new id")
        _clear_leftovers(ws)
        token = secrets.token_hex(4)
        scratch = ws.scratch_dir / f"ingest-{extract_id}-{token}"
        staging = ws.extracts_dir / f".tmp-{extract_id}-{token}"
        quarantine_staging = ws.quarantine_dir / f".tmp-{extract_id}-{token}"
        try:
            return _run(ws, raw, extract_id, key, policy, today, say, scratch, staging, quarantine_staging)
        finally:
            for leftover in (scratch, staging, quarantine_staging):
                shutil.rmtree(leftover, ignore_errors=True)


def _run(
    ws: Workspace,
    raw: list[Path],
    extract_id: str,
    key: Key,
    policy: Any,
    today: date,
    say: Step,
    scratch: Path,
    staging: Path,
    quarantine_staging: Path,
) -> IngestResult:
    say("reading and checking the files")
    found = readers.find_sources(raw)
    sources = {t.name: readers.read_source(t, found[t.name], scratch / "text") for t in TABLES}
    codes = load_code_systems()

    say("validating patients")
    patients = validate_patients(sources["patients"].frame, sources["patients"].table, today=today).collect()
    accepted, known = patient_lookup(patients)
    validated: dict[str, pl.LazyFrame] = {"patients": patients.lazy()}
    scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
    for name in ("diagnoses", "phenotypes", "encounters"):
        say(f"validating {name}")
        src = sources[name]
        frame = validate_child(src.frame, src.table, today=today, codes=codes, accepted=accepted, known=known)
        frame.sink_parquet(scratch / f"{name}.validated.parquet")
        validated[name] = pl.scan_parquet(scratch / f"{name}.validated.parquet")

    say("reconciling")
    raw_counts = {name: _count(validated[name], sources[name].table.columns) for name in validated}
    rate_limit = policy.ingest.max_quarantine_rate
    for name, (rows, quarantined, _, _) in raw_counts.items():
        if rows and quarantined / rows > rate_limit:
            raise PolicyRefusal(
                f"{sources[name].path}: {quarantined:,} of {rows:,} rows ({quarantined / rows:.1%}) would be "
                f"quarantined, above the policy's {rate_limit:.0%}; nothing was registered"
            )

    say("pseudonymising")
    ok = pl.col("_reasons").list.len() == 0
    accepted_patients = patients.filter(ok)
    if policy.pseudonymise.exclude_without_consent:
        included = accepted_patients.filter(pl.col("_n_consent_reuse") == "yes")
    else:
        included = accepted_patients
    mapping = transform.patient_map(included, key, policy.pseudonymise)
    staging.mkdir(mode=0o700, parents=True)
    out_rows: dict[str, int] = {}
    table_frame = transform.patients_table(included, mapping, policy.pseudonymise, sources["patients"].extra_columns)
    table_frame.write_parquet(staging / "patients.parquet", compression="zstd", statistics=False)
    out_rows["patients"] = table_frame.height
    for name in ("diagnoses", "phenotypes", "encounters"):
        say(f"pseudonymising {name}")
        child = transform.child_table(
            name, validated[name].filter(ok), mapping, policy.pseudonymise, sources[name].extra_columns
        )
        child.sink_parquet(staging / f"{name}.parquet", compression="zstd", statistics=False)
        out_rows[name] = pl.scan_parquet(staging / f"{name}.parquet").select(pl.len()).collect().item()

    counts = {
        name: TableCount(
            rows_in=rows,
            accepted=out_rows[name],
            quarantined=quarantined,
            withheld=rows - quarantined - out_rows[name],
            reasons=reasons,
            normalised=normalised,
        )
        for name, (rows, quarantined, reasons, normalised) in raw_counts.items()
    }

    say("writing the quarantine")
    quarantine_staging.mkdir(mode=0o700, parents=True)
    for name, frame in validated.items():
        columns = [c for c in frame.collect_schema().names() if not c.startswith("_")]
        frame.filter(~ok).select("_row", *columns, pl.col("_reasons").list.join("; ").alias("reasons")).sink_parquet(
            quarantine_staging / f"{name}.parquet"
        )

    manifest = _manifest(ws, extract_id, key, policy, sources, staging, out_rows, codes.versions)
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    reconciliation = {name: {**c.__dict__, "balanced": c.balanced} for name, c in counts.items()}
    (staging / RECONCILIATION).write_text(json.dumps(reconciliation, indent=2, sort_keys=True))

    say("registering")
    final = ws.extracts_dir / extract_id
    quarantine_final = ws.quarantine_dir / extract_id
    shutil.rmtree(quarantine_final, ignore_errors=True)
    with ws.catalog() as conn, transaction(conn):
        conn.execute(
            "INSERT INTO extracts (id, created_at, content_hash, key_fingerprint, patients, manifest) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                extract_id,
                datetime.now(UTC).isoformat(timespec="seconds"),
                manifest["content_hash"],
                key.fingerprint,
                out_rows["patients"],
                json.dumps(manifest, sort_keys=True),
            ),
        )
        audit.append(
            conn,
            ws.audit_path,
            "extract.ingest",
            {
                "extract": extract_id,
                "content_hash": manifest["content_hash"],
                "key_fingerprint": key.fingerprint,
                "sources": {name: s.sha256 for name, s in sources.items()},
                "reconciliation": {n: [c.rows_in, c.accepted, c.quarantined, c.withheld] for n, c in counts.items()},
            },
        )
        os.replace(quarantine_staging, quarantine_final)
        os.replace(staging, final)
    return IngestResult(extract_id, final, quarantine_final, manifest["content_hash"], counts, manifest)


def _manifest(
    ws: Workspace,
    extract_id: str,
    key: Key,
    policy: Any,
    sources: dict[str, readers.Source],
    staging: Path,
    rows: dict[str, int],
    code_versions: dict[str, str],
) -> dict[str, Any]:
    content = {
        "schema_version": EXTRACT_SCHEMA_VERSION,
        "tables": {name: {"rows": rows[name], "sha256": _sha256(staging / f"{name}.parquet")} for name in rows},
        "key_fingerprint": key.fingerprint,
        "policy": {"pseudonymise": policy.as_dict()["pseudonymise"], "ingest": policy.as_dict()["ingest"]},
        "sources": {
            name: {"file": s.path.name, "sha256": s.sha256, "format": s.format, "encoding": s.encoding}
            for name, s in sources.items()
        },
        "code_systems": code_versions,
    }
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return {"extract": extract_id, **content, "content_hash": hashlib.sha256(canonical.encode()).hexdigest()}
