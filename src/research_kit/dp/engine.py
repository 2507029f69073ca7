"""Running a DP query: calibrate once per shape, measure once, reserve, release, commit.

OpenDP's Context searches for the noise scale by bisection (about 2 s) each
time a query is built, summarised or released. Here the search runs once per
query *shape* (aggregate, bounds, truncation, cost: see
:meth:`Query.shape`); the scale is kept in the catalog for every later
process, and each query builds its measurement once at that scale with
``make_private_lazyframe(global_scale=...)``. OpenDP still has the last word:
the measurement's own privacy map gives the cost charged, and a cached scale
that no longer meets the cost is searched for again.

Only OpenDP makes noise; ``contrib`` is the only feature enabled.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib.metadata import version
from typing import Any

import opendp.prelude as dp
import polars as pl
from opendp.accuracy import summarize_polars_measurement
from opendp.mod import Measurement

from research_kit.core.catalog import transaction
from research_kit.core.workspace import Workspace
from research_kit.dp import ledger
from research_kit.dp.accounting import epsilon_of, from_picorho, to_picorho
from research_kit.dp.answer import Answer
from research_kit.dp.columns import IDENTIFIER, view
from research_kit.dp.query import (
    Query,
    centre,
    fixed_point,
    key_frame,
    neighbours,
    plan,
    prepare,
    score_denominator,
)
from research_kit.tiers import Source

dp.enable_features("contrib")

MAX_ROWS = 10**9  # public upper bound on a view's rows (OpenDP needs one for sums)
OPENDP = version("opendp")
_SCALES: dict[str, float] = {}

MECHANISMS = {
    "Integer Gaussian": "Gaussian mechanism (discrete)",
    "Float Gaussian": "Gaussian mechanism",
    "GumbelMin": "exponential mechanism (Gumbel noise)",
}


def privacy_unit(query: Query) -> tuple[Any, Any]:
    """One patient: a row of the patients view (one per patient), or every row sharing a pseudonym."""
    if query.table == "patients":
        return dp.unit_of(contributions=1)
    return dp.unit_of(contributions=1, identifier=IDENTIFIER)


def _domain(schema: pl.Schema) -> Any:
    domain = dp.domain_of(pl.LazyFrame(schema=schema), infer=True)
    return dp.with_margin(domain, dp.polars.Margin(by=[], max_length=MAX_ROWS))


def measurement_maker(query: Query, schema: pl.Schema, keys: pl.DataFrame | None) -> Callable[[float], Measurement]:
    """scale -> the query's OpenDP measurement at that noise scale (no search)."""
    domain = _domain(schema)
    metric, _ = privacy_unit(query)
    lazy = plan(query, pl.LazyFrame(schema=schema), keys)
    measure = dp.zero_concentrated_divergence()

    def make(scale: float) -> Measurement:
        return dp.m.make_private_lazyframe(domain, metric, measure, lazy, global_scale=scale)

    return make


def _shape_key(query: Query) -> str:
    return hashlib.sha256(f"{OPENDP}|{query.shape()}".encode()).hexdigest()


def calibrated_scale(
    ws: Workspace, query: Query, make: Callable[[float], Measurement], *, fresh: bool = False
) -> float:
    """The smallest noise scale whose privacy loss is within the query's cost, searched once per shape."""
    shape = _shape_key(query)
    if not fresh and shape in _SCALES:
        return _SCALES[shape]
    with ws.catalog() as conn:
        row = None if fresh else conn.execute("SELECT scale FROM dp_calibrations WHERE shape = ?", (shape,)).fetchone()
        if row is not None:
            _SCALES[shape] = float(row[0])
            return _SCALES[shape]
        _, d_in = privacy_unit(query)
        scale = float(dp.binary_search_param(make, d_in, query.rho, T=float))
        with transaction(conn):
            conn.execute(
                "INSERT OR REPLACE INTO dp_calibrations (shape, scale, opendp, created_at) VALUES (?, ?, ?, ?)",
                (shape, scale, OPENDP, datetime.now(UTC).isoformat(timespec="seconds")),
            )
    _SCALES[shape] = scale
    return scale


