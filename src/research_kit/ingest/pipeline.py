"""``research-kit ingest``: a raw export in, a validated, pseudonymised, registered extract out.

Steps: read and check every file (nothing is written until all of them are
tables of the right shape; other sources than the registry's own layout are
first read through their mappings into its raw tables and merged,
:mod:`research_kit.ingest.inputs`); validate every row; withhold the patients
who opted out (the opt-out register, :mod:`research_kit.pseudonymise.optouts`,
or the export's vital status) or did not consent, with all their rows; stop
if any table's quarantine rate exceeds the policy; pseudonymise the accepted rows into a
temporary folder; write the quarantine (steward only, outside the extract);
then register the extract, audit it and move its folder into place in one
catalog transaction. One ingest runs at a time (a lock file); leftovers of an
interrupted ingest are cleared by the next one.

Memory: every table streams from the source through Polars to Parquet; what
is held whole is one row per patient (the pseudonym map, and the patients'
birth and death dates for the cross-table checks) and one bucket of at most
:data:`BUCKET_ROWS` rows while a table is sorted into its final order.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import polars as pl
from polars.io.plugins import register_io_source

from research_kit.core import audit
from research_kit.core.catalog import transaction
from research_kit.core.checksums import file_sha256
from research_kit.core.config import Policy
from research_kit.core.errors import BadInput, PolicyRefusal
from research_kit.core.extracts import (
    MANIFEST,
    OPTOUT_REGISTER,
    RECONCILIATION,
    SCRATCH,
    STAGED,
    OptoutRegister,
    finish_registrations,
    is_registered,
    move_into_place,
)
from research_kit.core.faults import fault
from research_kit.core.locks import hold
from research_kit.core.permits import NEW_VERSIONS
from research_kit.core.workspace import Workspace, check_name
from research_kit.ingest import readers
from research_kit.ingest.inputs import Inputs as _Inputs
from research_kit.ingest.inputs import read_inputs
from research_kit.ingest.mapping import Mapping
from research_kit.ingest.validate import (
    Validated,
    has_reasons,
    normalised_count,
    patient_lookup,
    reason_counts,
    reasons_text,
    staged_columns,
    unchecked_codes,
    validate_child,
    validate_patients,
    with_absent_values,
)
from research_kit.model.codes import load_code_systems
from research_kit.model.extract_schema import SCHEMA_VERSION as EXTRACT_SCHEMA_VERSION
from research_kit.model.tables import TABLES, VITAL_STATUSES
from research_kit.pseudonymise import optouts, transform
from research_kit.pseudonymise.keys import Key
from research_kit.tiers import TWIN_KINDS

# Why an accepted patient is left out of the extract, each patient for the first that applies (reconciliation).
WITHHELD_REGISTER = "opted out (register)"
WITHHELD_EXPORT = "opted out (export)"
WITHHELD_CONSENT = "no consent to reuse"
OPTED_OUT = "opted out"  # the vital status an export gives a person who opted out
assert OPTED_OUT in VITAL_STATUSES
REFUSED = "refused.parquet"  # the quarantine's records a source reader refused whole (locator and reason)
BUCKET_ROWS = 4_000_000  # rows sorted in memory at once when writing a table
Step = Callable[[str], None]


@dataclass(frozen=True)
class TableCount:
    rows_in: int
    accepted: int
    quarantined: int
    withheld: int  # accepted, but left out: the patient opted out, or did not consent to reuse
    reasons: dict[str, int]  # "field:reason" -> rows
    normalised: dict[str, int]  # field -> values whose whitespace or case was normalised
    withheld_reasons: dict[str, int] = field(default_factory=dict)  # patients only: why -> patients withheld

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
    reconciliation: dict[str, Any] | None = None  # what reconciliation.json holds (per source, merge, kinds)


def _clear_leftovers(ws: Workspace, say: Step) -> None:
    """Under the ingest lock no other ingest runs: what an interrupted one left is finished or removed.

    An extract registered by an ingest killed before it moved its folders into place is finished (the catalog
    is the truth); staged folders of an extract never registered, and this ingest's kind of scratch folder,
    are removed. Nothing else under ``tmp/`` is touched: a study run may be using it.
    """
    for folder in (ws.extracts_dir, ws.quarantine_dir, ws.scratch_dir):
        folder.mkdir(mode=0o700, exist_ok=True)
    for extract_id in finish_registrations(ws):
        say(f"finished registering extract {extract_id} (its ingest stopped after registering it)")
    for folder in (ws.extracts_dir, ws.quarantine_dir):
        for child in folder.iterdir():
            if not child.is_dir():
                continue
            staged = child.name.startswith((STAGED, SCRATCH))
            if staged or not is_registered(ws, child.name):
                shutil.rmtree(child, ignore_errors=True)
    for child in ws.scratch_dir.glob("ingest-*"):  # where earlier versions kept an ingest's scratch files
        shutil.rmtree(child, ignore_errors=True)


def _count(frame: pl.LazyFrame, columns: tuple[str, ...], labels: tuple[str, ...]) -> _Counted:
    """Rows, quarantined rows, rows per reason and values normalised, in one pass."""
    totals = frame.select(
        pl.len().alias("_rows"),
        has_reasons().sum().alias("_quarantined"),
        *reason_counts(labels),
        *(normalised_count(i).alias(f"_norm:{c}") for i, c in enumerate(columns)),
    ).collect(engine="streaming")
    row = totals.row(0, named=True)
    return _Counted(
        rows=int(row["_rows"]),
        quarantined=int(row["_quarantined"]),
        reasons={label: int(row[label]) for label in labels if row[label]},
        normalised={c: int(row[f"_norm:{c}"]) for c in columns if row[f"_norm:{c}"]},
    )


@dataclass(frozen=True)
class _Counted:
    rows: int
    quarantined: int
    reasons: dict[str, int]
    normalised: dict[str, int]


def _write_sorted(
    frame: pl.LazyFrame,
    target: Path,
    pseudonyms: pl.Series,
    rows: int,
    scratch: Path,
    constants: dict[str, pl.Expr] | None = None,
) -> int:
    """Write ``frame`` in ``_pidx`` order with each row's pseudonym first, a range of patients at a time.

    The sort is stable: a patient's rows keep their order in the source, which
    says nothing about national IDs; the order of patients is the pseudonyms'.
    ``rows`` (an upper bound) sets the number of buckets: memory holds about
    :data:`BUCKET_ROWS` rows at once. ``constants`` (columns the same in every
    row: those a source does not have) are left out of the sort and added to
    each part as it is written.
    """
    full = frame.collect_schema()
    order = ["pseudonym", *(c for c in full.names() if c != "_pidx")]
    constants = {c: e for c, e in (constants or {}).items() if c in full}
    frame = frame.drop(list(constants))

    def finish(part: pl.DataFrame) -> pl.DataFrame:
        part = _in_pidx_order(part, pseudonyms)
        return part.with_columns(e.alias(c) for c, e in constants.items()).select(order) if constants else part

    buckets = max(1, -(-rows // BUCKET_ROWS))
    if buckets == 1:
        whole = finish(frame.collect(engine="streaming"))
        whole.write_parquet(target, compression="zstd")
        return whole.height
    unsorted = scratch / f"{target.stem}.unsorted.parquet"  # computed once; each bucket then reads its range
    frame.sink_parquet(unsorted, compression="lz4")
    span = -(-max(len(pseudonyms), 1) // buckets)
    counted = [0]

    def parts() -> Iterator[pl.DataFrame]:
        for bucket in range(buckets):
            part = (
                pl.scan_parquet(unsorted)
                .filter(pl.col("_pidx").is_between(bucket * span, (bucket + 1) * span, closed="left"))
                .collect(engine="streaming")
            )
            part = finish(part)
            counted[0] += part.height
            yield part

    schema = pl.Schema({"pseudonym": pl.String(), **{c: full[c] for c in order[1:]}})
    try:
        # Polars writes the buckets as they come, in order, into one file (and faster than pyarrow's writer).
        source = register_io_source(lambda *_args: parts(), schema=schema)
        source.sink_parquet(target, compression="zstd", maintain_order=True)
    finally:
        unsorted.unlink(missing_ok=True)
    return counted[0]


def _in_pidx_order(part: pl.DataFrame, pseudonyms: pl.Series) -> pl.DataFrame:
    """Rows by patient (``_pidx``), each patient's rows in source order, with the pseudonym first.

    One sort on a combined key (patient, then position) is stable by
    construction and about twice as fast as a stable sort on the patient alone.
    """
    key = pl.col("_pidx").cast(pl.UInt64) * (1 << 32) + pl.int_range(pl.len(), dtype=pl.UInt64)
    part = part.sort(key)
    return part.select(pseudonyms.gather(part["_pidx"]).alias("pseudonym"), pl.exclude("_pidx"))


def ingest(
    ws: Workspace,
    raw: list[Path],
    extract_id: str,
    key: Key,
    *,
    today: date | None = None,
    step: Step | None = None,
    mappings: list[Mapping] | None = None,
) -> IngestResult:
    """Ingest the raw export at ``raw`` as extract ``extract_id`` (see the module's docstring).

    Without ``mappings``, ``raw`` is one export in the registry's own layout (its folder or its table files).
    With them, ``raw`` is one or more sources, each read as the mapping beside it says (the same person in
    several sources becomes one patient: :mod:`research_kit.ingest.merge`).
    """
    if mappings is not None and len(mappings) != len(raw):
        raise BadInput(f"{len(raw)} sources but {len(mappings)} mappings: give one mapping per source, in order")
    say = step or (lambda _msg: None)
    check_name(extract_id, "extract id")
    if extract_id == NEW_VERSIONS:  # a permit's "every version built until it ends"
        raise BadInput(f"extract id {extract_id!r}: a permit's word for every new version; name the extract otherwise")
    if extract_id in TWIN_KINDS:
        raise BadInput(f"extract id {extract_id!r} is reserved: it names a kind of twin (rk.load(twin={extract_id!r}))")
    policy = ws.policy()
    today = today or date.today()
    with hold(ws.extracts_dir / ".ingest.lock", "an ingest", wait=True):
        if is_registered(ws, extract_id):
            raise PolicyRefusal(f"extract {extract_id!r} already exists; extracts are immutable, choose a new id")
        _clear_leftovers(ws, say)
        # Raw identifiers are read into the scratch folder: it lives under quarantine/ (the steward's, like
        # raw/), so that an ingest killed mid-way leaves them nowhere else.
        scratch = ws.quarantine_dir / f"{SCRATCH}{extract_id}"
        staging = ws.extracts_dir / f"{STAGED}{extract_id}"
        quarantine_staging = ws.quarantine_dir / f"{STAGED}{extract_id}"
        try:
            with ThreadPoolExecutor(max_workers=1) as hashing:  # hashes the sources while Polars works
                inputs = list(zip(raw, mappings, strict=True)) if mappings is not None else None
                return _run(
                    ws, raw, extract_id, key, policy, today, say, scratch, staging, quarantine_staging, hashing, inputs
                )
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            if not is_registered(ws, extract_id):  # registered: its staged folders are the extract's data
                for leftover in (staging, quarantine_staging):
                    shutil.rmtree(leftover, ignore_errors=True)


def _run(
    ws: Workspace,
    raw: list[Path],
    extract_id: str,
    key: Key,
    policy: Policy,
    today: date,
    say: Step,
    scratch: Path,
    staging: Path,
    quarantine_staging: Path,
    hashing: ThreadPoolExecutor,
    inputs: list[tuple[Path, Mapping]] | None,
) -> IngestResult:
    say("reading and checking the files")
    read: _Inputs | None = None
    if inputs is None:
        found = readers.find_sources(raw)
        sources = {t.name: readers.read_source(t, found[t.name], scratch / "text") for t in TABLES}
    else:
        read = read_inputs(inputs, scratch, say)
        sources = read.sources
    # One pass over each file, beside Polars: its SHA-256, and whether every row may have the header's width.
    prints = {name: hashing.submit(readers.fingerprint, s) for name, s in sources.items()}
    codes = load_code_systems()

    scratch.mkdir(mode=0o700, parents=True, exist_ok=True)
    validated: dict[str, pl.LazyFrame] = {}
    labels: dict[str, tuple[str, ...]] = {}

    def stage(name: str, result: Validated) -> None:
        path = scratch / f"{name}.validated.parquet"
        src = sources[name]
        staged = staged_columns(
            result.frame, src.table, src.extra_columns, keep_national_id=name == "patients", absent=src.absent
        )
        staged.sink_parquet(path, compression="uncompressed")  # scratch: speed over size
        validated[name] = with_absent_values(pl.scan_parquet(path), src.absent)
        labels[name] = result.labels

    def checked(name: str, validate: Callable[[pl.LazyFrame, dict[int, int], readers.Source], Validated]) -> None:
        """Validate and stage one table. A CSV is read strictly first, while its fingerprint is taken; if the
        strict read meets a row with more fields, or the file's counts do not add up (a row may have fewer),
        it is validated again with each row's fields counted, so that a ragged row is quarantined."""
        src = sources[name]
        try:
            with readers.reading(src.path):
                stage(name, validate(src.strict_frame(), {}, src))
            if src.layout is None or prints[name].result()[1]:
                return
        except readers.MoreFields:
            pass
        with readers.reading(src.path):
            stage(name, validate(src.frame, src.count_ragged(), src))

    say("validating patients")
    earliest = date.fromisoformat(policy.ingest.earliest_date)
    checked(
        "patients",
        lambda frame, rows, src: validate_patients(
            frame,
            src.table,
            today=today,
            earliest=earliest,
            ragged=rows,
            extra=src.extra_columns,
            identifier_kinds=policy.ingest.identifier_kinds,
            undated_sources=[m.name for _, m in inputs or [] if m.dates == "ages"],
            absent=src.absent,
        ),
    )
    ok = ~has_reasons()
    say("withholding patients who opted out or did not consent")
    ids, withheld_why, register = _left_out(ws, key, validated["patients"].filter(ok), policy)
    included = validated["patients"].filter(ok).join(ids.lazy(), on="_n_national_id", how="semi")
    say("pseudonymising patients")
    mapping = transform.patient_map(ids, key, policy.pseudonymise)
    del ids
    pseudonyms = mapping.get_column("pseudonym")  # in _pidx order
    staging.mkdir(mode=0o700, parents=True)  # removed if the ingest stops
    out_rows: dict[str, int] = {}
    extra = sources["patients"].extra_columns
    patients_frame = transform.patients_table(included, mapping, policy.pseudonymise, extra, sources["patients"].absent)
    out_rows["patients"] = _write_sorted(
        patients_frame, staging / "patients.parquet", pseudonyms, len(pseudonyms), scratch,
        transform.constant_columns("patients", sources["patients"].absent),
    )  # fmt: skip
    if out_rows["patients"] == 0:
        raise PolicyRefusal(
            "no patient would be in the extract (each was quarantined, opted out, or withheld without consent to "
            "reuse: [pseudonymise].exclude_without_consent); an extract without patients is not registered"
        )
    # One lookup for the other tables: is the patient known, accepted (birth, death), in the extract (_pidx)?
    lookup = patient_lookup(validated["patients"], sources["patients"].absent).join(
        mapping.drop("pseudonym"), on="_nid", how="left"
    )
    del mapping

    def child_table(
        frame: pl.LazyFrame, rows: dict[int, int], src: readers.Source, known: pl.DataFrame = lookup
    ) -> Validated:
        return validate_child(
            frame, src.table, today=today, earliest=earliest, codes=codes, known=known, ragged=rows,
            extra=src.extra_columns, absent=src.absent,
        )  # fmt: skip

    for name in ("diagnoses", "phenotypes", "encounters"):
        say(f"validating {name}")
        checked(name, child_table)
    del child_table
    del lookup

    say("reconciling")
    counted = {name: _count(validated[name], sources[name].table.columns, labels[name]) for name in validated}
    rate_limit = policy.ingest.max_quarantine_rate
    for name, c in counted.items():
        where = sources[name].path if read is None else f"table {name} of the sources"
        if c.rows and c.quarantined / c.rows > rate_limit:
            raise PolicyRefusal(
                f"{where}: {c.quarantined:,} of {c.rows:,} rows ({c.quarantined / c.rows:.1%}) would "
                f"be quarantined, above the policy's {rate_limit:.0%}; nothing was registered"
            )
    if read is not None:  # records a reader refused whole count against the same limit, per source
        for converted in read.converted:
            refused = len(converted.refused)
            if converted.records_in and refused / converted.records_in > rate_limit:
                raise PolicyRefusal(
                    f"source {converted.name}: {refused:,} of {converted.records_in:,} records "
                    f"({refused / converted.records_in:.1%}) were refused (could not be read), above the policy's "
                    f"{rate_limit:.0%}; nothing was registered"
                )

    for name in ("diagnoses", "phenotypes", "encounters"):
        say(f"pseudonymising {name}")
        child = transform.child_table(
            name, validated[name].filter(ok), policy.pseudonymise, sources[name].extra_columns, sources[name].absent
        )
        bound = counted[name].rows - counted[name].quarantined
        constants = transform.constant_columns(name, sources[name].absent)
        out_rows[name] = _write_sorted(child, staging / f"{name}.parquet", pseudonyms, bound, scratch, constants)
    del pseudonyms

    counts = {
        name: TableCount(
            rows_in=c.rows,
            accepted=out_rows[name],
            quarantined=c.quarantined,
            withheld=c.rows - c.quarantined - out_rows[name],
            reasons=c.reasons,
            normalised=c.normalised,
            withheld_reasons=withheld_why if name == "patients" else {},
        )
        for name, c in counted.items()
    }
    details = _details(validated["phenotypes"], staging, read)

    say("writing the quarantine")
    quarantine_staging.mkdir(mode=0o700, parents=True)
    if read is not None and any(c.refused for c in read.converted):
        pl.DataFrame(
            [(c.name, r.locator, r.reason) for c in read.converted for r in c.refused],
            schema=["source", "locator", "reason"],
            orient="row",
        ).write_parquet(quarantine_staging / REFUSED)
    for name, frame in validated.items():
        columns = [c for c in frame.collect_schema().names() if not c.startswith("_")]
        frame.filter(~ok).select("_row", *columns, reasons_text(labels[name])).sink_parquet(
            quarantine_staging / f"{name}.parquet"
        )

    hashes = {name: future.result()[0] for name, future in prints.items()}
    manifest = _manifest(extract_id, key, policy, sources, hashes, staging, out_rows, codes.versions, read, register)
    (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True))
    reconciliation: dict[str, Any] = {name: {**c.__dict__, "balanced": c.balanced} for name, c in counts.items()}
    for name, extra_counts in details.items():
        reconciliation[name].update(extra_counts)
    reconciliation[OPTOUT_REGISTER] = {
        **register.as_manifest(),
        # Patients the export marks opted out whom the register does not hold yet: the steward records them.
        "export_opted_out_not_in_register": withheld_why.get(WITHHELD_EXPORT, 0),
    }
    if read is not None:
        reconciliation["sources"] = read.accounts()
        reconciliation["merge"] = {
            "rows_from_sources": read.merged.rows_in,
            "rows_merged": read.merged.merged,
            "conflicts": read.merged.conflicts,
        }
    (staging / RECONCILIATION).write_text(json.dumps(reconciliation, indent=2, sort_keys=True))

    say("registering")
    final = ws.extracts_dir / extract_id
    quarantine_final = ws.quarantine_dir / extract_id
    fault("ingest.before_register")
    # The catalog row and its audit line commit together; then the staged folders move into place. A kill
    # in between leaves a registered extract still staged: the next command that reads it finishes the move.
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
                "sources": hashes,
                "reconciliation": {n: [c.rows_in, c.accepted, c.quarantined, c.withheld] for n, c in counts.items()},
                "withheld_patients": withheld_why,  # counts per reason only
                "optout_register_version": register.version,
            },
        )
    fault("ingest.after_register")
    move_into_place(ws, extract_id)
    return IngestResult(extract_id, final, quarantine_final, manifest["content_hash"], counts, manifest, reconciliation)


