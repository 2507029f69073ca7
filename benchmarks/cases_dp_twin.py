"""The DP twin (AIM, MST at epsilon 1 and 4) against the default twin model, through ``research-kit synth``.

Each side builds and measures a twin of a simulated, ingested extract of ``patients`` patients (made once and
kept under ``RK_BENCH_DATA``) with ``build_twin`` in that extract's workspace: the time is the whole build (a DP
twin's measurement included); the figures are the report's raw and coarsened SDV scores, TSTR and TRTR accuracy,
and whether every gate passed. A lenient quality gate is not used: a refused twin still has its report.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from research_kit.core import audit
from research_kit.core.workspace import Workspace, init_workspace
from research_kit.dp.accounting import rho_from, to_picorho
from research_kit.ingest.pipeline import ingest
from research_kit.pseudonymise.keys import load_key, new_key
from research_kit.simulator.export import SimulationSpec, simulate_export

MEMBER, STEWARD = "bench-dac", "bench-steward"


def _workspace(patients: int, scratch: Path) -> Workspace:
    from research_kit.core import users

    base = Path(os.environ.get("RK_BENCH_DATA") or scratch.parent) / f"dp-twin-extract-{patients}"
    if not (base / "ready").exists():
        shutil.rmtree(base, ignore_errors=True)
        simulate_export(SimulationSpec(patients=patients, seed=1, format="parquet"), base / "raw")
        ws, _ = init_workspace(base / "ws")
        ingest(ws, [base / "raw"], "demo", load_key(new_key(base / "secrets" / "k.key")[0]))
        shutil.rmtree(base / "raw")
        with audit.acting(STEWARD):
            users.add(ws, STEWARD, "steward")
            users.add(ws, MEMBER, "committee")
        (base / "ready").touch()
    return init_workspace(base / "ws")[0]


def _build(ws: Workspace, **options: Any) -> dict[str, float]:
    from research_kit.core.errors import PolicyRefusal
    from research_kit.dp import ledger
    from research_kit.synth import build_twin

    twin = "demo@dp" if options.get("model") in ("aim", "mst") else "demo"
    shutil.rmtree(ws.synthetic_dir / twin, ignore_errors=True)
    if twin != "demo":
        cost = to_picorho(rho_from(None, options["epsilon"], ws.policy().dp.delta), round_up=True)
        if ledger.twin_balance(ws).remaining < cost:
            with audit.acting(MEMBER):
                ledger.grant_twin(ws, 1, owners=(STEWARD,))
    start, start_wall = time.perf_counter(), time.time()
    with audit.acting(STEWARD):
        try:
            build_twin(ws, "demo", seed=0, **options)
            published = 1.0
        except PolicyRefusal:
            published = 0.0
    seconds = time.perf_counter() - start
    path = ws.root / "reports" / "synth" / twin / "report.json"
    fresh = path.exists() and path.stat().st_mtime >= start_wall
    if not fresh:
        # Refused before any twin was written (the release gave no patient a coded diagnosis): no figures.
        return {"seconds": seconds, "items": 1.0, "published": 0.0, "refused_before_gates": 1.0}
    report = json.loads(path.read_text())
    out = {"seconds": seconds, "items": float(report["quality"]["rows"]["twin"]["patients"])}
    out |= {key: float(value) for key, value in report["fidelity"].items()}
    out["published"] = published
    out |= {f"{step}_s": float(s) for step, s in report["timings_s"].items()}
    return out


def dp(params: dict[str, Any], scratch: Path) -> dict[str, float]:
    ws = _workspace(int(params["patients"]), scratch)
    return _build(ws, model=params["mechanism"], epsilon=str(params["epsilon"]))


def default(params: dict[str, Any], scratch: Path) -> dict[str, float]:
    return _build(_workspace(int(params["patients"]), scratch))
