"""A workspace with review requests in it, and a signed-in browser-like client, for the web app's tests.

The workspace is built once per test session (real pipeline runs, real checks) and copied for each test:

- request ``S1`` (study ``s1``, by rita, submitted): ``big`` passes, ``small`` fails the threshold rule on
  row 2, ``labels`` holds a cell ``<script>``, ``figure`` is drawn from ``small``, ``ols`` is a model and
  ``ids`` is gated; carla left one committee-private and one public comment; the study has a DP grant;
- request ``S2`` (study ``s2``, by rob, another researcher, pending);
- request ``S3`` (study ``s3``, by cora, a committee member who also runs studies, submitted).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from starlette.testclient import TestClient
from tests.conftest import Project, built_once, permit

from research_kit.actions import runs
from research_kit.core import audit, users
from research_kit.core.workspace import Workspace
from research_kit.dp import ledger
from research_kit.lab import still_running
from research_kit.review import decisions
from research_kit.studies.spec import load_pipeline
from research_kit.web.app import create_app

if TYPE_CHECKING:
    import psutil

PASSWORD = "correct horse battery"  # every test user's (the policy's minimum is 12 characters)
PEOPLE = {
    "sam": "steward",
    "rita": "researcher",
    "rob": "researcher",
    "carla": "committee",
    "chen": "committee",
    "cora": "committee",
}
S1, S2, S3 = 1, 2, 3
PRIVATE_NOTE = "committee only: this group is in the 2024 national report"
PUBLIC_NOTE = "please say where the 3 in row 2 comes from"
SCRIPT = "<script>alert('x')</script>"

S1_NOTEBOOK = f"""
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import statsmodels.api as sm
import research_kit as rk

rk.load("patients")
rk.outputs.table(pd.DataFrame({{"group": ["a", "b"], "n": [40, 55]}}), "big", counts=["n"], population="all")
small = pd.DataFrame({{"group": ["x", "y", "z"], "n": [40, 3, 25]}})
rk.outputs.table(small, "small", counts=["n"], population="all")
rk.outputs.table(pd.DataFrame({{"group": ["plain", {SCRIPT!r}], "n": [30, 60]}}), "labels", counts=["n"])
fig, ax = plt.subplots()
ax.bar(small["group"], small["n"])
rk.outputs.figure(fig, "figure", source="small")
x = pd.DataFrame({{"x": range(60)}}).assign(const=1.0)
rk.outputs.model(sm.OLS([v % 7 + 0.5 * v for v in range(60)], x).fit(), "ols")
rk.outputs.table(pd.DataFrame({{"patient_id": ["p"], "n": [50]}}), "ids", counts=["n"])
"""

OTHER_NOTEBOOK = """
import pandas as pd
import research_kit as rk

rk.outputs.table(pd.DataFrame({"group": ["a", "b"], "n": [20 + shift, 30]}), "other", counts=["n"])
"""


def _run(project: Project, study: str, author: str, notebook: str, outputs: dict[str, str]) -> int:
    path = project.pipeline(
        study,
        {"make": {"notebook": notebook, "parameters": {"shift": 0}, "outputs": {"moderately_sensitive": outputs}}},
    )
    report = runs.run(project.ws, actor=author, pipeline=load_pipeline(path), extract="e1")
    assert report.outcome == "succeeded", report.actions
    assert report.request is not None
    return report.request


def build_review_workspace(registry: Path, base: Path) -> Path:
    """Copy the registry workspace under ``base`` and fill it as the module docstring says; its root."""
    root = base / "ws"
    shutil.copytree(registry, root)
    ws = Workspace(root)
    project = Project(base / "project", ws)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("RESEARCH_KIT_HOME", str(root))
        for name in ("RESEARCH_KIT_TIER", "RESEARCH_KIT_EXTRACT", "RESEARCH_KIT_STUDY"):
            mp.delenv(name, raising=False)
        with audit.acting("sam"):
            for name, role in PEOPLE.items():
                users.add(ws, name, role)
                users.set_password(ws, name, PASSWORD)
        with audit.acting("carla"):
            ledger.grant(ws, "s1", 0.5, note="granted at the March meeting", owners=["rita"])
        with audit.acting("sam"):  # cora, on the committee, also runs a study of her own
            users.add(ws, "cora", "researcher")
        permit(ws, "s2", "rob")
        permit(ws, "s3", "cora")
        s1 = project.notebook("s1", "shift = 0", S1_NOTEBOOK)
        other = project.notebook("other", "shift = 0", OTHER_NOTEBOOK)
        s1_outputs = {
            "big": "big.csv",
            "small": "small.csv",
            "labels": "labels.csv",
            "figure": "figure.png",
            "ols": "ols.csv",
            "ids": "ids.csv",
        }
        ids = (
            _run(project, "s1", "rita", s1, s1_outputs),
            _run(project, "s2", "rob", other, {"other": "other.csv"}),
            _run(project, "s3", "cora", other, {"other": "other.csv"}),
        )
        assert ids == (S1, S2, S3)
        with audit.acting("rita"):
            decisions.submit(ws, S1)
        with audit.acting("cora"):
            decisions.submit(ws, S3)
        with audit.acting("carla"):
            decisions.comment(ws, S1, PRIVATE_NOTE, private=True)
            decisions.comment(ws, S1, PUBLIC_NOTE)
    return root


class Browser:
    """A TestClient that signs in as a user and posts forms with the page's CSRF token, as a browser would."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.client = TestClient(create_app(ws), follow_redirects=False)

    def sign_in(self, name: str, password: str = PASSWORD) -> Browser:
        page = self.client.get("/signin")
        token = field(page.text, "signin_token")
        done = self.client.post(
            "/signin", data={"name": name, "password": password, "signin_token": token, "next": "/requests"}
        )
        assert done.status_code == 303, done.text
        return self

    def csrf(self) -> str:
        """The session's CSRF token, as every page's sign-out form carries it."""
        return field(self.client.get("/requests").text, "csrf")

    def post(self, path: str, data: dict[str, str | list[str]] | None = None, *, csrf: str | None = None):  # type: ignore[no-untyped-def]
        return self.client.post(path, data={"csrf": self.csrf() if csrf is None else csrf, **(data or {})})

    def get(self, path: str):  # type: ignore[no-untyped-def]
        return self.client.get(path)


