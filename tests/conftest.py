from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from research_kit.core import audit, identity, users
from research_kit.core.workspace import Workspace, init_workspace
from research_kit.dp import ledger
from research_kit.ingest.pipeline import ingest
from research_kit.model.codes import CodeSystems, load_code_systems
from research_kit.pseudonymise.keys import load_key, new_key
from research_kit.simulator.export import SimulationSpec, simulate_export

STEWARD, MEMBER = "stew", "dac"  # the steward and the committee member tests' grants come from
PASSWORD = "a long test password"  # every signed-in test user's


def sign_in(ws: Workspace, **roles: str) -> None:
    """These users (name=role) exist, with a password, and are signed in on the test's command line, each as
    they would with ``research-kit login NAME`` (none named: the steward); several are picked with ``--as``."""
    people(ws, **roles)
    steward = next(u.name for u in users.all_users(ws) if "steward" in u.roles and u.active)
    for name in list(roles) or [steward]:
        user = next(u for u in users.all_users(ws) if u.name == name)
        if not user.has_password:
            with audit.acting(steward):
                users.set_password(ws, name, PASSWORD)
        identity.login(ws, name, PASSWORD)


def people(ws: Workspace, **roles: str) -> None:
    """Make sure these users exist (name=role), as a steward adds them; a steward and a committee member too."""
    everyone = users.all_users(ws)
    known = {u.name: u.roles for u in everyone}
    steward = next((u.name for u in everyone if "steward" in u.roles and u.active), None)
    if steward is None:
        steward = STEWARD
        with audit.acting(steward):
            users.add(ws, steward, "steward")
        known[steward] = frozenset({"steward"})
    if not any("committee" in r for r in known.values()):
        roles = {MEMBER: "committee", **roles}
    for name, role in roles.items():
        if name not in known:
            with audit.acting(steward):
                users.add(ws, name, role)


def grant(ws: Workspace, study: str, rho: float, *, owner: str | None = None, note: str = "") -> ledger.Balance:
    """A committee member grants ``study`` a budget, naming ``owner`` (default: the acting user) its owner."""
    owner = owner or audit.current_actor()
    people(ws, **{owner: "researcher"})
    member = next(u.name for u in users.all_users(ws) if u.role == "committee" and u.active)
    with audit.acting(member):
        return ledger.grant(ws, study, rho, note=note, owners=[owner])


def permit(ws: Workspace, study: str, *names: str, tier: str = "real", tables: str = "all") -> int:
    """A committee member (none of ``names``) grants ``study`` a data permit for ``names`` (researchers, added
    as such if new), for a year; with one in force already, its users are joined by ``names``. Its number."""
    from datetime import date, timedelta

    from research_kit.actions import permits as permit_actions
    from research_kit.core import permits as core_permits

    people(ws, **dict.fromkeys(names, "researcher"))
    member = next(u.name for u in users.all_users(ws) if "committee" in u.roles and u.active and u.name not in names)
    with ws.catalog() as conn:
        current = core_permits.in_force(conn, study)
    if current is not None:
        if set(names) <= set(current.users):
            return current.id
        joined = ",".join(sorted({*current.users, *names}))
        return permit_actions.amend(ws, actor=member, permit_id=current.id, note="test", users_named=joined).id
    return permit_actions.grant_directly(
        ws,
        actor=member,
        study=study,
        users_named=",".join(names),
        holder="Test Institute",
        purpose="a test study",
        category="scientific-research",
        tier=tier,
        tables=tables,
        until=str(date.today() + timedelta(days=365)),
        legal_basis="test: granted by the suite",
    ).id


def fixed_key(path: Path, label: str) -> Path:
    """A key file (mode 0600) whose key is fixed by ``label``: the pseudonyms, and so a twin's held-out patients
    and every figure measured on them, are the same on every run (a random key makes them change per run)."""
    import hashlib
    import os

    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(hashlib.sha256(label.encode()).hexdigest() + "\n")
    return path


@pytest.fixture(scope="session")
def codes() -> CodeSystems:
    return load_code_systems()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh workspace root for this test, as RESEARCH_KIT_HOME."""
    root = tmp_path / "ws"
    monkeypatch.setenv("RESEARCH_KIT_HOME", str(root))
    monkeypatch.setenv("RESEARCH_KIT_USER", "test-steward")  # the library's actor; the CLI signs in
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))  # this test's command-line sessions
    return root


@pytest.fixture
def workspace(home: Path) -> Workspace:
    ws, _ = init_workspace(home)
    return ws


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh key outside the workspace, as RESEARCH_KIT_KEY_FILE."""
    from research_kit.pseudonymise.keys import new_key

    path = tmp_path / "secrets" / "test.key"
    monkeypatch.setenv("RESEARCH_KIT_KEY_FILE", str(path))
    new_key(path)
    return path


