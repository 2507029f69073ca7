"""FHIR in: the simulator's export written as FHIR R4 (Bundle and NDJSON) and read back; malformed resources."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import polars as pl
import pytest

from research_kit.core.errors import BadInput
from research_kit.ingest.converted import SOURCE_ISSUE, SOURCE_RECORD, Converted
from research_kit.ingest.fhir_in import draft_fhir, model_class, read_fhir
from research_kit.ingest.mapping import Mapping, TableMapping, check_mapping
from research_kit.simulator.export import SimulationSpec, simulate_export
from research_kit.simulator.fhir import read_raw_table, write_fhir

SYSTEM = "http://example.lu/fhir/sid/matricule"
MRN = "http://hospital.example/fhir/sid/mrn"
MAPPING = Mapping(name="hospital-fhir", kind="fhir", identity_field=SYSTEM)
# FHIR's Encounter classes have no code for these two: they come back as the class they were written as.
CLASS_OF = {"genetic counselling": "outpatient", "ERN virtual consultation": "teleconsultation"}


@pytest.fixture(scope="module")
def raw(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small simulated raw export (the simulator's own layout, CSV)."""
    out = tmp_path_factory.mktemp("raw") / "export"
    simulate_export(SimulationSpec(patients=120, seed=7, format="csv"), out)
    return out


def read(source: Path, mapping: Mapping = MAPPING, **kwargs: Any) -> Converted:
    converted = read_fhir(source, mapping, source.parent / "scratch", **kwargs)
    assert converted.balanced
    assert converted.facts["resources"] == converted.records_in + sum(converted.facts["ignored"].values())
    return converted


@pytest.mark.parametrize("layout", ["bundle", "ndjson"])
def test_the_simulated_export_comes_back_from_fhir_as_it_went(raw: Path, tmp_path: Path, layout: Any) -> None:
    written = write_fhir(raw, tmp_path / "fhir", layout=layout, identifier_system=SYSTEM)
    got = read(tmp_path / "fhir")
    want = {name: read_raw_table(raw, name) for name in got.tables}
    assert written == got.records_in == got.converted == sum(len(f) for f in want.values())
    assert got.refused == []  # every resource written is valid against the R4B models
    assert got.facts["ignored"] == {}

    def same(table: str, *columns: str) -> None:
        assert got.tables[table].select(columns).to_dicts() == want[table].select(columns).to_dicts(), table

    same("patients", "national_id", "first_name", "last_name", "street", "house_number", "postcode", "commune",
         "canton", "country", "date_of_birth", "sex", "date_of_death")  # fmt: skip
    dead = pl.when(pl.col("vital_status") == "dead").then(pl.lit("dead")).otherwise(pl.lit("alive")).alias("v")
    assert got.tables["patients"]["vital_status"].to_list() == want["patients"].select(dead)["v"].to_list()
    same("diagnoses", "national_id", "orpha_code", "icd10_code", "status", "onset_date", "diagnosis_date")
    assert set(got.tables["diagnoses"]["status"]) == {"confirmed", "suspected", "undiagnosed"}
    same("phenotypes", "national_id", "hpo_code", "observed_date")
    assert set(got.tables["phenotypes"]["excluded"]) == {"no"}
    same("encounters", "national_id", "encounter_date", "centre_code", "centre_country")
    kinds = want["encounters"]["encounter_type"].replace(CLASS_OF).to_list()
    assert got.tables["encounters"]["encounter_type"].to_list() == kinds
    for frame in got.tables.values():
        assert set(frame["source"]) == {"hospital-fhir"}
        assert set(frame[SOURCE_ISSUE]) == {""}
    record = got.tables["phenotypes"][SOURCE_RECORD][0]
    assert record.startswith("bundle.json:entry[" if layout == "bundle" else "Observation.ndjson:")


def test_records_name_their_file_and_line_or_entry(raw: Path, tmp_path: Path) -> None:
    write_fhir(raw, tmp_path / "nd", layout="ndjson", identifier_system=SYSTEM)
    write_fhir(raw, tmp_path / "bu", layout="bundle", identifier_system=SYSTEM)
    assert read(tmp_path / "nd").tables["encounters"][SOURCE_RECORD][:2].to_list() == [
        "Encounter.ndjson:1",
        "Encounter.ndjson:2",
    ]
    patients = len(read_raw_table(raw, "patients"))
    first_condition = read(tmp_path / "bu" / "bundle.json").tables["diagnoses"][SOURCE_RECORD][0]
    assert first_condition == f"bundle.json:entry[{patients}]"


