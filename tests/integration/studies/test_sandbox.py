"""The sandbox: a study notebook on the real extract sees its input view, its work folder and the broker, nothing else.

One attack notebook tries every escape the issue lists, each in its own guarded block, and writes what
happened as a declared output; the tests below read that record rule by rule. The same notebook also reads
its view, asks a DP query through the broker and writes its outputs, which must all work.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import polars as pl
import pytest
from tests.conftest import Project, grant

from research_kit.core import permits
from research_kit.core.extracts import get_extract
from research_kit.core.workspace import Workspace
from research_kit.dp import ledger
from research_kit.pseudonymise.pseudonyms import study_pseudonyms
from research_kit.pseudonymise.study_secrets import stored_secret
from research_kit.studies.runner import RunReport, run_pipeline
from research_kit.studies.spec import load_pipeline

ATTACK = """\
import json, os, socket, sqlite3
import research_kit as rk

tried = {}

def attempt(name, action):
    try:
        tried[name] = {"escaped": True, "got": str(action())[:200]}
    except Exception as exc:
        tried[name] = {"escaped": False, "error": type(exc).__name__}

def write(path):
    with open(path, "a") as fh:
        fh.write("x")
    return "written"

attempt("read key", lambda: open(key_file).read())
attempt("read raw export", lambda: os.listdir(raw_dir))
attempt("list workspace", lambda: os.listdir(workspace))
attempt("write catalog", lambda: sqlite3.connect(workspace + "/catalog.sqlite").execute(
    "INSERT INTO dp_grants (study, tier, picorho, granted_by, granted_at) VALUES ('s9', 'real', 1, 'me', 'now')"))
attempt("append audit", lambda: write(workspace + "/audit.jsonl"))
attempt("write outside work", lambda: write(project_dir + "/planted.txt"))
attempt("write the view", lambda: write("/rk/view/extract/patients.parquet"))
attempt("write the environment", lambda: write(os.__file__))
attempt("loopback socket", lambda: socket.create_connection(("127.0.0.1", port), timeout=3))
attempt("parent environment", lambda: open(f"/proc/{os.getppid()}/environ").read() or 1 / 0)
attempt("pid 1 environment", lambda: open("/proc/1/environ").read() or 1 / 0)
attempt("capabilities", lambda: int(open("/proc/self/status").read().split("CapEff:")[1].split()[0], 16) or 1 / 0)
attempt("inherited files", lambda: [f for f in os.listdir("/proc/self/fd") if int(f) > 2 and
                                     not os.readlink(f"/proc/self/fd/{f}").startswith(("socket:", "anon_inode:",
                                                                                        "pipe:", "/proc"))] or 1 / 0)
# The study and user variables can be changed, but they decide nothing: the broker charges the action's own study.
os.environ["RESEARCH_KIT_STUDY"] = "other"
attempt("charge another study", lambda: rk.dp.count("patients", study="other", rho=0.01).value)

patients = rk.load("patients")
answer = rk.dp.count("patients", rho=0.02)
facts = {
    "tried": tried,
    "processes": sorted(int(p) for p in os.listdir("/proc") if p.isdigit()),
    "environment": dict(os.environ),
    "rows": len(patients),
    "twin_rows": len(rk.load("patients", twin=True)),
    "answer_id": answer.id,
    "answer_rho": answer.rho,
    "cwd": os.getcwd(),
}
json.dump(facts, open("facts.json", "w"))
open("scratch.txt", "w").write("not declared")
os.symlink("/rk/view/extract/patients.parquet", "leak.parquet")
"""


PARAMETERS = "key_file = ''\nraw_dir = ''\nworkspace = ''\nproject_dir = ''\nport = 0"


@pytest.fixture(scope="module")
def listener() -> Iterator[int]:
    """A TCP listener on the host's loopback, as a database or the web app would be."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    stop = threading.Event()

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                conn.close()
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    server.close()


def publish_twin(project: Project) -> int:
    twin = project.ws.synthetic_dir / "e2"
    twin.mkdir(parents=True)
    for table in ("patients", "diagnoses", "phenotypes", "encounters"):
        (twin / f"{table}.parquet").hardlink_to(get_extract(project.ws, "e2").table_path(table))
    (twin / "twin.json").write_text(json.dumps({"extract": "e2", "content_hash": "x", "reference_year": 2026,
                                                "published_at": "2026-11-25T00:00:00+00:00"}))  # fmt: skip
    return len(pd.read_parquet(twin / "patients.parquet"))