def _left_out(
    ws: Workspace, key: Key, accepted: pl.LazyFrame, policy: Policy
) -> tuple[pl.DataFrame, dict[str, int], OptoutRegister]:
    """The national IDs of the accepted patients that go into the extract; how many of the others were withheld
    for each reason; and the opt-out register read (its entries and version together).

    Each patient is withheld for the first reason that applies: in the opt-out register (the one source of
    truth for opting out of secondary use); marked "opted out" by the export (withheld the same, never recorded
    in the register by the ingest: the steward records them); no consent to reuse, under
    ``[pseudonymise].exclude_without_consent``.
    """
    hashes, register = optouts.register_hashes(ws)
    people = accepted.select(
        "_n_national_id",
        (pl.col("_n_vital_status") == OPTED_OUT).alias("_export"),
        (pl.col("_n_consent_reuse") != "yes").alias("_no_consent"),
    ).collect()
    if hashes:  # one HMAC per accepted patient, only when someone has opted out
        listed = pl.Series(sorted(hashes), dtype=pl.String)
        in_register = optouts.person_hashes(key, people.get_column("_n_national_id")).is_in(listed)
    else:
        in_register = pl.Series([False] * people.height, dtype=pl.Boolean)
    people = people.with_columns(in_register.alias("_register"))
    why = (
        pl.when(pl.col("_register"))
        .then(pl.lit(WITHHELD_REGISTER))
        .when(pl.col("_export"))
        .then(pl.lit(WITHHELD_EXPORT))
        .when(pl.col("_no_consent") & pl.lit(policy.pseudonymise.exclude_without_consent))
        .then(pl.lit(WITHHELD_CONSENT))
    )
    people = people.select("_n_national_id", why.alias("_why"))
    counted = dict(people.get_column("_why").drop_nulls().value_counts().iter_rows())
    withheld = {r: int(counted[r]) for r in (WITHHELD_REGISTER, WITHHELD_EXPORT, WITHHELD_CONSENT) if counted.get(r)}
    return people.filter(pl.col("_why").is_null()).select("_n_national_id"), withheld, register


