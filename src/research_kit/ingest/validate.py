"""Validation rules for every row of a raw export, as Polars expressions.

Each table's frame gains:

- ``_row``: the row's number in its file (from 1, header excluded);
- ``_n_<column>``: the value normalised (whitespace trimmed; case of coded
  values settled). Normalising is the only change ever made to a value;
- ``_d_<column>``: dates parsed (null when absent or invalid);
- ``_flags``: one bit per rule the row breaks (``0`` for a good row); the
  rules' labels, ``"field:reason"``, come back beside the frame, and
  :func:`reasons_text` spells a row's bits out. Bits rather than lists of
  strings keep validation fast: most rows break nothing.

Reasons: ``missing_mandatory``, ``invalid_value``, ``invalid_national_id``,
``bad_check_digit``, ``duplicate_patient``, ``unparseable_date`` (not
YYYY-MM-DD), ``impossible_date`` (YYYY-MM-DD but no such day), ``future_date``,
``date_before_birth``, ``death_before_birth``, ``onset_before_birth``,
``onset_after_diagnosis``, ``event_after_death``, ``date_out_of_range``, ``unknown_code``,
``unknown_patient``, ``patient_quarantined``, ``identifier_not_accepted`` (a registry identifier where
the policy accepts national IDs only), ``onset_after_diagnosis`` (also between ages); ``code:missing_mandatory`` (a
diagnosis with no code of any system); ``source:<issue>`` (what a source reader found, see
:mod:`research_kit.ingest.converted`); and, for any cell,
``cell:field_too_long`` (over :data:`MAX_FIELD_BYTES`), ``cell:formula_like``
(a cell a spreadsheet would run: it starts with ``=`` or ``@``, or with ``+``
or ``-`` followed by more than digits and number punctuation) and, for a whole row, ``row:wrong_field_count``
(more or fewer fields than the header: the reader finds these).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from functools import reduce

import numpy as np
import polars as pl

from research_kit.ingest.converted import ISSUES, SOURCE_ISSUE
from research_kit.model import geography
from research_kit.model.codes import UNDIAGNOSED_ORPHA, CodeSystems, hpo_id, orpha_id
from research_kit.model.disease_codes import INVALID, UNLISTED, check_code
from research_kit.model.facts import YEAR_DAYS
from research_kit.model.national_id import check_digits
from research_kit.model.onsets import ONSET_CLASSES, duration_days
from research_kit.model.tables import (
    CODE_COLUMNS,
    DIAGNOSIS_STATUSES,
    ENCOUNTER_TYPES,
    REGISTRY_PREFIX,
    SEX_VALUES,
    VITAL_STATUSES,
    Table,
)

ISO_DATE = r"^\d{4}-\d{2}-\d{2}$"
MAX_FIELD_BYTES = 65_536  # no field of the registry's tables comes near; a longer one is a broken export
# OWASP's CSV-injection prefixes (and their full-width forms), in one regex: a cell starting with = or @, or with
# a sign followed somewhere by more than digits and number punctuation (-5, +352 691 123, -, +/- are not; -1+cmd
# is). Matched on the trimmed value; anchored, so most cells fail at their first character.
FORMULA = r"^\s*([=@\x{FF1D}\x{FF20}]|[+\-\x{FF0B}\x{FF0D}].*[^0-9\s().,/\-])"
# An HGVS variant as sources write it: an optional reference sequence (NM_033305.3:), then c., g., n., m., r. or p.
HGVS = r"^([A-Z]{1,2}_?[0-9]+(\.[0-9]+)?(\([A-Za-z0-9_.-]+\))?:)?[cgnmrp]\.\S+$"
GENE = r"^[A-Za-z0-9][A-Za-z0-9@._-]{0,31}$"  # an HGNC symbol's shape (the offline list is partial)
# A registry identifier: printable, at most 128 characters.
REGISTRY_ID = "^" + REGISTRY_PREFIX + r"[^\x00-\x1f\x7f]{1,128}$"
FLAGS = ("yes", "no")
# Coded columns compared without regard to case, and the canonical spelling of each value.
CANONICAL: dict[str, tuple[str, ...]] = {
    "sex": SEX_VALUES,
    "vital_status": VITAL_STATUSES,
    "cross_border_insured": FLAGS,
    "consent_reuse": FLAGS,
    "agrees_to_contact": FLAGS,
    "canton": geography.CANTONS,
    "status": DIAGNOSIS_STATUSES,
    "encounter_type": ENCOUNTER_TYPES,
    "excluded": FLAGS,
}
UPPER = ("country", "hpo_code", "onset_class", "centre_code", "centre_country")
CODE_SYSTEMS = {column: system for system, column in CODE_COLUMNS.items()}
AGES = ("age_at_last_record", "age_at_death", "onset_age", "diagnosis_age")


def code_spelling(system: str) -> Callable[[str], str]:
    """A disease code as the extract writes it (``ORPHA:558``, ``OMIM:154700``, ``Q87.4``); unreadable: as given."""

    def spell(value: str) -> str:
        found = check_code(value, system).code
        if found is None:
            return value
        return found.code if system in ("ICD10", "ICD11") else found.curie

    return spell


def normalised(frame: pl.LazyFrame, table: Table, absent: Iterable[str] = ()) -> pl.LazyFrame:
    """Add ``_n_<column>`` for every column: trimmed, and coded values in their canonical case.

    Trimmed once into its column, then canonicalised from that column: in the
    streaming engine an expression used twice is computed twice. A column the
    file does not have (``absent``: an optional one) is the empty text, a
    constant, so that no rule spends time on millions of empty values.
    """
    missing = set(absent)
    trimmed = frame.with_columns(
        (pl.lit("", dtype=pl.String) if c in missing else pl.col(c).fill_null("").str.strip_chars()).alias(f"_n_{c}")
        for c in table.columns
    )
    settled = []
    for name in (c for c in table.columns if c not in missing):
        value = _n(name)
        if name in CANONICAL:
            lookup = {v.lower(): v for v in CANONICAL[name]}
            settle = _per_distinct(lambda v, lookup=lookup: lookup.get(v.lower(), v))  # type: ignore[misc]
        elif name in CODE_SYSTEMS:
            settle = _per_distinct(code_spelling(CODE_SYSTEMS[name]))
        elif name in UPPER:
            settle = _per_distinct(str.upper)
        else:
            continue
        settled.append(value.map_batches(settle, return_dtype=pl.String, is_elementwise=True))
    return trimmed.with_columns(settled)


def _per_distinct(change: Callable[[str], str]) -> Callable[[pl.Series], pl.Series]:
    """Apply ``change`` to each distinct value of a batch rather than to every row.

    Coded columns hold few distinct values (sexes, centres, countries), so this
    is far cheaper than changing the case of millions of strings.
    """

    def settle(batch: pl.Series) -> pl.Series:
        mapping = {v: c for v in batch.unique().to_list() if v and (c := change(v)) != v}
        if not mapping:  # the usual case: nothing to change, and nothing to copy
            return batch
        return batch.replace_strict(mapping, default=batch, return_dtype=pl.String)

    return settle


def _n(name: str) -> pl.Expr:
    return pl.col(f"_n_{name}")


def _d(name: str) -> pl.Expr:
    return pl.col(f"_d_{name}")


def _a(name: str) -> pl.Expr:
    return pl.col(f"_a_{name}")


def parsed_ages(table: Table, absent: Iterable[str] = ()) -> list[pl.Expr]:
    """``_a_<column>``: each age read once, in days (null when absent or not a duration); rules read these
    rather than parsing the text again (in the streaming engine an expression used twice runs twice)."""
    missing = set(absent)
    return [
        (pl.lit(None, dtype=pl.Float64) if c in missing else duration_days(_n(c))).alias(f"_a_{c}")
        for c in AGES
        if c in table.columns
    ]


@dataclass(frozen=True)
class Rule:
    label: str  # "field:reason"
    broken: pl.Expr  # true where a row breaks the rule


@dataclass(frozen=True)
class Validated:
    frame: pl.LazyFrame
    labels: tuple[str, ...]  # bit i of _flags means labels[i]


def _reason(condition: pl.Expr, field: str, reason: str) -> Rule:
    return Rule(f"{field}:{reason}", condition)


def parsed_dates(columns: Iterable[str]) -> list[pl.Expr]:
    return [_n(c).str.strptime(pl.Date, "%Y-%m-%d", strict=False).alias(f"_d_{c}") for c in columns]


def date_reasons(column: str, *, mandatory: bool, today: date, earliest: date) -> list[Rule]:
    value = _n(column)
    shaped = value.str.contains(ISO_DATE)
    reasons = [
        _reason((value != "") & ~shaped, column, "unparseable_date"),
        _reason(shaped & _d(column).is_null(), column, "impossible_date"),
        _reason(_d(column) > pl.lit(today), column, "future_date"),
        _reason(_d(column) < pl.lit(earliest), column, "date_out_of_range"),
    ]
    if mandatory:
        reasons.append(_reason(value == "", column, "missing_mandatory"))
    return reasons


def mandatory_reasons(table: Table, skip: Iterable[str] = ()) -> list[Rule]:
    return [_reason(_n(c) == "", c, "missing_mandatory") for c in table.mandatory if c not in set(skip)]


def allowed_reason(column: str, allowed: Iterable[str]) -> Rule:
    return _reason((_n(column) != "") & ~_n(column).is_in(list(allowed)), column, "invalid_value")


def shape_reasons(
    table: Table, ragged: Mapping[int, int], extra: Iterable[str] = (), absent: Iterable[str] = ()
) -> list[Rule]:
    """Rules on the cells as read, for every column (the table's and any extra one; not those the file does not
    have), and on the row's shape.

    One label each, ``cell:...`` and ``row:...`` (the flags hold 64 labels per table, not two per column): the
    quarantined row shows which cell.
    """
    missing = set(absent)
    cells = [pl.col(c) for c in (*table.columns, *extra) if c not in missing]
    return [
        *([_reason(pl.col("_row").is_in(sorted(ragged)), "row", "wrong_field_count")] if ragged else []),
        _reason(pl.any_horizontal(c.str.len_bytes() > MAX_FIELD_BYTES for c in cells), "cell", "field_too_long"),
        _reason(pl.any_horizontal(_formula_like(c) for c in cells), "cell", "formula_like"),
    ]


def _formula_like(cell: pl.Expr) -> pl.Expr:
    return cell.str.contains(FORMULA)


# A rule on a column the file does not have cannot fire (its value is empty), except this one, which also
# compares a date with an age.
READS_OTHERS = frozenset({"onset_age:onset_after_diagnosis"})


def present(rules: list[Rule], absent: Iterable[str]) -> list[Rule]:
    """The rules that can fire on a file without the ``absent`` columns (the others would only cost time)."""
    missing = set(absent)
    return [r for r in rules if r.label.split(":", 1)[0] not in missing or r.label in READS_OTHERS]


def with_reasons(frame: pl.LazyFrame, rules: list[Rule]) -> Validated:
    """Add ``_flags``: bit i set where the row breaks the i-th distinct label's rules."""
    by_label: dict[str, pl.Expr] = {}
    for rule in rules:  # rules sharing a label share a bit
        broken = rule.broken.fill_null(False)
        by_label[rule.label] = by_label[rule.label] | broken if rule.label in by_label else broken
    if len(by_label) > 64:
        raise ValueError("at most 64 distinct rules per table fit in the flags")
    bits = [
        pl.when(broken).then(pl.lit(1 << i, dtype=pl.UInt64)).otherwise(pl.lit(0, dtype=pl.UInt64))
        for i, broken in enumerate(by_label.values())
    ]
    flags = reduce(lambda a, b: a | b, bits).alias("_flags")
    return Validated(frame.with_columns(flags), tuple(by_label))