@pytest.fixture(scope="module")
def attack(tmp_path_factory: pytest.TempPathFactory, registry_template: Path, listener: int) -> dict[str, Any]:
    import shutil

    mp = pytest.MonkeyPatch()
    base = tmp_path_factory.mktemp("sandbox")
    root = base / "ws"
    shutil.copytree(registry_template, root)
    key = base / "secrets" / "k.key"
    key.parent.mkdir()
    key.write_text("not the real key, but where one would be")
    mp.setenv("RESEARCH_KIT_HOME", str(root))
    mp.setenv("RESEARCH_KIT_KEY_FILE", str(key))
    mp.setenv("RESEARCH_KIT_USER", "test-runner")
    mp.setenv("RK_TEST_PARENT_SECRET", "parent-secret-value")
    project = Project(base / "project", Workspace(root))
    twin_rows = publish_twin(project)
    grant(project.ws, "attack", 0.5)
    grant(project.ws, "other", 0.5)
    project.notebook("attack", PARAMETERS, ATTACK)
    path = project.pipeline(
        "attack",
        {
            "escape": {
                "notebook": "notebooks/attack.ipynb",
                "parameters": {
                    "key_file": str(key),
                    "raw_dir": str(root / "raw"),
                    "workspace": str(root),
                    "project_dir": str(project.root),
                    "port": listener,
                },
                "outputs": {"highly_sensitive": {"facts": "facts.json"}},
            }
        },
    )
    try:
        report = run_pipeline(project.ws, load_pipeline(path), extract="e1")
        facts = json.loads(_output(report, "escape", "facts").read_text())
        return {"report": report, "facts": facts, "project": project, "key": key, "twin_rows": twin_rows}
    finally:
        mp.undo()


def _output(report: RunReport, action: str, name: str) -> Path:
    outcome = report.actions[action]
    assert outcome.outcome == "ran", outcome.error
    assert outcome.folder is not None
    return outcome.folder / "outputs" / next(o.path for o in outcome.outputs if o.name == name)


@pytest.mark.parametrize(
    "escape",
    [
        "read key",
        "read raw export",
        "list workspace",
        "write catalog",
        "append audit",
        "write outside work",
        "write the view",
        "write the environment",
        "loopback socket",
        "parent environment",
        "pid 1 environment",
        "capabilities",
        "inherited files",
        "charge another study",
    ],
)
def test_an_escape_fails_inside_the_sandbox(attack: dict[str, Any], escape: str) -> None:
    assert attack["facts"]["tried"][escape]["escaped"] is False, attack["facts"]["tried"][escape]


def test_the_notebook_still_reads_its_view_and_writes_its_outputs(attack: dict[str, Any]) -> None:
    facts, project = attack["facts"], attack["project"]
    assert facts["rows"] == len(pd.read_parquet(get_extract(project.ws, "e1").table_path("patients")))
    assert facts["twin_rows"] == attack["twin_rows"]
    assert facts["cwd"] == "/rk/work"
    assert not (project.root / "planted.txt").exists()


def test_no_other_process_is_visible(attack: dict[str, Any]) -> None:
    # bwrap's init and the kernel (and whatever the kernel started): never the runner or the machine's processes.
    assert len(attack["facts"]["processes"]) <= 3, attack["facts"]["processes"]


def test_the_environment_names_no_workspace_path_key_or_parent_variable(attack: dict[str, Any]) -> None:
    env = attack["facts"]["environment"]
    project = attack["project"]
    hidden = [str(project.ws.root), str(attack["key"]), "parent-secret-value"]
    assert {k: v for k, v in env.items() if any(h in v for h in hidden)} == {}
    assert "RESEARCH_KIT_HOME" not in env
    assert "RESEARCH_KIT_KEY_FILE" not in env


def test_a_dp_query_through_the_broker_is_charged_to_the_pipelines_study_with_its_id(attack: dict[str, Any]) -> None:
    facts, ws = attack["facts"], attack["project"].ws
    spends = ledger.history(ws, "attack")
    assert [(s.id, s.state) for s in spends] == [(facts["answer_id"], "spent")]
    assert spends[0].rho == pytest.approx(facts["answer_rho"]) == pytest.approx(0.02, rel=1e-6)
    balance = ledger.balance(ws, "attack")
    assert (balance.spent, balance.reserved) == (balance.granted - balance.remaining, 0)
    assert ledger.history(ws, "other") == []  # the other study's budget is untouched
    assert spends[0].who == "runner:test-runner"


def test_undeclared_files_and_symlinks_are_dropped_and_reported(attack: dict[str, Any]) -> None:
    outcome = attack["report"].actions["escape"]
    assert sorted(outcome.dropped) == ["leak.parquet (symlink)", "scratch.txt (file)"]
    assert outcome.folder is not None
    kept = sorted(p.relative_to(outcome.folder).as_posix() for p in outcome.folder.rglob("*"))
    assert kept == ["notebook.ipynb", "outputs", "outputs/facts.json", "provenance.json"]
    provenance = json.loads((outcome.folder / "provenance.json").read_text())
    assert provenance["sandbox"]["mode"] == "bwrap"
    assert provenance["dropped"] == outcome.dropped


