"""From validated rows to the pseudonymised extract's tables.

What happens to each field, as the policy says:

- national ID, names, street, house number: dropped; the patient is known by
  a keyed pseudonym;
- date of birth: to ``birth_year`` and, with ``birth_date = "year-month"``,
  ``birth_month``;
- postcode and commune: dropped; the canton is kept (``residence =
  "country"`` keeps only the country);
- event dates: truncated to the first of their month, or, with
  ``event_dates = "shift"``, moved by the patient's keyed shift, so intervals
  stay exact;
- intervals a study needs (age at onset, at diagnosis, diagnostic delay) are
  computed from the exact dates before they are generalised; a source with
  ages only (ISO 8601 durations) gives them from the ages instead, and the
  ``*_basis`` column says which (``dates`` or ``ages``);
- ages (at the last record, at death, at onset) become years to 0.1;
- columns outside the schema (free text) are dropped unless the policy keeps them.
"""

from __future__ import annotations

from collections.abc import Iterable

import polars as pl

from research_kit.core.config import PseudonymisePolicy
from research_kit.core.errors import BadInput
from research_kit.model.facts import YEAR_DAYS
from research_kit.model.onsets import duration_days, duration_years
from research_kit.model.tables import CODE_COLUMNS, SOURCE, VALUE_SOURCES
from research_kit.pseudonymise.keys import Key
from research_kit.pseudonymise.pseudonyms import date_shifts, pseudonyms_with_order

EVENT_DATES = {
    "patients": ("first_contact_date", "date_of_death"),
    "diagnoses": ("onset_date", "diagnosis_date"),
    "phenotypes": ("observed_date",),
    "encounters": ("encounter_date",),
}


def _n(name: str) -> pl.Expr:
    return pl.col(f"_n_{name}")


def _text(name: str) -> pl.Expr:
    return pl.when(_n(name) == "").then(None).otherwise(_n(name)).alias(name)


def _flag(name: str) -> pl.Expr:
    return pl.when(_n(name) == "").then(None).otherwise(_n(name) == "yes").alias(name)


def _event(name: str, policy: PseudonymisePolicy) -> pl.Expr:
    exact = pl.col(f"_d_{name}")
    if policy.event_dates == "shift":
        return (exact + pl.duration(days=pl.col("shift_days"))).alias(name)
    return exact.dt.truncate("1mo").alias(name)


def _kept(table: str, extra: tuple[str, ...], policy: PseudonymisePolicy) -> list[pl.Expr]:
    return [pl.col(c) for c in extra if f"{table}.{c}" in policy.keep_free_text]


def patient_map(patients: pl.DataFrame, key: Key, policy: PseudonymisePolicy) -> pl.DataFrame:
    """National ID -> pseudonym (and date shift) for the patients in the extract, in pseudonym order.

    ``_pidx`` is a patient's row in this map. The map is sorted by the
    pseudonym's first 64 bits, so ``_pidx`` is also the order in which every
    table's rows are written: no row order follows the source's (which may
    follow national IDs). Other tables carry the 4-byte ``_pidx`` and fetch the
    pseudonym only when written.
    """
    ids = patients.get_column("_n_national_id")
    names, order = pseudonyms_with_order(key, ids)
    if names.n_unique() != len(names):  # distinct identifiers that one normalisation makes equal: never merged
        raise BadInput(
            f"{len(names) - names.n_unique():,} accepted patients share a pseudonym with another one (their "
            "identifiers differ only in punctuation): fix the export so that each person has one identifier"
        )
    mapping = pl.DataFrame({"_nid": ids, "pseudonym": names, "_order": order})
    if policy.event_dates == "shift":
        mapping = mapping.with_columns(date_shifts(key, ids, policy.max_shift_days))
    return mapping.sort("_order").drop("_order").with_row_index("_pidx")


def patients_table(
    included: pl.LazyFrame,
    mapping: pl.DataFrame,
    policy: PseudonymisePolicy,
    extra: tuple[str, ...] = (),
    absent: Iterable[str] = (),
) -> pl.LazyFrame:
    """The extract's patients, generalised, with ``_pidx``: the caller writes the pseudonym (as for other tables)."""
    frame = included.join(
        mapping.lazy().select("_nid", "_pidx", *(["shift_days"] if "shift_days" in mapping.columns else [])),
        left_on="_n_national_id",
        right_on="_nid",
        how="inner",
        maintain_order="left",
    )
    birth = pl.col("_d_date_of_birth")
    residence = pl.lit(None, dtype=pl.String) if policy.residence == "country" else _text("canton")
    month = birth.dt.month().cast(pl.Int8) if policy.birth_date == "year-month" else pl.lit(None, dtype=pl.Int8)
    return frame.select(
        birth.dt.year().cast(pl.Int16).alias("birth_year"),
        month.alias("birth_month"),
        _text("sex"),
        _text("vital_status"),
        _event("date_of_death", policy).alias("death_date"),
        residence.alias("canton"),
        _text("country"),
        _flag("cross_border_insured"),
        _event("first_contact_date", policy),
        _flag("consent_reuse"),
        _flag("agrees_to_contact"),
        _years("age_at_last_record", absent).alias("age_at_last_record_years"),
        _years("age_at_death", absent).alias("age_at_death_years"),
        _text(SOURCE).alias("sources"),
        _text(VALUE_SOURCES),
        *_kept("patients", extra, policy),
        "_pidx",
    )


