"""Re-identification risk of a pseudonymised extract, and generalisation until it is k-anonymous.

Definitions (El Emam for prosecutor, journalist and marketer risk; ARX for
precision loss; pycanon for k-anonymity and distinct l-diversity):

- An equivalence class is the set of records that share every quasi-identifier
  value; null is a value like any other (all people living abroad, with no
  canton, form one class per combination of the other quasi-identifiers).
- Prosecutor risk of a record is ``1/f``, ``f`` the size of its class: the
  attacker knows the person is in the extract.
- Journalist risk is ``1/F``, ``F`` the number of people in the population who
  share the record's key: the attacker does not know who is in the extract.
- Marketer risk is the expected share of records re-identified when every
  record is attacked; for a registry that holds every patient (sample =
  population) it is ``classes / records``.

Nothing here prints or logs a row; errors name columns, never values.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

import polars as pl

from research_kit.core.errors import BadInput, PolicyRefusal

Step = Callable[[pl.Expr], pl.Expr]

# Private column names, so that they cannot collide with an extract's columns.
_F = "__rk_class_size"
_S = "__rk_sensitive"  # a copy, so that the sensitive column may also be a quasi-identifier
_L = "__rk_distinct_sensitive"
_POP = "__rk_population"


@dataclass(frozen=True)
class RiskReport:
    """Re-identification risk of one extract under one set of quasi-identifiers. Shares are in [0, 1]."""

    records: int
    quasi_identifiers: tuple[str, ...]
    classes: int
    k: int
    k_target: int
    records_below_k: int
    l_diversity: int
    prosecutor_highest: float
    prosecutor_average: float
    prosecutor_at_risk: float
    risk_threshold: float
    marketer: float
    journalist_highest: float | None
    journalist_average: float | None
    journalist_at_risk: float | None
    outside_population: int
    class_sizes: dict[int, int]

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready copy: lists for tuples, and class sizes as string keys (as JSON would make them)."""
        out = dataclasses.asdict(self)
        out["quasi_identifiers"] = list(self.quasi_identifiers)
        out["class_sizes"] = {str(size): count for size, count in sorted(self.class_sizes.items())}
        return out


def assess(
    records: pl.DataFrame,
    *,
    quasi_identifiers: Sequence[str],
    sensitive: str,
    k_target: int,
    risk_threshold: float,
    population: pl.DataFrame | None = None,
    population_keys: Sequence[str] = (),
) -> RiskReport:
    """Measure the re-identification risk of ``records`` (one row per patient).

    ``sensitive`` is the column whose distinct values give l-diversity (null
    counts as one value). ``population`` has the ``population_keys`` columns
    plus an integer ``population``; ``population_keys`` name columns of
    ``records`` with the same names and types (derive an ``age_band`` with
    :func:`research_kit.pseudonymise.population.age_band` first). Records whose
    key is not in the population (a null canton, sex ``"undetermined"``) are
    counted in ``outside_population`` and keep their prosecutor risk in the
    journalist figures. When the quasi-identifiers are finer than the
    population keys, ``F`` is that of the coarser population cell, so the
    journalist figures are a lower bound. Raises :class:`BadInput` on a missing
    column, an empty frame or a malformed population.
    """
    qis = _check_inputs(records, quasi_identifiers, sensitive, k_target, risk_threshold)
    n = records.height

    sized = records.select(*qis, pl.col(sensitive).alias(_S), pl.len().over(qis).alias(_F))
    classes = sized.group_by(qis).agg(pl.col(_F).first(), pl.col(_S).n_unique().alias(_L))
    smallest: int = classes.select(pl.col(_F).min()).item()
    histogram = classes.group_by(_F).len().sort(_F)

    journalist: tuple[float, float, float] | None = None
    outside = 0
    if population is not None:
        journalist, outside = _journalist(records, sized[_F], population, population_keys, risk_threshold)
    elif population_keys:
        raise BadInput("population_keys were given without a population table")

    return RiskReport(
        records=n,
        quasi_identifiers=qis,
        classes=classes.height,
        k=smallest,
        k_target=k_target,
        records_below_k=sized.select((pl.col(_F) < k_target).sum()).item(),
        l_diversity=classes.select(pl.col(_L).min()).item(),
        prosecutor_highest=1 / smallest,
        # The mean of 1/f over records is exactly classes/records; computed that way, without rounding error.
        prosecutor_average=classes.height / n,
        prosecutor_at_risk=_share_above(sized[_F], risk_threshold),
        risk_threshold=risk_threshold,
        marketer=classes.height / n,
        journalist_highest=None if journalist is None else journalist[0],
        journalist_average=None if journalist is None else journalist[1],
        journalist_at_risk=None if journalist is None else journalist[2],
        outside_population=outside,
        class_sizes=dict(zip(histogram[_F].to_list(), histogram["len"].to_list(), strict=True)),
    )


