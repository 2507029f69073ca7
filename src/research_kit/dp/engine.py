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
from datetime import UTC, datetime
from importlib.metadata import version
from statistics import NormalDist
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
from research_kit.dp.query import Query, alpha_denominator, fixed_point, key_frame, plan, prepare
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
    frame = prepare(query, frame)
    schema = frame.collect_schema()
    keys = key_frame(query, source.reference_year, schema)
    make = measurement_maker(query, schema, keys)
    m, scale, loss = measure(ws, query, make)
    cost = to_picorho(loss, round_up=True)
    summary = summarize_polars_measurement(m, 1 - confidence)
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
        scale=scale,
    )
    try:
        released = m(frame).collect()
        answer.table = _assemble(query, released, keys, summary, confidence)
        answer.id = spend
        ledger.commit(ws, spend, answer.to_dict())
    except BaseException:
        ledger.cancel(ws, spend)
        raise
    return answer


def _half_width(query: Query, summary: pl.DataFrame) -> float:
    """Half the interval's width, in the column's units.

    OpenDP's accuracy ``a`` promises P(|noise| < a) >= confidence. For integer
    noise that is |noise| <= a - 1, the interval's inclusive edge; for real
    noise the two coincide.
    """
    a = float(summary["accuracy"][0])
    if str(summary["distribution"][0]).startswith("Integer"):
        a -= 1
    return a / fixed_point(query)


def _noise_scale(query: Query, summary: pl.DataFrame) -> float:
    """The noise scale of the answer's main figure, in the column's units (the sum's, for a mean)."""
    return float(summary["scale"][0]) / fixed_point(query)


def _describe_accuracy(answer: Answer, query: Query, summary: pl.DataFrame, confidence: float) -> None:
    if query.kind in ("count", "histogram", "sum"):
        answer.half_width = _half_width(query, summary)
    if query.kind == "mean":
        answer.notes.append(f"the count n has noise scale {float(summary['scale'][1]):.4g}")
    elif query.kind == "quantile":
        assert query.alpha is not None
        assert query.candidates is not None
        # Exponential mechanism: P(score(chosen) > best + s * ln(|C| / beta)) <= beta; scores are ranks x den.
        beta = 1 - confidence
        answer.rank_error = answer.scale * math.log(len(query.candidates) / beta) / alpha_denominator(query.alpha)
    if query.max_groups > 1:
        answer.notes.append(
            f"each patient counts in at most {query.max_groups} groups, "
            f"accounted as {query.max_groups + 1} (OpenDP 0.16's group truncation)"
        )
    if query.group_columns and query.table != "patients" and query.max_groups == 1:
        answer.notes.append("each patient counts in at most one group (raise max_groups to count more)")


def _assemble(
    query: Query, released: pl.DataFrame, keys: pl.DataFrame | None, summary: pl.DataFrame, confidence: float
) -> pl.DataFrame:
    groups = list(query.group_columns)
    if keys is not None:
        released = (
            keys.with_row_index("_order")
            .join(released, on=groups, how="left", nulls_equal=True)
            .sort("_order")
            .drop("_order")
        )
    factor = fixed_point(query)
    value = pl.col("value") / factor if factor != 1 else pl.col("value")
    if query.kind in ("count", "histogram", "sum"):
        a = _half_width(query, summary)
        lower = value - a
        if query.kind != "sum" and not query.signed:
            lower = pl.max_horizontal(lower, pl.lit(0))
        return released.with_columns(value.alias("value"), lower.alias("lower"), (value + a).alias("upper"))
    if query.kind == "mean":
        assert query.bounds is not None
        lo, hi = query.bounds
        scales = dict(zip(summary["aggregate"], summary["scale"], strict=True))
        s_sum = float(scales.pop("Sum")) / factor
        s_n = float(next(iter(scales.values())))
        z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
        n = pl.col("n").cast(pl.Float64)
        mean = pl.when(n > 0).then((pl.col("sum") / factor / n).clip(lo, hi)).otherwise(None)
        se = (pl.lit(s_sum**2) + mean.pow(2) * s_n**2).sqrt() / n
        return released.select(
            *groups,
            mean.alias("value"),
            (mean - z * se).clip(lo, hi).alias("lower"),
            (mean + z * se).clip(lo, hi).alias("upper"),
            pl.col("n"),
        )
    return released.with_columns(
        pl.lit(None, dtype=pl.Float64).alias("lower"), pl.lit(None, dtype=pl.Float64).alias("upper")
    )