def measure(ws: Workspace, query: Query, make: Callable[[float], Measurement]) -> tuple[Measurement, float, float]:
    """(measurement, scale, loss in rho), the loss checked by OpenDP's own privacy map."""
    _, d_in = privacy_unit(query)
    for fresh in (False, True):
        scale = calibrated_scale(ws, query, make, fresh=fresh)
        m = make(scale)
        loss = float(m.map(d_in))
        if loss <= query.rho:
            return m, scale, loss
    raise RuntimeError(f"OpenDP found no scale within rho {query.rho} for {query.describe()}")  # pragma: no cover


@dataclass(frozen=True)
class Prepared:
    """A query ready to release: its data plan, public keys, measurement, cost and accuracy summary.

    :func:`release` draws an answer from it; the engine draws once per query,
    the coverage tests draw thousands of times through the same code.
    """

    query: Query
    frame: pl.LazyFrame
    keys: pl.DataFrame | None
    measurement: Measurement
    scale: float
    loss: float
    summary: pl.DataFrame  # OpenDP's accuracy per figure at (1 - confidence) / figures
    confidence: float


def prepare_release(
    ws: Workspace, query: Query, frame: pl.LazyFrame, reference_year: int, confidence: float
) -> Prepared:
    """Build ``query``'s measurement on ``frame`` (a view) at its calibrated scale, and summarise its accuracy.

    A mean's interval rests on two noisy figures, each held to its own share of
    the error probability, so its summary is taken at half the significance.
    """
    frame = prepare(query, frame)
    schema = frame.collect_schema()
    keys = key_frame(query, reference_year, schema)
    make = measurement_maker(query, schema, keys)
    m, scale, loss = measure(ws, query, make)
    summary = summarize_polars_measurement(m, (1 - confidence) / query.figures)
    return Prepared(query, frame, keys, m, scale, loss, summary, confidence)


def release(prepared: Prepared) -> pl.DataFrame:
    """One fresh noisy answer: run the measurement on the data and attach every row's interval."""
    released = prepared.measurement(prepared.frame).collect()
    return assemble(prepared.query, released, prepared.keys, prepared.summary, prepared.confidence)


def run(
    ws: Workspace,
    query: Query,
    *,
    study: str,
    source: Source,
    preview: bool = False,
    reuse: bool = False,
) -> Answer:
    """Answer ``query`` for ``study`` on ``source``: preview, replay, or a new release charged to the ledger."""
    policy = ws.policy().dp
    confidence = policy.confidence
    key = query.key(confidence)
    if not preview:
        stored = ledger.stored_answer(ws, study=study, tier=source.tier, query_key=key, source_hash=source.content_hash)
        if stored is not None:
            answer = Answer.from_dict(stored[0])
            answer.replayed = True
            return answer
        if reuse:
            earlier = ledger.stored_answer(ws, study=study, tier=source.tier, query_key=key, source_hash=None)
            if earlier is not None:
                answer = Answer.from_dict(earlier[0])
                answer.reused_from = earlier[1]
                return answer

    frame = view(source.folder, query.table, source.reference_year, source.content_hash, ws.cache_dir / "dp-views")
    prepared = prepare_release(ws, query, frame, source.reference_year, confidence)
    summary = prepared.summary
    cost = to_picorho(prepared.loss, round_up=True)
    answer = Answer(
        query=query.as_dict(),
        description=query.describe(),
        study=study,
        tier=source.tier,
        source=source.name,
        mechanism=" + ".join(sorted({MECHANISMS.get(d, d) for d in summary["distribution"]})),
        scale=_noise_scale(query, summary),
        rho=from_picorho(cost),
        epsilon=epsilon_of(from_picorho(cost), policy.delta),
        delta=policy.delta,
        confidence=confidence,
        preview=preview,
    )
    _describe_accuracy(answer, query, summary, confidence)
    if preview:
        return answer

    spend = ledger.reserve(
        ws,
        study=study,
        tier=source.tier,
        cost=cost,
        query_key=key,
        source=source.name,
        source_hash=source.content_hash,
        query=query.as_dict(),
        mechanism=answer.mechanism,
        scale=prepared.scale,
    )
    try:
        answer.table = release(prepared)
        answer.id = spend
        ledger.commit(ws, spend, answer.to_dict())
    except BaseException:
        ledger.cancel(ws, spend)
        raise
    return answer


