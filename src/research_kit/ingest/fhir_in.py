"""Reading FHIR R4 sources into the registry's raw tables: a Bundle, or a bulk export's NDJSON files.

A source is a Bundle JSON file (``collection``, ``transaction``, ``batch``,
``searchset``, ``document`` or ``message``), one ``.ndjson`` file (one
resource a line, as the bulk-data ``$export`` writes them), or a folder of
them (every ``*.ndjson`` and ``*.json`` file in it, by name). Each resource
of the four types read (Patient, Condition, Observation, Encounter) is
validated with the FHIR R4B models of ``fhir.resources`` (8.x ships no R4
package; for these four resources R4B is R4, see docs/fhir.md), then becomes
one row of ``patients``, ``diagnoses``, ``phenotypes`` or ``encounters``.

The accounting (docs/fhir.md): every line or Bundle entry is one resource.

- *ignored*: resources that are not the registry's business, counted by kind
  in ``facts["ignored"]`` and left out of ``records_in``: a valid resource
  type other than the four (Medication, Organization...), an Observation not
  coded in HPO (lab results), a retracted or never-held record
  (``entered-in-error``; an Encounter ``planned`` or ``cancelled``), a Bundle
  entry without a resource. These are not validated;
- *refused* (:class:`~research_kit.ingest.converted.Refused`): a line that is
  not a JSON object, no or an unknown ``resourceType``, a resource the R4B
  model rejects (the reason names the element path and the kind of error,
  never the value), a Patient without an identifier of the mapping's system,
  a Condition, Observation or Encounter whose subject is not a Patient of
  the source or is a refused Patient;
- *converted*: one row each.

So ``records_in == converted + len(refused)``, and ``facts["resources"] ==
records_in + sum(facts["ignored"].values())``.

What the reader does not judge (validation does): dates are passed on as
written (the date part of a dateTime), codes of the known systems in the
model's spelling (:func:`research_kit.model.disease_codes.read_code`), or as
given when they cannot be read. A code the reader cannot map (an
administrative gender, a verification status or an Encounter class outside
its maps) is passed on as given with ``<column>:unmapped_value`` in
``source_issue``; a Condition coded only in systems not read,
``diagnoses:unknown_code_system``; an onset age in a unit not read,
``onset_age:unreadable_value``.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import warnings
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

import polars as pl
from pydantic import BaseModel, ValidationError

from research_kit.core.checksums import file_sha256
from research_kit.core.errors import BadInput, MissingData, quoted
from research_kit.ingest.converted import (
    SOURCE_ISSUE,
    SOURCE_RECORD,
    Converted,
    DuplicateKey,
    Refused,
    no_duplicate_keys,
)
from research_kit.ingest.mapping import Mapping
from research_kit.model.codes import UNDIAGNOSED_ORPHA, orpha_id
from research_kit.model.disease_codes import read_code
from research_kit.model.tables import CENTRES, CODE_COLUMNS, REGISTRY_PREFIX, SOURCE

READ_TYPES = {"Patient": "patients", "Condition": "diagnoses", "Observation": "phenotypes", "Encounter": "encounters"}
BUNDLE_TYPES = ("collection", "transaction", "batch", "searchset", "document", "message")
SUFFIXES = (".ndjson", ".json")
PARALLEL_BYTES = 16 << 20  # a source this large is validated by a process per core (starting them takes ~1 s)
BATCH = 5_000  # resources a worker validates at once

# Condition.code systems read (compared without a trailing slash) -> the model's code system.
DISEASE_SYSTEMS = {
    "http://www.orpha.net": "ORPHA",
    "http://www.orpha.net/ORDO": "ORPHA",
    "http://omim.org": "OMIM",
    "http://www.omim.org": "OMIM",
    "http://hl7.org/fhir/sid/icd-10": "ICD10",
    "http://id.who.int/icd/release/11/mms": "ICD11",
    "http://purl.obolibrary.org/obo/mondo.owl": "MONDO",
}
HPO_SYSTEMS = frozenset({"http://purl.obolibrary.org/obo/hp.owl", "http://human-phenotype-ontology.org"})
SNOMED, LOINC = "http://snomed.info/sct", "http://loinc.org"
# Observation.code values saying "the value is a phenotype" (then valueCodeableConcept holds the HPO term).
PHENOTYPE_CODES = frozenset({(SNOMED, "8116006"), (SNOMED, "404684003")})  # Phenotype; Clinical finding
# A finding's presence, as Observation.valueCodeableConcept says it.
ABSENT = frozenset({(SNOMED, "410516002"), (SNOMED, "2667000"), (SNOMED, "373067005"), (LOINC, "LA32-8")})
NEGATIVE = "NEG"  # Observation.interpretation (v3 ObservationInterpretation): the finding was looked for, absent

# Codes -> model values. A mapping's ``[tables.T.values]`` for the column adds to or overrides these.
GENDERS = {"male": "male", "female": "female", "other": "undetermined", "unknown": "unknown"}
VERIFICATION = {  # Condition.verificationStatus -> (status, excluded)
    "confirmed": ("confirmed", "no"),
    "provisional": ("suspected", "no"),
    "differential": ("suspected", "no"),
    "unconfirmed": ("suspected", "no"),
    "refuted": ("confirmed", "yes"),  # a disease ruled out: the exclusion is confirmed
}
ENCOUNTER_CLASSES = {  # Encounter.class (v3 ActCode) -> encounter_type
    "AMB": "outpatient",
    "SS": "day hospital",
    "IMP": "inpatient",
    "ACUTE": "inpatient",
    "NONAC": "inpatient",
    "VR": "teleconsultation",
}
UNHELD = {  # statuses of records that are not read: retracted, or never held
    "Condition": frozenset({"entered-in-error"}),
    "Observation": frozenset({"entered-in-error", "cancelled"}),
    "Encounter": frozenset({"entered-in-error", "planned", "cancelled"}),
}
AGE_UNITS = {"a": "Y", "year": "Y", "years": "Y", "yr": "Y", "mo": "M", "month": "M", "months": "M",
             "wk": "W", "week": "W", "weeks": "W", "d": "D", "day": "D", "days": "D"}  # fmt: skip
CENTRE_COUNTRY = {c.code: c.country for c in CENTRES}

COLUMNS: dict[str, tuple[str, ...]] = {
    "patients": ("national_id", "first_name", "last_name", "street", "house_number", "postcode", "commune",
                 "canton", "country", "date_of_birth", "sex", "vital_status", "date_of_death"),
    "diagnoses": ("national_id", *CODE_COLUMNS.values(), "status", "excluded", "onset_date", "onset_age",
                  "diagnosis_date"),
    "phenotypes": ("national_id", "hpo_code", "excluded", "observed_date"),
    "encounters": ("national_id", "encounter_date", "centre_code", "centre_country", "encounter_type"),
}  # fmt: skip
_HPO = re.compile(r"(?:HP[:_])?([0-9]{7})")
_LEADING_NUMBER = re.compile(r"^\s*(\d+[A-Za-z]?(?:-\d+[A-Za-z]?)?)\s*,?\s+(.+)$")  # "12 rue de la Gare", "12, rue"
_TRAILING_NUMBER = re.compile(r"^(.+?)\s*,?\s+(\d+[A-Za-z]?(?:-\d+[A-Za-z]?)?)\s*$")  # "Hauptstraße 12"
_TYPE_NAME = re.compile(r"[A-Z][A-Za-z]{1,63}")
BOM = b"\xef\xbb\xbf"  # a UTF-8 byte order mark, which some exporters write and JSON does not allow
_REF = "_ref"  # a child row's subject, as a key of _Reader.patients


def read_fhir(source: Path, mapping: Mapping, scratch: Path, *, workers: int | None = None) -> Converted:
    """Read the Bundle, NDJSON file or folder ``source`` into the raw tables (module docstring).

    The person's identifier is the Patient identifier whose ``system`` is
    ``mapping.identity_field`` (prefixed ``registry:`` when the mapping's
    identity kind is ``registry``). ``scratch`` is not used: FHIR JSON is
    UTF-8 and needs no transcoding. A source of :data:`PARALLEL_BYTES` or
    more is validated by one process per core (``workers``, default: the
    cores this process may use); a smaller one in this process. Raises
    BadInput for a file that cannot be read at all (a Bundle that is not
    JSON, a Bundle of a type not read).
    """
    del scratch
    files = source_files(source)
    if workers is None:
        workers = len(os.sched_getaffinity(0)) if sum(p.stat().st_size for p in files) >= PARALLEL_BYTES else 1
    reader = _Reader(mapping)
    batches = _batches(files, source)
    if workers <= 1:
        for batch in batches:
            reader.take_all(batch)
    else:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            pending: deque[Future[_Reader]] = deque()
            for batch in batches:  # at most two batches a worker in flight: memory stays bounded
                pending.append(pool.submit(_read_batch, mapping, batch))
                if len(pending) >= 2 * workers:
                    reader.merge(pending.popleft().result())
            while pending:
                reader.merge(pending.popleft().result())
    base = source if source.is_dir() else source.parent
    hashes = {p.relative_to(base).as_posix(): file_sha256(p) for p in files}
    return reader.finish(hashes)


def _batches(files: list[Path], source: Path) -> Iterator[list[tuple[str, Any, str]]]:
    batch: list[tuple[str, Any, str]] = []
    for path in files:
        name = path.relative_to(source).as_posix() if source.is_dir() else path.name
        for item in records(path, name):
            batch.append(item)
            if len(batch) == BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


def _read_batch(mapping: Mapping, batch: list[tuple[str, Any, str]]) -> _Reader:
    """One batch of resources read by a worker process: its rows and accounts, merged by the parent."""
    reader = _Reader(mapping)
    reader.take_all(batch)
    return reader


def source_files(source: Path) -> list[Path]:
    """The files of a FHIR source: itself, or the ``.ndjson`` and ``.json`` files of a folder, by name."""
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise MissingData(f"{source}: no such file or folder")
    files = sorted(p for p in source.iterdir() if p.is_file() and p.suffix.lower() in SUFFIXES)
    if not files:
        raise BadInput(f"{source}: no .ndjson or .json file in the folder (a FHIR source is a Bundle or NDJSON)")
    return files


def records(path: Path, name: str) -> Iterator[tuple[str, Any, str]]:
    """Each resource of a file: (locator, an NDJSON line's bytes or an entry's decoded JSON, the entry's fullUrl).

    :func:`decode` turns the first into the second (or says why it cannot).
    """
    if path.suffix.lower() == ".ndjson":
        yield from _ndjson(path, name)
        return
    try:
        data = json.loads(path.read_bytes().removeprefix(BOM), object_pairs_hook=no_duplicate_keys)
    except ValueError as exc:
        raise BadInput(f"{name}: not a JSON file ({_json_error(exc)})") from None
    except RecursionError:
        raise BadInput(f"{name}: not a FHIR file (JSON nested deeper than any resource is)") from None
    if not isinstance(data, dict):
        raise BadInput(f"{name}: not a FHIR resource or Bundle (a JSON object)")
    if data.get("resourceType") != "Bundle":
        yield name, data, ""
        return
    kind = data.get("type")
    if kind not in BUNDLE_TYPES:
        named = isinstance(kind, str) and re.fullmatch(r"[a-z-]{1,40}", kind)
        what = f"of type {kind}" if named else "without a type read here"
        raise BadInput(f"{name}: a Bundle {what} is not read (only {', '.join(BUNDLE_TYPES)})")
    entries = data.get("entry", [])
    if not isinstance(entries, list):
        raise BadInput(f"{name}: Bundle.entry is not an array")
    for i, entry in enumerate(entries):
        locator = f"{name}:entry[{i}]"
        if not isinstance(entry, dict):
            yield locator, _Unreadable("the Bundle entry is not a JSON object"), ""
            continue
        full_url = entry.get("fullUrl")
        yield locator, entry.get("resource"), full_url if isinstance(full_url, str) else ""


class _Unreadable:
    def __init__(self, why: str) -> None:
        self.why = why


def _ndjson(path: Path, name: str) -> Iterator[tuple[str, Any, str]]:
    with path.open("rb") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                yield f"{name}:{number}", line.removeprefix(BOM) if number == 1 else line, ""


def decode(item: Any) -> Any:
    """An NDJSON line decoded (or :class:`_Unreadable`, saying why not); anything else as it is."""
    if not isinstance(item, bytes):
        return item
    try:
        return json.loads(item, object_pairs_hook=no_duplicate_keys)
    except ValueError as exc:
        return _Unreadable(f"not a JSON line ({_json_error(exc)})")
    except RecursionError:
        return _Unreadable("not a FHIR resource (JSON nested deeper than any resource is)")


def _json_error(exc: ValueError) -> str:
    if isinstance(exc, DuplicateKey):
        return str(exc)
    if isinstance(exc, json.JSONDecodeError):
        return f"{exc.msg} at character {exc.pos + 1}"
    return "not UTF-8" if isinstance(exc, UnicodeDecodeError) else "unreadable"


@cache
def model_class(resource_type: str) -> type[BaseModel] | None:
    """The R4B model of a FHIR resource type; None when ``resource_type`` names no resource."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # in case a model module warns as it loads
        from fhir.resources.R4B import get_fhir_model_class

        try:
            cls = get_fhir_model_class(resource_type)
        except ValueError:
            return None
    return cls if cls.has_resource_base() and resource_type not in ("Resource", "DomainResource") else None


class _Reader:
    """Reads one resource at a time into rows; resolves subjects and accounts at the end (:meth:`finish`)."""

    def __init__(self, mapping: Mapping) -> None:
        self.mapping = mapping
        self.system = mapping.identity_field
        self.registry = mapping.identity_kind == "registry"
        self.values = {t: m.values for t, m in mapping.tables.items()}
        self.total = 0
        self.ignored: Counter[str] = Counter()
        self.refused: list[Refused] = []
        self.rows: dict[str, list[tuple[str | None, ...]]] = {t: [] for t in COLUMNS}
        self.patients: dict[str, str] = {}  # "Patient/<id>" or a fullUrl -> national_id ("" for a refused Patient)
        self.versions: dict[str, str] = {}

    # -- one resource ------------------------------------------------------------------------------------

    def take_all(self, batch: list[tuple[str, Any, str]]) -> None:
        for locator, item, full_url in batch:
            self.take(locator, decode(item), full_url)

    def take(self, locator: str, record: Any, full_url: str) -> None:
        self.total += 1
        if isinstance(record, _Unreadable):
            self.refuse(locator, record.why)
            return
        if record is None:
            self.ignored["Bundle entry without a resource"] += 1
            return
        if not isinstance(record, dict):
            self.refuse(locator, "not a FHIR resource (a JSON object)")
            return
        kind = record.get("resourceType")
        if not isinstance(kind, str) or not _TYPE_NAME.fullmatch(kind):
            self.refuse(locator, "no resourceType" if kind is None else "its resourceType is not a type name")
            return
        if kind not in READ_TYPES:
            if model_class(kind) is None:
                self.refuse(locator, f"resourceType {quoted(kind)} is not a FHIR R4 resource")
            else:
                self.ignored[f"{kind}: resource type not read"] += 1
            return
        phenotype = _hpo_term(record) if kind == "Observation" else None
        if kind == "Observation" and phenotype is None:
            self.ignored["Observation: not coded in HPO"] += 1
            return
        status = _status(kind, record)
        if status in UNHELD.get(kind, ()):
            self.ignored[f"{kind}: {status}"] += 1
            return
        model = model_class(kind)
        assert model is not None
        try:
            parsed = model.model_validate(record)
        except ValidationError as exc:
            if kind == "Patient":  # what refers to it is refused as referring to a refused Patient
                self.patients.update(dict.fromkeys(_patient_keys(record, full_url), ""))
            self.refuse(locator, _invalid(kind, exc), phenotype)
            return
        if kind == "Patient":
            self.patient(locator, record, parsed, full_url)
        elif kind == "Condition":
            self.child("diagnoses", locator, record, self.condition(record))
        elif kind == "Observation":
            assert phenotype is not None
            self.child("phenotypes", locator, record, _observation(record, phenotype), phenotype)
        else:
            self.child("encounters", locator, record, self.encounter(record))

    def refuse(self, locator: str, reason: str, phenotype: tuple[str, str] | None = None) -> None:
        excluded = phenotype is not None and phenotype[1] == "yes"
        observed = phenotype is not None and not excluded
        self.refused.append(Refused(locator, reason, int(observed), int(excluded)))

    def patient(self, locator: str, record: dict[str, Any], parsed: Any, full_url: str) -> None:
        keys = _patient_keys(record, full_url)
        value = next(
            (i.get("value") for i in record.get("identifier", []) if i.get("system") == self.system and i.get("value")),
            None,
        )
        if value is None:
            self.patients.update(dict.fromkeys(keys, ""))
            self.refuse(locator, f"Patient: no identifier of system {quoted(self.system, 100)}")
            return
        nid = REGISTRY_PREFIX + value.strip() if self.registry else value  # trimmed first: one person
        self.patients.update(dict.fromkeys(keys, nid))
        row, issues = _patient(record, parsed)
        row["national_id"] = nid
        row["sex"] = self.mapped("patients", "sex", record.get("gender"), GENDERS, issues)
        self.add("patients", row, locator, issues, None)

    def child(self, table: str, locator: str, record: dict[str, Any], found: tuple[dict[str, str], list[str]],
              phenotype: tuple[str, str] | None = None) -> None:  # fmt: skip
        subject = _subject(record.get("subject"), self.system)
        if subject is None:
            self.refuse(locator, f"{record['resourceType']}: its subject is not a Patient", phenotype)
            return
        ref, value = subject
        row, issues = found
        if value is not None:
            row["national_id"] = REGISTRY_PREFIX + value.strip() if self.registry else value
        self.add(table, row, locator, issues, ref)

    def add(self, table: str, row: dict[str, str], locator: str, issues: list[str], ref: str | None) -> None:
        values = tuple(row.get(c) if c == "national_id" else row.get(c, "") for c in COLUMNS[table])
        self.rows[table].append((*values, locator, ";".join(issues), ref))

    def mapped(self, table: str, column: str, code: Any, known: dict[str, str], issues: list[str]) -> str:
        """A code through the reader's map and the mapping's values; as given (with an issue) when neither has it."""
        if not isinstance(code, str) or not code:
            return ""
        extra = self.values.get(table, {}).get(column, {})
        if code in extra:
            return extra[code]
        if code in known:
            return known[code]
        issues.append(f"{column}:unmapped_value")
        return code

    def condition(self, record: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
        row: dict[str, str] = {}
        issues: list[str] = []
        unknown = False
        for coding in _codings(record.get("code")):
            system = DISEASE_SYSTEMS.get(str(coding.get("system", "")).rstrip("/"))
            code = coding.get("code")
            if system is None:
                unknown = unknown or bool(code)
                continue
            self.version(system, coding)
            column = CODE_COLUMNS[system]
            if code and column not in row:
                found = read_code(code, system)
                row[column] = code if isinstance(found, str) else found.curie if system in _CURIES else found.code
        if unknown and not row:
            issues.append("diagnoses:unknown_code_system")
        verification = _status("Condition", record)
        status = self.mapped("diagnoses", "status", verification, {k: s for k, (s, _) in VERIFICATION.items()}, issues)
        excluded = VERIFICATION.get(verification or "", ("", "no"))[1]
        if row.get("orpha_code") == _UNDIAGNOSED and excluded == "no" and status in ("confirmed", "suspected"):
            status = "undiagnosed"  # the registry's code for a patient fully investigated without a diagnosis
        row.update(status=status, excluded=excluded, diagnosis_date=_date(record.get("recordedDate")))
        if "onsetDateTime" in record:
            row["onset_date"] = _date(record["onsetDateTime"])
        elif "onsetPeriod" in record:
            row["onset_date"] = _date(record["onsetPeriod"].get("start"))
        elif "onsetAge" in record:
            age = _duration(record["onsetAge"])
            if age is None:
                issues.append("onset_age:unreadable_value")
                age = f"{record['onsetAge'].get('value', '')} {_unit(record['onsetAge'])}".strip()
            row["onset_age"] = age
        return row, issues

    def encounter(self, record: dict[str, Any]) -> tuple[dict[str, str], list[str]]:
        issues: list[str] = []
        kind = self.mapped("encounters", "encounter_type", record["class"].get("code"), ENCOUNTER_CLASSES, issues)
        centre = _identifier(record.get("serviceProvider")) or next(
            (c for c in (_identifier(x.get("location")) for x in record.get("location", [])) if c), ""
        )
        row = {
            "encounter_date": _date(record.get("period", {}).get("start")),
            "centre_code": centre,
            "centre_country": CENTRE_COUNTRY.get(centre, ""),
            "encounter_type": kind,
        }
        return row, issues

    def version(self, system: str, coding: dict[str, Any]) -> None:
        if isinstance(coding.get("version"), str):
            self.versions.setdefault(system, coding["version"])

    def merge(self, other: _Reader) -> None:
        """Add what a worker read (the batches come in the source's order)."""
        self.total += other.total
        self.ignored.update(other.ignored)
        self.refused += other.refused
        for table, rows in other.rows.items():
            self.rows[table] += rows
        self.patients.update(other.patients)
        for system, version in other.versions.items():
            self.versions.setdefault(system, version)

    # -- the whole source --------------------------------------------------------------------------------

    def finish(self, files: dict[str, str]) -> Converted:
        tables = {t: self.frame(t) for t in COLUMNS}
        ignored = sum(self.ignored.values())
        records_in = self.total - ignored
        converted = sum(f.height for f in tables.values())
        out = Converted(
            name=self.mapping.name,
            kind="fhir",
            tables=tables,
            records_in=records_in,
            converted=converted,
            refused=self.refused,
            versions=dict(sorted(self.versions.items())),
            files=files,
            facts={
                "resources": self.total,
                "ignored": dict(sorted(self.ignored.items())),
                "read_with": "fhir.resources R4B models (FHIR R4 and R4B)",
            },
        )
        assert out.balanced, "the FHIR reader's accounting does not add up"
        return out

    def frame(self, table: str) -> pl.DataFrame:
        """A table's rows with their subjects resolved; rows whose subject is not a read Patient are refused."""
        columns = (*COLUMNS[table], SOURCE_RECORD, SOURCE_ISSUE, _REF)
        frame = pl.DataFrame(self.rows[table], schema=dict.fromkeys(columns, pl.String), orient="row")
        if table != "patients":
            resolved = pl.col(_REF).replace_strict(self.patients, default=None, return_dtype=pl.String)
            frame = frame.with_columns(pl.coalesce("national_id", resolved).alias("national_id"))
            for row in frame.filter(pl.col("national_id").fill_null("") == "").iter_rows(named=True):
                why = "is not a Patient of the source" if row["national_id"] is None else "is a refused Patient"
                kind = {"diagnoses": "Condition", "phenotypes": "Observation", "encounters": "Encounter"}[table]
                phenotype = (row["hpo_code"], row["excluded"]) if table == "phenotypes" else None
                self.refuse(row[SOURCE_RECORD], f"{kind}: its subject {why}", phenotype)
            frame = frame.filter(pl.col("national_id").fill_null("") != "")
        frame = frame.drop(_REF).with_columns(pl.lit(self.mapping.name, pl.String).alias(SOURCE))
        constants = self.mapping.tables[table].constants if table in self.mapping.tables else {}
        for column, value in constants.items():  # fills what the resources left empty (docs/fhir.md)
            given = pl.col(column).fill_null("") if column in frame.columns else pl.lit("")
            frame = frame.with_columns(pl.when(given == "").then(pl.lit(value)).otherwise(given).alias(column))
        ordered = [c for c in frame.columns if c not in (SOURCE_RECORD, SOURCE_ISSUE)]
        return frame.select(*ordered, SOURCE_RECORD, SOURCE_ISSUE)


_CURIES = ("ORPHA", "OMIM", "MONDO")  # written as CURIEs in the raw tables; ICD-10 and ICD-11 bare
_UNDIAGNOSED = orpha_id(UNDIAGNOSED_ORPHA)


def _patient(record: dict[str, Any], parsed: Any) -> tuple[dict[str, str], list[str]]:
    name = _pick(record.get("name", []), ("official", "usual"))
    address = _pick(record.get("address", []), ("home",))
    lines = [x for x in address.get("line", []) if x]
    street, house = _street(lines[0]) if lines else ("", "")
    if len(lines) > 1:
        street = ", ".join([street, *lines[1:]]) if street else ", ".join(lines[1:])
    country = address.get("country", "").strip()
    if len(country) == 2 and country.isalpha():
        country = country.upper()
    dead = parsed.deceasedBoolean is True or "deceasedDateTime" in record
    row = {
        "first_name": " ".join(g for g in name.get("given", []) if g),
        "last_name": name.get("family", ""),
        "street": street,
        "house_number": house,
        "postcode": address.get("postalCode", ""),
        "commune": address.get("city", ""),
        "canton": address.get("district", ""),
        "country": country,
        "date_of_birth": record.get("birthDate", ""),
        "vital_status": "dead" if dead else "alive",
        "date_of_death": _date(record.get("deceasedDateTime")),
    }
    return row, []


def _observation(record: dict[str, Any], phenotype: tuple[str, str]) -> tuple[dict[str, str], list[str]]:
    when = record.get("effectiveDateTime") or record.get("effectiveInstant") or record.get("effectivePeriod", {})
    observed = _date(when.get("start") if isinstance(when, dict) else when)
    return {"hpo_code": phenotype[0], "excluded": phenotype[1], "observed_date": observed}, []


def _hpo_term(record: dict[str, Any]) -> tuple[str, str] | None:
    """An Observation's HPO term and whether the finding is excluded (``yes``/``no``); None if not in HPO.

    Read from the raw JSON before validation (Observations not in HPO are not
    validated), so it never trusts a shape.
    """
    code = _codings(record.get("code"))
    term = _hpo_code(code)
    value = record.get("valueCodeableConcept")
    if term is None and any((c.get("system"), c.get("code")) in PHENOTYPE_CODES for c in code):
        term, value = _hpo_code(_codings(value)), None  # the value is the term, not the finding's presence
    if term is None:
        return None
    negative = any(c.get("code") == NEGATIVE for x in _list(record.get("interpretation")) for c in _codings(x))
    presence = {(c.get("system"), c.get("code")) for c in _codings(value)}
    excluded = negative or record.get("valueBoolean") is False or bool(presence & ABSENT)
    return term, "yes" if excluded else "no"


def _hpo_code(codings: list[dict[str, Any]]) -> str | None:
    for coding in codings:
        if str(coding.get("system", "")).rstrip("/") in HPO_SYSTEMS and isinstance(coding.get("code"), str):
            found = _HPO.fullmatch(coding["code"].strip())
            return f"HP:{found.group(1)}" if found else coding["code"]
    return None


def _status(kind: str, record: dict[str, Any]) -> str | None:
    if kind == "Condition":
        found = next((c.get("code") for c in _codings(record.get("verificationStatus"))), None)
    else:
        found = record.get("status")
    return found if isinstance(found, str) else None


def _subject(subject: Any, system: str) -> tuple[str | None, str | None] | None:
    """A subject as (a key of the source's Patients, or the identifier value it names); None if not a Patient."""
    if not isinstance(subject, dict):
        return None
    reference = subject.get("reference")
    if isinstance(reference, str) and reference:
        key = _ref_key(reference)
        return (key, None) if key.startswith(("Patient/", "urn:")) else None
    identifier = subject.get("identifier")
    if isinstance(identifier, dict) and identifier.get("system") == system and identifier.get("value"):
        return None, identifier["value"]
    return None


def _patient_keys(record: dict[str, Any], full_url: str) -> list[str]:
    """How the source's resources may refer to a Patient: ``Patient/<id>``, and its Bundle entry's fullUrl."""
    keys = [f"Patient/{record['id']}"] if isinstance(record.get("id"), str) and record["id"] else []
    return keys + ([_ref_key(full_url)] if full_url else [])


def _ref_key(reference: str) -> str:
    """``Patient/<id>`` for any spelling of a reference to a Patient (relative, absolute, versioned); a URN as is."""
    if reference.startswith("urn:"):
        return reference
    path = reference.split("/_history/")[0].rstrip("/")
    at = path.rfind("Patient/")
    return path[at:] if at >= 0 and (at == 0 or path[at - 1] == "/") else path


def _identifier(reference: Any) -> str:
    if isinstance(reference, dict) and isinstance(reference.get("identifier"), dict):
        value = reference["identifier"].get("value")
        return value if isinstance(value, str) else ""
    return ""


def _duration(age: dict[str, Any]) -> str | None:
    """A FHIR Age (value and UCUM unit ``a``, ``mo``, ``wk``, ``d``) as an ISO 8601 duration; None if unreadable."""
    value, unit = age.get("value"), AGE_UNITS.get(_unit(age).lower())
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0 or unit is None:
        return None
    whole, part = int(value), value - int(value)
    if unit == "Y":
        months = round(part * 12)
        whole, months = (whole + 1, 0) if months == 12 else (whole, months)
        return f"P{whole}Y" + (f"{months}M" if months else "")
    if unit == "M":
        days = round(part * 30.4375)
        return f"P{whole}M" + (f"{days}D" if days else "")
    if unit == "W" and part == 0:
        return f"P{whole}W"
    return f"P{round(value * (7 if unit == 'W' else 1))}D"


def _unit(age: dict[str, Any]) -> str:
    unit = age.get("code") or age.get("unit") or ""
    return unit if isinstance(unit, str) else ""


def _street(line: str) -> tuple[str, str]:
    """A FHIR address line as (street, house number): ``12 rue de la Gare``, ``12, rue...``, ``Hauptstraße 12``."""
    if found := _LEADING_NUMBER.match(line):
        return found.group(2).strip(), found.group(1)
    if found := _TRAILING_NUMBER.match(line):
        return found.group(1).strip(), found.group(2)
    return line.strip(), ""


def _pick(items: list[dict[str, Any]], uses: tuple[str, ...]) -> dict[str, Any]:
    """The first item of a preferred ``use``, else the first not marked ``old``, else the first; {} if none."""
    preferred = next((x for x in items if x.get("use") in uses), None)
    current = next((x for x in items if x.get("use") != "old"), None)
    return preferred or current or (items[0] if items else {})


def _date(value: Any) -> str:
    """A FHIR date or dateTime as written, without its time: ``2001-02-03T10:00:00+01:00`` -> ``2001-02-03``."""
    return value.split("T", 1)[0] if isinstance(value, str) else ""


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _codings(concept: Any) -> list[dict[str, Any]]:
    """A CodeableConcept's codings (none when it is not one)."""
    if not isinstance(concept, dict):
        return []
    return [c for c in _list(concept.get("coding")) if isinstance(c, dict)]


_ERRORS = {
    "missing": "required, missing",
    "extra_forbidden": "not an element of the resource",
    "value_error": "not a valid value of its type",
    "string_type": "not a JSON string",
    "list_type": "not a JSON array",
    "dict_type": "not a JSON object",
    "model_type": "not a JSON object",
    "model_attributes_type": "not a JSON object",
    "bool_type": "not true or false",
    "bool_parsing": "not true or false",
    "int_type": "not an integer",
    "int_parsing": "not an integer",
    "decimal_type": "not a number",
    "decimal_parsing": "not a number",
    "float_type": "not a number",
    "float_parsing": "not a number",
    "string_pattern_mismatch": "not of the element's form",
    "model_validation_format": "not a JSON object of the element's type",
    "model_field_validation.missing": "required, missing",
    "fhir-validation-wrong-resource-type": "a resourceType other than the model's",
}


def _invalid(kind: str, exc: ValidationError) -> str:
    """Why the R4B model refused a resource, in one line: the first error's element path and kind, no value."""
    errors = exc.errors(include_url=False, include_context=False, include_input=False)
    first = errors[0]
    parts = [p for p in first["loc"] if p != "root"]  # fhir.resources' own checks say "root" for the element
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{quoted(str(p))}" for p in parts).lstrip(".")
    what = _ERRORS.get(first["type"], f"not valid ({first['type']})")
    more = f" (and {len(errors) - 1} more error{'s' if len(errors) > 2 else ''})" if len(errors) > 1 else ""
    return f"{kind}: not valid FHIR R4: {path or kind}: {what}{more}"


# -- the draft mapping ---------------------------------------------------------------------------------------

NATIONAL_ID = re.compile(r"[0-9]{13}")
NATIONAL_SHARE = 0.95  # a system whose values are 13 digits this often is proposed as the national ID
_URI = re.compile(r"(?:https?://|urn:)[!-~]{1,200}")  # a system shown in the draft: a URI or URN, printable


def draft_fhir(source: Path) -> str:
    """A mapping proposal (TOML) for the FHIR source ``source``, from counts only: no value of any resource.

    The identity is the Patient identifier system whose values look like
    13-digit national IDs (kind ``national``); failing that, the most common
    system, as a registry identifier (kind ``registry``), with a comment
    saying so. Identifier systems are shown only when they are URIs or URNs.
    """
    survey = _Survey()
    for path in source_files(source):
        for _, item, _ in records(path, path.name):
            if isinstance(record := decode(item), dict):
                survey.take(record)
    return survey.toml(source.name)


class _Survey:
    """Counts of what a FHIR source holds, for :func:`draft_fhir`."""

    def __init__(self) -> None:
        self.types: Counter[str] = Counter()
        self.systems: Counter[str] = Counter()  # Patients with an identifier of the system
        self.national: Counter[str] = Counter()  # ... whose value is 13 digits
        self.hidden = 0  # identifiers whose system is not shown (no system, or not a URI)
        self.no_country = 0
        self.no_status = 0
        self.code_systems: Counter[str] = Counter()
        self.no_centre = 0

    def take(self, record: dict[str, Any]) -> None:
        kind = record.get("resourceType")
        kind = kind if isinstance(kind, str) and _TYPE_NAME.fullmatch(kind) else "(no resource type)"
        if kind == "Observation" and _hpo_term(record) is None:
            kind = "Observation not coded in HPO"
        self.types[kind] += 1
        if kind == "Patient":
            self.patient(record)
        elif kind == "Condition":
            self.no_status += _status("Condition", record) is None
            for coding in _codings(record.get("code")):
                system = str(coding.get("system", "")).rstrip("/")
                self.code_systems[system if _URI.fullmatch(system) else "(no system, or not a URI)"] += 1
        elif kind == "Encounter":
            located = [_identifier(x.get("location")) for x in _list(record.get("location")) if isinstance(x, dict)]
            self.no_centre += not (_identifier(record.get("serviceProvider")) or any(located))

    def patient(self, record: dict[str, Any]) -> None:
        seen: dict[str, bool] = {}
        for identifier in _list(record.get("identifier")):
            system = identifier.get("system") if isinstance(identifier, dict) else None
            value = identifier.get("value") if isinstance(identifier, dict) else None
            if not isinstance(system, str) or not _URI.fullmatch(system):
                self.hidden += 1
                continue
            national = isinstance(value, str) and NATIONAL_ID.fullmatch(value.strip()) is not None
            seen[system] = seen.get(system, False) or national
        for system, national in seen.items():
            self.systems[system] += 1
            self.national[system] += national
        addresses = [a for a in _list(record.get("address")) if isinstance(a, dict)]
        self.no_country += not any(isinstance(a.get("country"), str) and a["country"].strip() for a in addresses)

    def identity(self) -> tuple[str, str, list[str]]:
        """The proposed identity system, its kind, and the comment lines that say why."""
        national = [s for s, n in self.systems.most_common() if self.national[s] >= NATIONAL_SHARE * n]
        if national:
            return national[0], "national", ["# Its values look like 13-digit national IDs."]
        if not self.systems:
            why = "# No Patient has an identifier with a system (URI): name the system that identifies persons."
            return "", "national", [why]
        return (
            self.systems.most_common(1)[0][0],
            "registry",
            [
                "# No identifier system has values that look like 13-digit national IDs: the most common one is",
                "# proposed as a registry identifier (read as registry:<value>). Persons of this source are then not",
                "# linked with other sources by national ID. Change the field if another system carries them.",
            ],
        )

    def toml(self, name: str) -> str:
        system, kind, why = self.identity()
        patients = self.types["Patient"]
        held = ", ".join(f"{k} {n}" for k, n in sorted(self.types.items())) or "nothing readable"
        lines = [
            f"# A draft mapping for the FHIR source {quoted(name, 80)}: {held}.",
            "# Drafted from counts only: no value of any resource is shown. Check it, then: research-kit mapping check",
            "version = 1",
            "",
            "[source]",
            'name = "fhir"',
            'kind = "fhir"',
            "precedence = 1",
            'dates = "dates"',
            "",
            "# Patient identifier systems: Patients with one; of them, those whose value has 13 digits.",
            *(f"#   {quoted(s, 100)}: {n}; {self.national[s]}" for s, n in self.systems.most_common()),
        ]
        if self.hidden:
            lines.append(f"#   {self.hidden} identifier(s) without a system, or whose system is not a URI (not shown)")
        lines += [*why, "", "[identity]", f"field = {json.dumps(system)}", f'kind = "{kind}"']
        lines += [
            "",
            "[tables.patients.constants]",
            "# A FHIR Patient carries no consent to reuse: under the policy's exclude_without_consent every",
            "# Patient is withheld, unless the consent of this source's patients is established elsewhere:",
            '# consent_reuse = "yes"',
        ]
        if self.no_country:
            lines += [
                f"# {self.no_country} of {patients} Patients have no address with a country: this fills their country",
                "# (ISO 3166 alpha-2); change it if they live elsewhere, or remove it to leave them to validation.",
                'country = "LU"',
            ]
        lines += self.diagnoses_lines() + self.encounter_lines()
        return "\n".join(lines) + "\n"

    def diagnoses_lines(self) -> list[str]:
        lines = []
        if self.code_systems:
            lines += ["", "# Condition.code systems (codings):"]
            for system, n in self.code_systems.most_common():
                read = "read" if system in DISEASE_SYSTEMS else "not read"
                lines.append(f"#   {quoted(system, 100)}: {n} ({read})")
        if self.no_status:
            lines += [
                "",
                "[tables.diagnoses.constants]",
                f"# {self.no_status} of {self.types['Condition']} Conditions have no verificationStatus; a status",
                "# for those (confirmed, suspected) fills it, or they are quarantined as missing one:",
                '# status = "confirmed"',
            ]
        return lines

    def encounter_lines(self) -> list[str]:
        if not self.no_centre:
            return []
        return [
            "",
            "[tables.encounters.constants]",
            f"# {self.no_centre} of {self.types['Encounter']} Encounters name no centre (an identifier of their",
            "# serviceProvider or location); the centre of this source fills it, e.g.:",
            '# centre_code = "LU-CHL"',
        ]