def _journalist(
    records: pl.DataFrame,
    class_size: pl.Series,
    population: pl.DataFrame,
    population_keys: Sequence[str],
    risk_threshold: float,
) -> tuple[tuple[float, float, float], int]:
    """(highest, average, share at risk) of 1/F over records, and the number of records outside the population."""
    keys = list(population_keys)
    if not keys:
        raise BadInput("a population table needs population_keys: the columns that match its key columns")
    _require(records, keys, "records")
    _require(population, [*keys, "population"], "the population table")
    for key in keys:
        if records.schema[key] != population.schema[key]:
            raise BadInput(
                f"population key {key!r} is {population.schema[key]} in the population but {records.schema[key]} "
                "in the records"
            )
    if population.select(pl.struct(keys).is_duplicated().any()).item():
        raise BadInput(f"the population table has more than one row for some {', '.join(keys)}")

    cells = population.select(*keys, pl.col("population").alias(_POP))
    # A null key never matches (nulls_equal=False): a patient living abroad has no canton population.
    joined = (
        records.select(keys)
        .with_columns(class_size.alias(_F))
        .join(cells, on=keys, how="left", nulls_equal=False, maintain_order="left")
    )
    outside: int = joined[_POP].null_count()
    # F is at least f: the population figures are estimates and older than the extract, and a class
    # cannot be rarer in the population than in the registry that is part of it. Records outside
    # the population fall back to f, i.e. to their prosecutor risk.
    people = joined.select(pl.max_horizontal(pl.col(_POP).fill_null(0), pl.col(_F)))
    risk = 1 / people.to_series().cast(pl.Float64)
    highest: float = risk.max()  # type: ignore[assignment]
    average: float = risk.mean()  # type: ignore[assignment]
    return (highest, average, float((risk > risk_threshold).mean())), outside  # type: ignore[arg-type]


def _share_above(class_size: pl.Series, risk_threshold: float) -> float:
    """Share of records whose prosecutor risk 1/f exceeds the threshold (strictly)."""
    return float(((1 / class_size.cast(pl.Float64)) > risk_threshold).mean())  # type: ignore[arg-type]


def _check_inputs(
    records: pl.DataFrame, quasi_identifiers: Sequence[str], sensitive: str, k_target: int, risk_threshold: float
) -> tuple[str, ...]:
    if isinstance(quasi_identifiers, str):
        raise BadInput("quasi_identifiers must be a list of column names, not one string")
    qis = tuple(quasi_identifiers)
    if not qis:
        raise BadInput("at least one quasi-identifier is needed to measure re-identification risk")
    if len(set(qis)) != len(qis):
        raise BadInput("a quasi-identifier is listed twice")
    _require(records, [*qis, sensitive], "records")
    if records.height == 0:
        raise BadInput("there are no records to assess")
    if k_target < 1:
        raise BadInput(f"k_target must be >= 1, got {k_target}")
    if not 0.0 <= risk_threshold <= 1.0:
        raise BadInput(f"risk_threshold must be between 0 and 1, got {risk_threshold}")
    return qis


