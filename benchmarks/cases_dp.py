"""DP query latency: research-kit's calibrated queries against straightforward OpenDP Context use.

Both sides answer the same 20 mixed queries (counts, crosstabs, sums, means,
medians, histograms; patients and diagnoses views of a 1M-patient extract) at
the same costs, hence the same noise scales, on the same in-memory views.
The baseline does what OpenDP's documentation shows: a Context, then per query
``ctx.query(rho=...)``, the plan, ``summarize()`` for the interval, and
``release().collect()``. Ours goes through :func:`research_kit.dp.engine.run`,
ledger reservation and audit entry included, in a fresh workspace: its first
query of each shape pays the scale search once.
"""

from __future__ import annotations

import os
import shutil
import statistics
import time
from pathlib import Path
from typing import Any

import opendp.prelude as dp
import polars as pl

from research_kit.core import audit, users
from research_kit.core.extracts import get_extract
from research_kit.core.workspace import init_workspace
from research_kit.dp import columns, engine, ledger
from research_kit.dp.query import Query, aggregates, collapse, key_frame, make_query, prepare, row_filters
from research_kit.ingest.pipeline import ingest
from research_kit.pseudonymise.keys import load_key, new_key
from research_kit.simulator.export import SimulationSpec, simulate_export
from research_kit.tiers import Source

dp.enable_features("contrib")


def _queries() -> list[Query]:
    years = [f"diagnosis_year >= {y}" for y in (1990, 2000, 2010)]
    specs: list[tuple[str, str, dict[str, Any]]] = [
        ("count", "patients", {"by": ["sex"]}),
        ("count", "patients", {"by": ["canton"], "where": "sex = female"}),
        ("count", "patients", {"by": ["age_band", "sex"]}),
        ("count", "patients", {"by": ["disease_group"], "where": "cross_border_insured = yes"}),
        ("count", "diagnoses", {"by": ["icd10_chapter"], "where": years[0]}),
        ("count", "diagnoses", {"by": ["status"], "where": years[1]}),
        ("count", "diagnoses", {"by": ["genetic", "sex"], "where": years[2]}),
        ("count", "patients", {"where": "dead = yes"}),
        ("count", "diagnoses", {"where": "genetic = yes and sex = male"}),
        ("sum", "patients", {"column_name": "diagnoses", "bounds": (0, 5)}),
        ("sum", "diagnoses", {"column_name": "diagnostic_delay_days", "bounds": (0, 3650), "where": years[1]}),
        ("mean", "diagnoses", {"column_name": "onset_age_years", "bounds": (0, 90)}),
        ("mean", "diagnoses", {"column_name": "diagnostic_delay_years", "bounds": (0, 20), "by": ["sex"]}),
        ("mean", "patients", {"column_name": "age", "bounds": (0, 100), "where": "canton = Luxembourg"}),
        ("quantile", "diagnoses", {"column_name": "onset_age_years", "alpha": 0.5, "bounds": (0, 90)}),
        ("quantile", "patients", {"column_name": "age", "alpha": 0.5, "bounds": (0, 100), "where": "sex = male"}),
        ("histogram", "patients", {"column_name": "age", "bins": [0, 18, 40, 65, 120]}),
        ("histogram", "diagnoses", {"column_name": "onset_age_years", "bins": [0, 2, 6, 12, 18, 40, 90]}),
        ("count", "patients", {"by": ["canton", "age_band"], "where": "dead = no"}),
        ("count", "diagnoses", {"by": ["icd10_chapter"], "where": "sex = female and " + years[2]}),
    ]
    return [make_query(kind, table, rho=0.01, **spec) for kind, table, spec in specs]


def _extract(params: dict[str, Any], scratch: Path) -> Source:
    """A pseudonymised extract of ``patients`` simulated patients, made once and kept (``RK_BENCH_DATA``)."""
    base = Path(os.environ.get("RK_BENCH_DATA") or scratch.parent)
    home = base / f"dp-extract-{params['patients']}"
    if not (home / "ready").exists():
        shutil.rmtree(home, ignore_errors=True)
        simulate_export(SimulationSpec(patients=params["patients"], seed=11, format="parquet"), home / "raw")
        ws, _ = init_workspace(home / "ws")
        ingest(ws, [home / "raw"], "bench", load_key(new_key(home / "secrets" / "k.key")[0]))
        shutil.rmtree(home / "raw")
        (home / "ready").touch()
    extract = get_extract(init_workspace(home / "ws")[0], "bench")
    year = int(extract.created_at[:4])
    return Source("real", "bench", extract.path, extract.content_hash, year)


def _views(source: Source, cache: Path) -> dict[str, pl.LazyFrame]:
    """The patients and diagnoses views, built once (outside the timing) and scanned by both sides."""
    return {
        t: columns.view(source.folder, t, source.reference_year, source.content_hash, cache)
        for t in ("patients", "diagnoses")
    }


def ours(params: dict[str, Any], scratch: Path) -> dict[str, float]:
    source = _extract(params, scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    ws, _ = init_workspace(scratch / "ws")
    _views(source, ws.cache_dir / "dp-views")  # both sides start with the views built
    with audit.acting("bench-steward"):  # a committee member grants the study, owned by a researcher
        users.add(ws, "bench-steward", "steward")
        users.add(ws, "bench-dac", "committee")
        users.add(ws, "bench-researcher", "researcher")
    with audit.acting("bench-dac"):
        ledger.grant(ws, "bench", 1.0, owners=["bench-researcher"])
    latencies = []
    for query in _queries():
        start = time.perf_counter()
        engine.run(ws, query, study="bench", source=source)
        latencies.append(time.perf_counter() - start)
    return _metrics(latencies)


def baseline(params: dict[str, Any], scratch: Path) -> dict[str, float]:
    source = _extract(params, scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    views = _views(source, scratch / "dp-views")
    unit = {t: engine.privacy_unit(make_query("count", t, rho=0.01)) for t in views}
    contexts = {
        table: dp.Context.compositor(
            data=frame,
            privacy_unit=unit[table],
            privacy_loss=dp.loss_of(rho=1.0),
            margins=[dp.polars.Margin(by=[], max_length=engine.MAX_ROWS)],
        )
        for table, frame in views.items()
    }
    latencies = []
    for query in _queries():
        start = time.perf_counter()
        frame = prepare(query, views[query.table])
        keys = key_frame(query, source.reference_year, frame.collect_schema())
        if query.kind in ("histogram", "sum", "mean"):
            # derived columns (bin label, fixed point) are data, so the Context must see them
            context = dp.Context.compositor(
                data=frame,
                privacy_unit=unit[query.table],
                privacy_loss=dp.loss_of(rho=1.0),
                margins=[dp.polars.Margin(by=[], max_length=engine.MAX_ROWS)],
            )
        else:
            context = contexts[query.table]
        q = context.query(rho=query.rho)
        for expr in row_filters(query):
            q = q.filter(expr)
        firsts = collapse(query)
        if firsts is not None:
            q = q.group_by(columns.IDENTIFIER).agg(firsts)
        groups = list(query.group_columns)
        q = q.group_by(groups).agg(aggregates(query)).with_keys(keys) if groups else q.select(aggregates(query))
        q.summarize(alpha=0.05)
        q.release().collect()
        latencies.append(time.perf_counter() - start)
    return _metrics(latencies)


def _metrics(latencies: list[float]) -> dict[str, float]:
    median = statistics.median(latencies)
    return {
        "seconds": median,
        "items": 1,
        "queries": len(latencies),
        "mean_s": round(statistics.fmean(latencies), 4),
        "total_s": round(sum(latencies), 3),
    }