def built_once(tmp_path_factory: pytest.TempPathFactory, name: str, build: Callable[[Path], Path]) -> Path:
    """``build(folder)``'s result, built once per test session, however many pytest-xdist workers run it.

    For templates tests copy and never change: the first worker builds under the folder every worker of the
    session shares (under an exclusive lock); the others wait for it, then reuse what it built.
    """
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return build(tmp_path_factory.mktemp(name))
    shared = tmp_path_factory.getbasetemp().parent / f"shared-{name}"
    with (shared.parent / f"shared-{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done = shared / ".built"
        if not done.exists():
            shutil.rmtree(shared, ignore_errors=True)
            shared.mkdir()
            done.write_text(str(build(shared)), encoding="utf-8")
        return Path(done.read_text(encoding="utf-8"))


@pytest.fixture(scope="session")
def registry_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with two extracts of a small registry: e1, then e2 (another export)."""
    return built_once(tmp_path_factory, "studies", _build_registry)


def _build_registry(base: Path) -> Path:
    ws, _ = init_workspace(base / "ws")
    key_path, _ = new_key(base / "secrets" / "k.key")
    for extract, seed in (("e1", 11), ("e2", 12)):
        raw = base / f"raw-{extract}"
        simulate_export(SimulationSpec(patients=600, seed=seed, format="parquet"), raw)
        ingest(ws, [raw], extract, load_key(key_path))
    return ws.root


@dataclass
class Project:
    """A study project (notebooks/, pipelines/) and the workspace its runs use."""

    root: Path
    ws: Workspace

    def notebook(self, name: str, parameters: str, *cells: str) -> str:
        """Write notebooks/NAME.ipynb: a parameters cell, then code cells; return its project path."""
        sources = [("parameters", parameters), *((None, c) for c in cells)]
        notebook: dict[str, Any] = {
            "cells": [
                {
                    "cell_type": "code",
                    "id": f"cell-{i}",
                    "metadata": {"tags": [tag]} if tag else {},
                    "source": source,
                    "outputs": [],
                    "execution_count": None,
                }
                for i, (tag, source) in enumerate(sources)
            ],
            "metadata": {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}},
            "nbformat": 4,
            "nbformat_minor": 5,
        }
        path = self.root / "notebooks" / f"{name}.ipynb"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(notebook))
        return f"notebooks/{name}.ipynb"

    def pipeline(self, study: str, actions: dict[str, Any], name: str | None = None, *, permitted: bool = True) -> Path:
        """Write the study's pipeline file; ``permitted``: a study without a data permit in force gets one for the
        acting user (the suite's tests are about what a permitted study does; tests of permits say False)."""
        if permitted:
            from research_kit.core import permits as core_permits

            with self.ws.catalog() as conn:
                unpermitted = core_permits.in_force(conn, study) is None
            if unpermitted:
                permit(self.ws, study, audit.current_actor())
        path = self.root / "pipelines" / f"{name or study}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump({"study": study, "title": f"Study {study}", "budget": {"rho": 0.5},
                                        "actions": actions}))  # fmt: skip
        return path


@pytest.fixture
def project(tmp_path: Path, registry_template: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    root = tmp_path / "ws"
    shutil.copytree(registry_template, root)
    monkeypatch.setenv("RESEARCH_KIT_HOME", str(root))
    monkeypatch.setenv("RESEARCH_KIT_USER", "test-runner")  # the library's actor; the CLI signs in
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))  # this test's command-line sessions
    monkeypatch.delenv("RESEARCH_KIT_TIER", raising=False)
    monkeypatch.delenv("RESEARCH_KIT_EXTRACT", raising=False)
    monkeypatch.delenv("RESEARCH_KIT_STUDY", raising=False)
    return Project(tmp_path / "project", Workspace(root))


LEFTOVER_GRACE_SECONDS = 5.0  # how long processes get to end after the last test, before they count as left behind
# Helpers a library starts for the pytest process itself (multiprocessing's, loky's): each ends when pytest ends.
PYTEST_OWN_HELPERS = (
    "from multiprocessing.resource_tracker import main",
    "from multiprocessing.forkserver import main",
    "loky.backend.resource_tracker import main",
)


@pytest.fixture(scope="session", autouse=True)
def no_process_left_behind() -> Iterator[None]:
    """Fail the session (an error at the teardown of its last test) naming each process the tests started and left
    running: JupyterLab servers, kernels, web servers... Each pytest process checks its own, so under pytest-xdist
    each worker checks what its tests started (the workers themselves are the controller's children, and threads
    are no processes); PYTEST_OWN_HELPERS are not counted. A process gets LEFTOVER_GRACE_SECONDS to end; those
    still running are then killed.

    On Linux, pytest is made a child subreaper (``PR_SET_CHILD_SUBREAPER``) for the session: a process whose
    parent ended (a JupyterLab whose ``research-kit lab`` died) is adopted by pytest rather than by init, so it is
    still found under it. The adopted ones that ended are reaped here.
    """
    import os
    import sys
    import time

    import psutil

    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
    yield

    me = os.getpid()

    def running() -> list[psutil.Process]:
        alive = []
        for proc in psutil.Process().children(recursive=True):
            try:
                if proc.status() == psutil.STATUS_ZOMBIE:
                    continue
                if proc.ppid() == me and any(h in " ".join(proc.cmdline()) for h in PYTEST_OWN_HELPERS):
                    continue
                alive.append(proc)
            except psutil.NoSuchProcess:
                continue
        return alive

    deadline = time.monotonic() + LEFTOVER_GRACE_SECONDS
    left = running()
    while left and time.monotonic() < deadline:
        time.sleep(0.2)
        left = running()
    named = []
    for proc in left:
        try:
            named.append(f"{proc.pid} (parent {proc.ppid()}): {' '.join(proc.cmdline())[:300]}")
            proc.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(left, timeout=10)
    for proc in psutil.Process().children():  # ended processes nobody waited for (adopted, or forgotten)
        try:
            if proc.status() == psutil.STATUS_ZOMBIE:
                os.waitpid(proc.pid, os.WNOHANG)
        except (psutil.Error, ChildProcessError):
            continue
    if named:
        pytest.fail(
            f"{len(named)} process(es) left running after the tests (now killed):\n" + "\n".join(named),
            pytrace=False,
        )