def has_reasons() -> pl.Expr:
    return pl.col("_flags") != 0


def reasons_text(labels: tuple[str, ...]) -> pl.Expr:
    """The row's broken rules as ``"field:reason; field:reason"`` (for the few quarantined rows)."""
    parts = [pl.when(_bit(i)).then(pl.lit(label)) for i, label in enumerate(labels)]
    return pl.concat_list(parts).list.drop_nulls().list.join("; ").alias("reasons")


def reason_counts(labels: tuple[str, ...]) -> list[pl.Expr]:
    """Rows breaking each rule, one column per label."""
    return [_bit(i).sum().alias(label) for i, label in enumerate(labels)]


def staged_columns(
    frame: pl.LazyFrame,
    table: Table,
    extra: tuple[str, ...],
    *,
    keep_national_id: bool = True,
    absent: Iterable[str] = (),
) -> pl.LazyFrame:
    """What later steps need: normalised values and dates, flags, and raw values only of refused rows.

    ``_normed`` has bit i set where the i-th column's value was changed by normalising. Columns the file does
    not have (``absent``) are not written: :func:`with_absent_values` adds them back, as constants.
    """
    missing = set(absent)
    changed = [
        pl.when(pl.col(c).fill_null("") != _n(c))
        .then(pl.lit(1 << i, dtype=pl.UInt64))
        .otherwise(pl.lit(0, dtype=pl.UInt64))
        for i, c in enumerate(table.columns)
        if c not in missing
    ]
    names = frame.collect_schema().names()
    lookups = [c for c in ("_birth", "_pidx", "shift_days") if c in names]
    # A date's text is not needed once parsed; nor a child row's national ID once its patient is looked up.
    dropped = [f"_n_{c[3:]}" for c in names if c.startswith("_d_")] + ([] if keep_national_id else ["_n_national_id"])
    dropped += [f"_n_{c}" for c in missing] + [f"_a_{c}" for c in missing]
    values = pl.col("^_[nd]_.*$").exclude(dropped)
    return frame.select(
        "_row",
        "_flags",
        reduce(lambda a, b: a | b, changed).alias("_normed"),
        values,
        *lookups,
        *extra,
        *(pl.when(has_reasons()).then(pl.col(c)).alias(c) for c in table.columns if c not in missing),
    )


