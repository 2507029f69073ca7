"""A small benchmark harness: each case times its own code beside a baseline, in the same run.

Every measurement runs in a fresh subprocess (``python -m benchmarks.worker``),
so peak memory (max RSS) belongs to that run alone and nothing is shared
through caches in memory. A case is repeated and its median reported.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

Measure = Callable[[dict[str, Any], Path], dict[str, float]]


@dataclass(frozen=True)
class Side:
    """One side of a comparison: a function ``measure(params, scratch) -> metrics`` (seconds included)."""

    label: str
    function: str  # "module:function", run in the worker subprocess
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    name: str
    description: str
    ours: Side
    baseline: Side
    throughput_unit: str  # e.g. "patients/s": metric "items" / seconds
    goal: str
    large: bool = False  # run only with --large (minutes of set-up), once
    repeats: int | None = None  # at most this many repeats (a baseline that takes minutes a run)


def run_side(side: Side, scratch: Path) -> dict[str, float]:
    scratch.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "benchmarks.worker", side.function, json.dumps(side.params), str(scratch)]
    result = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{side.function} failed:\n{result.stderr[-3000:]}")
    metrics: dict[str, float] = json.loads(result.stdout.strip().splitlines()[-1])
    return metrics


def summarise(runs: list[dict[str, float]], unit: str) -> dict[str, Any]:
    seconds = [r["seconds"] for r in runs]
    median = statistics.median(seconds)
    out: dict[str, Any] = {
        "median_s": round(median, 3),
        "runs_s": [round(s, 3) for s in seconds],
        "peak_mb": round(max(r["peak_mb"] for r in runs), 1),
        "peak_anon_mb": round(max(r.get("peak_anon_mb", 0.0) for r in runs), 1),
    }
    if "items" in runs[0]:
        out["throughput"] = round(runs[0]["items"] / median, 1)
        out["throughput_unit"] = unit
    extras = {k: v for k, v in runs[0].items() if k not in ("seconds", "peak_mb", "peak_anon_mb", "items")}
    out.update(extras)
    return out


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
    }
