"""A DP query as data: what to aggregate, over which cohort, grouped how, bounded how, at what cost.

A :class:`Query` is validated against the view's columns when it is made, has
a canonical JSON form (the replay key) and a *shape* (what decides the noise
scale: aggregate, bounds, truncation and cost, not the filter or the keys).
:func:`plan` turns it into the Polars plan OpenDP measures:

1. filters (the cohort), row by row;
2. per-patient bounding on the identifier: at most ``per_group`` rows per
   patient and group, in at most ``max_groups`` groups;
3. the aggregate, joined onto the public key set, so every key appears
   (noise included) and no key comes from the data.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal
from fractions import Fraction
from typing import Any

import opendp.prelude as dp
import polars as pl

from research_kit.core.errors import BadInput
from research_kit.dp.accounting import amount
from research_kit.dp.columns import IDENTIFIER, Column, check_table, column, public_keys
from research_kit.dp.where import Clause, parse_where

KINDS = ("count", "sum", "mean", "quantile", "histogram")
MAX_KEYS = 1_000_000  # a key set larger than this is refused (memory, and answers nobody can read)
BIN = "bin"
FIXED = "_fixed"

dp.enable_features("contrib")


@dataclass(frozen=True)
class Query:
    kind: str
    table: str
    rho: float
    by: tuple[str, ...] = ()
    where: tuple[Clause, ...] = ()
    column: str | None = None
    bounds: tuple[float, float] | None = None
    alpha: float | None = None  # quantile level
    candidates: tuple[float, ...] | None = None
    bins: tuple[float, ...] | None = None  # histogram edges
    per_group: int = 1
    max_groups: int = 1
    signed: bool = True
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def figures(self) -> int:
        """How many noisy figures each group's answer is made of: a mean's sum and count, else one."""
        return 2 if self.kind == "mean" else 1

    @property
    def read_columns(self) -> tuple[str, ...]:
        """Every column of the view the answer depends on: its groups, its filters, its value."""
        named = (*self.by, *(c.column for c in self.where), *([self.column] if self.column else []))
        return tuple(dict.fromkeys(named))

    @property
    def group_columns(self) -> tuple[str, ...]:
        return (*self.by, BIN) if self.kind == "histogram" else self.by

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("extra")
        data["where"] = [c.text() for c in self.where]
        return data

    def canonical(self) -> str:
        return json.dumps(self.as_dict(), sort_keys=True, separators=(",", ":"), default=str)

    def key(self, confidence: float) -> str:
        """The replay key: the same query, at the same confidence, has the same key."""
        return hashlib.sha256(f"{self.canonical()}|{confidence}".encode()).hexdigest()

    def shape(self) -> str:
        """What decides the noise scale OpenDP's search finds.

        OpenDP's global scale is relative to each aggregate's sensitivity, so
        bounds, candidates, filters and keys do not change it: only how many
        noisy figures share the cost, the per-patient bounding, and the cost.
        (The engine checks every measurement with OpenDP's privacy map anyway.)
        """
        data = {
            "unit": "row" if self.table == "patients" else "pseudonym",
            "figures": self.figures,
            "grouped": bool(self.group_columns),
            "per_group": self.per_group,
            "max_groups": self.max_groups,
            "rho": self.rho,
        }
        return json.dumps(data, sort_keys=True, separators=(",", ":"))

    def describe(self) -> str:
        what = {"count": "count", "histogram": f"histogram of {self.column}"}.get(
            self.kind, f"{self.kind}({self.column}{'' if self.alpha is None else f', {self.alpha:g}'})"
        )
        parts = [f"{what} of {self.table}"]
        if self.by:
            parts.append("by " + ", ".join(self.by))
        if self.where:
            parts.append("where " + " and ".join(c.text() for c in self.where))
        return " ".join(parts)


MAX_BOUND = 1e15  # wider clipping bounds only add noise (and overflow a column's type)


def make_query(
    kind: str,
    table: str,
    *,
    rho: Decimal | float | str,
    by: Sequence[str] | str | None = None,
    where: str | Sequence[str] | Mapping[str, Any] | None = None,
    column_name: str | None = None,
    bounds: tuple[float, float] | None = None,
    alpha: float | None = None,
    candidates: Sequence[float] | None = None,
    bins: Sequence[float] | None = None,
    per_group: int = 1,
    max_groups: int | None = None,
    signed: bool = True,
) -> Query:
    """A validated :class:`Query`; every mistake is a one-line :class:`BadInput`."""
    if kind not in KINDS:
        raise BadInput(f"no query kind {kind!r}: use one of {', '.join(KINDS)}")
    check_table(table)
    cost = amount(rho, "the cost rho")
    by_list = [by] if isinstance(by, str) else list(by or [])
    if len(set(by_list)) != len(by_list):
        raise BadInput(f"by names a column twice: {by_list}")
    for name in by_list:
        if column(table, name).keys is None:
            public_keys(table, name, 2000)  # raises the explanation
    if per_group < 1 or (max_groups is not None and max_groups < 1):
        raise BadInput("per_group and max_groups must be at least 1")
    if table == "patients":
        per_group, max_groups = 1, 1  # one row per patient: nothing to bound
    numeric = kind in ("sum", "mean", "quantile", "histogram")
    col: Column | None = None
    if numeric:
        if column_name is None:
            raise BadInput(f"a {kind} needs a numeric column")
        col = column(table, column_name)
        if col.kind not in ("int", "float"):
            raise BadInput(f"{table}.{column_name} is not numeric")
    elif column_name is not None:
        raise BadInput("a count takes no column; filter with where= to count rows with a value")
    bounds_t: tuple[float, float] | None = None
    if kind in ("sum", "mean", "quantile"):
        assert col is not None
        lo, hi = bounds if bounds is not None else (col.bounds or (None, None))
        if lo is None or hi is None or not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
            raise BadInput(f"bounds for {column_name} must be two numbers, lower < upper")
        if max(abs(lo), abs(hi)) > MAX_BOUND:
            raise BadInput(f"bounds for {column_name} must lie within +-{MAX_BOUND:.0e}")
        cast = int if col.kind == "int" else float
        if cast is int and (lo != int(lo) or hi != int(hi)):
            raise BadInput(f"{column_name} holds whole numbers: give whole-number bounds")
        bounds_t = (cast(lo), cast(hi))
    alpha_v: float | None = None
    cands: tuple[float, ...] | None = None
    if kind == "quantile":
        assert col is not None
        assert bounds_t is not None
        if alpha is None or not 0 <= alpha <= 1:
            raise BadInput("a quantile needs a level between 0 and 1 (0.5 for the median)")
        alpha_v = float(alpha)
        if candidates is None:
            cands = default_candidates(col, bounds_t)
        else:
            if not all(math.isfinite(c) for c in candidates):
                raise BadInput("quantile candidates must be finite numbers")
            cands = tuple(sorted({(int(c) if col.kind == "int" else float(c)) for c in candidates}))
        if len(cands) < 2:
            raise BadInput("a quantile needs at least two candidate values")
    edges: tuple[float, ...] | None = None
    if kind == "histogram":
        if bins is None or len(bins) < 2 or list(bins) != sorted(set(bins)) or not all(map(math.isfinite, bins)):
            raise BadInput("a histogram needs at least two finite bin edges, in increasing order")
        edges = tuple(float(b) for b in bins)
    groups = max_groups if max_groups is not None else 1
    query = Query(
        kind=kind,
        table=table,
        rho=float(cost),
        by=tuple(by_list),
        where=parse_where(table, where),
        column=column_name,
        bounds=bounds_t,
        alpha=alpha_v,
        candidates=cands,
        bins=edges,
        per_group=int(per_group),
        max_groups=int(groups),
        signed=bool(signed),
    )
    return query


def default_candidates(col: Column, bounds: tuple[float, float]) -> tuple[float, ...]:
    """Public candidates for a quantile: every whole number within the bounds, or 201 even steps.

    Built from the bounds and the column's precision only, never from the data.
    A float grid's points are rounded to the step's decimals (see
    :func:`grid_decimals`), so the 6th point of 0-120 is 3.6, not
    3.5999999999999996: an answer reads as the number it is.
    """
    lo, hi = bounds
    if col.kind == "int" and hi - lo <= 400:
        return tuple(range(int(lo), int(hi) + 1))
    step = (hi - lo) / 200
    values = [lo + i * step for i in range(201)]
    if col.kind == "int":
        return tuple(sorted({round(v) for v in values}))
    digits = grid_decimals(step, col.decimals)
    return tuple(sorted({round(v, digits) for v in values}))


def grid_decimals(step: float, decimals: int) -> int:
    """Decimals a float grid is rounded to: the column's own, or enough for the step's first 3 digits.

    A step with at most 3 significant digits (0.6, 0.5, 0.035) is then exact;
    a finer one moves each point by at most a 200th of the step, so points
    stay distinct and in order.
    """
    return max(decimals, 2 - math.floor(math.log10(step)))


def neighbours(candidates: Sequence[float], bounds: tuple[float, float]) -> pl.DataFrame:
    """Each candidate (``value``) with the candidates either side (``lower``, ``upper``): its grid cell.

    The first candidate's cell reaches down to the lower bound, the last one's
    up to the upper bound (a quantile beyond the candidates is reported as the
    nearest one).
    """
    values = [float(c) for c in candidates]
    lower = [min(values[0], bounds[0]), *values[:-1]]
    upper = [*values[1:], max(values[-1], bounds[1])]
    columns = {"value": values, "lower": lower, "upper": upper}
    return pl.DataFrame(columns, schema=dict.fromkeys(columns, pl.Float64))


def bin_labels(edges: Sequence[float]) -> list[str]:
    def fmt(x: float) -> str:
        return f"{x:g}"

    return [f"[{fmt(a)}, {fmt(b)})" for a, b in itertools.pairwise(edges)]


def key_frame(query: Query, reference_year: int, schema: Mapping[str, pl.DataType]) -> pl.DataFrame | None:
    """Every combination of the grouping columns' public keys (None for an ungrouped query)."""
    columns = query.group_columns
    if not columns:
        return None
    sets: list[list[object]] = []
    for name in columns:
        keys: list[object] = (
            list(bin_labels(query.bins or ())) if name == BIN else public_keys(query.table, name, reference_year)
        )
        sets.append(keys)
    size = math.prod(len(s) for s in sets)
    if size > MAX_KEYS:
        raise BadInput(f"grouping by {', '.join(columns)} makes {size:,} groups; the most is {MAX_KEYS:,}")
    combos = list(itertools.product(*sets))
    data = {name: [c[i] for c in combos] for i, name in enumerate(columns)}
    dtypes = {name: (pl.String if name == BIN else schema[name]) for name in columns}
    return pl.DataFrame(data, schema=dtypes)


def fixed_point(query: Query) -> int:
    """The factor a float column is summed at (10**decimals), or 1.

    OpenDP bounds a float sum's rounding error by the number of rows, which at a
    registry's public row bound inflates the noise a hundredfold; whole numbers
    of the column's own precision sum exactly, and are divided back afterwards.
    """
    if query.kind not in ("sum", "mean") or query.column is None:
        return 1
    col = column(query.table, query.column)
    return 10**col.decimals if col.kind == "float" else 1


def centre(query: Query) -> int:
    """The public centre a mean's values are shifted by before summing, in summed units (0: not shifted).

    OpenDP's sum sensitivity is the largest |bound|: birth years in 1900-2100
    would get noise for 2100 per patient. A mean is a noisy sum over a noisy
    count anyway, so summing ``x - c`` and adding ``c`` back costs nothing and
    makes the noise depend on the range's width (100 either side of 2000).
    ``c`` is the bounds' midpoint, rounded to the column's precision, so
    fixed-point sums stay whole numbers. A sum is not centred: one patient can
    move it by the largest |bound| whatever is done, and ``sum(x - c) + c * n``
    with a noisy ``n`` is never more precise (at best equal, and costs a split).
    """
    if query.kind != "mean":
        return 0
    assert query.bounds is not None
    lo, hi = query.bounds
    return round((lo + hi) / 2 * fixed_point(query))


def summed_column(query: Query) -> str:
    """The column the aggregate reads: the fixed-point, centred copy (``_fixed``) or the column itself."""
    if fixed_point(query) != 1 or centre(query) != 0:
        return FIXED
    return str(query.column)


def summed_bounds(query: Query) -> tuple[float, float]:
    """The clipping bounds in the summed column's units (fixed point, minus the centre)."""
    assert query.bounds is not None
    if summed_column(query) != FIXED:
        return query.bounds
    factor, c = fixed_point(query), centre(query)
    return (round(query.bounds[0] * factor) - c, round(query.bounds[1] * factor) - c)


def prepare(query: Query, frame: pl.LazyFrame) -> pl.LazyFrame:
    """Row-by-row preparation before OpenDP: each patient's rows in the order of the columns the query reads
    (the rows per-patient bounding keeps then depend on nothing else: not on the order the source wrote them in,
    which may follow a column the study's permit leaves out, such as a date); the histogram's bin label (public
    edges); fixed-point centred sums."""
    if query.table != "patients":
        read = [c for c in (*query.by, *([query.column] if query.column else [])) if c != IDENTIFIER]
        frame = frame.sort([IDENTIFIER, *dict.fromkeys(read)], nulls_last=True, maintain_order=True)
    return _labelled(query, frame)


def _labelled(query: Query, frame: pl.LazyFrame) -> pl.LazyFrame:
    if summed_column(query) == FIXED:
        factor, value = fixed_point(query), pl.col(str(query.column))
        scaled = (value * factor).round() if factor != 1 else value
        return frame.with_columns((scaled.cast(pl.Int64) - centre(query)).alias(FIXED))
    if query.kind != "histogram":
        return frame
    assert query.bins is not None
    assert query.column is not None
    labels = bin_labels(query.bins)
    value = pl.col(query.column)
    label: pl.Expr = pl.lit(None, dtype=pl.String)
    for (lo, hi), text in zip(itertools.pairwise(query.bins), labels, strict=True):
        label = pl.when((value >= lo) & (value < hi)).then(pl.lit(text)).otherwise(label)
    return frame.with_columns(label.alias(BIN))


def score_denominator(alpha: float, max_length: int) -> int:
    """The factor OpenDP 0.16 scales a quantile's scores by (``score_candidates_constants``).

    A candidate's score is ``alpha_den * |(1 - alpha) * #(x < c) - alpha * #(x > c)|``,
    i.e. ``alpha_den`` times its distance in rows from the quantile's rank.
    ``alpha_den`` is alpha's exact (binary) fraction's denominator when that is
    below ``(2**64 - 1) // max_length``, else that bound: the finest grain that
    cannot overflow at the margin's ``max_length`` rows. (The 10,000ths apply
    only where the data's size is unknown, never in OpenDP's Polars plans.)
    """
    finest = (2**64 - 1) // max_length
    exact = Fraction(alpha).denominator
    return exact if exact < finest else finest


def row_filters(query: Query) -> list[pl.Expr]:
    """The cohort, then (unless :func:`collapse` does it) per-patient bounding, as row filters in order."""
    filters = [clause.expr() for clause in query.where]
    if query.kind in ("sum", "mean", "quantile"):
        filters.append(pl.col(str(query.column)).is_not_null())
    groups = list(query.group_columns)
    index = pl.int_range(pl.len())
    if query.table == "patients" or collapse(query) is not None:
        return filters
    if groups:
        filters.append(index.over(IDENTIFIER, *groups) < query.per_group)
        # OpenDP 0.16 accounts `rank < k` as k groups, but Polars' dense rank starts at 1, so it
        # keeps k - 1: ask for one more to keep max_groups (the accounting is then conservative).
        filters.append(pl.struct(*groups).rank("dense").over(IDENTIFIER) < query.max_groups + 1)
    else:
        filters.append(index.over(IDENTIFIER) < query.per_group)
    return filters


def collapse(query: Query) -> list[pl.Expr] | None:
    """One row per patient (their first in the cohort), when a patient contributes one row in all.

    The default bounding (one row, one group) of a table with several rows per
    patient, done by a group-by on the identifier, which OpenDP accounts for
    exactly and which runs several times faster than the equivalent window.
    """
    if query.table == "patients" or query.per_group != 1 or query.max_groups != 1:
        return None
    needed = list(query.group_columns)
    if query.column is not None and query.kind != "histogram":
        needed.append(summed_column(query))
    return [pl.col(c).first() for c in needed]


def plan(query: Query, empty: pl.LazyFrame, keys: pl.DataFrame | None) -> pl.LazyFrame:
    """The Polars plan OpenDP turns into a measurement (see the module docstring)."""
    lf = empty
    for expr in row_filters(query):
        lf = lf.filter(expr)
    firsts = collapse(query)
    if firsts is not None:
        lf = lf.group_by(IDENTIFIER).agg(firsts)
    groups = list(query.group_columns)
    if not groups:
        return lf.select(aggregates(query))
    assert keys is not None
    grouped = lf.group_by(groups).agg(aggregates(query))
    return keys.lazy().join(grouped, on=groups, how="left", nulls_equal=True)


def aggregates(query: Query) -> list[pl.Expr]:
    if query.kind in ("count", "histogram"):
        return [dp.len(signed=query.signed).alias("value")]
    col = pl.col(summed_column(query))
    if query.kind == "sum":
        return [col.dp.sum(summed_bounds(query)).alias("value")]  # type: ignore[attr-defined]
    if query.kind == "mean":
        # A noisy sum of centred values and a noisy count, combined afterwards: the count gives the interval its n.
        return [col.dp.sum(summed_bounds(query)).alias("sum"), dp.len(signed=True).alias("n")]  # type: ignore[attr-defined]
    assert query.alpha is not None
    assert query.candidates is not None
    return [col.dp.quantile(query.alpha, list(query.candidates)).alias("value")]  # type: ignore[attr-defined]