def child_table(
    table: str,
    accepted: pl.LazyFrame,
    policy: PseudonymisePolicy,
    extra: tuple[str, ...] = (),
    absent: Iterable[str] = (),
) -> pl.LazyFrame:
    """Accepted rows of the extract's patients (those with a ``_pidx``), generalised, with ``_pidx``.

    ``accepted`` carries the pseudonym map's ``_pidx`` (and ``shift_days``),
    joined at validation; the caller writes the pseudonym (see :func:`patient_map`).
    """
    frame = accepted.filter(pl.col("_pidx").is_not_null())
    dates = [_event(c, policy) for c in EVENT_DATES[table]]
    if table == "diagnoses":
        columns = [
            *(_text(c) for c in CODE_COLUMNS.values()),
            _text("status"),
            _flag("excluded").fill_null(False),
            *dates,
            *_diagnosis_ages(absent),
            _text("gene_symbol"),
            _text("variant_hgvs"),
        ]
    elif table == "phenotypes":
        columns = [
            _text("hpo_code"),
            _flag("excluded").fill_null(False),
            *dates,
            _years("onset_age", absent).alias("onset_age_years"),
            _text("onset_class"),
        ]
    else:
        columns = [*dates, _text("centre_code"), _text("centre_country"), _text("encounter_type")]
    return frame.select(*columns, _text(SOURCE), *_kept(table, extra, policy), "_pidx")


# Extract columns that hold one value in every row when the source lacks the column they come from: (that
# column, the value). Written apart from the sort of a table (ingest.pipeline._write_sorted): a constant need
# not be sorted.
CONSTANT_WHEN_ABSENT: dict[str, dict[str, tuple[str, pl.Expr]]] = {
    "patients": {
        "age_at_last_record_years": ("age_at_last_record", pl.lit(None, dtype=pl.Float64)),
        "age_at_death_years": ("age_at_death", pl.lit(None, dtype=pl.Float64)),
        "sources": (SOURCE, pl.lit(None, dtype=pl.String)),
        VALUE_SOURCES: (VALUE_SOURCES, pl.lit(None, dtype=pl.String)),
    },
    "diagnoses": {
        **{c: (c, pl.lit(None, dtype=pl.String)) for c in ("omim_code", "icd11_code", "mondo_code", "onset_class")},
        "excluded": ("excluded", pl.lit(False)),
        SOURCE: (SOURCE, pl.lit(None, dtype=pl.String)),
    },
    "phenotypes": {
        "excluded": ("excluded", pl.lit(False)),
        "onset_age_years": ("onset_age", pl.lit(None, dtype=pl.Float64)),
        "onset_class": ("onset_class", pl.lit(None, dtype=pl.String)),
        SOURCE: (SOURCE, pl.lit(None, dtype=pl.String)),
    },
    "encounters": {SOURCE: (SOURCE, pl.lit(None, dtype=pl.String))},
}


def constant_columns(table: str, absent: Iterable[str]) -> dict[str, pl.Expr]:
    """The extract columns of ``table`` that are constant because the source lacks what they come from."""
    missing = set(absent)
    return {out: value for out, (source, value) in CONSTANT_WHEN_ABSENT[table].items() if source in missing}


def _days(column: str, absent: Iterable[str]) -> pl.Expr:
    """An age column in days; a constant null where the source does not have the column (nothing to parse)."""
    return pl.lit(None, dtype=pl.Float64) if column in set(absent) else duration_days(_n(column))


def _years(column: str, absent: Iterable[str]) -> pl.Expr:
    return pl.lit(None, dtype=pl.Float64) if column in set(absent) else duration_years(_n(column))


def _diagnosis_ages(absent: Iterable[str] = ()) -> list[pl.Expr]:
    """Age at onset, at diagnosis and the diagnostic delay: from the exact dates where both are known, else
    from the ages the source gives; each with the basis it came from."""
    birth, onset, diagnosis = pl.col("_birth"), pl.col("_d_onset_date"), pl.col("_d_diagnosis_date")
    onset_days = pl.coalesce((onset - birth).dt.total_days().cast(pl.Float64), _days("onset_age", absent))
    diagnosis_days = pl.coalesce((diagnosis - birth).dt.total_days().cast(pl.Float64), _days("diagnosis_age", absent))
    by_dates = onset.is_not_null() & diagnosis.is_not_null()
    by_ages = (diagnosis_days - onset_days).round(0)
    delay = pl.when(by_dates).then((diagnosis - onset).dt.total_days()).otherwise(by_ages)

    def basis(dated: pl.Expr, value: pl.Expr) -> pl.Expr:
        return pl.when(dated).then(pl.lit("dates")).when(value.is_not_null()).then(pl.lit("ages"))

    onset_dated = onset.is_not_null() & birth.is_not_null()
    diagnosis_dated = diagnosis.is_not_null() & birth.is_not_null()
    # A delay from a date on one side and an age on the other says so.
    delay_basis = (
        pl.when(by_dates)
        .then(pl.lit("dates"))
        .when(delay.is_null())
        .then(pl.lit(None, dtype=pl.String))
        .when(onset_dated | diagnosis_dated)
        .then(pl.lit("dates and ages"))
        .otherwise(pl.lit("ages"))
    )
    return [
        (onset_days / YEAR_DAYS).round(1).alias("onset_age_years"),
        basis(onset_dated, onset_days).alias("onset_age_basis"),
        _text("onset_class"),
        (diagnosis_days / YEAR_DAYS).round(1).alias("diagnosis_age_years"),
        delay.cast(pl.Int32).alias("diagnostic_delay_days"),
        delay_basis.alias("diagnostic_delay_basis"),
    ]
