"""The review flow from the shell, each user signed in and picked with --as; mistakes are one line and a non-zero
exit. The same test runs twice: on the embedded workspace, and as a client of ``research-kit serve`` in the
service mode (``RESEARCH_KIT_URL`` set, the workspace's folder out of the client's reach)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tests.conftest import PASSWORD, Project
from tests.functional.conftest import set_up_codes
from tests.functional.webapp import running_server
from tests.integration.review.test_review import as_user, run_study

from research_kit.core import audit, users

pytestmark = pytest.mark.slow  # the whole review from the shell, twice (about 20 s each)
LINE = f"{PASSWORD}\n"


@dataclass
class Shell:
    """A person's shell: the environment its commands see, and how its users sign in."""

    env: dict[str, str]
    url: str | None = None
    server_env: dict[str, str] | None = None  # the operator's shell on the server's machine (service mode)

    def run(self, *args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "COLUMNS": "200", **self.env}
        env.pop("RESEARCH_KIT_USER", None)
        return subprocess.run(
            [sys.executable, "-m", "research_kit", *args], env=env, capture_output=True, text=True, timeout=300,
            check=False, input=input_text,
        )  # fmt: skip

    def login(self, name: str) -> None:
        """``research-kit login NAME``. In the service mode a committee member or steward first sets one-time
        codes up in person on the server's machine (the operator's shell: the address shown once, a code from it
        typed back), then signs in from their own shell with a code."""
        if self.url is None or not users_needing_codes(name):
            done = self.run("login", name, "--password-stdin", input_text=LINE)
            assert done.returncode == 0, done.stderr
            return
        assert self.server_env is not None
        refused = self.run("login", name, "--password-stdin", input_text=LINE)  # not over the network
        assert (refused.returncode, "set up in person" in refused.stderr) == (5, True), refused.stderr
        totp = set_up_codes(self.server_env, name, LINE)
        code = totp.at(time.time() + 30)  # the next step's: the set-up spent this one's
        done = self.run("login", name, "--password-stdin", "--code", code, input_text=LINE)
        assert done.returncode == 0, done.stderr


def users_needing_codes(name: str) -> bool:
    return name in ("sam", "carla", "chen")


@pytest.fixture(params=["embedded", "service"])
def shell(request: pytest.FixtureRequest, project: Project, tmp_path: Path) -> Iterator[Shell]:
    with audit.acting("sam"):  # the workspace's operator makes its first steward on its own machine
        users.add(project.ws, "sam", "steward", PASSWORD)
    if request.param == "embedded":
        yield Shell({"RESEARCH_KIT_HOME": str(project.ws.root)})
        return
    policy = project.ws.policy_path
    policy.write_text(policy.read_text().replace('mode = "embedded"', 'mode = "service"'))
    operator = {"RESEARCH_KIT_HOME": str(project.ws.root), "XDG_RUNTIME_DIR": str(tmp_path / "operator-run")}
    with running_server(project.ws) as url:
        client = {"RESEARCH_KIT_URL": url, "RESEARCH_KIT_HOME": str(tmp_path / "not-the-workspace")}
        yield Shell(client, url, operator)


def ok(shell: Shell, *args: str) -> str:
    done = shell.run(*args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def refused(shell: Shell, code: int, text: str, *args: str) -> None:
    done = shell.run(*args)
    assert done.returncode == code, (done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1, done.stderr
    assert text in done.stderr
    assert "Traceback" not in done.stderr


def test_review_and_release_from_the_shell(shell: Shell, project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    shell.login("sam")
    refused(shell, 5, "not signed in as 'rita'", "--as", "rita", "users", "add", "eve", "--role", "steward")
    for name, role in (("rita", "researcher"), ("carla", "committee"), ("chen", "committee")):
        done = shell.run("--as", "sam", "users", "add", name, "--role", role, "--password-stdin", input_text=LINE)
        assert done.returncode == 0, done.stderr
        shell.login(name)
    assert "committee" in ok(shell, "--as", "sam", "users", "list")
    rid = str(run_study(project, monkeypatch))
    listed = ok(shell, "--as", "rita", "outputs", "list")
    assert "pending" in listed
    assert "s1" in listed
    refused(shell, 5, "only a submitted request is reviewed", "--as", "carla", "review", "approve", rid)
    refused(shell, 3, "mitigation 'shuffle'", "--as", "rita", "outputs", "mitigate", rid, "big", "--method", "shuffle")
    assert "midpoint6 applied" in ok(shell, "--as", "rita", "outputs", "mitigate", rid, "big", "--method", "midpoint6")
    assert "submitted" in ok(shell, "--as", "rita", "outputs", "submit", rid)
    refused(shell, 5, "needs the committee role", "--as", "rita", "review", "approve", rid)
    refused(shell, 3, "fails the SDC checks", "--as", "carla", "review", "approve", rid)
    refused(shell, 4, "no review request 99", "--as", "carla", "review", "show", "99")
    shown = ok(shell, "--as", "carla", "review", "show", rid)
    assert "fail (threshold): row 1, n: 3 patients" in shown
    assert "gate: column 'patient_id' is named like an identifier" in shown
    assert "still submitted" not in ok(shell, "--as", "carla", "review", "approve", rid, "--comment", "published")
    assert "the request is approved" in ok(shell, "--as", "chen", "review", "approve", rid, "--comment", "agreed")
    refused(shell, 5, "needs the committee role", "--as", "rita", "release", rid)
    out = ok(shell, "--as", "chen", "release", rid)
    bundle = Path(out.split("released: ")[1].strip().replace("\n", ""))
    assert "results.json" in zipfile.ZipFile(bundle).namelist()
    assert "released" in ok(shell, "--as", "carla", "review", "list", "--all")
    refused(shell, 5, "not signed in as 'eve'", "--as", "eve", "review", "list", "--all")  # not a user: reads nothing
    as_user(monkeypatch, "sam")
    assert [u.name for u in users.all_users(project.ws) if u.role == "committee"] == ["carla", "chen"]