def test_a_sample_of_written_resources_is_valid_r4b(raw: Path, tmp_path: Path) -> None:
    write_fhir(raw, tmp_path, layout="ndjson", identifier_system=SYSTEM)
    for kind in ("Patient", "Condition", "Observation", "Encounter"):
        lines = (tmp_path / f"{kind}.ndjson").read_text(encoding="utf-8").splitlines()
        model = model_class(kind)
        assert model is not None
        for line in lines[:: max(1, len(lines) // 20)]:
            assert model.model_validate_json(line).model_dump()["resourceType"] == kind


def test_a_registry_identifier_is_prefixed(raw: Path, tmp_path: Path) -> None:
    write_fhir(raw, tmp_path, layout="ndjson", identifier_system=MRN)
    registry = Mapping(name="case-series", kind="fhir", identity_field=MRN, identity_kind="registry")
    got = read(tmp_path, registry)
    assert got.tables["patients"]["national_id"].str.starts_with("registry:").all()
    assert got.tables["encounters"]["national_id"].str.starts_with("registry:").all()


# -- malformed resources -------------------------------------------------------------------------------------

NID = "1984070512345"


def patient(pid: str | None = "p1", **extra: Any) -> dict[str, Any]:
    out = {"resourceType": "Patient", "id": pid, "identifier": [{"system": SYSTEM, "value": NID}],
           "gender": "female", "birthDate": "1984-07-05", "address": [{"city": "Esch", "country": "LU"}]}  # fmt: skip
    return {k: v for k, v in (out | extra).items() if v is not None}


def condition(subject: str = "Patient/p1", **extra: Any) -> dict[str, Any]:
    coding = [{"system": "http://www.orpha.net", "code": "558"}]
    return {"resourceType": "Condition", "subject": {"reference": subject}, "code": {"coding": coding}} | extra


def observation(code: dict[str, Any], subject: str = "Patient/p1", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"coding": [code]},
            "subject": {"reference": subject}} | extra  # fmt: skip


def encounter(subject: str = "Patient/p1", class_code: str = "AMB", **extra: Any) -> dict[str, Any]:
    kind = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": class_code}
    return {"resourceType": "Encounter", "status": "finished", "class": kind, "subject": {"reference": subject}} | extra


HPO = {"system": "http://purl.obolibrary.org/obo/hp.owl", "code": "HP:0001250"}
LINES: list[Any] = [
    patient(),  # 1
    patient("p2", birthDate="yesterday"),  # 2: refused
    patient("p3", gender="m", identifier=[{"system": SYSTEM, "value": "1990010112345"}]),  # 3: flagged
    patient("p4", nickname="Bibi"),  # 4: refused (no such element)
    patient("p5", identifier=[{"system": MRN, "value": "MRN-0042"}]),  # 5: refused (no national ID)
    condition(code={"coding": [{"system": "http://snomed.info/sct", "code": "190905008"}]}),  # 6: flagged
    observation({"system": "http://loinc.org", "code": "2345-7"}, valueQuantity={"value": 5.4}),  # 7: ignored
    {"resourceType": "Medication", "id": "m1"},  # 8: ignored
    {"resourceType": "Patinet", "id": "x"},  # 9: refused
    "{not json",  # 10: refused
    condition("Patient/nobody"),  # 11: refused (subject not in the source)
    observation(HPO, valueBoolean=False),  # 12: excluded
    observation(HPO, subject="Patient/p5"),  # 13: refused (its Patient was refused)
    encounter() | {"class": [{"coding": [{"code": "AMB"}]}]},  # 14: refused (R5's class, a list)
    condition(onsetAge={"value": 6.5, "unit": "years", "system": "http://unitsofmeasure.org", "code": "a"}),  # 15
    condition(onsetAge={"value": 2, "unit": "centuries"}),  # 16: flagged
    observation(HPO, interpretation=[{"coding": [{"code": "NEG"}]}], effectiveDateTime="2020-02-03T10:00:00Z"),
    encounter(status="cancelled"),  # 18: ignored
    condition(verificationStatus={"coding": [{"code": "refuted"}]}),  # 19
    patient("p6", **{"identifier": [{"system": SYSTEM, "value": 1990010112345}]}),  # 20: refused (a number)
]


@pytest.fixture
def malformed(tmp_path: Path) -> Converted:
    lines = [x if isinstance(x, str) else json.dumps(x) for x in LINES]
    (tmp_path / "export.ndjson").write_text("\n".join(lines) + "\n\n", encoding="utf-8")
    return read(tmp_path / "export.ndjson")


def test_malformed_resources_are_refused_in_one_line_naming_where_and_what(malformed: Converted) -> None:
    reasons = {r.locator: r.reason for r in malformed.refused}
    assert reasons == {
        "export.ndjson:2": "Patient: not valid FHIR R4: birthDate: not a valid value of its type",
        "export.ndjson:4": "Patient: not valid FHIR R4: nickname: not an element of the resource",
        "export.ndjson:5": f"Patient: no identifier of system {SYSTEM}",
        "export.ndjson:9": "resourceType Patinet is not a FHIR R4 resource",
        "export.ndjson:10": "not a JSON line (Expecting property name enclosed in double quotes at character 2)",
        "export.ndjson:14": "Encounter: not valid FHIR R4: class: not a JSON object of the element's type",
        "export.ndjson:20": "Patient: not valid FHIR R4: identifier[0].value: not a JSON string",
        "export.ndjson:11": "Condition: its subject is not a Patient of the source",
        "export.ndjson:13": "Observation: its subject is a refused Patient",
    }
    text = " ".join(reasons.values())
    for value in ("yesterday", "Bibi", "MRN-0042", NID, "1990010112345", "nobody", "p5"):
        assert value not in text
    assert all("\n" not in r for r in reasons.values())
    refused_phenotype = next(r for r in malformed.refused if r.locator == "export.ndjson:13")
    assert (refused_phenotype.observed_phenotypes, refused_phenotype.excluded_phenotypes) == (1, 0)


def test_what_is_not_read_is_counted_apart(malformed: Converted) -> None:
    assert malformed.facts["ignored"] == {
        "Encounter: cancelled": 1,
        "Medication: resource type not read": 1,
        "Observation: not coded in HPO": 1,
    }
    assert malformed.facts["resources"] == len(LINES)
    assert malformed.records_in == len(LINES) - 3
    assert malformed.converted == 8


def test_values_the_reader_cannot_map_are_passed_on_flagged(malformed: Converted) -> None:
    patients = malformed.tables["patients"].to_dicts()
    assert [(p["sex"], p[SOURCE_ISSUE]) for p in patients] == [("female", ""), ("m", "sex:unmapped_value")]
    diagnoses = {d[SOURCE_RECORD]: d for d in malformed.tables["diagnoses"].to_dicts()}
    unknown = diagnoses["export.ndjson:6"]
    assert unknown[SOURCE_ISSUE] == "diagnoses:unknown_code_system"
    assert [unknown[c] for c in ("orpha_code", "omim_code", "icd10_code", "icd11_code", "mondo_code")] == [""] * 5
    assert diagnoses["export.ndjson:15"]["onset_age"] == "P6Y6M"
    assert diagnoses["export.ndjson:15"]["orpha_code"] == "ORPHA:558"
    assert diagnoses["export.ndjson:16"][SOURCE_ISSUE] == "onset_age:unreadable_value"
    assert (diagnoses["export.ndjson:19"]["status"], diagnoses["export.ndjson:19"]["excluded"]) == ("confirmed", "yes")
    phenotypes = malformed.tables["phenotypes"].select("hpo_code", "excluded", "observed_date").rows()
    assert phenotypes == [("HP:0001250", "yes", ""), ("HP:0001250", "yes", "2020-02-03")]


def test_mapping_constants_fill_what_resources_leave_empty_and_values_extend_the_maps(tmp_path: Path) -> None:
    resources = [
        patient(address=[{"city": "Trier"}]),
        patient("p2", identifier=[{"system": SYSTEM, "value": "1990010112345"}]),
        encounter(class_code="HH", period={"start": "2021-03-04T09:00:00+01:00"}),
    ]
    (tmp_path / "s.ndjson").write_text("\n".join(json.dumps(r) for r in resources), encoding="utf-8")
    tables = {
        "patients": TableMapping(constants={"country": "DE"}),
        "encounters": TableMapping(
            constants={"centre_code": "LU-CHL"}, values={"encounter_type": {"HH": "outpatient"}}
        ),
    }
    got = read(tmp_path / "s.ndjson", Mapping(name="h", kind="fhir", identity_field=SYSTEM, tables=tables))
    assert got.tables["patients"]["country"].to_list() == ["DE", "LU"]
    row = got.tables["encounters"].to_dicts()[0]
    assert (row["centre_code"], row["encounter_type"], row["encounter_date"]) == (
        "LU-CHL", "outpatient", "2021-03-04",
    )  # fmt: skip
    assert row[SOURCE_ISSUE] == ""


def test_a_bundle_resolves_urn_references_and_refuses_what_it_cannot_read(tmp_path: Path) -> None:
    urn = "urn:uuid:0b6bd3e1-65a8-4bb4-9c4e-8e9c6d3c2b41"
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": urn, "resource": patient(None)},
        {"fullUrl": "urn:uuid:1", "resource": condition(urn)},
        {"request": {"method": "DELETE", "url": "Patient/9"}},
        "not an entry",
    ]}  # fmt: skip
    (tmp_path / "b.json").write_text(json.dumps(bundle), encoding="utf-8")
    got = read(tmp_path / "b.json")
    assert got.tables["diagnoses"]["national_id"].to_list() == [NID]
    assert got.facts["ignored"] == {"Bundle entry without a resource": 1}
    assert [(r.locator, r.reason) for r in got.refused] == [
        ("b.json:entry[3]", "the Bundle entry is not a JSON object")
    ]
    (tmp_path / "h.json").write_text(json.dumps(bundle | {"type": "history"}), encoding="utf-8")
    with pytest.raises(BadInput, match=r"h.json: a Bundle of type history is not read"):
        read(tmp_path / "h.json")
    (tmp_path / "bad.json").write_text("{", encoding="utf-8")
    with pytest.raises(BadInput, match=r"bad.json: not a JSON file"):
        read(tmp_path / "bad.json")