def with_absent_values(staged: pl.LazyFrame, absent: Iterable[str]) -> pl.LazyFrame:
    """A staged table with the columns its file did not have, as constants: empty text, no value."""
    return staged.with_columns(
        c
        for name in absent
        for c in (pl.lit("", dtype=pl.String).alias(f"_n_{name}"), pl.lit(None, dtype=pl.String).alias(name))
    )


def normalised_count(i: int) -> pl.Expr:
    """Rows whose i-th column was changed by normalising (see :func:`staged_columns`)."""
    return (pl.col("_normed").and_(pl.lit(1 << i, dtype=pl.UInt64)) != 0).sum()


def _bit(i: int) -> pl.Expr:
    return pl.col("_flags").and_(pl.lit(1 << i, dtype=pl.UInt64)) != 0


def national_id_ok(ids: pl.Series) -> pl.Series:
    """True where a (normalised) national ID has 13 digits, a real date and both check digits right."""
    shaped = ids.str.contains(r"^\d{13}$").fill_null(False)
    real_date = ids.str.slice(0, 8).str.strptime(pl.Date, "%Y%m%d", strict=False).is_not_null()
    stems = pl.select(pl.when(shaped).then(ids.str.slice(0, 11)).otherwise(pl.lit("0")).cast(pl.Int64)).to_series()
    luhn, verhoeff = check_digits(stems.to_numpy())
    checks = pl.Series(luhn.astype(np.int64) * 10 + verhoeff.astype(np.int64))
    given = pl.select(pl.when(shaped).then(ids.str.slice(11, 2)).otherwise(pl.lit("-1")).cast(pl.Int64)).to_series()
    return shaped & real_date & (given == checks)


