"""Study pipelines: 'research-kit run' against sequential 'papermill' calls, cold and with nothing changed.

The pipeline has 20 actions with mixed dependencies: 4 cohorts (each reads
the extract with ``rk.load``), 12 tables (each needs one cohort) and 4
summaries (each needs two tables). Both sides run the same notebooks on the
same 2,000-patient extract:

- ours: ``research-kit run`` in a fresh process, on a fresh workspace copy
  (cold), or a second time with nothing changed (the rerun case);
- ours unsandboxed: the same cold run with ``[runner].sandbox = 'off'``,
  the baseline of the sandbox's cost (bubblewrap, input views, broker);
- baseline: what a researcher without the runner would script: one
  ``papermill`` command per notebook, in dependency order, in one shared
  working folder. Papermill has no cache, so its rerun costs a cold run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

COHORTS = 4
TABLES_PER_COHORT = 3
SUMMARIES = 4
PATIENTS = 2_000
COLUMNS = ("sex", "canton", "vital_status")

COHORT = """\
import research_kit as rk
tables = rk.load()
first = tables["diagnoses"].sort_values("diagnosis_date").drop_duplicates("pseudonym")
first = first[first["diagnosis_date"].astype("datetime64[ns]").dt.year >= min_year]
cohort = first.merge(tables["patients"], on="pseudonym")
cohort.to_csv(f"cohort_{index}.csv", index=False)
"""
TABLE = """\
import pandas as pd
cohort = pd.read_csv(f"cohort_{index}.csv")
table = cohort.groupby(column).size().rename("n").reset_index()
table.to_csv(f"table_{index}_{column}.csv", index=False)
"""
SUMMARY = """\
import pandas as pd
parts = [pd.read_csv(name).assign(source=name) for name in inputs.split(",")]
pd.concat(parts).to_csv(f"summary_{index}.csv", index=False)
"""


def _notebook(path: Path, parameters: str, source: str) -> None:
    cells = [
        {"cell_type": "code", "id": "parameters", "metadata": {"tags": ["parameters"]}, "source": parameters,
         "outputs": [], "execution_count": None},
        {"cell_type": "code", "id": "work", "metadata": {}, "source": source, "outputs": [], "execution_count": None},
    ]  # fmt: skip
    meta = {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}))


def _pipeline(project: Path) -> Path:
    _notebook(project / "notebooks" / "cohort.ipynb", "min_year = 1990\nindex = 0", COHORT)
    _notebook(project / "notebooks" / "table.ipynb", "index = 0\ncolumn = 'sex'", TABLE)
    _notebook(project / "notebooks" / "summary.ipynb", "index = 0\ninputs = ''", SUMMARY)
    actions: dict[str, Any] = {}
    tables: list[tuple[str, str]] = []
    for i in range(COHORTS):
        actions[f"cohort{i}"] = {
            "notebook": "notebooks/cohort.ipynb",
            "parameters": {"min_year": 1990 + 5 * i, "index": i},
            "outputs": {"highly_sensitive": {"cohort": f"cohort_{i}.csv"}},
        }
        for column in COLUMNS[:TABLES_PER_COHORT]:
            name = f"table{i}_{column}"
            actions[name] = {
                "notebook": "notebooks/table.ipynb",
                "needs": [f"cohort{i}"],
                "parameters": {"index": i, "column": column},
                "outputs": {"moderately_sensitive": {"table": f"table_{i}_{column}.csv"}},
            }
            tables.append((name, f"table_{i}_{column}.csv"))
    for k in range(SUMMARIES):
        pair = [tables[k], tables[-1 - k]]
        actions[f"summary{k}"] = {
            "notebook": "notebooks/summary.ipynb",
            "needs": [name for name, _ in pair],
            "parameters": {"index": k, "inputs": ",".join(path for _, path in pair)},
            "outputs": {"moderately_sensitive": {"summary": f"summary_{k}.csv"}},
        }
    path = project / "pipelines" / "bench.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"study": "bench", "title": "Benchmark pipeline", "budget": {"rho": 0.1},
                                    "actions": actions}))  # fmt: skip
    return path


def _template(scratch: Path) -> tuple[Path, Path]:
    """A workspace with one extract, and the project; made once per scratch folder."""
    from research_kit.core.workspace import init_workspace
    from research_kit.ingest.pipeline import ingest
    from research_kit.pseudonymise.keys import load_key, new_key
    from research_kit.simulator.export import SimulationSpec, simulate_export

    template = scratch / "template"
    pipeline = scratch / "project" / "pipelines" / "bench.yaml"
    if not (template / "done").exists():
        shutil.rmtree(template, ignore_errors=True)
        ws, _ = init_workspace(template / "ws")
        simulate_export(SimulationSpec(patients=PATIENTS, seed=1, format="parquet"), template / "raw")
        key, _ = new_key(template / "k.key")
        ingest(ws, [template / "raw"], "bench", load_key(key))
        (template / "done").touch()
    pipeline = _pipeline(scratch / "project")
    return template / "ws", pipeline


def _fresh_workspace(scratch: Path) -> tuple[Path, Path]:
    template, pipeline = _template(scratch)
    ws = scratch / f"ws-{time.time_ns()}"
    shutil.copytree(template, ws)
    return ws, pipeline


def _research_kit_run(ws: Path, pipeline: Path) -> float:
    env = os.environ | {"RESEARCH_KIT_HOME": str(ws)}
    cmd = [sys.executable, "-m", "research_kit", "run", str(pipeline), "--extract", "bench", "--workers", "2"]
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(done.stdout[-2000:] + done.stderr[-2000:])
    return seconds


def ours_cold(params: dict[str, Any], scratch: Path) -> dict[str, float]:
    ws, pipeline = _fresh_workspace(scratch)
    seconds = _research_kit_run(ws, pipeline)
    shutil.rmtree(ws)
    return {"seconds": seconds, "items": 20}


def ours_unsandboxed_cold(params: dict[str, Any], scratch: Path) -> dict[str, float]:
    """The same cold run with ``[runner].sandbox = 'off'`` (allowed: the extract is simulated): no bwrap, no view."""
    ws, pipeline = _fresh_workspace(scratch)
    policy = ws / "research-kit.toml"
    policy.write_text(policy.read_text().replace('sandbox = "bwrap"', 'sandbox = "off"'))
    seconds = _research_kit_run(ws, pipeline)
    shutil.rmtree(ws)
    return {"seconds": seconds, "items": 20}


def ours_rerun(params: dict[str, Any], scratch: Path) -> dict[str, float]:
    ws, pipeline = _fresh_workspace(scratch)
    _research_kit_run(ws, pipeline)  # cold, not timed
    seconds = _research_kit_run(ws, pipeline)
    shutil.rmtree(ws)
    return {"seconds": seconds, "items": 20}


def papermill_sequential(params: dict[str, Any], scratch: Path) -> dict[str, float]:
    from research_kit.studies.spec import load_pipeline

    ws, path = _fresh_workspace(scratch)
    pipeline = load_pipeline(path)
    work = scratch / f"papermill-{time.time_ns()}"
    work.mkdir()
    env = os.environ | {
        "RESEARCH_KIT_HOME": str(ws), "RESEARCH_KIT_TIER": "real", "RESEARCH_KIT_EXTRACT": "bench",
        "RESEARCH_KIT_STUDY": "bench",
    }  # fmt: skip
    papermill = str(Path(sys.executable).with_name("papermill"))
    order = [name for level in pipeline.levels() for name in level]
    start = time.perf_counter()
    for name in order:
        action = pipeline.actions[name]
        cmd = [papermill, str(action.notebook), str(work / f"{name}.ipynb"), "--cwd", str(work), "--no-progress-bar"]
        for key, value in action.parameters.items():
            cmd += ["-p", key, str(value)]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"{name}: {done.stderr[-2000:]}")
    seconds = time.perf_counter() - start
    shutil.rmtree(work)
    shutil.rmtree(ws)
    return {"seconds": seconds, "items": 20}