@pytest.mark.slow
def test_worker_processes_read_the_same_as_one(raw: Path, tmp_path: Path) -> None:
    write_fhir(raw, tmp_path / "fhir", layout="ndjson", identifier_system=SYSTEM)
    one, two = read(tmp_path / "fhir", workers=1), read(tmp_path / "fhir", workers=2)
    assert all(one.tables[t].equals(two.tables[t]) for t in one.tables)
    assert (one.records_in, one.refused, one.facts) == (two.records_in, two.refused, two.facts)


# -- the draft -----------------------------------------------------------------------------------------------


def test_the_draft_proposes_the_national_id_system_and_shows_no_value(raw: Path, tmp_path: Path) -> None:
    write_fhir(raw, tmp_path, layout="ndjson", identifier_system=SYSTEM)
    path = tmp_path / "Patient.ndjson"
    patients = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    for i, p in enumerate(patients):  # a hospital MRN beside the national ID, listed first
        p["identifier"].insert(0, {"system": MRN, "value": f"MRN{i:06d}"})
        p["address"][0].pop("country") if i % 10 == 0 else None
    path.write_text("\n".join(json.dumps(p) for p in patients), encoding="utf-8")
    draft = draft_fhir(tmp_path)
    mapping = tomllib.loads(draft)
    (tmp_path / "m.toml").write_text(draft, encoding="utf-8")
    assert check_mapping(tmp_path / "m.toml") == []
    assert mapping["identity"] == {"field": SYSTEM, "kind": "national"}
    assert mapping["source"] == {"name": "fhir", "kind": "fhir", "precedence": 1, "dates": "dates"}
    assert mapping["tables"]["patients"]["constants"] == {"country": "LU"}
    assert f"{len(patients[::10])} of {len(patients)} Patients have no address with a country" in draft
    raw_patients = read_raw_table(raw, "patients")
    shown = set(draft.split())
    for column in ("national_id", "first_name", "last_name", "street", "date_of_birth", "postcode"):
        assert not shown & {v for v in raw_patients[column].to_list() if len(v) > 3}, column
    assert "MRN0" not in draft


def test_without_a_national_id_the_draft_proposes_a_registry_identifier(raw: Path, tmp_path: Path) -> None:
    write_fhir(raw, tmp_path, layout="bundle", identifier_system=MRN)
    bundle = tmp_path / "bundle.json"
    document = json.loads(bundle.read_text(encoding="utf-8"))
    for entry in document["entry"]:
        if entry["resource"]["resourceType"] == "Patient":
            entry["resource"]["identifier"][0]["value"] = "MRN-" + entry["resource"]["id"]
    bundle.write_text(json.dumps(document), encoding="utf-8")
    draft = draft_fhir(bundle)
    assert tomllib.loads(draft)["identity"] == {"field": MRN, "kind": "registry"}
    assert "registry identifier" in draft
    assert "MRN-p" not in draft