def first_occurrences(frame: pl.LazyFrame) -> pl.DataFrame:
    """``_row`` and ``_first`` (the first row with its national ID), from the ID column alone."""
    ids = frame.select(pl.col("national_id").fill_null("").str.strip_chars()).with_row_index("_row", offset=1)
    return ids.select("_row", pl.col("national_id").is_first_distinct().alias("_first")).collect()


OLDEST = 130  # years: an age above this is a typing error, not a person


def age_reasons(table: Table) -> list[Rule]:
    """An age given that is not an ISO 8601 duration (``P6Y3M``), or older than anyone is."""
    return [
        _reason((_n(c) != "") & (_a(c).is_null() | (_a(c) > OLDEST * YEAR_DAYS)), c, "invalid_value")
        for c in AGES
        if c in table.columns
    ]


def _days_from_birth(date_column: str, age_column: str) -> pl.Expr:
    """Days from birth to an event, from its date where the birth date is known, else from its age."""
    by_date = (_d(date_column) - pl.col("_birth")).dt.total_days().cast(pl.Float64)
    return pl.coalesce(by_date, _a(age_column))


def source_reasons(extra: Iterable[str]) -> list[Rule]:
    """What a source reader found in a row (its ``source_issue``): one rule per kind of issue."""
    if SOURCE_ISSUE not in set(extra):
        return []
    issue = pl.col(SOURCE_ISSUE).fill_null("")
    return [_reason(issue.str.contains(f":{kind}(;|$)"), "source", kind) for kind in ISSUES]


