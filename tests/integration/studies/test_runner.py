"""The runner: order, parallel branches, the content-hash cache, provenance, tiers, failures."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from tests.conftest import Project, sign_in

from research_kit.core import audit
from research_kit.core.errors import RunFailed
from research_kit.core.extracts import get_extract
from research_kit.studies.runner import RunReport, run_pipeline
from research_kit.studies.spec import load_pipeline

COHORT = """\
import json, os
import research_kit as rk
from ipykernel.connect import get_connection_file
from research_kit.tiers import current_tier

patients = rk.load("patients")
patients[patients["birth_year"] >= min_year][["pseudonym", "sex"]].to_csv("cohort.csv", index=False)
open("scratch.txt", "w").write("not declared: must not be kept")
with open(get_connection_file()) as handle:
    transport = json.load(handle)["transport"]
info = {
    "tier": current_tier(),
    "extract": os.environ.get("RESEARCH_KIT_EXTRACT"),
    "study": os.environ.get("RESEARCH_KIT_STUDY"),
    "rows": len(patients),
    "transport": transport,
    "key_settings": sorted(k for k in os.environ if "KEY" in k),
}
json.dump(info, open("info.json", "w"))
"""

COUNT = """\
import os
import pandas as pd
seen = sorted(os.listdir("."))
cohort = pd.read_csv("cohort.csv")
table = cohort.groupby("sex").size().rename("n").reset_index()
table["label"] = label
table.to_csv(f"{label}.csv", index=False)
open("seen.txt", "w").write("\\n".join(seen))
"""


def three_actions(project: Project, study: str = "s1") -> Path:
    """cohort -> (count, other): two branches that can run at the same time."""
    project.notebook("cohort", "min_year = 1900", COHORT)
    project.notebook("count", "label = 'count'", COUNT)
    return project.pipeline(
        study,
        {
            "cohort": {
                "notebook": "notebooks/cohort.ipynb",
                "parameters": {"min_year": 1950},
                "outputs": {"highly_sensitive": {"cohort": "cohort.csv", "info": "info.json"}},
            },
            "count": {
                "notebook": "notebooks/count.ipynb",
                "needs": ["cohort"],
                "parameters": {"label": "count"},
                "outputs": {"moderately_sensitive": {"table": "count.csv"}, "highly_sensitive": {"seen": "seen.txt"}},
            },
            "other": {
                "notebook": "notebooks/count.ipynb",
                "needs": ["cohort"],
                "parameters": {"label": "other"},
                "outputs": {"moderately_sensitive": {"table": "other.csv"}},
            },
        },
    )


def outcomes(report: RunReport) -> dict[str, str]:
    return {name: a.outcome for name, a in report.actions.items()}


def output(report: RunReport, action: str, name: str) -> Path:
    outcome = report.actions[action]
    assert outcome.folder is not None
    path = next(o.path for o in outcome.outputs if o.name == name)
    return outcome.folder / "outputs" / path


def test_a_run_executes_in_order_keeps_declared_outputs_and_records_provenance(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RESEARCH_KIT_KEY_FILE", "/somewhere/secret.key")  # must not reach the notebook
    pipeline = load_pipeline(three_actions(project))
    report = run_pipeline(project.ws, pipeline, extract="e1", workers=2)

    assert report.outcome == "succeeded", [a.error for a in report.actions.values()]
    assert outcomes(report) == {"cohort": "ran", "count": "ran", "other": "ran"}
    info = json.loads(output(report, "cohort", "info").read_text())
    patients = pd.read_parquet(get_extract(project.ws, "e1").table_path("patients"))
    # The runner's tier: the real extract asked for, the study's ledger; IPC sockets; no key setting.
    assert info == {
        "tier": "real", "extract": "e1", "study": "s1", "rows": len(patients), "transport": "ipc", "key_settings": [],
    }  # fmt: skip
    counted = pd.read_csv(output(report, "count", "table"))
    assert counted["n"].sum() == (patients["birth_year"] >= 1950).sum()
    # The dependant started in a folder holding only what its need declared.
    assert output(report, "count", "seen").read_text().split("\n") == ["cohort.csv", "info.json"]
    cohort_folder = report.actions["cohort"].folder
    assert cohort_folder is not None
    kept = sorted(p.relative_to(cohort_folder).as_posix() for p in cohort_folder.rglob("*") if p.is_file())
    assert kept == ["notebook.ipynb", "outputs/cohort.csv", "outputs/info.json", "provenance.json"]
    assert output(report, "cohort", "cohort").stat().st_mode & 0o222 == 0  # stored read-only

    with project.ws.catalog() as conn:
        rows = {r["action"]: r for r in conn.execute("SELECT * FROM action_results")}
        packages = json.loads(
            conn.execute(
                "SELECT packages FROM environments WHERE hash = ?", (rows["cohort"]["environment"],)
            ).fetchone()[0]
        )
        run = conn.execute("SELECT * FROM runs WHERE id = ?", (report.run_id,)).fetchone()
    assert set(rows) == {"cohort", "count", "other"}
    assert rows["cohort"]["extract_hash"] == get_extract(project.ws, "e1").content_hash
    assert json.loads(rows["cohort"]["parameters"]) == {"min_year": 1950}
    assert rows["cohort"]["notebook"] == "notebooks/cohort.ipynb"
    assert packages["pandas"] == pd.__version__
    assert "python" in packages
    assert run["outcome"] == "succeeded"
    assert run["git_commit"]
    provenance = json.loads((cohort_folder / "provenance.json").read_text())
    assert provenance["cache_key"] == rows["cohort"]["cache_key"]
    assert provenance["outputs"][0]["sha256"]

    entries = audit.read_entries(project.ws.audit_path)
    actions = [e["action"] for e in entries]
    assert actions.count("study.action") == 3
    assert actions[-1] == "study.run"
    assert sorted(e["details"]["action"] for e in entries if e["action"] == "study.action") == [
        "cohort", "count", "other",
    ]  # fmt: skip
    with project.ws.catalog() as conn:
        assert audit.verify(conn, project.ws.audit_path).ok
        queued = conn.execute("SELECT action, name FROM review_queue ORDER BY action").fetchall()
    assert [tuple(r) for r in queued] == [("count", "table"), ("other", "table")]


@pytest.mark.slow  # eight runs, ~16 s
def test_an_action_reruns_only_when_something_it_depends_on_changed(project: Project) -> None:
    path = three_actions(project)
    first = run_pipeline(project.ws, load_pipeline(path), extract="e1")
    assert set(outcomes(first).values()) == {"ran"}

    again = run_pipeline(project.ws, load_pipeline(path), extract="e1")
    assert outcomes(again) == {"cohort": "cached", "count": "cached", "other": "cached"}
    assert output(again, "count", "table") == output(first, "count", "table")

    # A parameter: that action only.
    text = path.read_text()
    path.write_text(text.replace("label: other", "label: other2").replace("table: other.csv", "table: other2.csv"))
    changed = run_pipeline(project.ws, load_pipeline(path), extract="e1")
    assert outcomes(changed) == {"cohort": "cached", "count": "cached", "other": "ran"}

    # The notebook: that action; its dependants only if its outputs changed (here they did not).
    notebook = project.root / "notebooks" / "cohort.ipynb"
    cells = json.loads(notebook.read_text())
    cells["cells"].append({"cell_type": "markdown", "id": "note", "metadata": {}, "source": "A note."})
    notebook.write_text(json.dumps(cells))
    edited = run_pipeline(project.ws, load_pipeline(path), extract="e1")
    assert outcomes(edited) == {"cohort": "ran", "count": "cached", "other": "cached"}

    # Upstream outputs: a new min_year changes the cohort, so both dependants rerun.
    path.write_text(path.read_text().replace("min_year: 1950", "min_year: 1970"))
    upstream = run_pipeline(project.ws, load_pipeline(path), extract="e1")
    assert set(outcomes(upstream).values()) == {"ran"}

    # Another extract, and --force.
    assert set(outcomes(run_pipeline(project.ws, load_pipeline(path), extract="e2")).values()) == {"ran"}
    forced = run_pipeline(project.ws, load_pipeline(path), extract="e2", force=True)
    assert set(outcomes(forced).values()) == {"ran"}
    # --action: that action and what it needs, nothing else.
    only = run_pipeline(project.ws, load_pipeline(path), extract="e2", action="count")
    assert outcomes(only) == {"cohort": "cached", "count": "cached"}


def test_a_failed_action_stops_only_its_dependants_and_keeps_its_notebook(project: Project) -> None:
    project.notebook("ok", "name = 'a'", "open(f'{name}.txt', 'w').write(name)")
    project.notebook("boom", "divisor = 0", "x = 1", "y = 1 / divisor")
    path = project.pipeline(
        "s2",
        {
            "a": {"notebook": "notebooks/ok.ipynb", "outputs": {"highly_sensitive": {"a": "a.txt"}}},
            "b": {"notebook": "notebooks/boom.ipynb", "needs": ["a"]},
            "c": {
                "notebook": "notebooks/ok.ipynb",
                "needs": ["b"],
                "parameters": {"name": "c"},
                "outputs": {"highly_sensitive": {"c": "c.txt"}},
            },
            "d": {
                "notebook": "notebooks/ok.ipynb",
                "needs": ["a"],
                "parameters": {"name": "d"},
                "outputs": {"highly_sensitive": {"d": "d.txt"}},
            },
            "e": {
                "notebook": "notebooks/ok.ipynb",
                "parameters": {"name": "e"},
                "outputs": {"moderately_sensitive": {"e": "missing.csv"}},
            },
        },
    )
    sign_in(project.ws, **{"test-runner": "researcher"})
    done = subprocess.run(
        [sys.executable, "-m", "research_kit", "run", str(path), "--extract", "e1"],
        capture_output=True, text=True, check=False, env=os.environ | {"COLUMNS": "200"},
    )  # fmt: skip
    assert done.returncode == RunFailed.exit_code, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    # Cell 3 of the source notebook (Papermill's injected cell is not counted), and the exception's name:
    # its message could quote real data, so the console does not get it (the kept notebook has it).
    assert "action b failed at cell 3 (`y = 1 / divisor`): ZeroDivisionError (message withheld" in done.stdout
    assert "division by zero" not in done.stdout
    assert "action e failed: declared output not written: e (missing.csv)" in done.stdout
    with project.ws.catalog() as conn:
        rows = {r["action"]: r for r in conn.execute("SELECT * FROM run_actions")}
        run = conn.execute("SELECT outcome FROM runs").fetchone()
    assert {a: r["outcome"] for a, r in rows.items()} == {
        "a": "ran", "b": "failed", "c": "skipped", "d": "ran", "e": "failed",
    }  # fmt: skip
    assert run["outcome"] == "failed"
    kept_path = Path(rows["b"]["notebook"])
    assert kept_path.stat().st_mode & 0o077 == 0  # real-data output: the workspace's owner only
    kept = json.loads(kept_path.read_text())
    assert any(o.get("ename") == "ZeroDivisionError" for c in kept["cells"] for o in c.get("outputs", []))
    assert rows["c"]["error"] == "not run: b did not succeed"
    # A failure is not cached: the next run tries again, the successes are reused.
    again = run_pipeline(project.ws, load_pipeline(path), extract="e1")
    assert outcomes(again) == {"a": "cached", "b": "failed", "c": "skipped", "d": "cached", "e": "failed"}


@pytest.mark.slow  # a Dask LocalCluster starts and stops (about 14 s)
def test_the_dask_executor_runs_the_same_pipeline_to_the_same_outputs(project: Project) -> None:
    from distributed import LocalCluster

    pipeline = load_pipeline(three_actions(project))
    local = run_pipeline(project.ws, pipeline, extract="e1")
    # Its own loopback LocalCluster, then a running cluster named by its scheduler's address.
    dask = run_pipeline(project.ws, pipeline, extract="e1", executor="dask", workers=2, force=True)
    with LocalCluster(n_workers=1, threads_per_worker=1, host="127.0.0.1", dashboard_address=None) as cluster:
        remote = run_pipeline(
            project.ws, pipeline, extract="e1", executor="dask", scheduler=cluster.scheduler_address, force=True
        )
    for report in (dask, remote):
        assert report.outcome == "succeeded"
        assert set(outcomes(report).values()) == {"ran"}
        for action in ("cohort", "count", "other"):
            produced = [o.sha256 for o in report.actions[action].outputs]
            assert produced == [o.sha256 for o in local.actions[action].outputs]
    with project.ws.catalog() as conn:
        assert [r[0] for r in conn.execute("SELECT executor FROM runs ORDER BY id")] == ["local", "dask", "dask"]


def test_the_slurm_configuration_renders_a_job_script(project: Project) -> None:
    from research_kit.core.config import load_policy
    from research_kit.studies.executors import slurm_cluster

    policy = project.ws.policy_path.read_text()
    project.ws.policy_path.write_text(
        policy.replace('slurm_queue = ""', 'slurm_queue = "short"')
        .replace('slurm_account = ""', 'slurm_account = "rd-registry"')
        .replace("slurm_cores = 2", "slurm_cores = 4")
        .replace('slurm_memory = "8GB"', 'slurm_memory = "16GB"')
    )
    cluster = slurm_cluster(load_policy(project.ws.root), scheduler_host="127.0.0.1")
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    lines = script.splitlines()
    for directive in ("#SBATCH -p short", "#SBATCH -A rd-registry", "#SBATCH --cpus-per-task=4", "#SBATCH --mem=15G",
                      "#SBATCH -t 02:00:00", "#SBATCH -J research-kit"):  # fmt: skip
        assert directive in lines, script
    # Each node checks, before its worker starts, that it can confine researcher code as this machine does.
    check = lines.index(f"{sys.executable} -m research_kit.sandbox.modes || exit 1")
    worker = next(line for line in lines if "dask_worker" in line)
    assert check < lines.index(worker)
    assert worker.startswith(sys.executable)
    assert "tcp://127.0.0.1:" in worker
    assert "--nthreads 1" in worker


def test_rk_load_reads_the_twin_outside_the_runner(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    import research_kit as rk
    from research_kit.core.errors import BadInput, MissingData

    with pytest.raises(MissingData, match="no synthetic twin published yet"):
        rk.load("patients")
    twin = project.ws.synthetic_dir / "e2"
    shutil.copytree(get_extract(project.ws, "e2").path, twin)
    (twin / "twin.json").write_text(json.dumps({"extract": "e2", "content_hash": "x", "reference_year": 2026,
                                                "published_at": "2026-11-25T00:00:00+00:00"}))  # fmt: skip
    tables = rk.load()
    assert set(tables) == {"patients", "diagnoses", "phenotypes", "encounters"}
    assert len(tables["patients"]) == len(pd.read_parquet(twin / "patients.parquet"))
    monkeypatch.setenv("RESEARCH_KIT_TIER", "real")
    monkeypatch.setenv("RESEARCH_KIT_EXTRACT", "e1")
    real = rk.load("patients", columns=["sex"])
    assert list(real.columns) == ["sex"]
    assert len(real) == len(pd.read_parquet(get_extract(project.ws, "e1").table_path("patients")))
    with pytest.raises(BadInput, match="no such table"):
        rk.load("visits")


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--executor", "mpi"], "bad input: --executor 'mpi': use local, dask, slurm"),
        (["--scheduler", "tcp://127.0.0.1:1"], "bad input: --scheduler goes with --executor dask"),
        (["--action", "nope"], "--action 'nope': no such action (actions: cohort, count, other)"),
        (["--extract", "e9"], "not found: no extract 'e9' (registered: e1, e2)"),
    ],
)
def test_a_run_refuses_bad_options_before_anything_runs(project: Project, arguments: list[str], message: str) -> None:
    path = three_actions(project)
    sign_in(project.ws, **{"test-runner": "researcher"})
    done = subprocess.run([sys.executable, "-m", "research_kit", "run", str(path), *arguments],
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode in (3, 4)
    assert done.stderr.count("\n") == 1
    assert message in done.stderr
    with project.ws.catalog() as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