def _details(phenotypes: pl.LazyFrame, staging: Path, read: _Inputs | None) -> dict[str, dict[str, Any]]:
    """What the reconciliation adds to the row counts: observed and excluded phenotypes in (rows, plus the
    records a reader refused) equal out plus quarantined plus withheld; diagnoses whose codes are accepted but
    could not be checked against a list."""
    flagged = pl.col("_n_excluded") == "yes"
    by_kind = (
        phenotypes.group_by(flagged.alias("excluded"))
        .agg(pl.len().alias("in"), has_reasons().sum().alias("quarantined"))
        .collect(engine="streaming")
    )
    out = pl.scan_parquet(staging / "phenotypes.parquet").group_by("excluded").len().collect()
    accepted = {bool(k): int(n) for k, n in out.iter_rows()}
    refused = read.accounts() if read is not None else {}
    split: dict[str, dict[str, int]] = {}
    for kind, excluded in (("observed", False), ("excluded", True)):
        row = by_kind.filter(pl.col("excluded") == excluded)
        rows_in = int(row["in"].sum()) if row.height else 0
        quarantined = int(row["quarantined"].sum()) if row.height else 0
        refused_here = sum(int(a["refused_phenotypes"][kind]) for a in refused.values())
        split[kind] = {
            "in": rows_in + refused_here,
            "accepted": accepted.get(excluded, 0),
            "quarantined": quarantined,
            "refused": refused_here,
            "withheld": rows_in - quarantined - accepted.get(excluded, 0),
        }
    unchecked = unchecked_codes(pl.scan_parquet(staging / "diagnoses.parquet"))
    return {"phenotypes": {"by_kind": split}, "diagnoses": {"unchecked_codes": unchecked}}