def _require(frame: pl.DataFrame, columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise BadInput(f"{what} lack the column(s) {', '.join(repr(c) for c in missing)}")


# --- Generalisation ---------------------------------------------------------------------------

# Coarse regions of the 12 cantons. Not the electoral constituencies (those put Capellen in the
# South): Capellen sits in the Centre here, with the capital it commutes to.
_REGION_OF_CANTON: dict[str, str] = {
    "Clervaux": "North", "Diekirch": "North", "Redange": "North", "Vianden": "North", "Wiltz": "North",
    "Echternach": "East", "Grevenmacher": "East", "Remich": "East",
    "Luxembourg": "Centre", "Mersch": "Centre", "Capellen": "Centre",
    "Esch-sur-Alzette": "South",
}  # fmt: skip


def _as_is(value: pl.Expr) -> pl.Expr:
    return value


def _year_band(width: int) -> Step:
    def band(year: pl.Expr) -> pl.Expr:
        low = (year // width) * width
        return pl.format("{}-{}", low, low + width - 1)

    return band


def _quarter(month: pl.Expr) -> pl.Expr:
    return pl.format("Q{}", (month - 1) // 3 + 1)


def _dropped(_: pl.Expr) -> pl.Expr:
    return pl.lit(None, dtype=pl.String)


def _any_sex(_: pl.Expr) -> pl.Expr:
    return pl.lit("any")


def _region(canton: pl.Expr) -> pl.Expr:
    # replace_strict fails on a name it does not know, rather than merging a misspelt canton with
    # the people living abroad (null stays null: abroad is not a region of Luxembourg).
    return canton.replace_strict(_REGION_OF_CANTON, return_dtype=pl.String)


def _resident(canton: pl.Expr) -> pl.Expr:
    return canton.replace_strict(dict.fromkeys(_REGION_OF_CANTON, "LU"), return_dtype=pl.String)


# Per quasi-identifier, the value at each generalisation level; level 0 is the value as is. Every
# step maps the original value (steps are not chained), so a level can be applied on its own.
HIERARCHIES: dict[str, list[Step]] = {
    "birth_year": [_as_is, _year_band(5), _year_band(10), _year_band(20)],
    "birth_month": [_as_is, _quarter, _dropped],
    "sex": [_as_is, _any_sex],
    "canton": [_as_is, _region, _resident],
    "country": [_as_is],
}


@dataclass(frozen=True)
class Enforcement:
    """The outcome of :func:`enforce_k`: the released records, how they were coarsened, and their risk."""

    records: pl.DataFrame
    levels: dict[str, int]
    rows_suppressed: int
    precision_lost: float
    report: RiskReport


def enforce_k(
    records: pl.DataFrame,
    *,
    quasi_identifiers: Sequence[str],
    sensitive: str,
    k_target: int,
    risk_threshold: float,
    max_suppression: float = 0.05,
    hierarchies: Mapping[str, Sequence[Step]] = HIERARCHIES,
) -> Enforcement:
    """Generalise the quasi-identifiers, then drop the records still in classes smaller than ``k_target``.

    Every combination of levels is tried; the one kept loses the least
    precision (mean over the quasi-identifiers that have a hierarchy of
    level / top level) among those that suppress at most ``max_suppression`` of
    the records; ties go to fewer suppressed rows, then to the lowest levels in
    the order of ``quasi_identifiers``. If none qualifies, the top levels are
    used and everything still below k is dropped: ``rows_suppressed`` may then
    exceed ``max_suppression``, and the caller must check it. Generalised
    columns keep their names and may change type (a year becomes ``"1980-1984"``).
    Raises :class:`BadInput` for a quasi-identifier without a hierarchy or a
    value its hierarchy does not know, :class:`PolicyRefusal` if no record is left.
    """
    qis = _check_inputs(records, quasi_identifiers, sensitive, k_target, risk_threshold)
    if not 0.0 <= max_suppression <= 1.0:
        raise BadInput(f"max_suppression must be between 0 and 1, got {max_suppression}")
    ladders = {qi: _ladder(records, qi, hierarchies) for qi in qis}
    tops = [len(ladders[qi]) - 1 for qi in qis]

    nodes = sorted(itertools.product(*(range(top + 1) for top in tops)), key=lambda node: (_loss(node, tops), node))
    chosen: tuple[int, ...] | None = None
    # Nodes come in order of loss; stop at the first loss level where some node suppresses little enough.
    for _, group in itertools.groupby(nodes, key=lambda node: _loss(node, tops)):
        feasible = []
        for node in group:
            suppressed = _below_k(_generalised(records, qis, ladders, node), qis, k_target)
            if suppressed / records.height <= max_suppression:
                feasible.append((suppressed, node))
        if feasible:
            chosen = min(feasible)[1]
            break
    if chosen is None:
        chosen = tuple(tops)  # generalising never splits a class, so the top suppresses the fewest

    coarse = _generalised(records, qis, ladders, chosen)
    kept = coarse.filter(pl.len().over(qis) >= k_target)
    if kept.height == 0:
        raise PolicyRefusal(
            f"k-anonymity with k={k_target} cannot be reached: even at the top generalisation levels every record "
            "would be suppressed"
        )
    report = assess(kept, quasi_identifiers=qis, sensitive=sensitive, k_target=k_target, risk_threshold=risk_threshold)
    return Enforcement(
        records=kept,
        levels=dict(zip(qis, chosen, strict=True)),
        rows_suppressed=records.height - kept.height,
        precision_lost=float(_loss(chosen, tops)),
        report=report,
    )


def _ladder(records: pl.DataFrame, qi: str, hierarchies: Mapping[str, Sequence[Step]]) -> list[pl.Series]:
    """The column at every level of its hierarchy, computed once (and so checked once) up front."""
    steps = hierarchies.get(qi)
    if not steps:
        raise BadInput(f"quasi-identifier {qi!r} has no generalisation hierarchy (give at least the level-0 step)")
    try:
        # with_columns, not select: a constant step (a dropped value) must still fill every row.
        return [records.with_columns(step(pl.col(qi)).alias(qi))[qi] for step in steps]
    except pl.exceptions.PolarsError as err:
        # Polars' message may quote a value; name the column only.
        raise BadInput(f"column {qi!r} holds a value its generalisation hierarchy does not handle") from err


def _generalised(
    records: pl.DataFrame, qis: Sequence[str], ladders: Mapping[str, list[pl.Series]], node: Sequence[int]
) -> pl.DataFrame:
    return records.with_columns(ladders[qi][level] for qi, level in zip(qis, node, strict=True))


def _below_k(frame: pl.DataFrame, qis: Sequence[str], k_target: int) -> int:
    count: int = frame.select((pl.len().over(qis) < k_target).sum()).item()
    return count


def _loss(node: Sequence[int], tops: Sequence[int]) -> Fraction:
    """ARX precision loss: mean of level/top over the quasi-identifiers that can be generalised at all.

    Exact fractions, so that equal losses compare equal whatever the order of summation.
    """
    parts = [Fraction(level, top) for level, top in zip(node, tops, strict=True) if top > 0]
    return sum(parts, Fraction(0)) / len(parts) if parts else Fraction(0)
