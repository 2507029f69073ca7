"""Simulating the registry: our chunked writer against the same generator with everything in memory."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

from research_kit.model.codes import load_code_systems
from research_kit.simulator.export import SimulationSpec, simulate_export


def simulate(params: dict[str, Any], scratch: Path) -> dict[str, float]:
    load_code_systems()  # warm the code-system cache outside the timed part
    out = scratch / "export"
    shutil.rmtree(out, ignore_errors=True)
    spec = SimulationSpec(
        patients=params["patients"], seed=1, format=params.get("format", "parquet"), chunk_size=params["chunk_size"]
    )
    start = time.perf_counter()
    simulate_export(spec, out)
    seconds = time.perf_counter() - start
    size_mb = sum(p.stat().st_size for p in out.iterdir()) / 2**20
    shutil.rmtree(out)
    return {"seconds": seconds, "items": params["patients"], "output_mb": round(size_mb, 1)}
