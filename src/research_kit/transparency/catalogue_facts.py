"""What the dataset catalogue says about the registry, gathered from the workspace: counts and shares, never a row.

Every figure is an aggregate of the newest extract (or of the extracts' and twins' manifests), made coarse
enough that no single patient's row shows through:

- the number of individuals is rounded to ``[transparency].catalogue_rounding`` (one person moves it by one
  rounding step at most);
- the number of records is not published (``records`` is None): one person holds tens of rows, so two catalogues
  around one opt-out would tell how many that person had at any rounding fine enough to be of use;
- the typical age range is the youngest and the oldest 5-year age band holding at least ``[sdc].min_cell_count``
  individuals (never the youngest or oldest person's age) in any registered extract;
- the temporal coverage runs from the first to the last calendar year in which at least ``[sdc].min_cell_count``
  individuals have a dated event (first contact, onset, diagnosis, phenotype, encounter) in any registered
  extract, never past that extract;
- both are the union over the extract series, so that they never narrow: a person's departure (an opt-out, then
  an ingest) cannot drop a band or a year they made the ``min_count``-th of;
- the EU common data set figures are the quality report's shares per element (:mod:`research_kit.ingest.quality`),
  given only for an element whose shares are of at least ``[sdc].min_cell_count`` individuals;
- the update frequency is ``[transparency].catalogue_frequency``, or the EU frequency nearest the median time
  between extracts.
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass
from datetime import date, datetime
from typing import TypeVar

import polars as pl

from research_kit.core.config import Policy
from research_kit.core.errors import MissingData
from research_kit.core.extracts import Extract, list_extracts
from research_kit.core.workspace import Workspace
from research_kit.ingest.quality import quality_report
from research_kit.tiers import published_twins, twin_kind
from research_kit.transparency.catalogue_variables import TableVariables, extract_variables

Span = TypeVar("Span", int, date)  # the bounds of an age range or a coverage
AGE_BAND_YEARS = 5  # the age bands of pseudonymise/population.py: the typical ages are their bounds
# Each EU frequency (publications.europa.eu/resource/authority/frequency) and its period in days.
FREQUENCIES: dict[str, float] = {
    "DAILY": 1.0, "WEEKLY": 7.0, "BIWEEKLY": 14.0, "MONTHLY": 30.44, "BIMONTHLY": 60.88, "QUARTERLY": 91.31,
    "ANNUAL_3": 121.75, "ANNUAL_2": 182.62, "ANNUAL": 365.25, "BIENNIAL": 730.5,
}  # fmt: skip
IRREGULAR = 2.0  # gaps between extracts further apart than this factor make the frequency IRREG
# Code columns of the extract and the system each holds (the catalogue names the systems in use).
CODE_SYSTEMS: tuple[tuple[str, str, str], ...] = (
    ("diagnoses", "orpha_code", "ORPHA"),
    ("diagnoses", "icd10_code", "ICD-10"),
    ("diagnoses", "icd11_code", "ICD-11"),
    ("diagnoses", "omim_code", "OMIM"),
    ("diagnoses", "mondo_code", "MONDO"),
    ("phenotypes", "hpo_code", "HPO"),
    ("diagnoses", "gene_symbol", "HGNC"),
    ("diagnoses", "variant_hgvs", "HGVS"),
)
# The dated events that make a year part of the temporal coverage.
EVENT_DATES: tuple[tuple[str, str], ...] = (
    ("patients", "first_contact_date"),
    ("diagnoses", "onset_date"),
    ("diagnoses", "diagnosis_date"),
    ("phenotypes", "observed_date"),
    ("encounters", "encounter_date"),
)


@dataclass(frozen=True)
class Version:
    """One extract of the series: its id, when it was made, its rows per table (from its manifest)."""

    id: str
    created: date
    rows: dict[str, int]


@dataclass(frozen=True)
class Twin:
    """One published synthetic twin."""

    id: str
    kind: str  # "default" or "dp"
    extract: str
    published: date | None
    epsilon: float | None  # a DP twin's


@dataclass(frozen=True)
class ElementFigures:
    """One EU common data element's figures in the newest extract."""

    number: int
    name: str
    status: str  # in the extract, not in this extract's schema, not in the model
    completeness: float
    validity: float | None
    denominator: int  # the individuals (or first diagnoses, or the dead) its shares are of


