"""What a DP query can see: one view per registry table, its columns, their public key sets and bounds.

Each view is the extract's table with the patient's attributes joined on
(sex, age band, canton ...) and a few derived columns (ICD-10 chapter and
block, years, decades, age bands). Joining on the pseudonym keeps every row
attributed to its patient, so the privacy unit (all rows of one patient) is
unchanged.

Group keys never come from the data: each groupable column has a public key
set (every ORPHA code, every ICD-10 chapter, every canton, ...), and numeric
columns have bounds from the schema, which a caller may narrow. The patient
identifier seen by OpenDP is the pseudonym's first 64 bits as an integer,
which groups faster than the 64-character text; two patients sharing it
(chance about 1 in 10^7 at a million patients) would only be truncated
together, never counted twice.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from research_kit.core.errors import BadInput
from research_kit.model import geography
from research_kit.model import tables as schema
from research_kit.model.codes import hpo_id, icd10_blocks, icd10_chapters, icd10_codes, load_code_systems, orpha_id
from research_kit.model.disease_codes import omim_codes
from research_kit.model.extract_schema import conform
from research_kit.model.facts import (
    AGE_BANDS,
    FIRST_DIAGNOSIS_ORDER,
    age_band,
    diagnostic_delay_years,
    first_diagnoses,
    icd10_groups_frame,
    observed,
)
from research_kit.model.tables import CHILD_TABLES, TABLE_NAMES

TABLES = TABLE_NAMES
IDENTIFIER = "_id"
ABROAD = "abroad"
FIRST_YEAR = 1900
VIEW_FORMAT = 3  # a view cached under an older format is built again (the views' columns changed)


@dataclass(frozen=True)
class Column:
    name: str
    tables: tuple[str, ...]
    kind: str  # "category" | "int" | "float" | "flag"
    doc: str
    keys: Callable[[int], Sequence[object]] | None = None  # public key set, given the reference year
    bounds: tuple[float, float] | None = None  # schema bounds of a numeric column
    decimals: int = 0  # a float column's precision: sums run on whole multiples of 10**-decimals
    # The extract's columns it is made from, for a permit that covers some columns only: "table.column", or a
    # bare name for the viewed table's own column (none given: its own column of the same name).
    reads: tuple[str, ...] = ()


def _years(reference_year: int) -> list[int]:
    return list(range(FIRST_YEAR, reference_year + 1))


def _decades(reference_year: int) -> list[str]:
    return [f"{d}s" for d in range(FIRST_YEAR, reference_year + 1, 10)]


@functools.cache
def _orpha_keys(_: int) -> list[str]:
    return sorted(orpha_id(o) for o in load_code_systems().orpha_codes)


def _hpo_keys(_: int) -> list[str]:
    return [hpo_id(t) for t in load_code_systems().phenotypic_terms]


def _const(values: Sequence[object]) -> Callable[[int], Sequence[object]]:
    return lambda _: list(values)


ALL = TABLES
CHILD = CHILD_TABLES
FLAG_KEYS = _const([True, False])
_BIRTH = ("patients.birth_year",)
_AGE = ("patients.birth_year", "patients.age_at_last_record_years")  # a source with ages only has no birth year
# The first diagnosis is chosen by date, then by code: what it says reads all of these.
_FIRST = tuple(f"diagnoses.{c}" for c in ("excluded", *FIRST_DIAGNOSIS_ORDER))

COLUMNS: dict[str, Column] = {
    c.name: c
    for c in (
        # The patient's attributes, in every view.
        Column("sex", ALL, "category", "Sex.", _const(schema.SEX_VALUES), reads=("patients.sex",)),
        Column("vital_status", ALL, "category", "Alive, dead, lost to follow-up, opted out.",
               _const(schema.VITAL_STATUSES), reads=("patients.vital_status",)),
        Column("canton", ALL, "category", f"Canton of residence ('{ABROAD}' for cross-border residents).",
               _const([*geography.CANTONS, ABROAD]), reads=("patients.canton",)),
        Column("cross_border_insured", ALL, "flag", "Insured in Luxembourg, living abroad.", FLAG_KEYS,
               reads=("patients.cross_border_insured",)),
        Column("birth_year", ALL, "int", "Year of birth.", _years, (FIRST_YEAR, 2100), reads=_BIRTH),
        Column("birth_decade", ALL, "category", "Decade of birth ('1990s').", _decades, reads=_BIRTH),
        Column("age", ALL, "int", "Age in whole years at the extract's reference year.", None, (0, 120),
               reads=_AGE),
        Column("age_band", ALL, "category", "Ten-year band of age.", _const(AGE_BANDS), reads=_AGE),
        Column("dead", ALL, "flag", "Vital status is 'dead'.", FLAG_KEYS, reads=("patients.vital_status",)),
        Column("disease_group", ("patients", "diagnoses"), "category",
               "ICD-10 chapter of the patient's first diagnosis (in the diagnoses view: of that diagnosis).",
               lambda _: list(icd10_chapters()), reads=_FIRST),
        Column("primary_orpha", ("patients",), "category", "ORPHA code of the patient's first diagnosis.", _orpha_keys,
               reads=_FIRST),
        Column("diagnoses", ("patients",), "int", "Number of diagnoses the patient has (ruled-out ones not "
               "counted).", None, (0, 20), reads=("diagnoses.pseudonym", "diagnoses.excluded")),
        Column("phenotypes", ("patients",), "int", "Number of HPO terms the patient has (observed; excluded ones "
               "not counted).", None, (0, 100), reads=("phenotypes.pseudonym", "phenotypes.excluded")),
        Column("encounters", ("patients",), "int", "Number of encounters the patient has.", None, (0, 200),
               reads=("encounters.pseudonym",)),
        Column("first_contact_year", ("patients",), "int", "Year of first contact with a specialised centre.",
               _years, (FIRST_YEAR, 2100), reads=("patients.first_contact_date",)),
        # Diagnoses.
        Column("orpha_code", ("diagnoses",), "category", "ORPHA code.", _orpha_keys),
        Column("omim_code", ("diagnoses",), "category", "OMIM code (keys: the OMIM diseases HPO annotates).",
               lambda _: [f"OMIM:{n}" for n in sorted(omim_codes())]),
        Column("icd10_code", ("diagnoses",), "category", "ICD-10 code.", lambda _: sorted(icd10_codes())),
        Column("icd10_block", ("diagnoses",), "category", "ICD-10 block ('E70-E90').", lambda _: list(icd10_blocks()),
               reads=("icd10_code",)),
        Column("icd10_chapter", ("diagnoses",), "category", "ICD-10 chapter ('IV').", lambda _: list(icd10_chapters()),
               reads=("icd10_code",)),
        Column("status", ("diagnoses",), "category", "Confirmed, suspected, undiagnosed.",
               _const(schema.DIAGNOSIS_STATUSES)),
        Column("genetic", ("diagnoses",), "flag", "A causative gene is recorded (genetically confirmed).", FLAG_KEYS,
               reads=("gene_symbol",)),
        Column("excluded", ("diagnoses", "phenotypes"), "flag", "Ruled out (an excluded disease or finding).",
               FLAG_KEYS),
        Column("onset_age_years", ("diagnoses", "phenotypes"), "float", "Age at onset, in years.", None,
               (0.0, 120.0), 1),
        Column("diagnosis_age_years", ("diagnoses",), "float", "Age at diagnosis, in years.", None, (0.0, 120.0), 1,
               reads=("diagnosis_age_years", "onset_age_years", "diagnostic_delay_days")),
        Column("onset_age_band", ("diagnoses",), "category", "Ten-year band of age at onset.", _const(AGE_BANDS),
               reads=("onset_age_years",)),
        Column("diagnostic_delay_days", ("diagnoses",), "int", "Days from onset to diagnosis.", None, (0, 36_525)),
        Column("diagnostic_delay_years", ("diagnoses",), "float", "Years from onset to diagnosis.", None,
               (0.0, 100.0), 2, reads=("diagnostic_delay_days",)),
        Column("diagnosis_year", ("diagnoses",), "int", "Year of diagnosis.", _years, (FIRST_YEAR, 2100),
               reads=("diagnosis_date",)),
        Column("diagnosis_decade", ("diagnoses",), "category", "Decade of diagnosis.", _decades,
               reads=("diagnosis_date",)),
        # Phenotypes.
        Column("hpo_code", ("phenotypes",), "category", "HPO term.", _hpo_keys),
        Column("observed_year", ("phenotypes",), "int", "Year the term was recorded.", _years, (FIRST_YEAR, 2100),
               reads=("observed_date",)),
        # Encounters.
        Column("centre_code", ("encounters",), "category", "Centre.", _const([c.code for c in schema.CENTRES])),
        Column("centre_country", ("encounters",), "category", "Country of the centre.",
               _const(sorted({c.country for c in schema.CENTRES})), reads=("centre_country",)),
        Column("encounter_type", ("encounters",), "category", "Kind of encounter.", _const(schema.ENCOUNTER_TYPES)),
        Column("encounter_year", ("encounters",), "int", "Year of the encounter.", _years, (FIRST_YEAR, 2100),
               reads=("encounter_date",)),
    )
}  # fmt: skip


def column(table: str, name: str) -> Column:
    """The column ``name`` of the ``table`` view, or a one-line error listing what there is."""
    check_table(table)
    col = COLUMNS.get(name)
    if col is None or table not in col.tables:
        known = ", ".join(c.name for c in COLUMNS.values() if table in c.tables)
        raise BadInput(f"{table} has no column {name!r} (columns: {known})")
    return col


def reads(table: str, names: Sequence[str]) -> list[tuple[str, str]]:
    """The extract's (table, column) pairs the ``table`` view's columns ``names`` are made from.

    >>> reads("diagnoses", ["sex", "icd10_chapter"])
    [('patients', 'sex'), ('diagnoses', 'icd10_code')]
    """
    found: dict[tuple[str, str], None] = {}
    for name in names:
        for source in column(table, name).reads or (name,):
            held, _, own = source.rpartition(".")
            found[(held or table, own)] = None
    return list(found)


def check_table(table: str) -> str:
    if table not in TABLES:
        raise BadInput(f"no table {table!r}: use one of {', '.join(TABLES)}")
    return table


def public_keys(table: str, name: str, reference_year: int) -> list[object]:
    col = column(table, name)
    if col.keys is None:
        raise BadInput(
            f"{table}.{name} is numeric and has no public key set: group by a banded column "
            f"(e.g. age_band) or use histogram() with bin edges"
        )
    return list(col.keys(reference_year))


def _decade(year: pl.Expr) -> pl.Expr:
    return ((year // 10) * 10).cast(pl.String) + pl.lit("s")


def _identifier() -> pl.Expr:
    return pl.col("pseudonym").str.slice(0, 16).str.to_integer(base=16, dtype=pl.UInt64).alias(IDENTIFIER)


def build_view(folder: Path, table: str, reference_year: int) -> pl.DataFrame:
    """The ``table`` view of the extract (or twin) in ``folder``, in memory."""
    check_table(table)
    scan = {t: conform(t, pl.scan_parquet(folder / f"{t}.parquet")) for t in TABLES}
    diagnoses = scan["diagnoses"].join(icd10_groups_frame().lazy(), on="icd10_code", how="left")
    # A source with ages only has no birth year: its age is the age at the last record.
    age = pl.coalesce(
        pl.lit(reference_year) - pl.col("birth_year").cast(pl.Int32),
        pl.col("age_at_last_record_years").floor().cast(pl.Int32),
    ).clip(0, 120)
    patients = scan["patients"].select(
        "pseudonym",
        "sex",
        "vital_status",
        pl.col("canton").fill_null(ABROAD),
        "cross_border_insured",
        pl.col("birth_year").cast(pl.Int32),
        _decade(pl.col("birth_year").cast(pl.Int32)).alias("birth_decade"),
        age.alias("age"),
        age_band(age).alias("age_band"),
        (pl.col("vital_status") == "dead").alias("dead"),
        pl.col("first_contact_date").dt.year().cast(pl.Int32).alias("first_contact_year"),
    )
    if table == "patients":
        first = first_diagnoses(diagnoses).select(
            "pseudonym", "disease_group", pl.col("orpha_code").alias("primary_orpha")
        )
        # A ruled-out disease is no diagnosis, an excluded finding no phenotype.
        children = {
            **scan,
            "diagnoses": scan["diagnoses"].filter(~pl.col("excluded").fill_null(False)),
            "phenotypes": observed(scan["phenotypes"]),
        }
        counts = [children[t].group_by("pseudonym").agg(pl.len().alias(t)) for t in CHILD_TABLES]
        frame = patients.join(first, on="pseudonym", how="left")
        for c in counts:
            frame = frame.join(c, on="pseudonym", how="left")
        frame = frame.with_columns(pl.col(["diagnoses", "phenotypes", "encounters"]).fill_null(0).cast(pl.Int32))
    else:
        rows = {"diagnoses": diagnoses, "phenotypes": scan["phenotypes"], "encounters": scan["encounters"]}[table]
        frame = rows.join(patients.drop("first_contact_year"), on="pseudonym", how="inner")
        if table == "diagnoses":
            onset = pl.col("onset_age_years")
            delay_years = diagnostic_delay_years(pl.col("diagnostic_delay_days"))
            frame = frame.with_columns(
                pl.col("gene_symbol").is_not_null().alias("genetic"),
                pl.coalesce("diagnosis_age_years", (onset + delay_years).round(1)).alias("diagnosis_age_years"),
                age_band(onset).alias("onset_age_band"),
                delay_years.round(2).alias("diagnostic_delay_years"),
                pl.col("diagnosis_date").dt.year().cast(pl.Int32).alias("diagnosis_year"),
                _decade(pl.col("diagnosis_date").dt.year().cast(pl.Int32)).alias("diagnosis_decade"),
            )
        elif table == "phenotypes":
            frame = frame.with_columns(pl.col("observed_date").dt.year().cast(pl.Int32).alias("observed_year"))
        else:
            frame = frame.with_columns(pl.col("encounter_date").dt.year().cast(pl.Int32).alias("encounter_year"))
    columns = [c for c in COLUMNS.values() if table in c.tables]
    # Whole numbers as Int64: a bounded sum over many rows must not overflow (OpenDP checks).
    exprs = [pl.col(c.name).cast(pl.Int64) if c.kind == "int" else pl.col(c.name) for c in columns]
    return frame.select(_identifier(), *exprs).collect()


def view(folder: Path, table: str, reference_year: int, content_hash: str, cache: Path) -> pl.LazyFrame:
    """:func:`build_view`, written once per extract (immutable, keyed by content hash) and scanned.

    OpenDP receives the query's data as a serialised plan: a Parquet scan is a
    few bytes, where an in-memory frame would be copied whole for every query.
    """
    path = cache / f"{content_hash[:24]}-{reference_year}-v{VIEW_FORMAT}" / f"{table}.parquet"
    if not path.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = path.with_name(f".{table}.{os.getpid()}.tmp")
        build_view(folder, table, reference_year).write_parquet(tmp)
        os.replace(tmp, path)
    return pl.scan_parquet(path)