def set_runner(project: Project, **values: object) -> None:
    """Change ``[runner]`` keys of the workspace policy."""
    text = project.ws.policy_path.read_text()
    for key, value in values.items():
        literal = f'"{value}"' if isinstance(value, str) else str(value)
        text, n = re.subn(rf"^{key} = .*$", f"{key} = {literal}", text, flags=re.M)
        assert n == 1, key
    project.ws.policy_path.write_text(text)


def test_with_the_sandbox_off_the_same_escapes_succeed_on_simulated_data(
    project: Project, listener: int, tmp_path: Path
) -> None:
    # What the tests above would see without the sandbox: they can fail.
    set_runner(project, sandbox="off")
    publish_twin(project)
    project.notebook("attack", PARAMETERS, ATTACK)
    key = tmp_path / "k.key"
    key.write_text("k")
    path = project.pipeline("s1", {"escape": {
        "notebook": "notebooks/attack.ipynb",
        "parameters": {"key_file": str(key), "raw_dir": str(project.ws.root), "workspace": str(project.ws.root),
                       "project_dir": str(tmp_path), "port": listener},
        "outputs": {"highly_sensitive": {"facts": "facts.json"}},
    }})  # fmt: skip
    grant(project.ws, "s1", 0.5)
    (project.ws.root / "raw").mkdir(exist_ok=True)
    report = run_pipeline(project.ws, load_pipeline(path), extract="e1")
    tried = json.loads(_output(report, "escape", "facts").read_text())["tried"]
    escaped = {name for name, result in tried.items() if result["escaped"]}
    assert {"read key", "list workspace", "write outside work", "loopback socket"} <= escaped
    assert any("sandbox OFF" in n for n in report.notices)
    provenance = json.loads((report.actions["escape"].folder / "provenance.json").read_text())  # type: ignore[operator]
    assert provenance["sandbox"]["mode"] == "off"