def _manifest(
    extract_id: str,
    key: Key,
    policy: Policy,
    sources: dict[str, readers.Source],
    hashes: dict[str, str],
    staging: Path,
    rows: dict[str, int],
    code_versions: dict[str, str],
    read: _Inputs | None = None,
    register: OptoutRegister | None = None,
) -> dict[str, Any]:
    content: dict[str, Any] = {
        "schema_version": EXTRACT_SCHEMA_VERSION,
        "tables": {name: {"rows": rows[name], "sha256": file_sha256(staging / f"{name}.parquet")} for name in rows},
        "key_fingerprint": key.fingerprint,
        "policy": {"pseudonymise": policy.as_dict()["pseudonymise"], "ingest": policy.as_dict()["ingest"]},
        "sources": {
            name: {"file": s.path.name, "sha256": hashes[name], "format": s.format, "encoding": s.encoding}
            for name, s in sources.items()
        },
        "code_systems": code_versions,
        "simulated": simulated(sources, hashes) if read is None else read.simulated(),
    }
    if register is not None:  # the opt-out register it was built against (research use checks it is current)
        content[OPTOUT_REGISTER] = register.as_manifest()
    if read is not None:
        content["inputs"] = read.manifest()
        content["ontology_versions"] = read.versions()
    canonical = json.dumps(content, sort_keys=True, separators=(",", ":"))
    return {"extract": extract_id, **content, "content_hash": hashlib.sha256(canonical.encode()).hexdigest()}


def simulated(sources: dict[str, readers.Source], hashes: dict[str, str]) -> bool:
    """Whether every source file is one the simulator made (its mark beside it names the file's SHA-256)."""
    from research_kit.simulator.export import SIMULATED_MARK

    for name, source in sources.items():
        mark = source.path.parent / SIMULATED_MARK
        try:
            files = json.loads(mark.read_text(encoding="utf-8"))["files"]
        except (OSError, ValueError, KeyError, TypeError):
            return False
        if not isinstance(files, dict) or files.get(source.path.name) != hashes[name]:
            return False
    return True
