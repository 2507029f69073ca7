"""Synthetic twin of the demo extract: research-kit's twin model against SDV's HMASynthesizer.

The extract is the demo's (``research-kit simulate``: 30,000 patients, seed
1, ingested), made once and kept (``RK_BENCH_DATA``). A case may take a
seeded subset of its patients (with all their rows): HMA fits a copula per
patient and child table (about 80 ms per patient on this machine; 512 s to
fit the whole extract, and its sampling had not finished after 50 minutes),
so the default case compares both on 2,000 patients, and the full-size case
(``--large``) stops HMA at a time limit and reports it as not finished.

``build`` times what ``research-kit synth`` does on the whole demo extract
under the default policy: fit, sample, constraint and rare-value checks,
quality and privacy evaluation, the gate and publishing; it reports every
gated figure and whether the twin was published.

Both sides fit on the same tables and sample a twin of the same size; the
timed part is fit + sample. The same SDV quality report (four tables and
their three relationships, :func:`research_kit.synth.evaluate.quality`)
scores both twins against the tables they were fitted on (ours is not
given a held-out set here, so that both see the same data; ``research-kit
synth`` holds out 20%). The baseline is SDV's default multi-table synthesizer
as its documentation shows it: ``Metadata.detect_from_dataframes`` then
``HMASynthesizer(metadata).fit(data)`` and ``sample_scale(1.0)``; the four
tables at depth one are within what HMA accepts, so nothing is dropped.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from research_kit.core.extracts import get_extract
from research_kit.core.workspace import init_workspace
from research_kit.ingest.pipeline import ingest
from research_kit.pseudonymise.keys import load_key, new_key
from research_kit.simulator.export import SimulationSpec, simulate_export
from research_kit.synth import constraints, evaluate, profiles
from research_kit.synth.model import TwinModel
from research_kit.synth.tables import CHILDREN, KEY, Granularity, Tables, read_tables, to_days

DEMO = SimulationSpec(patients=30_000, seed=1, format="parquet")
K = 10  # the default policy's rare_category_k
CODES = (
    ("diagnoses", "orpha_code"), ("diagnoses", "icd10_code"), ("diagnoses", "gene_symbol"),
    ("diagnoses", "variant_hgvs"), ("phenotypes", "hpo_code"),
)  # fmt: skip


def _extract(scratch: Path) -> tuple[Tables, Granularity]:
    """The demo's extract, made once and kept."""
    base = Path(os.environ.get("RK_BENCH_DATA") or scratch.parent)
    home = base / f"synth-extract-{DEMO.patients}"
    if not (home / "ready").exists():
        shutil.rmtree(home, ignore_errors=True)
        simulate_export(DEMO, home / "raw")
        ws, _ = init_workspace(home / "ws")
        ingest(ws, [home / "raw"], "demo", load_key(new_key(home / "secrets" / "k.key")[0]))
        shutil.rmtree(home / "raw")
        (home / "ready").touch()
    extract = get_extract(init_workspace(home / "ws")[0], "demo")
    tables, _ = read_tables(extract.path)
    return tables, Granularity.of(extract.manifest)


def _tables(params: dict[str, Any], scratch: Path) -> tuple[Tables, Granularity]:
    tables, granularity = _extract(scratch)
    n = int(params["patients"])
    if n < len(tables.patients):
        ids = tables.patients[KEY].to_numpy()
        tables = tables.subset(pd.Index(np.random.default_rng(0).choice(ids, n, replace=False)))
    return tables, granularity


def _rule_breaks(real: Tables, twin: Tables, granularity: Granularity) -> tuple[int, int]:
    """Twin rows holding a code held by fewer than k real patients; constraint violations (our checks)."""
    rare = 0
    for table, column in CODES:
        held = real.as_dict()[table].dropna(subset=[column]).groupby(column)[KEY].nunique()
        rare += int(twin.as_dict()[table][column].isin(held.index[held < K]).sum())
    last = max(float(np.nanmax(to_days(f[c]))) for f in real.as_dict().values() for c in f if c.endswith("_date"))
    counts = {}
    for name in CHILDREN:
        per = real.as_dict()[name].groupby(KEY).size().reindex(real.patients[KEY]).fillna(0)
        counts[name] = (int(per.min()), int(per.max()))
    found = constraints.check(twin, constraints.Bounds(granularity, last + 31, counts))
    return rare, sum(found.values())


