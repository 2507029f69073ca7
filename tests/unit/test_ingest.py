"""Ingest against the simulator's fault oracle, and the promises an extract makes."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import polars as pl
import pytest

from research_kit.core import audit
from research_kit.core.errors import PolicyRefusal
from research_kit.core.extracts import get_extract, list_extracts
from research_kit.core.workspace import Workspace, init_workspace
from research_kit.ingest.pipeline import IngestResult, ingest
from research_kit.model import geography
from research_kit.pseudonymise.keys import Key, load_key, new_key
from research_kit.pseudonymise.pseudonyms import pseudonym
from research_kit.simulator.export import SimulationSpec, simulate_export

# The reason ingest must give for each kind of fault the simulator injects.
REASON = {
    "bad_check_digit": "bad_check_digit",
    "missing_mandatory": "missing_mandatory",
    "unparseable_date": "unparseable_date",
    "impossible_date": "impossible_date",
    "death_before_birth": "death_before_birth",
    "future_date": "future_date",
    "duplicate_patient": "duplicate_patient",
    "unknown_code": "unknown_code",
    "unknown_patient": "unknown_patient",
    "patient_quarantined": "patient_quarantined",
    "onset_after_diagnosis": "onset_after_diagnosis",
    "onset_before_birth": "onset_before_birth",
}


@dataclass
class Ingested:
    ws: Workspace
    raw: Path
    key: Key
    key_path: Path
    result: IngestResult
    sidecar: list[dict[str, object]]


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> Ingested:
    base = tmp_path_factory.mktemp("ingest")
    ws, _ = init_workspace(base / "ws")
    raw = base / "raw"
    simulate_export(SimulationSpec(patients=3_000, seed=31, format="csv", faults=True, chunk_size=1_200), raw)
    key_path, _ = new_key(base / "secrets" / "k.key")
    key = load_key(key_path)
    result = ingest(ws, [raw], "e1", key)
    sidecar = json.loads((raw / "faults.json").read_text(encoding="utf-8"))["faults"]
    return Ingested(ws, raw, key, key_path, result, sidecar)


def quarantined(result: IngestResult, table: str) -> dict[int, list[str]]:
    frame = pl.read_parquet(result.quarantine / f"{table}.parquet")
    return {row: reasons.split("; ") for row, reasons in frame.select("_row", "reasons").iter_rows()}


def test_every_fault_is_quarantined_with_its_reason_and_no_clean_row_is(ingested: Ingested) -> None:
    for table in ("patients", "diagnoses", "phenotypes", "encounters"):
        got = quarantined(ingested.result, table)
        expected = {f["row"]: f for f in ingested.sidecar if f["table"] == table and f["quarantine"]}
        assert set(got) == set(expected), table
        for row, fault in expected.items():
            assert f"{fault['field']}:{REASON[str(fault['kind'])]}" in got[row], (table, row, fault, got[row])


def test_the_reconciliation_balances_for_every_table(ingested: Ingested) -> None:
    for name, count in ingested.result.counts.items():
        assert count.balanced, name
        assert count.quarantined == len(quarantined(ingested.result, name))
        extract_rows = pl.read_parquet(ingested.result.path / f"{name}.parquet").height
        assert count.accepted == extract_rows
    written = json.loads((ingested.result.path / "reconciliation.json").read_text())
    assert written["patients"]["rows_in"] == ingested.result.counts["patients"].rows_in


def test_whitespace_and_case_are_normalised_and_reported(ingested: Ingested) -> None:
    messy = [f for f in ingested.sidecar if f["kind"] == "whitespace_case"]
    assert messy
    for fault in messy:
        assert int(str(fault["row"])) not in quarantined(ingested.result, str(fault["table"]))
    assert ingested.result.counts["diagnoses"].normalised["status"] >= sum(
        1 for f in messy if f["table"] == "diagnoses"
    )
    sexes = pl.read_parquet(ingested.result.path / "patients.parquet")["sex"].unique().to_list()
    assert set(sexes) <= {"female", "male", "undetermined"}


def identifiers(raw: Path) -> tuple[set[str], set[str], set[str]]:
    patients = pl.read_csv(raw / "patients.csv", infer_schema=False, encoding="utf8-lossy")
    raw_patients = (raw / "patients.csv").read_bytes().decode("latin-1").splitlines()[1:]
    ids = {line.split(",")[0].strip() for line in raw_patients if line}
    names = {
        n.strip() for col in ("first_name", "last_name") for n in patients[col].to_list() if n and len(n.strip()) > 3
    }
    streets = {
        f"{s.strip()} {h.strip()}"
        for s, h in zip(patients["street"].to_list(), patients["house_number"].to_list(), strict=True)
    } | {s.strip() for s in patients["street"].to_list() if s}
    return ids, names, streets


def test_no_raw_identifier_appears_anywhere_in_the_extract(ingested: Ingested) -> None:
    ids, names, streets = identifiers(ingested.raw)
    assert len(ids) > 2_900
    cells: set[str] = set()
    text = ""
    for path in sorted(ingested.result.path.iterdir()):
        if path.suffix == ".parquet":
            frame = pl.read_parquet(path)
            for column in frame.columns:
                cells |= {str(v) for v in frame[column].unique().to_list()}
        else:
            text += path.read_text()
        raw_bytes = path.read_bytes().decode("latin-1")
        assert not any(i in raw_bytes for i in ids), path
    tokens = {t for cell in cells for t in re.split(r"[^\w'-]+", cell)} | set(re.split(r"[^\w'-]+", text))
    assert not (cells | tokens) & ids
    # A family name that is also a canton's name (Mersch) may appear: as the canton, which is kept.
    assert not tokens & (names - set(geography.CANTONS))
    assert not any(street in cell for cell in cells for street in streets)
    assert not any(street in text for street in streets)


def test_the_key_is_nowhere_in_the_workspace(ingested: Ingested) -> None:
    secret = ingested.key.secret
    for path in ingested.ws.root.rglob("*"):
        if path.is_file():
            content = path.read_bytes()
            assert secret not in content, path
            assert secret.hex().encode() not in content, path


def test_the_extract_holds_pseudonyms_and_generalised_quasi_identifiers(ingested: Ingested) -> None:
    p = pl.read_parquet(ingested.result.path / "patients.parquet")
    assert p.columns[:3] == ["pseudonym", "birth_year", "birth_month"]
    assert {"national_id", "first_name", "last_name", "street", "house_number", "postcode", "commune"}.isdisjoint(
        p.columns
    )
    assert p["pseudonym"].str.contains(r"^[0-9a-f]{32}$").all()
    assert p["pseudonym"].is_unique().all()
    assert set(p["canton"].drop_nulls().to_list()) <= set(geography.CANTONS)
    assert p["consent_reuse"].all()  # patients without consent are left out
    for table, cols in (("diagnoses", ["onset_date", "diagnosis_date"]), ("encounters", ["encounter_date"])):
        frame = pl.read_parquet(ingested.result.path / f"{table}.parquet")
        assert set(frame["pseudonym"].unique().to_list()) <= set(p["pseudonym"].to_list())
        for col in cols:
            assert (frame[col].drop_nulls().dt.day() == 1).all()  # month precision


def test_pseudonyms_are_the_keyed_hmac_of_the_national_id(ingested: Ingested) -> None:
    raw = pl.read_csv(ingested.raw / "patients.csv", infer_schema=False, encoding="utf8-lossy")
    first = raw.filter(pl.col("consent_reuse").str.strip_chars() == "yes").row(0, named=True)
    expected = pseudonym(ingested.key, first["national_id"])
    assert expected in pl.read_parquet(ingested.result.path / "patients.parquet")["pseudonym"].to_list()


def test_the_manifest_is_registered_and_audited(ingested: Ingested) -> None:
    extract = get_extract(ingested.ws, "e1")
    manifest = json.loads((ingested.result.path / "manifest.json").read_text())
    assert extract.content_hash == manifest["content_hash"] == ingested.result.content_hash
    assert manifest["key_fingerprint"] == ingested.key.fingerprint
    assert set(manifest["tables"]) == {"patients", "diagnoses", "phenotypes", "encounters"}
    assert manifest["sources"]["patients"]["encoding"] == "latin-1"
    assert manifest["code_systems"]["hpo"] == "2025-01-16"
    import hashlib

    for name, table in manifest["tables"].items():
        digest = hashlib.sha256((ingested.result.path / f"{name}.parquet").read_bytes()).hexdigest()
        assert digest == table["sha256"]
    entries = audit.read_entries(ingested.ws.audit_path)
    ingests = [e for e in entries if e["action"] == "extract.ingest"]
    assert ingests[0]["details"]["content_hash"] == manifest["content_hash"]


def test_the_same_input_key_and_policy_give_the_same_content_hash(ingested: Ingested) -> None:
    again = ingest(ingested.ws, [ingested.raw], "e1-again", ingested.key)
    assert again.content_hash == ingested.result.content_hash
    other_key = load_key(new_key(ingested.key_path.parent / "other.key")[0])
    other = ingest(ingested.ws, [ingested.raw], "e1-other-key", other_key)
    assert other.content_hash != ingested.result.content_hash
    a = set(pl.read_parquet(again.path / "patients.parquet")["pseudonym"].to_list())
    b = set(pl.read_parquet(other.path / "patients.parquet")["pseudonym"].to_list())
    assert not a & b


def test_an_extract_is_immutable(ingested: Ingested) -> None:
    before = (ingested.result.path / "manifest.json").read_bytes()
    with pytest.raises(PolicyRefusal, match="already exists; extracts are immutable"):
        ingest(ingested.ws, [ingested.raw], "e1", ingested.key)
    assert (ingested.result.path / "manifest.json").read_bytes() == before


def test_above_the_quarantine_rate_nothing_is_registered(tmp_path: Path, ingested: Ingested) -> None:
    ws, _ = init_workspace(tmp_path / "ws")
    ws.policy_path.write_text(
        ws.policy_path.read_text().replace("max_quarantine_rate = 0.05", "max_quarantine_rate = 0.001")
    )
    with pytest.raises(PolicyRefusal, match=r"would be quarantined, above the policy's 0%; nothing was registered"):
        ingest(ws, [ingested.raw], "too-dirty", ingested.key)
    assert list_extracts(ws) == []
    assert not any(ws.extracts_dir.iterdir()) or [p.name for p in ws.extracts_dir.iterdir()] == [".ingest.lock"]
    assert not any(ws.quarantine_dir.iterdir())


def test_event_dates_shifted_keep_intervals_exact(tmp_path: Path, ingested: Ingested) -> None:
    ws, _ = init_workspace(tmp_path / "ws")
    text = ws.policy_path.read_text().replace('event_dates = "month"', 'event_dates = "shift"')
    ws.policy_path.write_text(text.replace("max_shift_days = 180", "max_shift_days = 30"))
    result = ingest(ws, [ingested.raw], "shifted", ingested.key)
    d = pl.read_parquet(result.path / "diagnoses.parquet")
    assert ((d["diagnosis_date"] - d["onset_date"]).dt.total_days() == d["diagnostic_delay_days"]).all()
    assert (d["onset_date"].dt.day() != 1).any()
    raw = pl.read_csv(ingested.raw / "diagnoses.csv", infer_schema=False)
    raw_first = raw.filter(pl.col("national_id") == raw["national_id"][0])
    shifted = d.filter(pl.col("pseudonym") == pseudonym(ingested.key, raw["national_id"][0]))
    moved = (shifted["diagnosis_date"].sort() - raw_first["diagnosis_date"].str.to_date().sort()).dt.total_days()
    assert moved.n_unique() == 1
    assert abs(moved[0]) <= 30


@pytest.mark.slow  # an ingest killed at each step, ~12 s
def test_an_ingest_killed_at_any_moment_leaves_no_partial_extract(tmp_path: Path, ingested: Ingested) -> None:
    ws, _ = init_workspace(tmp_path / "ws")
    code = (
        "import sys; from pathlib import Path\n"
        "from research_kit.core.workspace import Workspace\n"
        "from research_kit.ingest.pipeline import ingest\n"
        "from research_kit.pseudonymise.keys import load_key\n"
        "ingest(Workspace(Path(sys.argv[1])), [Path(sys.argv[2])], 'k', load_key(Path(sys.argv[3])))\n"
    )
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}

    def start(root: Path) -> subprocess.Popen[bytes]:
        args = [sys.executable, "-c", code, str(root), str(ingested.raw), str(ingested.key_path)]
        return subprocess.Popen(args, env=env)

    timing_ws, _ = init_workspace(tmp_path / "timing")
    began = time.perf_counter()
    assert start(timing_ws.root).wait() == 0
    whole = time.perf_counter() - began
    # Kill at moments spread over the run's second half (the first is mostly imports).
    for fraction in (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95):
        proc = start(ws.root)
        time.sleep(whole * fraction)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        final = ws.extracts_dir / "k"
        if [e.id for e in list_extracts(ws)]:  # it finished before the kill: then it is whole
            assert final.is_dir()
            assert (final / "manifest.json").is_file()
            break
        assert not final.exists()
    result = ingest(ws, [ingested.raw], "after-kill", ingested.key)
    assert result.content_hash == ingested.result.content_hash
    assert not [p for p in ws.extracts_dir.iterdir() if p.name.startswith(".tmp-")]
    with ws.catalog() as conn:
        assert audit.verify(conn, ws.audit_path).ok


def test_the_risk_report_of_an_extract(ingested: Ingested) -> None:
    from research_kit.pseudonymise.assessment import assess_extract, risk_records

    done = assess_extract(ingested.ws, "e1", enforce=5)
    records = risk_records(get_extract(ingested.ws, "e1"), date(2026, 11, 24))
    assert done.report.records == records.height == ingested.result.counts["patients"].accepted
    # A patient whose every diagnosis row was quarantined has none in the extract.
    diagnosed = pl.read_parquet(ingested.result.path / "diagnoses.parquet")["pseudonym"].n_unique()
    assert records["diagnosis"].null_count() == records.height - diagnosed
    sizes = records.group_by(["birth_year", "sex", "canton"]).len()["len"]
    assert done.report.k == sizes.min()
    assert done.report.classes == sizes.len()
    saved = json.loads(done.json_path.read_text())
    assert saved["risk"]["k"] == done.report.k
    assert saved["enforce_k"]["risk"]["k"] >= 5
    assert saved["enforce_k"]["rows_suppressed"] == done.report.records - saved["enforce_k"]["risk"]["records"]
    assert done.plot_path.read_bytes()[:4] == b"\x89PNG"


def test_a_policy_naming_a_column_the_extract_lacks_is_refused(tmp_path: Path, ingested: Ingested) -> None:
    from research_kit.core.errors import BadInput
    from research_kit.pseudonymise.assessment import assess_extract

    policy = ingested.ws.policy_path
    original = policy.read_text()
    try:
        policy.write_text(original.replace('["birth_year", "sex", "canton"]', '["birth_year", "postcode"]'))
        with pytest.raises(BadInput, match=r"\[risk\]\.quasi_identifiers names columns not in the extract: postcode"):
            assess_extract(ingested.ws, "e1")
    finally:
        policy.write_text(original)


def test_out_of_range_dates_and_malformed_postcodes_are_quarantined(tmp_path: Path, ingested: Ingested) -> None:
    raw = tmp_path / "raw"
    simulate_export(SimulationSpec(patients=300, seed=5, format="csv"), raw)
    patients = pl.read_csv(raw / "patients.csv", infer_schema=False)
    patients = patients.with_columns(
        pl.when(pl.int_range(pl.len()) == 2).then(pl.lit("L-1234")).otherwise(pl.col("postcode")).alias("postcode")
    )
    patients.write_csv(raw / "patients.csv")
    encounters = pl.read_csv(raw / "encounters.csv", infer_schema=False)
    encounters = encounters.with_columns(
        pl.when(pl.int_range(pl.len()) == 4)
        .then(pl.lit("1850-06-01"))
        .otherwise(pl.col("encounter_date"))
        .alias("encounter_date")
    )
    encounters.write_csv(raw / "encounters.csv")
    ws, _ = init_workspace(tmp_path / "ws")
    result = ingest(ws, [raw], "ranges", ingested.key)
    assert quarantined(result, "patients")[3] == ["postcode:invalid_value"]
    assert "encounter_date:date_out_of_range" in quarantined(result, "encounters")[5]


def test_tables_written_in_buckets_are_the_same_as_in_one_piece(
    tmp_path: Path, ingested: Ingested, monkeypatch: pytest.MonkeyPatch
) -> None:
    from research_kit.ingest import pipeline

    monkeypatch.setattr(pipeline, "BUCKET_ROWS", 700)  # several buckets per table, as at millions of patients
    ws, _ = init_workspace(tmp_path / "ws")
    result = ingest(ws, [ingested.raw], "e1", ingested.key)
    for table in ("patients", "diagnoses", "phenotypes", "encounters"):
        one = pl.read_parquet(get_extract(ingested.ws, "e1").table_path(table))
        many = pl.read_parquet(get_extract(ws, "e1").table_path(table))
        assert many.equals(one), table
    assert result.counts == ingested.result.counts


def _copy_export(ingested: Ingested, target: Path) -> Path:
    target.mkdir()
    for path in ingested.raw.iterdir():
        if path.suffix == ".csv":
            (target / path.name).write_bytes(path.read_bytes())
    return target


@pytest.mark.parametrize(
    ("header", "says"),
    [
        (lambda names: [*names, names[0]], "names column 'national_id' twice"),
        (lambda names: [*names[:2], " ", *names[2:]], "column 3 of the header has no name"),
    ],
)
def test_a_header_with_a_duplicated_or_empty_name_is_refused_in_one_line(
    tmp_path: Path, ingested: Ingested, header: object, says: str
) -> None:
    from research_kit.core.errors import BadInput

    raw = _copy_export(ingested, tmp_path / "raw")
    lines = (raw / "diagnoses.csv").read_text(encoding="utf-8").splitlines(keepends=True)
    names = lines[0].rstrip("\r\n").split(",")
    lines[0] = ",".join(header(names)) + "\n"  # type: ignore[operator]
    (raw / "diagnoses.csv").write_text("".join(lines), encoding="utf-8")
    ws, _ = init_workspace(tmp_path / "ws")
    with pytest.raises(BadInput, match=re.escape(says)):
        ingest(ws, [raw], "dup", ingested.key)
    assert not list_extracts(ws)


@pytest.mark.parametrize("where", ["first rows", "last rows"])
def test_ragged_rows_long_fields_and_formulas_are_quarantined_with_their_reason(
    tmp_path: Path, ingested: Ingested, where: str
) -> None:
    raw = _copy_export(ingested, tmp_path / "raw")
    path = raw / "phenotypes.csv"
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    width = lines[0].count(",") + 1
    # A row with a field fewer and one with a field more: the file's counts add up, as if nothing were wrong.
    clean = [i for i, line in enumerate(lines[1:], start=1) if '"' not in line]
    clean = clean[:6] if where == "first rows" else clean[-6:]
    fewer, more, long_, formula, signed = clean[:5]
    lines[fewer] = ",".join(lines[fewer].rstrip("\n").split(",")[:-1]) + "\n"
    lines[more] = lines[more].rstrip("\n") + ",extra\n"
    cells = lines[long_].rstrip("\n").split(",")
    cells[-1] = "x" * 1_100_000  # a field over a megabyte
    lines[long_] = ",".join(cells) + "\n"
    cells = lines[formula].rstrip("\n").split(",")
    cells[-1] = '=HYPERLINK("http://example.org")'.replace(",", ";").replace('"', "")
    lines[formula] = ",".join(cells) + "\n"
    path.write_text("".join(lines), encoding="utf-8")
    ws, _ = init_workspace(tmp_path / "ws")
    result = ingest(ws, [raw], "shapes", ingested.key)
    reasons = quarantined(result, "phenotypes")
    assert "row:wrong_field_count" in reasons[fewer]
    assert "row:wrong_field_count" in reasons[more]
    assert "cell:field_too_long" in reasons[long_]
    assert "cell:formula_like" in reasons[formula]
    assert signed not in reasons or "cell:formula_like" not in reasons[signed]
    count = result.counts["phenotypes"]
    assert count.rows_in == len(lines) - 1
    assert count.balanced
    assert width > 2


def test_an_ingest_keeps_its_scratch_files_under_quarantine_and_leaves_other_tmp_folders_alone(
    tmp_path: Path, ingested: Ingested
) -> None:
    ws, _ = init_workspace(tmp_path / "ws")
    running = ws.scratch_dir / "runs" / "a-run-in-progress"
    running.mkdir(parents=True)
    ingest(ws, [ingested.raw], "one", ingested.key)
    assert running.is_dir()  # another command's work under tmp/ is not an ingest's leftover
    assert not [p for p in ws.scratch_dir.rglob("*.parquet")]
