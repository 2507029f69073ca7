"""Ingest + pseudonymise a simulated export: research-kit's streaming pipeline against plain pandas.

The baseline is the straightforward version the issue names: ``pd.read_csv``
each table, an HMAC per row through ``apply``, ``to_parquet``. It validates
nothing, so it does less work than ours.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pandas as pd

from research_kit.core.workspace import init_workspace
from research_kit.ingest.pipeline import ingest
from research_kit.model.codes import load_code_systems
from research_kit.model.tables import TABLES
from research_kit.pseudonymise.keys import load_key, new_key
from research_kit.simulator.export import SimulationSpec, simulate_export


def _export(params: dict[str, Any], scratch: Path) -> Path:
    """The simulated CSV export (seed 7), made once per size and kept across repeats.

    ``RK_BENCH_DATA`` names a folder where exports are kept across runs too
    (a 10M-patient export takes minutes to make).
    """
    base = Path(os.environ.get("RK_BENCH_DATA") or scratch.parent)
    raw = base / f"export-{params['patients']}"
    if not (raw / "encounters.csv").exists():
        shutil.rmtree(raw, ignore_errors=True)
        simulate_export(SimulationSpec(patients=params["patients"], seed=7, format="csv"), raw)
    return raw


def _rows(raw: Path) -> int:
    return sum(sum(1 for _ in (raw / f"{t.name}.csv").open("rb")) - 1 for t in TABLES)


def ours(params: dict[str, Any], scratch: Path) -> dict[str, float]:
    raw = _export(params, scratch)
    load_code_systems()
    shutil.rmtree(scratch, ignore_errors=True)
    ws, _ = init_workspace(scratch / "ws")
    key = load_key(new_key(scratch / "secrets" / "k.key")[0])
    start = time.perf_counter()
    result = ingest(ws, [raw], "bench", key)
    seconds = time.perf_counter() - start
    rows = sum(c.rows_in for c in result.counts.values())
    return {"seconds": seconds, "items": params["patients"], "rows": rows}


def baseline(params: dict[str, Any], scratch: Path) -> dict[str, float]:
    raw = _export(params, scratch)
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    key = b"k" * 32
    start = time.perf_counter()
    for table in TABLES:
        frame = pd.read_csv(raw / f"{table.name}.csv", dtype=str, keep_default_na=False)
        frame["pseudonym"] = frame["national_id"].apply(
            lambda nid: hmac.new(key, nid.encode(), hashlib.sha256).hexdigest()[:32]
        )
        frame.drop(columns=list(table.direct_identifiers)).to_parquet(scratch / f"{table.name}.parquet")
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "items": params["patients"], "rows": _rows(raw)}