def _metrics(real: Tables, twin: Tables, granularity: Granularity, fit_s: float, sample_s: float) -> dict[str, float]:
    rare, violations = _rule_breaks(real, twin, granularity)
    quality = evaluate.quality(real, twin, seed=0)
    properties = quality["properties"]
    return {
        "seconds": fit_s + sample_s,
        "items": len(real.patients),
        "fit_s": round(fit_s, 2),
        "sample_s": round(sample_s, 2),
        "quality": quality["score"],
        "column_shapes": properties["Column Shapes"],
        "column_pair_trends": properties["Column Pair Trends"],
        "cardinality": properties["Cardinality"],
        "intertable_trends": properties["Intertable Trends"],
        "twin_rows": sum(twin.rows().values()),
        "rows_with_rare_codes": rare,
        "constraint_violations": violations,
    }


def ours(params: dict[str, Any], scratch: Path) -> dict[str, float]:
    real, granularity = _tables(params, scratch)
    start = time.perf_counter()
    rng = np.random.default_rng(0)
    model = TwinModel(granularity=granularity, k=K, model="gaussian_copula", seed=0)
    model.fit(real, rng)
    fitted = time.perf_counter()
    twin, _ = model.sample(
        len(real.patients), rng, profiles.real_profiles(real), taken=set(real.patients[KEY]), step=lambda _m: None
    )
    sampled = time.perf_counter()
    return _metrics(real, twin, granularity, fitted - start, sampled - fitted)


def build(params: dict[str, Any], scratch: Path) -> dict[str, float]:
    """``research-kit synth`` on the demo extract, default policy: the issue's goal is about this."""
    from research_kit.core.errors import PolicyRefusal
    from research_kit.synth import build_twin

    _extract(scratch)
    ws = init_workspace(
        Path(os.environ.get("RK_BENCH_DATA") or scratch.parent) / f"synth-extract-{DEMO.patients}" / "ws"
    )[0]
    shutil.rmtree(ws.synthetic_dir / "demo", ignore_errors=True)
    start = time.perf_counter()
    try:
        result = build_twin(ws, "demo", seed=0)
        published = 1.0
    except PolicyRefusal:
        published = 0.0
    seconds = time.perf_counter() - start
    report = json.loads((ws.root / "reports" / "synth" / "demo" / "report.json").read_text())
    out = {"seconds": seconds, "items": float(DEMO.patients), "published": published}
    out.update({f"{key}": float(g["value"]) for key, g in report["gate"].items()})
    if published:
        out.update({f"{step}_s": round(s, 2) for step, s in result.timings.items()})
    return out


class _TimeUp(Exception):
    pass


def baseline(params: dict[str, Any], scratch: Path) -> dict[str, float]:
    from sdv.metadata import Metadata
    from sdv.multi_table import HMASynthesizer

    real, granularity = _tables(params, scratch)
    data = real.as_dict()
    np.random.seed(0)
    limit = int(params.get("limit_s", 0))

    def time_up(_signum: int, _frame: object) -> None:
        raise _TimeUp

    signal.signal(signal.SIGALRM, time_up)
    signal.alarm(limit)  # 0: no limit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SDV's notices about detected metadata and sampling
        start = time.perf_counter()
        fitted = start
        try:
            metadata = Metadata.detect_from_dataframes(data)
            synthesizer = HMASynthesizer(metadata, verbose=False)
            synthesizer.fit(data)
            fitted = time.perf_counter()
            sampled_data = synthesizer.sample_scale(scale=1.0)
            sampled = time.perf_counter()
        except _TimeUp:
            stopped = time.perf_counter()
            fit_s = (fitted if fitted > start else stopped) - start
            # Not finished within the limit: the time is a lower bound, there is no twin to score.
            return {"seconds": stopped - start, "items": float(len(real.patients)), "finished": 0.0,
                    "fit_s": round(fit_s, 2), "fit_finished": float(fitted > start)}  # fmt: skip
        finally:
            signal.alarm(0)
    twin = Tables(**{name: sampled_data[name] for name in data})
    return {**_metrics(real, twin, granularity, fitted - start, sampled - fitted), "finished": 1.0}
