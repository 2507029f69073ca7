"""Writing a simulated raw export as FHIR R4: Patient, Condition, Observation and Encounter resources.

The simulator's raw export (``patients``, ``diagnoses``, ``phenotypes``,
``encounters`` as CSV or Parquet) becomes what a hospital's FHIR server
would hand over: one Bundle of type ``collection`` (``bundle.json``, each
entry's ``fullUrl`` a ``urn:uuid:``, references by that URN), or a bulk
export's NDJSON files (``Patient.ndjson``... one resource a line, references
``Patient/<id>``). Resource ids are made up (``p1``, ``c1``...), never a
person's identifier. The resources are built as plain dicts (valid against
the R4B models, which the tests check on a sample): validating each one
here would only slow the writer down.

What FHIR carries of each table, and how (the reader,
:mod:`research_kit.ingest.fhir_in`, reads the same elements back):

- Patient: the national ID as an identifier of ``identifier_system``; name;
  address (``line`` = house number and street, ``district`` = canton);
  ``birthDate``; gender (``undetermined`` as ``other``); a dead patient's
  ``deceasedDateTime``. Not carried: cross-border insurance, first contact,
  consents, and vital statuses other than dead (written as not deceased).
- Condition: a coding per code column (ORPHA as the bare number under
  ``http://www.orpha.net``...), ``verificationStatus`` (suspected as
  ``provisional``, an excluded diagnosis as ``refuted``), ``onsetDateTime``
  or ``onsetAge``, ``recordedDate`` = diagnosis date. Not carried: gene and
  variant.
- Observation: the HPO term as ``code``, ``effectiveDateTime``, an excluded
  finding as ``interpretation`` NEG.
- Encounter: ``class`` (genetic counselling as AMB and ERN virtual
  consultations as VR: FHIR's classes have no finer code), ``period.start``,
  the centre as the ``serviceProvider``'s identifier.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import polars as pl

from research_kit.core.errors import BadInput, MissingData
from research_kit.model.tables import CENTRES, CODE_COLUMNS, REGISTRY_PREFIX, TABLES
from research_kit.simulator.export import mark_simulated

LAYOUTS = ("bundle", "ndjson")
BUNDLE_FILE = "bundle.json"
CODE_SYSTEMS = {  # the model's code system -> the URI written
    "ORPHA": "http://www.orpha.net",
    "OMIM": "http://omim.org",
    "ICD10": "http://hl7.org/fhir/sid/icd-10",
    "ICD11": "http://id.who.int/icd/release/11/mms",
    "MONDO": "http://purl.obolibrary.org/obo/mondo.owl",
}
HPO_SYSTEM = "http://purl.obolibrary.org/obo/hp.owl"
VERIFICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
INTERPRETATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
ACT_CODE_SYSTEM = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
UCUM = "http://unitsofmeasure.org"
GENDERS = {"male": "male", "female": "female", "undetermined": "other"}
VERIFICATION = {"confirmed": "confirmed", "undiagnosed": "confirmed", "suspected": "provisional"}
ENCOUNTER_CLASSES = {
    "outpatient": "AMB",
    "day hospital": "SS",
    "inpatient": "IMP",
    "teleconsultation": "VR",
    "genetic counselling": "AMB",
    "ERN virtual consultation": "VR",
}
CENTRE_NAMES = {c.code: c.name for c in CENTRES}
RESOURCE_TYPES = {"patients": "Patient", "diagnoses": "Condition", "phenotypes": "Observation",
                  "encounters": "Encounter"}  # fmt: skip
_AGE = re.compile(r"P(?:(\d+)Y)?(?:(\d+)M)?(?:(\d+)W)?(?:(\d+)D)?")
_NAMESPACE = uuid.UUID("6f1c3f8e-5a43-4b7e-9a3e-2b2f1f0c9d11")  # the writer's urn:uuid namespace (uuid5)


def write_fhir(
    raw_folder: Path, out: Path, *, layout: Literal["bundle", "ndjson"], identifier_system: str
) -> int:  # fmt: skip
    """Write the raw export in ``raw_folder`` as FHIR R4 resources into the folder ``out``; return how many.

    ``layout`` ``bundle`` writes ``out/bundle.json`` (a ``collection``);
    ``ndjson`` writes ``out/Patient.ndjson``, ``Condition.ndjson``,
    ``Observation.ndjson``, ``Encounter.ndjson``. The national ID goes in a
    Patient identifier of ``identifier_system`` (a ``registry:`` prefix is
    dropped). A child row whose patient is not in ``patients`` is left out:
    it could refer to no Patient.
    """
    if layout not in LAYOUTS:
        raise BadInput(f"FHIR layout must be one of {', '.join(LAYOUTS)}, got {layout!r}")
    tables = {t.name: read_raw_table(raw_folder, t.name) for t in TABLES}
    out.mkdir(parents=True, exist_ok=True)
    ids = {nid: f"p{i + 1}" for i, nid in enumerate(tables["patients"]["national_id"].to_list())}
    bundle = layout == "bundle"

    def reference(nid: str) -> str:
        return _urn("Patient", ids[nid]) if bundle else f"Patient/{ids[nid]}"

    build = {
        "patients": lambda i, row: _patient(f"p{i}", row, identifier_system),
        "diagnoses": lambda i, row: _condition(f"c{i}", row, reference(row["national_id"])),
        "phenotypes": lambda i, row: _observation(f"o{i}", row, reference(row["national_id"])),
        "encounters": lambda i, row: _encounter(f"e{i}", row, reference(row["national_id"])),
    }

    def resources(table: str) -> Iterator[dict[str, Any]]:
        for i, row in enumerate(tables[table].iter_rows(named=True), start=1):
            if table == "patients" or row["national_id"] in ids:
                yield build[table](i, row)

    written = 0
    if bundle:
        entries = [
            {"fullUrl": _urn(r["resourceType"], r["id"]), "resource": r} for t in build for r in resources(t)
        ]  # fmt: skip
        document = {"resourceType": "Bundle", "type": "collection", "entry": entries}
        (out / BUNDLE_FILE).write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
        mark_simulated(out.parent, [out / BUNDLE_FILE])  # beside the source: never read as a resource
        return len(entries)
    for table in build:
        with (out / f"{RESOURCE_TYPES[table]}.ndjson").open("w", encoding="utf-8") as handle:
            for resource in resources(table):
                handle.write(json.dumps(resource, ensure_ascii=False) + "\n")
                written += 1
    mark_simulated(out.parent, sorted(out.glob("*.ndjson")))
    return written


def read_raw_table(folder: Path, table: str) -> pl.DataFrame:
    """One table of a raw export (CSV or Parquet), every column text, empty cells as ``""``."""
    for suffix in (".parquet", ".csv"):
        path = folder / f"{table}{suffix}"
        if path.is_file():
            frame = pl.read_parquet(path) if suffix == ".parquet" else pl.read_csv(path, infer_schema=False)
            return frame.select(pl.all().cast(pl.String).fill_null(""))
    raise MissingData(f"{folder}: no {table}.parquet or {table}.csv")


def _urn(kind: str, resource_id: str) -> str:
    return f"urn:uuid:{uuid.uuid5(_NAMESPACE, f'{kind}/{resource_id}')}"


def _patient(resource_id: str, row: dict[str, str], system: str) -> dict[str, Any]:
    nid = row["national_id"].removeprefix(REGISTRY_PREFIX)
    out: dict[str, Any] = {"resourceType": "Patient", "id": resource_id,
                           "identifier": [{"system": system, "value": nid}]}  # fmt: skip
    name = _drop({"use": "official", "family": row.get("last_name"), "given": _some(row.get("first_name"))})
    if len(name) > 1:
        out["name"] = [name]
    if row.get("sex") in GENDERS:
        out["gender"] = GENDERS[row["sex"]]
    if row.get("date_of_birth"):
        out["birthDate"] = row["date_of_birth"]
    line = " ".join(x for x in (row.get("house_number"), row.get("street")) if x)
    address = _drop({"use": "home", "line": _some(line), "city": row.get("commune"), "district": row.get("canton"),
                     "postalCode": row.get("postcode"), "country": row.get("country")})  # fmt: skip
    if len(address) > 1:
        out["address"] = [address]
    if row.get("vital_status") == "dead" and row.get("date_of_death"):
        out["deceasedDateTime"] = row["date_of_death"]
    elif row.get("vital_status") == "dead":
        out["deceasedBoolean"] = True
    elif row.get("vital_status") == "alive":
        out["deceasedBoolean"] = False
    return out


def _condition(resource_id: str, row: dict[str, str], subject: str) -> dict[str, Any]:
    codings = []
    for system, column in CODE_COLUMNS.items():
        if row.get(column):
            code = row[column].split(":", 1)[1] if system in ("ORPHA", "OMIM") and ":" in row[column] else row[column]
            codings.append({"system": CODE_SYSTEMS[system], "code": code})
    refuted = row.get("excluded") == "yes"
    status = "refuted" if refuted else VERIFICATION.get(row.get("status", ""))
    out: dict[str, Any] = {"resourceType": "Condition", "id": resource_id, "code": {"coding": codings},
                           "subject": {"reference": subject}}  # fmt: skip
    if status:
        out["verificationStatus"] = {"coding": [{"system": VERIFICATION_SYSTEM, "code": status}]}
    if row.get("onset_date"):
        out["onsetDateTime"] = row["onset_date"]
    elif age := _age(row.get("onset_age", "")):
        out["onsetAge"] = age
    if row.get("diagnosis_date"):
        out["recordedDate"] = row["diagnosis_date"]
    return out


def _observation(resource_id: str, row: dict[str, str], subject: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Observation",
        "id": resource_id,
        "status": "final",
        "code": {"coding": [{"system": HPO_SYSTEM, "code": row["hpo_code"]}]},
        "subject": {"reference": subject},
    }
    if row.get("observed_date"):
        out["effectiveDateTime"] = row["observed_date"]
    if row.get("excluded") == "yes":
        out["interpretation"] = [{"coding": [{"system": INTERPRETATION_SYSTEM, "code": "NEG"}]}]
    return out


def _encounter(resource_id: str, row: dict[str, str], subject: str) -> dict[str, Any]:
    centre, kind = row.get("centre_code", ""), row.get("encounter_type", "")
    out: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": resource_id,
        "status": "finished",
        "class": {"system": ACT_CODE_SYSTEM, "code": ENCOUNTER_CLASSES.get(kind, kind) or "AMB"},
        "subject": {"reference": subject},
    }
    if row.get("encounter_date"):
        out["period"] = {"start": row["encounter_date"]}
    if centre:
        out["serviceProvider"] = _drop({"identifier": {"value": centre}, "display": CENTRE_NAMES.get(centre)})
    return out


def _age(duration: str) -> dict[str, Any] | None:
    """An ISO 8601 duration of one unit as a FHIR Age (UCUM); None for none or a mixed one (``P6Y3M``: months)."""
    found = _AGE.fullmatch(duration) if duration else None
    if found is None or not any(found.groups()):
        return None
    years, months, weeks, days = (int(g) if g else 0 for g in found.groups())
    given = [(n, u) for n, u in ((years, "a"), (months, "mo"), (weeks, "wk"), (days, "d")) if n]
    if len(given) > 1 and not (weeks or days):  # years and months: in months, which stay whole
        value, unit = years * 12 + months, "mo"
    elif len(given) > 1:  # with weeks or days: in days (a year as 365 days, a month as 30)
        value, unit = years * 365 + months * 30 + weeks * 7 + days, "d"
    else:
        value, unit = given[0] if given else (0, "d")
    return {"value": value, "unit": unit, "system": UCUM, "code": unit}


def _some(text: str | None) -> list[str] | None:
    return [text] if text else None


def _drop(element: dict[str, Any]) -> dict[str, Any]:
    """An element without its empty values (FHIR forbids empty strings and arrays)."""
    return {k: v for k, v in element.items() if v not in (None, "", [], {})}
