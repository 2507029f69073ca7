"""'research-kit rerun --extract': every registered study, once, one at a time, resumed after a kill."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from tests.conftest import STEWARD, Project, sign_in

from research_kit.core import audit
from research_kit.core.locks import Busy, hold
from research_kit.studies.rerun import rerun_all
from research_kit.studies.runner import run_pipeline, studies_dir
from research_kit.studies.spec import content_hash, load_pipeline

TABLE = """\
import research_kit as rk
patients = rk.load("patients")
table = patients.groupby("sex").size().rename("n").reset_index()
table.to_csv("by_sex.csv", index=False)
"""


def test_rerun_reruns_every_registered_study_once_with_diffs(project: Project) -> None:
    project.notebook("table", "unused = 0", TABLE)
    action = {"notebook": "notebooks/table.ipynb", "outputs": {"moderately_sensitive": {"table": "by_sex.csv"}}}
    first = project.pipeline("t1", {"by_sex": action})
    second = project.pipeline("t2", {"by_sex": action})
    for path in (first, second):
        assert run_pipeline(project.ws, load_pipeline(path), extract="e1").outcome == "succeeded"

    report = rerun_all(project.ws, "e2")
    assert report.ok
    assert not report.resumed
    assert not report.already_done
    assert sorted((r.study, r.extract, r.actions["by_sex"].outcome) for r in report.runs) == [
        ("t1", "e2", "ran"), ("t2", "e2", "ran"),
    ]  # fmt: skip
    with project.ws.catalog() as conn:
        rows = conn.execute("SELECT study, extract, diff FROM review_queue WHERE extract = 'e2'").fetchall()
    assert len(rows) == 2
    diff = json.loads(rows[0]["diff"])
    # Compared with the version from e1, cell by cell (the counts by sex moved with the new export).
    assert diff["against"].startswith("the version of run")
    assert "on extract e1" in diff["against"]
    assert diff["kind"] == "table"
    assert diff["keys"] == ["sex"]
    assert diff["values"] == ["n"]
    assert diff["cells_changed"] >= 1
    assert diff["changed"][0]["change"] == diff["changed"][0]["new"] - diff["changed"][0]["old"]

    # Idempotent: the same extract again does nothing.
    assert rerun_all(project.ws, "e2").already_done

    # One at a time.
    with hold(studies_dir(project.ws) / ".rerun.lock", "a rerun"), pytest.raises(Busy, match="already running"):
        rerun_all(project.ws, "e1")


@pytest.mark.slow  # a rerun killed mid-action, ~11 s
def test_a_rerun_killed_midway_resumes_where_it_stopped(project: Project) -> None:
    project.notebook("quick", "unused = 0", "open('a.txt', 'w').write('a')")
    project.notebook("slow", "seconds = 0", "import time\ntime.sleep(seconds)\nopen('b.txt', 'w').write('b')")
    path = project.pipeline(
        "k1",
        {
            "a": {"notebook": "notebooks/quick.ipynb", "outputs": {"highly_sensitive": {"a": "a.txt"}}},
            "b": {
                "notebook": "notebooks/slow.ipynb",
                "needs": ["a"],
                "parameters": {"seconds": 3},
                "outputs": {"highly_sensitive": {"b": "b.txt"}},
            },
        },
    )
    with project.ws.catalog() as conn:  # registered, as a first 'run' by the permit's user would
        conn.execute(
            "INSERT INTO pipelines (study, path, title, registered_at, registered_by, sha256)"
            " VALUES ('k1', ?, 'k', '2026-01-01', ?, ?)",
            (str(path.resolve()), audit.current_actor(), content_hash(load_pipeline(path))),
        )
    sign_in(project.ws)  # a steward starts the rerun
    process = subprocess.Popen(
        [sys.executable, "-m", "research_kit", "--as", STEWARD, "rerun", "--extract", "e2"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        with project.ws.catalog() as conn:
            if conn.execute("SELECT 1 FROM run_actions WHERE action = 'a' AND outcome = 'ran'").fetchone():
                break
        time.sleep(0.2)
    else:
        pytest.fail("the rerun never finished its first action")
    time.sleep(0.5)  # b is running
    os.killpg(process.pid, signal.SIGKILL)  # the rerun and its kernels
    process.wait()
    with project.ws.catalog() as conn:
        assert conn.execute("SELECT state FROM reruns WHERE extract = 'e2'").fetchone()[0] == "running"

    resumed = rerun_all(project.ws, "e2")
    assert resumed.resumed
    assert resumed.ok
    assert {a: o.outcome for a, o in resumed.runs[0].actions.items()} == {"a": "cached", "b": "ran"}
    with project.ws.catalog() as conn:
        runs = [tuple(r) for r in conn.execute("SELECT outcome FROM runs ORDER BY id")]
        assert conn.execute("SELECT state FROM reruns WHERE extract = 'e2'").fetchone()[0] == "done"
    assert runs == [("interrupted",), ("succeeded",)]  # the killed run is marked, not left 'running'
    assert not list((project.ws.scratch_dir / "runs").glob("k1-*"))  # the killed run's scratch is gone


def test_the_cli_says_what_a_rerun_did(project: Project) -> None:
    sign_in(project.ws)
    env = os.environ | {"COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "research_kit", "rerun", "--extract", "e9"],
                          capture_output=True, text=True, check=False, env=env)  # fmt: skip
    assert done.returncode == 4
    assert done.stderr.strip() == "research-kit: not found: no extract 'e9' (registered: e1, e2)"
    done = subprocess.run([sys.executable, "-m", "research_kit", "rerun", "--extract", "e2"],
                          capture_output=True, text=True, check=False, env=env)  # fmt: skip
    assert done.returncode == 0
    assert "no study registered yet" in done.stdout
