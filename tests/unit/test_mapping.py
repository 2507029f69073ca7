"""Source mappings: loaded, hashed, and every mistake named with its TOML key."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from research_kit.core.errors import BadInput, MissingData
from research_kit.ingest.mapping import check_mapping, date_format_problem, load_mapping

GOOD = """\
version = 1
[source]
name = "chl"
kind = "csv"
precedence = 2
dates = "dates"
[identity]
field = "NIR"
kind = "national"
[tables.patients]
files = ["patients*.csv"]
[tables.patients.columns]
date_of_birth = "Date de naissance"
sex = "Sexe"
[tables.patients.dates]
date_of_birth = "%d/%m/%Y"
[tables.patients.values.sex]
M = "male"
F = "female"
[tables.patients.constants]
country = "LU"
[tables.diagnoses]
files = ["diagnostics.csv"]
[tables.diagnoses.columns]
status = "Statut"
[tables.diagnoses.codes]
"Code Orpha" = "ORPHA"
"Codes" = "curie"
"""


def write(tmp_path: Path, text: str, name: str = "m.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_a_good_mapping_loads_with_its_hash(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    assert check_mapping(path) == []
    mapping = load_mapping(path)
    assert (mapping.name, mapping.kind, mapping.precedence, mapping.dates) == ("chl", "csv", 2, "dates")
    assert (mapping.identity_field, mapping.identity_kind) == ("NIR", "national")
    assert mapping.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert mapping.path == path
    patients = mapping.tables["patients"]
    assert patients.files == ("patients*.csv",)
    assert patients.columns == {"date_of_birth": "Date de naissance", "sex": "Sexe"}
    assert patients.values == {"sex": {"M": "male", "F": "female"}}
    assert patients.constants == {"country": "LU"}
    assert mapping.tables["diagnoses"].codes == {"Code Orpha": "ORPHA", "Codes": "curie"}


def test_every_mistake_is_named_with_its_key(tmp_path: Path) -> None:
    broken = (
        GOOD.replace('date_of_birth = "%d/%m/%Y"', 'date_of_birth = "%d/%q/%Y"')
        .replace('sex = "Sexe"', 'sex = "Sexe"\nsexe = "Genre"')
        .replace("[tables.diagnoses]\n", "[tables.diagnosis]\nfiles = []\n[tables.diagnoses]\n")
        .replace('kind = "csv"', 'kind = "xml"', 1)
    )
    problems = check_mapping(write(tmp_path, broken))
    assert 'tables.patients.dates.date_of_birth: "%d/%q/%Y" is not a date format' in "\n".join(problems)
    assert "tables.patients.columns.sexe: no column 'sexe' in table patients" in problems
    assert any(p.startswith("tables.diagnosis: unknown table") for p in problems)
    assert any(p.startswith('source.kind: "xml" is not one of') for p in problems)


@pytest.mark.parametrize(
    ("old", "new", "key"),
    [
        ('M = "male"', 'M = "homme"', 'tables.patients.values.sex.M: "homme" is not a value of sex'),
        ('country = "LU"', 'country = "LU"\nconsent_reuse = "oui"', "tables.patients.constants.consent_reuse:"),
        ('"Code Orpha" = "ORPHA"', '"Code Orpha" = "ORPHANET"', 'tables.diagnoses.codes.Code Orpha: "ORPHANET" is not'),
        ('kind = "national"', 'kind = "passport"', 'identity.kind: "passport" is not one of national, registry'),
        ("precedence = 2", "precedence = 0", "source.precedence: 0 is not a positive whole number"),
        ("precedence = 2", 'precedence = "1"', 'source.precedence: "1" is not a positive whole number'),
        ("precedence = 2", "precedence = true", "source.precedence: True is not a positive whole number"),
        ('name = "chl"', 'name = "CHL Luxembourg"', 'source.name: "CHL Luxembourg" is not a source name'),
        ("version = 1", "version = 2", "version: 2 is not a mapping version"),
        ("version = 1", "verison = 1", "verison: unknown key"),
        ('name = "chl"', 'name = "chl"\nnmae = "x"', "source.nmae: unknown key"),
        ('field = "NIR"', 'field = "NIR"\nfiel = "x"', "identity.fiel: unknown key"),
        ("[tables.patients.columns]", "[tables.patients.colums]", "tables.patients.colums: unknown key"),
        ('dates = "dates"', 'dates = "years"', 'source.dates: "years" is not one of dates, ages'),
        ('files = ["patients*.csv"]', 'files = "patients.csv"', "tables.patients.files: must be a list"),
        ('files = ["patients*.csv"]', 'files = ["../x.csv"]', 'tables.patients.files: "../x.csv" must be relative'),
        ('files = ["patients*.csv"]', 'sheet = "A"', "tables.patients.files: missing"),
        (
            'status = "Statut"',
            'status = "Statut"\norpha_code = "Code"',
            "tables.diagnoses.columns.orpha_code: codes are",
        ),
        ('country = "LU"', 'country = "LU"\nsex = "male"', "tables.patients.constants.sex: also read from a column"),
        ('M = "male"', '"" = "male"', 'tables.patients.values.sex."": an empty value is never mapped'),
        ('M = "male"\nF = "female"', "", "tables.patients.values.sex: empty"),
        ('M = "male"', 'M = "TODO"', "tables.patients.values.sex.M: still a TODO placeholder"),
        ('field = "NIR"', 'field = "TODO"', "identity.field: still a TODO placeholder"),
        ('date_of_birth = "%d/%m/%Y"', 'sex = "%d/%m/%Y"', "tables.patients.dates.sex: 'sex' is not a date column"),
        ('"Codes" = "curie"', '"Codes" = "curie"\nAutre = "ORPHA"', "tables.diagnoses.codes: two columns of ORPHA"),
    ],
)
def test_a_mistake_is_named_with_its_key(tmp_path: Path, old: str, new: str, key: str) -> None:
    assert old in GOOD
    problems = check_mapping(write(tmp_path, GOOD.replace(old, new, 1)))
    assert any(p.startswith(key) for p in problems), problems


@pytest.mark.parametrize(
    ("column", "value", "allowed"),
    [
        ("sex", "homme", "female, male, undetermined"),
        ("cross_border_insured", "vrai", "yes, no"),
        ("vital_status", "vivant", "alive, dead"),
        ("status", "certain", "confirmed, suspected, undiagnosed"),
        ("encounter_type", "visit", "outpatient"),
    ],
)
def test_a_value_map_onto_a_value_the_model_does_not_allow(
    tmp_path: Path, column: str, value: str, allowed: str
) -> None:
    table = {"status": "diagnoses", "encounter_type": "encounters"}.get(column, "patients")
    text = f"""version = 1
