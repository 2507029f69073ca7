"""The extract's variables as the catalogue describes them (HealthDCAT-AP ``healthdcatap:hasVariables``): each
column of each table, its title and what it holds. Names and meanings only, never a value.

The columns themselves are read from the newest extract's Parquet schemas (:func:`extract_variables`), so a
column a later schema adds appears by itself; its meaning belongs here (a test asks for one for every column
of the current schema).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import polars as pl

from research_kit.model.tables import TABLE_NAMES

_PSEUDONYM = ("Pseudonym", "The patient's keyed pseudonym in this extract version (never a national ID).")
_SOURCE = ("Source", "The source (export, mapping, phenopackets, FHIR) the row came from.")
_EXCLUDED = ("Excluded", "True when the finding was ruled out (for example 'no seizures').")
_ONSET_CLASS = ("Onset class", "The HPO onset class (for example HP:0003593, infantile onset), where no age is known.")
_DATE = "truncated to the month or shifted per patient, as the policy says"

MEANINGS: dict[str, dict[str, tuple[str, str]]] = {
    "patients": {
        "pseudonym": _PSEUDONYM,
        "birth_year": ("Year of birth", "The year of birth (EU common data element 2)."),
        "birth_month": ("Month of birth", "The month of birth, kept when the policy keeps year and month."),
        "sex": ("Sex", "female, male, undetermined or unknown (EU common data element 3)."),
        "vital_status": ("Patient's status", "alive, dead, lost to follow-up or opted out (common data element 4)."),
        "death_date": ("Date of death", f"The date of death, {_DATE} (common data element 5)."),
        "canton": ("Canton of residence", "The canton of residence (the commune and address are dropped)."),
        "country": ("Country of residence", "The country of residence."),
        "cross_border_insured": ("Cross-border insured", "True for a person insured in Luxembourg living abroad."),
        "first_contact_date": (
            "First contact with a specialised centre",
            f"The date of first contact, {_DATE} (common data element 6).",
        ),
        "consent_reuse": ("Consent to reuse", "Consent to the reuse of data (common data element 13)."),
        "agrees_to_contact": (
            "Agreement to be contacted",
            "Agreement to be contacted for research (common data element 12).",
        ),
        "age_at_last_record_years": ("Age at last record", "Age at the last record, in years, for age-only sources."),
        "age_at_death_years": ("Age at death", "Age at death, in years, for sources that give ages, not dates."),
        "sources": ("Sources", "The sources that hold the patient, in precedence order."),
        "value_sources": ("Value sources", "The fields whose value came from another source than the first."),
    },
    "diagnoses": {
        "pseudonym": _PSEUDONYM,
        "orpha_code": ("ORPHA code", "The rare disease as an ORPHA code, preferred (common data element 9)."),
        "omim_code": ("OMIM code", "The disease as an OMIM code."),
        "icd10_code": ("ICD-10 code", "The disease as a WHO ICD-10 code."),
        "icd11_code": ("ICD-11 code", "The disease as an ICD-11 code."),
        "mondo_code": ("MONDO code", "The disease as a MONDO code."),
        "status": ("Diagnosis status", "confirmed, suspected or undiagnosed (common data element 11)."),
        "excluded": _EXCLUDED,
        "onset_date": ("Date of onset", f"The date of onset, {_DATE}."),
        "diagnosis_date": ("Date of diagnosis", f"The date of diagnosis, {_DATE}."),
        "onset_age_years": ("Age at onset", "Age at onset, in years, from dates or ages (common data element 7)."),
        "onset_age_basis": ("Onset age basis", "What the age at onset was computed from: dates or ages."),
        "onset_class": _ONSET_CLASS,
        "diagnosis_age_years": ("Age at diagnosis", "Age at diagnosis, in years (common data element 8)."),
        "diagnostic_delay_days": ("Diagnostic delay", "Days from onset to diagnosis, computed from exact dates."),
        "diagnostic_delay_basis": ("Delay basis", "What the delay was computed from: dates, ages, or dates and ages."),
        "gene_symbol": ("Gene", "The HGNC symbol of the gene of a genetic diagnosis (common data element 10)."),
        "variant_hgvs": ("Variant", "The variant of a genetic diagnosis, in HGVS notation."),
        "source": _SOURCE,
    },
    "phenotypes": {
        "pseudonym": _PSEUDONYM,
        "hpo_code": ("HPO term", "The phenotypic feature as a Human Phenotype Ontology term."),
        "excluded": _EXCLUDED,
        "observed_date": ("Date observed", f"The date the feature was observed, {_DATE}."),
        "onset_age_years": ("Age at onset", "Age at the feature's onset, in years."),
        "onset_class": _ONSET_CLASS,
        "source": _SOURCE,
    },
    "encounters": {
        "pseudonym": _PSEUDONYM,
        "encounter_date": ("Date of encounter", f"The date of the encounter, {_DATE}."),
        "centre_code": ("Centre", "The centre seen (for example LU-CHL), in Luxembourg or a neighbouring country."),
        "centre_country": ("Centre's country", "The country of the centre."),
        "encounter_type": ("Encounter type", "outpatient, day hospital, inpatient, teleconsultation, and so on."),
        "source": _SOURCE,
    },
}

TABLE_TITLES = {
    "patients": "Patients: one row per person",
    "diagnoses": "Diagnoses: one row per diagnosis of a patient",
    "phenotypes": "Phenotypes: one row per phenotypic feature of a patient",
    "encounters": "Encounters: one row per visit to a centre",
}


@dataclass(frozen=True)
class Variable:
    table: str
    name: str
    title: str
    description: str
    datatype: str  # a CSVW datatype: string, integer, double, boolean, date


@dataclass(frozen=True)
class TableVariables:
    name: str
    title: str
    variables: tuple[Variable, ...]


def csvw_datatype(dtype: pl.DataType) -> str:
    """The CSVW datatype of a Polars column type.

    >>> csvw_datatype(pl.Int16()), csvw_datatype(pl.Float64()), csvw_datatype(pl.Date())
    ('integer', 'double', 'date')
    """
    if dtype.is_integer():
        return "integer"
    if dtype.is_float():
        return "double"
    if dtype == pl.Boolean():
        return "boolean"
    if dtype == pl.Date():
        return "date"
    return "string"


def meaning(table: str, column: str) -> tuple[str, str]:
    """A column's title and description; one this module does not know yet is named, never left out."""
    return MEANINGS.get(table, {}).get(column, (column, f"Column {column} of the {table} table."))


def extract_variables(folder: Path) -> tuple[TableVariables, ...]:
    """The variables of the extract in ``folder``: each table's columns from its Parquet schema (no row read)."""
    out = []
    for table in TABLE_NAMES:
        path = folder / f"{table}.parquet"
        if not path.is_file():
            continue
        schema = pl.read_parquet_schema(path)
        variables = tuple(
            Variable(table, column, *meaning(table, column), csvw_datatype(dtype)) for column, dtype in schema.items()
        )
        out.append(TableVariables(table, TABLE_TITLES.get(table, table), variables))
    return tuple(out)
