"""Commands killed at their fault-injection points, and at random moments: the workspace is whole afterwards.

Each kill is a real SIGKILL of a real process (no clean-up runs). Afterwards the invariants a registry relies
on hold: the audit log verifies, every registered extract is whole (its manifest and tables in place) and no
unregistered one is visible, reconciliation balances, and no raw national ID is anywhere in the workspace
outside ``raw/`` and ``quarantine/``.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from tests.conftest import Project
from tests.functional.webapp import review_template, review_ws  # noqa: F401 (the review workspace fixtures)

from research_kit.core import audit
from research_kit.core.extracts import list_extracts
from research_kit.core.faults import FAULT_ENV, POINTS
from research_kit.core.workspace import Workspace, init_workspace
from research_kit.pseudonymise.keys import new_key
from research_kit.simulator.export import SimulationSpec, simulate_export

INGEST = (
    "import sys; from pathlib import Path\n"
    "from research_kit.core.workspace import Workspace\n"
    "from research_kit.ingest.pipeline import ingest\n"
    "from research_kit.pseudonymise.keys import load_key\n"
    "ingest(Workspace(Path(sys.argv[1])), [Path(sys.argv[2])], sys.argv[4], load_key(Path(sys.argv[3])))\n"
)


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, set[str]]:
    base = tmp_path_factory.mktemp("crash")
    raw = base / "raw"
    simulate_export(SimulationSpec(patients=400, seed=5, format="csv", faults=True), raw)
    key_path, _ = new_key(base / "secrets" / "k.key")
    ids = set(pl.read_csv(raw / "patients.csv", infer_schema=False, encoding="latin-1")["national_id"].to_list())
    return raw, key_path, {i for i in ids if i and len(i) >= 8}


def _ingest(ws: Workspace, raw: Path, key: Path, extract: str, fault: str | None = None) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = fault
    args = [sys.executable, "-c", INGEST, str(ws.root), str(raw), str(key), extract]
    return subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def assert_whole(ws: Workspace, raw_ids: set[str]) -> None:
    """The invariants after any kill (read as the next command would: opening the workspace repairs)."""
    with ws.catalog() as conn:
        verdict = audit.verify(conn, ws.audit_path)
    assert verdict.ok, verdict.problem
    registered = {e.id for e in list_extracts(ws)}  # finishes a registration a kill interrupted
    visible = {p.name for p in ws.extracts_dir.iterdir() if p.is_dir() and not p.name.startswith(".")}
    assert visible <= registered
    for extract_id in registered:
        folder = ws.extracts_dir / extract_id
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        for table, facts in manifest["tables"].items():
            assert pl.scan_parquet(folder / f"{table}.parquet").select(pl.len()).collect().item() == facts["rows"]
        reconciliation = json.loads((folder / "reconciliation.json").read_text(encoding="utf-8"))
        assert all(reconciliation[table]["balanced"] for table in manifest["tables"])
    for path in ws.root.rglob("*"):
        inside = path.relative_to(ws.root).parts[0]
        if not path.is_file() or inside in ("raw", "quarantine"):
            continue
        data = path.read_bytes()
        try:
            frame = pl.read_parquet(path) if path.suffix == ".parquet" else None
        except pl.exceptions.ComputeError:  # a file the kill cut short: its bytes are scanned below
            frame = None
        if frame is not None:
            text = [c for c, t in frame.schema.items() if t == pl.String]
            found = frame.select(pl.any_horizontal(pl.col(c).is_in(list(raw_ids)) for c in text)).to_series()
            assert not text or not found.any(), f"a raw national ID in {path}"
        else:
            assert not any(i.encode() in data for i in raw_ids), f"a raw national ID in {path}"


@pytest.mark.parametrize("point", [p for p in POINTS if p.startswith(("ingest.", "audit."))])
def test_an_ingest_killed_at_each_fault_point_is_whole_or_absent(
    tmp_path: Path, export: tuple[Path, Path, set[str]], point: str
) -> None:
    raw, key, ids = export
    ws, _ = init_workspace(tmp_path / "ws")
    killed = _ingest(ws, raw, key, "k", fault=point)
    assert killed.wait() == -9  # SIGKILL, at the point
    assert_whole(ws, ids)
    registered = [e.id for e in list_extracts(ws)]
    # Killed after its registration committed: the next read finished it; before: nothing is registered.
    assert registered == (["k"] if point == "ingest.after_register" else [])
    again = _ingest(ws, raw, key, "k2")
    assert again.wait() == 0
    assert_whole(ws, ids)
    assert "k2" in {e.id for e in list_extracts(ws)}


def test_a_full_disk_during_an_ingest_leaves_the_workspace_as_it_was(
    tmp_path: Path, export: tuple[Path, Path, set[str]]
) -> None:
    raw, key, ids = export
    ws, _ = init_workspace(tmp_path / "ws")
    before = sorted(p.relative_to(ws.root) for p in ws.root.rglob("*") if "catalog.sqlite" not in p.name)
    failed = _ingest(ws, raw, key, "k", fault="ingest.before_register:enospc")
    assert failed.wait() != 0
    after = sorted(p.relative_to(ws.root) for p in ws.root.rglob("*") if "catalog.sqlite" not in p.name)
    assert [p for p in after if p not in before and not str(p).endswith(".lock")] == []
    assert_whole(ws, ids)


def test_an_audit_line_killed_before_its_commit_is_cut_and_the_cut_recorded(
    tmp_path: Path, export: tuple[Path, Path, set[str]]
) -> None:
    raw, key, ids = export
    ws, _ = init_workspace(tmp_path / "ws")
    killed = _ingest(ws, raw, key, "k", fault="audit.after_write")
    assert killed.wait() == -9
    assert '"extract.ingest"' in ws.audit_path.read_text(encoding="utf-8")  # written, never committed
    assert_whole(ws, ids)
    actions = [e["action"] for e in audit.read_entries(ws.audit_path)]
    assert "extract.ingest" not in actions
    assert actions[-1] == "audit.recovered"


@pytest.mark.slow
def test_two_hundred_ingests_killed_at_random_moments_never_leave_a_broken_workspace(
    tmp_path: Path, export: tuple[Path, Path, set[str]]
) -> None:
    raw, key, ids = export
    ws, _ = init_workspace(tmp_path / "ws")
    began = time.perf_counter()
    assert _ingest(ws, raw, key, "timing").wait() == 0
    whole = time.perf_counter() - began
    rng = random.Random(21)
    for trial in range(200):
        process = _ingest(ws, raw, key, f"t{trial}")
        time.sleep(rng.uniform(0.3, 1.05) * whole)
        process.kill()
        process.wait()
        assert_whole(ws, ids)


def test_a_full_disk_is_one_line_with_its_own_exit_code(
    tmp_path: Path, export: tuple[Path, Path, set[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.conftest import STEWARD, sign_in

    from research_kit.core.errors import NO_SPACE

    raw, key, ids = export
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    ws, _ = init_workspace(tmp_path / "ws")
    sign_in(ws)
    env = {**os.environ, "RESEARCH_KIT_HOME": str(ws.root), FAULT_ENV: "ingest.before_register:enospc"}
    done = subprocess.run(
        [sys.executable, "-m", "research_kit", "--as", STEWARD, "ingest", str(raw), "--extract", "k", "--key",
         str(key)], env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == NO_SPACE, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("research-kit: out of space")
    assert_whole(ws, ids)
    assert not list_extracts(ws)


@pytest.fixture
def approved(
    review_ws: Workspace,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> Workspace:
    """The review workspace with request 3 approved by two committee members; carla signed in to release it."""
    from tests.functional.webapp import S3, cli_sign_in

    from research_kit.review import decisions

    for member in ("carla", "chen"):
        with audit.acting(member):
            decisions.vote(review_ws, S3, "approve")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    cli_sign_in(review_ws, "carla")
    return review_ws


def _release(ws: Workspace, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RESEARCH_KIT_HOME": str(ws.root)}
    env.pop(FAULT_ENV, None)
    if fault:
        env[FAULT_ENV] = fault
    return subprocess.run([sys.executable, "-m", "research_kit", "--as", "carla", "release", "3"], env=env,
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def _state(ws: Workspace) -> str:
    from research_kit.review import requests

    return requests.get(ws, 3).state


def test_a_release_killed_before_it_commits_leaves_no_bundle_where_released_ones_are(approved: Workspace) -> None:
    from research_kit.review.release import releases_dir

    assert _release(approved, "release.after_bundle").returncode == -9
    assert _state(approved) == "approved"
    assert not list(releases_dir(approved).glob("*.zip"))
    with approved.catalog() as conn:
        assert audit.verify(conn, approved.audit_path).ok
    done = _release(approved)
    assert done.returncode == 0, done.stderr
    assert _state(approved) == "released"
    assert [p.name for p in releases_dir(approved).glob("*.zip")] == ["request-3-s3.zip"]
    assert not list((approved.scratch_dir / "releases").iterdir())  # the killed one's staged bundle is gone


def test_a_release_killed_after_it_commits_is_finished_by_the_next_look(approved: Workspace) -> None:
    from research_kit.actions import review as reviewing
    from research_kit.core.checksums import file_sha256
    from research_kit.review.release import releases_dir

    assert _release(approved, "release.after_commit").returncode == -9
    assert _state(approved) == "released"
    assert not list(releases_dir(approved).glob("*.zip"))
    found, _ = reviewing.show(approved, actor="carla", request=3)  # the next look finishes it
    assert found.bundle is not None
    with approved.catalog() as conn:
        recorded = conn.execute("SELECT bundle_sha256 FROM requests WHERE id = 3").fetchone()[0]
    assert file_sha256(Path(found.bundle)) == recorded
    with approved.catalog() as conn:
        assert audit.verify(conn, approved.audit_path).ok


@pytest.mark.slow  # a run killed, then another, ~12 s
def test_outputs_queued_by_a_run_killed_before_collecting_them_reach_review_with_the_next_run(
    project: Project,
) -> None:
    from tests.conftest import sign_in

    from research_kit.review import requests

    notebook = project.notebook(
        "table", "name = 'x'", "import pandas as pd\npd.DataFrame({'n': [40, 50]}).to_csv(f'{name}.csv', index=False)"
    )
    path = project.pipeline(
        "queued", {"make": {"notebook": notebook, "outputs": {"moderately_sensitive": {"t": "x.csv"}}}}
    )
    sign_in(project.ws, **{"test-runner": "researcher"})
    env = {**os.environ, "RESEARCH_KIT_HOME": str(project.ws.root), FAULT_ENV: "run.after_queue"}

    def run(*extra: str, fault: bool) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "research_kit", "run", str(path), "--extract", "e1", *extra],
            env=env if fault else {k: v for k, v in env.items() if k != FAULT_ENV},
            capture_output=True, text=True, timeout=600,
        )  # fmt: skip

    assert run(fault=True).returncode == -9
    with project.ws.catalog() as conn:
        assert conn.execute("SELECT count(*) FROM review_queue WHERE study = 'queued'").fetchone()[0] == 1
    assert not requests.all_requests(project.ws, study="queued")  # queued, not yet collected
    done = run("--force", fault=False)
    assert done.returncode == 0, done.stderr
    held = requests.all_requests(project.ws, study="queued")
    assert [o.name for r in held for o in r.outputs] == ["t"]
    with project.ws.catalog() as conn:
        assert audit.verify(conn, project.ws.audit_path).ok


@pytest.mark.parametrize(
    ("who", "argv", "unchanged"),
    [
        ("rob", ("outputs", "submit", "2"), "pending"),  # submit: its checks and its state change, one transaction
        ("chen", ("review", "approve", "3"), "submitted"),  # a vote
    ],
)
def test_a_review_step_killed_as_it_commits_is_absent_and_the_log_verifies(
    review_ws: Workspace,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    who: str,
    argv: tuple[str, ...],
    unchanged: str,
) -> None:
    from tests.functional.webapp import cli_sign_in

    from research_kit.review import requests

    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    cli_sign_in(review_ws, who)
    env = {**os.environ, "RESEARCH_KIT_HOME": str(review_ws.root), FAULT_ENV: "audit.after_write"}
    number = int(argv[-1])
    votes_before = [o.approvals for o in requests.get(review_ws, number).outputs]
    killed = subprocess.run([sys.executable, "-m", "research_kit", "--as", who, *argv], env=env,
                            capture_output=True, text=True, timeout=300)  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    after = requests.get(review_ws, number)
    assert after.state == unchanged
    assert [o.approvals for o in after.outputs] == votes_before
    with review_ws.catalog() as conn:
        assert audit.verify(conn, review_ws.audit_path).ok