def onset_class_reason(table: Table) -> list[Rule]:
    value = _n("onset_class")
    return [_reason((value != "") & ~value.is_in(list(ONSET_CLASSES)), "onset_class", "unknown_code")]


def identifier_reasons(kinds: Iterable[str]) -> list[Rule]:
    """A national ID's shape and check digits, or a registry identifier's shape and the policy's leave."""
    nid = _n("national_id")
    registry = nid.str.starts_with(REGISTRY_PREFIX)
    shaped_id = (
        nid.str.contains(r"^\d{13}$") & nid.str.slice(0, 8).str.strptime(pl.Date, "%Y%m%d", strict=False).is_not_null()
    )
    rules = [
        _reason((nid != "") & ~registry & ~shaped_id, "national_id", "invalid_national_id"),
        _reason(registry & ~nid.str.contains(REGISTRY_ID), "national_id", "invalid_national_id"),
        _reason(shaped_id & ~pl.col("_id_ok"), "national_id", "bad_check_digit"),
        _reason((nid != "") & ~pl.col("_first"), "national_id", "duplicate_patient"),
    ]
    if "registry" not in set(kinds):
        rules.append(_reason(registry, "national_id", "identifier_not_accepted"))
    return rules


def validate_patients(
    frame: pl.LazyFrame,
    table: Table,
    *,
    today: date,
    earliest: date,
    ragged: Mapping[int, int] | None = None,
    extra: Iterable[str] = (),
    identifier_kinds: Iterable[str] = ("national", "registry"),
    undated_sources: Iterable[str] = (),
    absent: Iterable[str] = (),
) -> Validated:
    """Patients' rules. A date of birth is mandatory unless the source gives an age at the last record instead;
    a dead patient needs a date of death or an age at death. A patient only sources without dates hold
    (``undated_sources``: their mappings say ``dates = "ages"``, e.g. published cases) is asked for neither:
    what such a source does not record is incomplete (the quality report counts it), not invalid."""
    dates = ("date_of_birth", "first_contact_date", "date_of_death")
    staged = (
        normalised(frame.with_row_index("_row", offset=1), table, absent)
        .with_columns(*parsed_dates(dates), *parsed_ages(table, absent))
        .with_columns(
            _n("national_id").map_batches(national_id_ok, return_dtype=pl.Boolean, is_elementwise=True).alias("_id_ok")
        )
        .join(first_occurrences(frame).lazy(), on="_row", how="left", maintain_order="left")
    )
    birth, death = _d("date_of_birth"), _d("date_of_death")
    resident = _n("country") == "LU"
    aged = _n("age_at_last_record") != ""
    dead = _n("vital_status") == "dead"
    undated = set(undated_sources)
    # Every source holding the patient (a merged one has several, ";"-separated) has no dates.
    ageless_ok = (
        _n("source").str.split(";").list.eval(pl.element().is_in(sorted(undated))).list.all().fill_null(False)
        if undated
        else pl.lit(False)
    )
    reasons = [
        *mandatory_reasons(table),
        *identifier_reasons(identifier_kinds),
        allowed_reason("sex", SEX_VALUES),
        allowed_reason("vital_status", VITAL_STATUSES),
        *(allowed_reason(c, FLAGS) for c in ("cross_border_insured", "consent_reuse", "agrees_to_contact")),
        _reason((_n("country") != "") & ~_n("country").str.contains(r"^[A-Z]{2}$"), "country", "invalid_value"),
        _reason(resident & (_n("canton") == ""), "canton", "missing_mandatory"),
        _reason(resident & (_n("canton") != "") & ~_n("canton").is_in(geography.CANTONS), "canton", "invalid_value"),
        *date_reasons("date_of_birth", mandatory=False, today=today, earliest=earliest),
        _reason((_n("date_of_birth") == "") & ~aged & ~ageless_ok, "date_of_birth", "missing_mandatory"),
        *date_reasons("first_contact_date", mandatory=False, today=today, earliest=earliest),
        *date_reasons("date_of_death", mandatory=False, today=today, earliest=earliest),
        *age_reasons(table),
        _reason((_n("postcode") != "") & ~_n("postcode").str.contains(r"^\d{4,5}$"), "postcode", "invalid_value"),
        _reason(_d("first_contact_date") < birth, "first_contact_date", "date_before_birth"),
        _reason(death < birth, "date_of_death", "death_before_birth"),
        _reason((_n("date_of_death") != "") & ~dead, "date_of_death", "invalid_value"),
        _reason((_n("age_at_death") != "") & ~dead, "age_at_death", "invalid_value"),
        _reason(
            _a("age_at_last_record") > _a("age_at_death"),
            "age_at_last_record",
            "event_after_death",
        ),
        _reason(
            (_n("date_of_death") == "") & (_n("age_at_death") == "") & dead & ~ageless_ok,
            "date_of_death",
            "missing_mandatory",
        ),
        *source_reasons(extra),
        *shape_reasons(table, ragged or {}, extra, absent),
    ]
    done = with_reasons(staged, present(reasons, absent))
    return Validated(done.frame.drop("_id_ok", "_first"), done.labels)