@dataclass(frozen=True)
class Facts:
    versions: tuple[Version, ...]  # oldest first
    individuals: int  # rounded to ``rounding``
    records: int | None  # never published (one person's rows would show): None
    rounding: int
    min_count: int  # the smallest group a band or a year of the description stands for
    typical_ages: tuple[int, int] | None
    coverage: tuple[date, date] | None
    code_systems: tuple[str, ...]
    frequency: str  # an EU frequency code
    frequency_derived: bool
    twins: tuple[Twin, ...]
    elements: tuple[ElementFigures, ...]
    variables: tuple[TableVariables, ...]
    without_consent_left_out: bool

    @property
    def newest(self) -> Version:
        return self.versions[-1]


def rounded(count: int, base: int) -> int:
    """``count`` to the nearest multiple of ``base`` (halves up).

    >>> rounded(565, 10), rounded(565, 100), rounded(4, 10), rounded(5, 10)
    (570, 600, 0, 10)
    """
    return (count + base // 2) // base * base


def gather(ws: Workspace, policy: Policy) -> Facts:
    """The facts of the newest extract (and of the series and the twins). Reads aggregates of the extract's
    tables, never returns a row; refused in one line when no extract is registered yet."""
    extracts = list_extracts(ws)
    if not extracts:
        raise MissingData("no extract yet: the catalogue describes the newest one (run 'research-kit ingest')")
    newest = extracts[-1]
    versions = tuple(_version(e) for e in extracts)
    base, min_count = policy.transparency.catalogue_rounding, policy.sdc.min_cell_count
    frames = _frames(newest)
    # The ages and years of every extract of the series, not only the newest's: their union never narrows.
    series = [(_frames(e), v.created) for e, v in zip(extracts, versions, strict=True)]
    frequency = policy.transparency.catalogue_frequency
    return Facts(
        versions=versions,
        individuals=rounded(newest.patients, base),
        records=None,
        rounding=base,
        min_count=min_count,
        typical_ages=_union([_typical_ages(f, reference, min_count) for f, reference in series]),
        coverage=_union([_coverage(f, reference, min_count) for f, reference in series]),
        code_systems=tuple(system for table, column, system in CODE_SYSTEMS if _used(frames, table, column)),
        frequency=frequency or derived_frequency([v.created for v in versions]),
        frequency_derived=not frequency,
        twins=tuple(_twins(ws)),
        elements=_elements(newest),
        variables=extract_variables(newest.path),
        without_consent_left_out=_without_consent_left_out(newest),
    )


def derived_frequency(created: list[date]) -> str:
    """The EU frequency nearest the median time between extracts; ``UNKNOWN`` for one, ``IRREG`` when the times
    differ by more than a factor of :data:`IRREGULAR` (a gap shorter than a day counts as a day).

    >>> derived_frequency([date(2024, 1, 1)]), derived_frequency([date(2024, 1, 1), date(2024, 4, 2)])
    ('UNKNOWN', 'QUARTERLY')
    >>> derived_frequency([date(2024, 1, 1), date(2024, 2, 1), date(2025, 2, 1)])
    'IRREG'
    """
    ordered = sorted(created)
    gaps = [max((b - a).days, 1) for a, b in itertools.pairwise(ordered)]
    if not gaps:
        return "UNKNOWN"
    if max(gaps) > IRREGULAR * min(gaps):
        return "IRREG"
    typical = statistics.median(gaps)
    return min(FREQUENCIES, key=lambda code: abs(math.log(typical / FREQUENCIES[code])))


def _version(extract: Extract) -> Version:
    tables = extract.manifest.get("tables")
    rows = {str(t): int(v.get("rows", 0)) for t, v in tables.items()} if isinstance(tables, dict) else {}
    return Version(extract.id, _day(extract.created_at), rows)


def _day(stamp: str) -> date:
    return datetime.fromisoformat(stamp).date()


def _frames(extract: Extract) -> dict[str, pl.LazyFrame]:
    return {t: pl.scan_parquet(p) for t in ("patients", "diagnoses", "phenotypes", "encounters")
            if (p := extract.table_path(t)).is_file()}  # fmt: skip


def _has(frames: dict[str, pl.LazyFrame], table: str, column: str) -> bool:
    return table in frames and column in frames[table].collect_schema().names()


def _used(frames: dict[str, pl.LazyFrame], table: str, column: str) -> bool:
    """Whether any row of ``table`` has a ``column`` (a count, read as one number)."""
    if not _has(frames, table, column):
        return False
    return bool(frames[table].select(pl.col(column).is_not_null().any()).collect().item())


def _union(spans: list[tuple[Span, Span] | None]) -> tuple[Span, Span] | None:
    """The smallest span holding every one of ``spans`` (None when none is given).

    >>> _union([(5, 9), None, (0, 4)]), _union([None])
    ((0, 9), None)
    """
    held = [s for s in spans if s is not None]
    if not held:
        return None
    return min(s[0] for s in held), max(s[1] for s in held)


def _typical_ages(frames: dict[str, pl.LazyFrame], reference: date, min_count: int) -> tuple[int, int] | None:
    """The lower bound of the youngest and the upper bound of the oldest 5-year band of ages at the last record
    (at death for the dead) that holds at least ``min_count`` individuals; None when none does."""
    if "patients" not in frames:
        return None
    patients = frames["patients"]
    names = patients.collect_schema().names()

    def column(name: str, dtype: pl.DataType) -> pl.Expr:
        return pl.col(name).cast(dtype) if name in names else pl.lit(None, dtype=dtype)

    birth = column("birth_year", pl.Int32())
    age = pl.coalesce(
        column("age_at_death_years", pl.Float64()),
        (column("death_date", pl.Date()).dt.year() - birth).cast(pl.Float64),
        column("age_at_last_record_years", pl.Float64()),
        (pl.lit(reference.year) - birth).cast(pl.Float64),
    )
    bands = (
        patients.select(((age // AGE_BAND_YEARS) * AGE_BAND_YEARS).cast(pl.Int32).alias("band"))
        .drop_nulls()
        .filter(pl.col("band") >= 0)
        .group_by("band")
        .len()
        .filter(pl.col("len") >= min_count)
        .select(pl.col("band").min().alias("low"), pl.col("band").max().alias("high"))
        .collect()
    )
    low, high = bands.row(0)
    if low is None:
        return None
    return int(low), int(high) + AGE_BAND_YEARS - 1


def _coverage(frames: dict[str, pl.LazyFrame], reference: date, min_count: int) -> tuple[date, date] | None:
    """From the first day of the first to the last day of the last year (not after ``reference``) in which at
    least ``min_count`` individuals have a dated event; None when no year does."""
    years = [
        frames[table].select("pseudonym", pl.col(column).cast(pl.Date).dt.year().alias("year")).drop_nulls()
        for table, column in EVENT_DATES
        if _has(frames, table, column) and _has(frames, table, "pseudonym")
    ]
    if not years:
        return None
    held = (
        pl.concat(years)
        .unique()
        .group_by("year")
        .len()
        .filter((pl.col("len") >= min_count) & (pl.col("year") <= reference.year))
        .select(pl.col("year").min().alias("first"), pl.col("year").max().alias("last"))
        .collect()
    )
    first, last = held.row(0)
    if first is None:
        return None
    return date(int(first), 1, 1), min(date(int(last), 12, 31), reference)


def _twins(ws: Workspace) -> list[Twin]:
    out = []
    for twin_id, manifest in published_twins(ws):
        dp = manifest.get("dp")
        epsilon = dp.get("epsilon") if isinstance(dp, dict) else None
        published = str(manifest.get("published_at", ""))
        out.append(
            Twin(
                id=twin_id,
                kind=twin_kind(manifest),
                extract=str(manifest.get("extract", "")),
                published=_day(published) if published else None,
                epsilon=float(epsilon) if isinstance(epsilon, int | float | str) and epsilon != "" else None,
            )
        )
    return out


def _elements(extract: Extract) -> tuple[ElementFigures, ...]:
    report = quality_report(extract)
    return tuple(
        ElementFigures(e.number, e.name, e.status, e.completeness, e.validity, e.denominator) for e in report.elements
    )  # fmt: skip


def _without_consent_left_out(extract: Extract) -> bool:
    policy = extract.manifest.get("policy")
    pseudonymise = policy.get("pseudonymise") if isinstance(policy, dict) else None
    return bool(pseudonymise.get("exclude_without_consent", True)) if isinstance(pseudonymise, dict) else True