def field(html: str, name: str) -> str:
    found = re.search(rf'name="{name}" value="([^"]*)"', html)
    assert found is not None, f"no hidden field {name} on the page"
    return found.group(1)


@pytest.fixture(scope="session")
def review_template(registry_template: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return built_once(tmp_path_factory, "review", lambda base: build_review_workspace(registry_template, base))


def registry_key(registry_template: Path) -> Path:
    """The key the registry's extracts were made with (tests/conftest.py's _build_registry), as a server has it."""
    return registry_template.parent / "secrets" / "k.key"


@pytest.fixture
def review_ws(
    review_template: Path, registry_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Workspace:
    root = tmp_path / "ws"
    shutil.copytree(review_template, root)
    monkeypatch.setenv("RESEARCH_KIT_HOME", str(root))
    monkeypatch.setenv("RESEARCH_KIT_KEY_FILE", str(registry_key(registry_template)))  # a person's letter reads it
    monkeypatch.delenv(audit.ACTOR_ENV, raising=False)
    # The catalog holds the template's absolute paths (outputs, run folders): point every one at this copy.
    with Workspace(root).catalog() as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            for column in conn.execute(f"PRAGMA table_info({table})").fetchall():
                if column["type"] == "TEXT":
                    conn.execute(
                        f"UPDATE {table} SET {column['name']} = replace({column['name']}, ?, ?)",
                        (str(review_template), str(root)),
                    )
    return Workspace(root)


def cli_sign_in(ws: Workspace, *names: str) -> None:
    """Sign these users in on the test's command line, as ``research-kit login NAME`` does."""
    from research_kit.core import identity

    for name in names:
        identity.login(ws, name, PASSWORD)


def browser(ws: Workspace, name: str | None = None) -> Browser:
    b = Browser(ws)
    return b.sign_in(name) if name else b


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def running_server(ws: Workspace) -> Iterator[str]:
    """``research-kit serve`` on a free loopback port, as a user starts it; its base address."""
    port = free_port()
    log = Path(ws.root).parent / "serve.log"
    env = {**os.environ, "RESEARCH_KIT_HOME": str(ws.root)}
    env.pop(audit.ACTOR_ENV, None)
    with log.open("w") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "research_kit", "serve", "--port", str(port)], env=env, stdout=out, stderr=out
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/signin", timeout=2):
                    break
            except (urllib.error.URLError, ConnectionError) as exc:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"research-kit serve did not start:\n{log.read_text()}") from exc
                time.sleep(0.2)
        yield base
    finally:
        server.terminate()  # SIGTERM, as a service manager stops it: it stops what it started and exits
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)
            raise


def process_tree(pid: int) -> list[psutil.Process]:
    """``pid`` and every process under it, now."""
    import psutil

    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def left_running(procs: list[psutil.Process], timeout: float = 15.0) -> list[str]:
    """Those of ``procs`` still running ``timeout`` seconds from now at the latest (a zombie has ended), named."""
    import psutil

    def running() -> list[psutil.Process]:
        return still_running(procs)

    deadline = time.monotonic() + timeout
    while running() and time.monotonic() < deadline:
        time.sleep(0.1)
    named = []
    for proc in running():
        try:
            named.append(f"{proc.pid}: {' '.join(proc.cmdline())[:200]}")
        except psutil.Error:
            continue
    return named