def patient_lookup(patients: pl.LazyFrame, absent: Iterable[str] = ()) -> pl.DataFrame:
    """Every national ID of the patients file: ``_ok``, ``_birth`` and ``_death`` where its patient was accepted.

    A national ID with a null ``_ok`` belongs to a quarantined patient row (``_birth`` is null also for an
    accepted patient of a source with ages only).
    """
    accepted = patients.filter(~has_reasons()).select(
        pl.col("_n_national_id").alias("_nid"),
        pl.lit(True).alias("_ok"),
        pl.col("_d_date_of_birth").alias("_birth"),
        pl.col("_d_date_of_death").alias("_death"),
        *(
            (pl.lit(None, dtype=pl.Float64) if age in set(absent) else duration_days(pl.col(f"_n_{age}"))).alias(name)
            for age, name in (("age_at_last_record", "_last_days"), ("age_at_death", "_death_days"))
        ),
    )
    known = patients.select(pl.col("_n_national_id").unique().alias("_nid"))
    return known.join(accepted, on="_nid", how="left").collect(engine="streaming")


def validate_child(
    frame: pl.LazyFrame,
    table: Table,
    *,
    today: date,
    earliest: date,
    codes: CodeSystems,
    known: pl.DataFrame,
    ragged: Mapping[int, int] | None = None,
    extra: Iterable[str] = (),
    absent: Iterable[str] = (),
) -> Validated:
    """Diagnoses, phenotypes or encounters: their own rules, then against the patients.

    ``known`` is :func:`patient_lookup`'s frame, to which the caller may have
    joined the pseudonym map: its columns come along for later steps.
    """
    date_cols = {"diagnoses": ("onset_date", "diagnosis_date"), "phenotypes": ("observed_date",)}.get(
        table.name, ("encounter_date",)
    )
    staged = (
        normalised(frame.with_row_index("_row", offset=1), table, absent)
        .with_columns(*parsed_dates(date_cols), *parsed_ages(table, absent))
        .join(
            known.lazy(), left_on="_n_national_id", right_on="_nid", how="left", maintain_order="left", coalesce=False
        )
    )
    nid = _n("national_id")
    reasons = [
        *mandatory_reasons(table, skip=date_cols),
        _reason((nid != "") & pl.col("_nid").is_null(), "national_id", "unknown_patient"),
        _reason(pl.col("_nid").is_not_null() & pl.col("_ok").is_null(), "national_id", "patient_quarantined"),
    ]
    for col in date_cols:
        reasons += date_reasons(col, mandatory=col in table.mandatory, today=today, earliest=earliest)
        if col != "onset_date":
            reasons.append(_reason(_d(col) < pl.col("_birth"), col, "date_before_birth"))
        reasons.append(_reason(_d(col) > pl.col("_death"), col, "event_after_death"))
    if table.name in ("diagnoses", "phenotypes"):
        reasons += [allowed_reason("excluded", FLAGS), *age_reasons(table), *onset_class_reason(table)]
        for age in ("onset_age", "diagnosis_age"):
            if age in table.columns:  # an age after the patient's death, or after their last record
                days = _a(age)
                reasons += [
                    _reason(days > pl.col("_death_days"), age, "event_after_death"),
                    _reason(days > pl.col("_last_days"), age, "event_after_last_record"),
                ]
    if table.name == "diagnoses":
        undiagnosed = orpha_id(UNDIAGNOSED_ORPHA)
        gene = _n("gene_symbol")
        coded = pl.any_horizontal(_n(c) != "" for c in CODE_COLUMNS.values())
        reasons += [
            _reason(~coded, "code", "missing_mandatory"),
            *(
                _reason(
                    _n(c).map_batches(_invalid_codes(s), return_dtype=pl.Boolean, is_elementwise=True),
                    c,
                    "unknown_code",
                )
                for s, c in CODE_COLUMNS.items()
            ),
            allowed_reason("status", DIAGNOSIS_STATUSES),
            _reason((_n("status") == "undiagnosed") != (_n("orpha_code") == undiagnosed), "status", "invalid_value"),
            _reason(_d("onset_date") < pl.col("_birth"), "onset_date", "onset_before_birth"),
            _reason(_d("onset_date") > _d("diagnosis_date"), "onset_date", "onset_after_diagnosis"),
            # Onset after diagnosis when either is an age: compared in days from birth, whatever each is given as.
            _reason(
                ~(_d("onset_date").is_not_null() & _d("diagnosis_date").is_not_null())
                & (_days_from_birth("onset_date", "onset_age") > _days_from_birth("diagnosis_date", "diagnosis_age")),
                "onset_age",
                "onset_after_diagnosis",
            ),
            _reason((gene != "") & ~gene.str.contains(GENE), "gene_symbol", "invalid_value"),
            _reason((_n("variant_hgvs") != "") & (gene == ""), "variant_hgvs", "invalid_value"),
            _reason(
                (_n("variant_hgvs") != "") & ~_n("variant_hgvs").str.contains(HGVS), "variant_hgvs", "invalid_value"
            ),
        ]
    elif table.name == "phenotypes":
        terms = [hpo_id(t) for t in codes.hpo_names]
        reasons.append(_reason((_n("hpo_code") != "") & ~_n("hpo_code").is_in(terms), "hpo_code", "unknown_code"))
    else:
        reasons += [
            allowed_reason("encounter_type", ENCOUNTER_TYPES),
            _reason(~_n("centre_country").str.contains(r"^([A-Z]{2})?$"), "centre_country", "invalid_value"),
        ]
    rules = [*reasons, *source_reasons(extra), *shape_reasons(table, ragged or {}, extra, absent)]
    done = with_reasons(staged, present(rules, absent))
    return Validated(done.frame, done.labels)


def _invalid_codes(system: str) -> Callable[[pl.Series], pl.Series]:
    """True where a (normalised) code of ``system`` is given but is not a code of it (checked per distinct value).

    A well-formed code absent from a partial list is not invalid: it is counted as "not checked against a
    list" (:func:`unchecked_codes`).
    """

    def invalid(batch: pl.Series) -> pl.Series:
        bad = [v for v in batch.unique().to_list() if v and check_code(v, system).status == INVALID]
        return batch.is_in(bad).fill_null(False) if bad else pl.Series([False] * len(batch))

    return invalid


def unchecked_codes(diagnoses: pl.LazyFrame) -> dict[str, int]:
    """Rows per code system whose code is accepted but not in an offline list (reconciliation's count)."""
    counts: dict[str, int] = {}
    names = diagnoses.collect_schema().names()
    for system, column in CODE_COLUMNS.items():
        if column not in names:
            continue
        values = diagnoses.group_by(column).len().drop_nulls(column).collect()
        for value, rows in values.iter_rows():
            if check_code(value, system).status == UNLISTED:
                counts[system] = counts.get(system, 0) + rows
    return counts
