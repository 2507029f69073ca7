"""The --faults sidecar is an exact oracle: the rows a strict validator rejects are the rows it lists.

The validator here is written independently of the simulator, from the rules
an ingest must apply, so that the sidecar can be trusted as the ingest's test
oracle.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from datetime import date
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from research_kit.model.codes import CodeSystems, hpo_id, icd10_codes, orpha_id
from research_kit.model.national_id import is_valid
from research_kit.model.tables import DIAGNOSIS_STATUSES, SEXES, TABLES, VITAL_STATUSES
from research_kit.simulator.export import SimulationSpec, simulate_export
from research_kit.simulator.simulate import AS_OF

ISO = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def parse(value: str) -> date | None:
    if not ISO.match(value):
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        return None


@pytest.fixture(scope="module")
def faulty(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, pd.DataFrame], dict[str, Any]]:
    out = tmp_path_factory.mktemp("faults") / "export"
    simulate_export(SimulationSpec(patients=4_000, seed=21, format="csv", faults=True, chunk_size=1_500), out)
    frames = {}
    for t in TABLES:
        encoding = "latin-1" if t.name == "patients" else "utf-8"
        frames[t.name] = pd.read_csv(out / f"{t.name}.csv", dtype=str, keep_default_na=False, encoding=encoding)
    return frames, json.loads((out / "faults.json").read_text(encoding="utf-8"))


def reject(frames: dict[str, pd.DataFrame], codes: CodeSystems) -> set[tuple[str, int]]:
    """(table, 1-based row) of every row a strict ingest must quarantine."""
    bad: set[tuple[str, int]] = set()
    accepted: dict[str, date] = {}
    for row, r in enumerate(frames["patients"].itertuples(index=False), start=1):
        v = {k: str(x).strip().lower() for k, x in r._asdict().items()}
        birth, contact = parse(v["date_of_birth"]), parse(v["first_contact_date"])
        death = parse(v["date_of_death"]) if v["date_of_death"] else None
        ok = (
            is_valid(v["national_id"])
            and v["national_id"] not in accepted
            and v["sex"] in SEXES
            and v["vital_status"] in VITAL_STATUSES
            and birth is not None
            and birth <= AS_OF
            and contact is not None
            and contact <= AS_OF
            and (not v["date_of_death"] or (death is not None and birth <= death <= AS_OF))
        )
        if ok and birth is not None:
            accepted[v["national_id"]] = birth
        else:
            bad.add(("patients", row))
    orpha = {orpha_id(o) for o in codes.orpha_codes}
    icd, hpo = icd10_codes(), {hpo_id(t) for t in codes.hpo_names}
    for table in ("diagnoses", "phenotypes", "encounters"):
        for row, r in enumerate(frames[table].itertuples(index=False), start=1):
            v = {k: str(x).strip() for k, x in r._asdict().items()}
            birth_or_none = accepted.get(v["national_id"])
            if birth_or_none is None:
                bad.add((table, row))
                continue
            if table == "diagnoses":
                onset, diag = parse(v["onset_date"]), parse(v["diagnosis_date"])
                ok = (
                    v["orpha_code"] in orpha
                    and v["icd10_code"] in icd
                    and v["status"].lower() in DIAGNOSIS_STATUSES
                    and onset is not None
                    and diag is not None
                    and birth_or_none <= onset <= diag <= AS_OF
                )
            elif table == "phenotypes":
                ok = v["hpo_code"] in hpo
            else:
                when = parse(v["encounter_date"])
                ok = when is not None and when <= AS_OF
            if not ok:
                bad.add((table, row))
    return bad


def test_the_sidecar_lists_exactly_the_rows_a_strict_validator_rejects(faulty, codes: CodeSystems) -> None:  # type: ignore[no-untyped-def]
    frames, sidecar = faulty
    listed = {(f["table"], f["row"]) for f in sidecar["faults"] if f["quarantine"]}
    assert reject(frames, codes) == listed


def test_every_kind_of_fault_is_injected(faulty) -> None:  # type: ignore[no-untyped-def]
    _, sidecar = faulty
    kinds = Counter((f["table"], f["kind"]) for f in sidecar["faults"])
    expected = {
        ("patients", k)
        for k in (
            "bad_check_digit", "missing_mandatory", "unparseable_date", "impossible_date", "death_before_birth",
            "future_date", "duplicate_patient", "whitespace_case", "latin1_encoding",
        )
    } | {
        ("diagnoses", k)
        for k in ("unknown_code", "onset_after_diagnosis", "onset_before_birth", "missing_mandatory",
                  "unknown_patient", "whitespace_case", "patient_quarantined")
    } | {("phenotypes", k) for k in ("unknown_code", "missing_mandatory", "unknown_patient", "patient_quarantined")} | {
        ("encounters", k) for k in ("unparseable_date", "future_date", "unknown_patient", "patient_quarantined")
    }  # fmt: skip
    assert set(kinds) == expected
    assert sum(1 for f in sidecar["faults"] if f["quarantine"]) < 0.05 * sum(len(t) for t in faulty[0].values())


def test_each_fault_is_where_the_sidecar_says(faulty) -> None:  # type: ignore[no-untyped-def]
    frames, sidecar = faulty
    for f in sidecar["faults"]:
        if f["row"] is None:
            continue
        row = frames[f["table"]].iloc[f["row"] - 1]
        if f["field"] == "code":  # a diagnosis with no code of any system
            assert (row["orpha_code"], row["icd10_code"]) == ("", "")
            continue
        value = row[f["field"]]
        kind = f["kind"]
        if kind == "bad_check_digit":
            assert len(value) == 13
            assert not is_valid(value)
        elif kind == "missing_mandatory":
            assert value == ""
        elif kind in ("unparseable_date", "impossible_date"):
            assert parse(value) is None
        elif kind == "future_date":
            parsed = parse(value)
            assert parsed is not None
            assert parsed > AS_OF
        elif kind == "whitespace_case":
            assert value != value.strip().lower() or value == " "
        elif kind == "duplicate_patient":
            assert (frames["patients"]["national_id"].iloc[: f["row"] - 1] == value).any()
        elif kind == "unknown_patient":
            assert is_valid(value)
            assert value not in set(frames["patients"]["national_id"])


def test_whitespace_and_case_are_not_to_be_quarantined(faulty) -> None:  # type: ignore[no-untyped-def]
    _, sidecar = faulty
    assert all(not f["quarantine"] for f in sidecar["faults"] if f["kind"] in ("whitespace_case", "latin1_encoding"))


def test_the_latin1_file_is_not_utf8(tmp_path: Path) -> None:
    simulate_export(SimulationSpec(patients=400, seed=2, format="csv", faults=True), tmp_path / "x")
    raw = (tmp_path / "x" / "patients.csv").read_bytes()
    with pytest.raises(UnicodeDecodeError):
        raw.decode("utf-8")
    assert "é" in raw.decode("latin-1") or "ç" in raw.decode("latin-1")
    assert (tmp_path / "x" / "diagnoses.csv").read_bytes().decode("utf-8")