def _half_width(summary: pl.DataFrame, row: int, factor: int) -> float:
    """Half the interval's width of the summary's ``row`` figure, in the column's units.

    OpenDP's accuracy ``a`` promises P(|noise| < a) >= confidence. For integer
    noise that is |noise| <= a - 1, the interval's inclusive edge; for real
    noise the two coincide.
    """
    a = float(summary["accuracy"][row])
    if str(summary["distribution"][row]).startswith("Integer"):
        a -= 1
    return a / factor


def _noise_scale(query: Query, summary: pl.DataFrame) -> float:
    """The noise scale of the answer's main figure: in the column's units (the centred sum's, for a mean), or
    for a quantile in rows (OpenDP's scores are rows x :func:`score_denominator`)."""
    if query.kind == "quantile":
        assert query.alpha is not None
        return float(summary["scale"][0]) / score_denominator(query.alpha, MAX_ROWS)
    return float(summary["scale"][0]) / fixed_point(query)


def rank_error(scale: float, candidates: int, alpha: float, confidence: float) -> float:
    """The quantile's rank error: how many rows the chosen candidate may be from the best one, at ``confidence``.

    OpenDP picks the candidate of least noisy score, Gumbel noise of ``scale``
    (in score units): the exponential mechanism, so P(score(chosen) >
    score(best) + t) <= |C| exp(-t / scale). Scores are rows x
    :func:`score_denominator` at the plan's ``MAX_ROWS`` margin.
    """
    t = scale * math.log(candidates / (1 - confidence))
    return t / score_denominator(alpha, MAX_ROWS)


QUANTILE_NOTE = (
    "lower and upper are the candidates either side of the chosen one (the grid's resolution); with "
    "{confidence:.0%} probability the chosen value's rank is within {rows:.3g} rows of the best candidate's, so "
    "the interval holds the true quantile wherever more than {rows:.3g} rows lie within one grid step on each "
    "side of the chosen value, and misses it by fewer than {rows:.3g} rows otherwise"
)


def _describe_accuracy(answer: Answer, query: Query, summary: pl.DataFrame, confidence: float) -> None:
    if query.kind in ("count", "histogram", "sum"):
        answer.half_width = _half_width(summary, 0, fixed_point(query))
    if query.kind == "sum" and query.bounds is not None and (query.bounds[0] > 0 or query.bounds[1] < 0):
        largest = max(abs(b) for b in query.bounds)
        answer.notes.append(
            f"a sum's noise is set by its largest |bound| ({largest:g}: one patient can add that much); "
            "a mean is centred on its range and far more precise"
        )
    if query.kind == "mean":
        factor = fixed_point(query)
        answer.notes.append(
            f"values are centred on {centre(query) / factor:g} (the bounds' midpoint) before summing; "
            f"the count n has noise scale {float(summary['scale'][1]):.4g}; the interval is every mean the sum and "
            f"the count allow within their {1 - (1 - confidence) / 2:.1%} accuracies (conservative)"
        )
    elif query.kind == "quantile":
        assert query.alpha is not None
        assert query.candidates is not None
        answer.rank_error = rank_error(float(summary["scale"][0]), len(query.candidates), query.alpha, confidence)
        answer.notes.append(QUANTILE_NOTE.format(confidence=confidence, rows=answer.rank_error))
    if query.max_groups > 1:
        answer.notes.append(
            f"each patient counts in at most {query.max_groups} groups, "
            f"accounted as {query.max_groups + 1} (OpenDP 0.16's group truncation)"
        )
    if query.group_columns and query.table != "patients" and query.max_groups == 1:
        answer.notes.append("each patient counts in at most one group (raise max_groups to count more)")