LIMITS = {
    "memory": ({"memory_mb": 400}, "data = b'x' * 1_500_000_000\ntime.sleep(20)", "its memory limit, 400 MiB"),
    "wall time": ({"wall_seconds": 4}, "time.sleep(60)", "its wall-time limit, 4 s"),
    "CPU time": ({"cpu_seconds": 4}, "while True:\n    pass", "its CPU-time limit, 4 s"),
    "work folder": (
        {"work_mb": 5},
        "for i in range(20):\n    open(f'part{i}.bin', 'wb').write(b'x' * 1_000_000)\ntime.sleep(20)",
        "its work folder limit, 5 MiB",
    ),
    "files": (
        {"max_files": 50},
        "for i in range(200):\n    open(f'empty{i}', 'w').close()\ntime.sleep(20)",
        "its limit of 50 files in its work folder",
    ),
    "processes": (
        {"max_processes": 40},
        "threads = [threading.Thread(target=time.sleep, args=(30,)) for _ in range(60)]\n"
        "for t in threads:\n    t.start()\ntime.sleep(20)",
        "its limit of 40 processes and threads",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("limit", list(LIMITS))
def test_an_action_over_a_limit_fails_with_the_reason_keeps_its_notebook_and_stores_nothing(
    project: Project, limit: str
) -> None:
    settings, code, reason = LIMITS[limit]
    set_runner(project, **settings)
    project.notebook("greedy", "n = 1", "import threading, time\nopen('out.txt', 'w').write('started')", code)
    path = project.pipeline("s1", {"greedy": {
        "notebook": "notebooks/greedy.ipynb", "outputs": {"moderately_sensitive": {"out": "out.txt"}},
    }})  # fmt: skip
    report = run_pipeline(project.ws, load_pipeline(path), extract="e1")
    outcome = report.actions["greedy"]
    assert outcome.outcome == "failed"
    assert f"exceeded {reason}" in outcome.error
    assert outcome.notebook
    assert Path(outcome.notebook).is_file()
    assert not (project.ws.root / "studies" / "s1" / "results").exists() or not any(
        (project.ws.root / "studies" / "s1" / "results").rglob("out.txt")
    )
    assert report.queued == 0


def test_a_run_refuses_to_start_unconfined_when_bwrap_cannot_work(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from research_kit.core.errors import PolicyRefusal
    from research_kit.sandbox import modes

    project.notebook("ok", "n = 1", "open('o.txt', 'w').write('x')")
    outputs = {"highly_sensitive": {"o": "o.txt"}}
    path = project.pipeline("s1", {"a": {"notebook": "notebooks/ok.ipynb", "outputs": outputs}})
    monkeypatch.setattr(modes, "find_bwrap", lambda: "/nonexistent/bwrap")
    with pytest.raises(PolicyRefusal, match=r"cannot confine researcher code \(/nonexistent/bwrap: .*\): install"):
        run_pipeline(project.ws, load_pipeline(path), extract="e1")
    with project.ws.catalog() as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0  # nothing ran


def test_sandbox_off_is_refused_on_data_the_simulator_did_not_make_unless_a_steward_waives_it(
    project: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    from research_kit.core import audit, users
    from research_kit.core.errors import PolicyRefusal
    from research_kit.sandbox.modes import confinement, unwaive, waive

    set_runner(project, sandbox="off")
    assert confinement(project.ws).mode == "off"  # the test registry is simulated: allowed, and said so
    with project.ws.catalog() as conn:
        conn.execute("UPDATE extracts SET manifest = json_set(manifest, '$.simulated', json('false')) WHERE id = 'e2'")
        conn.commit()
    with pytest.raises(PolicyRefusal, match="extract 'e2' was not made by the simulator"):
        confinement(project.ws)
    with audit.acting("sam"):
        users.add(project.ws, "sam", "steward")
        users.add(project.ws, "rita", "researcher")
    with audit.acting("rita"), pytest.raises(PolicyRefusal, match="needs the steward role"):
        waive(project.ws, reason="test")
    with audit.acting("sam"):
        waive(project.ws, reason="development copy of the registry, on an isolated machine")
    notices = confinement(project.ws).notices
    assert any("on real data, waived by sam: development copy" in n for n in notices)
    with project.ws.catalog() as conn:
        assert audit.verify(conn, project.ws.audit_path).ok
    entries = audit.read_entries(project.ws.audit_path)
    assert any(e["action"] == "sandbox.waived" and e["actor"] == "sam" for e in entries)
    with audit.acting("sam"):
        assert unwaive(project.ws) == 1
    with pytest.raises(PolicyRefusal):
        confinement(project.ws)


def test_the_console_repeats_nothing_the_notebook_chose(project: Project, tmp_path: Path) -> None:
    # Three ways a notebook could print a pseudonym on the researcher's console through an error line.
    steal = "import research_kit as rk\nsecret = rk.load('patients')['pseudonym'].iloc[0]\n"
    project.notebook("named", "n = 1", steal, "raise type('P' + secret.replace('-', '_'), (Exception,), {})()")
    project.notebook("ours", "n = 1", steal, "class BadInput(Exception):\n    pass\nraise BadInput(secret)")
    project.notebook(
        "dies",
        "n = 1",
        steal,
        # The process's stderr: ipykernel's watcher thread echoes it to the kernel's log (given a moment).
        "import os, time\nos.write(2, secret.encode() + b'\\n')\ntime.sleep(1)\nos._exit(1)",
    )
    # A link planted where the kernel's log once lived, to a host file the runner would then copy and chmod.
    host_file = tmp_path / "host.txt"
    host_file.write_text("the host's own")
    host_file.chmod(0o644)
    plant = f"import os\nos.symlink({str(host_file)!r}, os.environ['JUPYTER_RUNTIME_DIR'] + '/kernel.log')\nos._exit(1)"
    project.notebook("plant", "n = 1", plant)
    path = project.pipeline("s1", {
        name: {"notebook": f"notebooks/{name}.ipynb", "outputs": {"highly_sensitive": {"o": f"{name}.txt"}}}
        for name in ("named", "ours", "dies", "plant")
    })  # fmt: skip
    report = run_pipeline(project.ws, load_pipeline(path), extract="e1")
    extract = pl.read_parquet(get_extract(project.ws, "e1").table_path("patients"))["pseudonym"]
    with project.ws.catalog() as conn:  # the notebook sees the study's pseudonyms, in their order
        study = stored_secret(conn, permits.pseudonym_line(conn, "s1"))
    assert study is not None
    secret = str(study_pseudonyms(study, extract).sort()[0])
    errors = {name: a.error for name, a in report.actions.items()}
    assert all(a.outcome == "failed" for a in report.actions.values())
    for name, error in errors.items():
        for form in (secret, secret.replace("-", "_")):
            assert form not in error, name
    assert "an exception (message withheld" in errors["named"]
    assert "BadInput (message withheld" in errors["ours"]
    assert "the kernel died (its output is kept beside the notebook)" in errors["dies"]
    kept = Path(report.actions["dies"].notebook).with_suffix(".kernel.log")
    assert secret in kept.read_text()  # for the committee, owner-only
    assert kept.stat().st_mode & 0o077 == 0
    planted = Path(report.actions["plant"].notebook).with_suffix(".kernel.log")
    assert not planted.is_symlink()
    assert "the host's own" not in planted.read_text()
    assert (host_file.read_text(), host_file.stat().st_mode & 0o777) == ("the host's own", 0o644)