[source]
name = "x"
kind = "csv"
[tables.{table}]
files = ["a.csv"]
[tables.{table}.columns]
{column} = "Col"
[tables.{table}.values.{column}]
A = "{value}"
"""
    (problem,) = check_mapping(write(tmp_path, text))
    assert problem.startswith(f'tables.{table}.values.{column}.A: "{value}" is not a value of {column} (use {allowed}')


def test_a_toml_syntax_error_says_where(tmp_path: Path) -> None:
    (problem,) = check_mapping(write(tmp_path, GOOD.replace('kind = "csv"', "kind = csv")))
    assert "not valid TOML" in problem
    assert "line 4" in problem


def test_load_refuses_with_the_first_mistake_and_how_many_more(tmp_path: Path) -> None:
    path = write(tmp_path, GOOD.replace('M = "male"', 'M = "homme"').replace("precedence = 2", "precedence = -1"))
    with pytest.raises(BadInput) as caught:
        load_mapping(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: source.precedence: -1 is not a positive whole number")
    assert message.endswith(f"(1 more: run research-kit mapping check {path})")
    with pytest.raises(MissingData):
        load_mapping(tmp_path / "absent.toml")


def test_phenopackets_and_fhir_mappings_take_constants_and_values_only(tmp_path: Path) -> None:
    base = 'version = 1\n[source]\nname = "cases"\nkind = "{kind}"\n[identity]\nfield = "{field}"\nkind = "registry"\n'
    good = base + '[tables.patients.constants]\ncountry = "LU"\n'
    values = '[tables.patients.values.sex]\nMALE = "male"\n'
    for kind, field in (("phenopackets", "subject.id"), ("phenopackets", "id"), ("fhir", "urn:oid:1.2.3")):
        assert check_mapping(write(tmp_path, good.format(kind=kind, field=field))) == []
    # What check accepts is applied: FHIR maps the values of its coded columns; a phenopacket's are its enums.
    assert check_mapping(write(tmp_path, (good + values).format(kind="fhir", field="urn:oid:1.2.3"))) == []
    refused = check_mapping(write(tmp_path, (good + values).format(kind="phenopackets", field="id")))
    assert refused == ["tables.patients.values: a phenopackets mapping takes only constants for a table"]
    country = '[tables.patients.values.country]\nL = "LU"\n'
    assert check_mapping(write(tmp_path, (good + country).format(kind="fhir", field="urn:oid:1.2.3"))) == [
        "tables.patients.values.country: a FHIR mapping maps the values of sex only"
    ]
    ok = good.format(kind="phenopackets", field="subject.alternateIds:LU-NIN")
    assert load_mapping(write(tmp_path, ok)).identity_field == "subject.alternateIds:LU-NIN"
    bad = base.format(kind="phenopackets", field="subject.name") + '[tables.patients]\nfiles = ["a.csv"]\n'
    problems = check_mapping(write(tmp_path, bad))
    assert any(p.startswith('identity.field: "subject.name" is not a phenopacket identifier field') for p in problems)
    assert any(p.startswith("tables.patients.files: a phenopackets mapping takes only constants") for p in problems)
    fhir = base.format(kind="fhir", field="national-id")
    assert any(p.startswith("identity.field:") for p in check_mapping(write(tmp_path, fhir)))


@pytest.mark.parametrize(
    ("fmt", "good"),
    [("%d/%m/%Y", True), ("%Y-%m-%dT%H:%M", True), ("%Y%j", True), ("excel", True), ("%d/%q/%Y", False),
     ("%m/%Y", False), ("dd/mm/yyyy", False), ("%d/%m/%Y%", False)],
)  # fmt: skip
def test_date_formats(fmt: str, good: bool) -> None:
    assert (date_format_problem(fmt) is None) == good