def assemble(
    query: Query, released: pl.DataFrame, keys: pl.DataFrame | None, summary: pl.DataFrame, confidence: float
) -> pl.DataFrame:
    """The released figures in key order, with each row's interval (see :mod:`research_kit.dp.answer`)."""
    groups = list(query.group_columns)
    if keys is not None:
        released = (
            keys.with_row_index("_order")
            .join(released, on=groups, how="left", nulls_equal=True)
            .sort("_order")
            .drop("_order")
        )
    if query.kind == "mean":
        return _mean_intervals(query, released, summary)
    if query.kind == "quantile":
        return _quantile_intervals(query, released)
    factor = fixed_point(query)
    value = pl.col("value") / factor if factor != 1 else pl.col("value")
    a = _half_width(summary, 0, factor)
    lower = value - a
    if query.kind != "sum" and not query.signed:
        lower = pl.max_horizontal(lower, pl.lit(0))
    return released.with_columns(value.alias("value"), lower.alias("lower"), (value + a).alias("upper"))


def _mean_intervals(query: Query, released: pl.DataFrame, summary: pl.DataFrame) -> pl.DataFrame:
    """A mean, ``c + sum(x - c) / n``, and every mean the noisy sum and count allow within their accuracies.

    Each figure is within its half width with probability 1 - (1 - confidence)/2,
    so both are with the stated confidence or more; the interval is the range of
    ``c + s / m`` over those boxes (with m >= 1, a mean needs a row), clipped to
    the bounds: conservative and exact, with no normal approximation.
    """
    assert query.bounds is not None
    lo, hi = query.bounds
    factor = fixed_point(query)
    c = centre(query) / factor
    rows = dict(zip(summary["aggregate"], range(summary.height), strict=True))
    h_sum = _half_width(summary, rows.pop("Sum"), factor)
    h_n = _half_width(summary, next(iter(rows.values())), 1)
    s = pl.col("sum").cast(pl.Float64) / factor
    n = pl.col("n").cast(pl.Float64)
    n_lo, n_hi = pl.max_horizontal(n - h_n, pl.lit(1.0)), pl.max_horizontal(n + h_n, pl.lit(1.0))
    s_lo, s_hi = s - h_sum, s + h_sum
    low = pl.when(s_lo >= 0).then(s_lo / n_hi).otherwise(s_lo / n_lo)
    high = pl.when(s_hi >= 0).then(s_hi / n_lo).otherwise(s_hi / n_hi)
    mean = pl.when(n > 0).then((c + s / n).clip(lo, hi)).otherwise(None)
    return released.select(
        *query.group_columns,
        mean.alias("value"),
        (c + low).clip(lo, hi).alias("lower"),
        (c + high).clip(lo, hi).alias("upper"),
        pl.col("n"),
    )


def _quantile_intervals(query: Query, released: pl.DataFrame) -> pl.DataFrame:
    """Each chosen candidate with its grid cell as the interval (see :data:`QUANTILE_NOTE`)."""
    assert query.candidates is not None
    assert query.bounds is not None
    cells = neighbours(query.candidates, query.bounds).with_columns(pl.col("value").alias("_key"))
    keyed = released.with_columns(pl.col("value").cast(pl.Float64).alias("_key"))
    return keyed.join(cells.drop("value"), on="_key", how="left", maintain_order="left").drop("_key")
