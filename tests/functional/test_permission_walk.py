"""The permissions table, walked through the command line and the web app: every state x action x person.

For a request forced into each state, each person (its author, an owner of its study, a committee member
who reviews it, a steward, an unrelated researcher) signs in and tries each action, on the command line
(``research-kit --as NAME ...``) and in the review web app. Each interface must refuse exactly what
:func:`research_kit.core.permissions.allowed` refuses, and let through (up to the action's own checks)
everything else.
"""

from __future__ import annotations

import contextvars
import shutil
from pathlib import Path

import pytest
from tests.conftest import permit
from tests.functional.webapp import PASSWORD, S2, Browser, cli_sign_in
from typer.testing import CliRunner

from research_kit.cli import app, common
from research_kit.core import audit, users
from research_kit.core.errors import PolicyRefusal
from research_kit.core.permissions import Act, State, allowed
from research_kit.core.workspace import Workspace
from research_kit.review import requests as review

N = str(S2)  # rob's request for study s2, one output ("other") that passes every check
PEOPLE = ("rob", "olga", "carla", "sam", "rita")  # author, owner, reviewer, steward, another researcher
CLI = {
    Act.READ: ["review", "show", N],
    Act.RECHECK: ["outputs", "check", N],
    Act.SUBMIT: ["outputs", "submit", N],
    Act.MITIGATE: ["outputs", "mitigate", N, "other", "--method", "round"],
    Act.COMMENT: ["review", "comment", N, "a note"],
    Act.COMMENT_PRIVATELY: ["review", "comment", N, "a note", "--private"],
    Act.APPROVE: ["review", "approve", N, "--comment", "fine"],
    Act.REJECT: ["review", "reject", N, "--comment", "no"],
    Act.RETURN: ["review", "return", N, "--comment", "change it"],
    Act.RELEASE: ["release", N],
}
WEB = {  # the web app has no recheck or mitigate: the researcher does those on the command line
    Act.READ: ("get", f"/requests/{N}", {}),
    Act.SUBMIT: ("post", f"/requests/{N}/submit", {}),
    Act.COMMENT: ("post", f"/requests/{N}/comment", {"comment": "a note"}),
    Act.COMMENT_PRIVATELY: ("post", f"/requests/{N}/comment", {"comment": "a note", "private": "on"}),
    Act.APPROVE: ("post", f"/requests/{N}/vote", {"decision": "approve", "output": "make/other", "comment": "ok"}),
    Act.REJECT: ("post", f"/requests/{N}/vote", {"decision": "reject", "comment": "no"}),
    Act.RETURN: ("post", f"/requests/{N}/vote", {"decision": "return", "comment": "change it"}),
    Act.RELEASE: ("post", f"/requests/{N}/release", {}),
}


def _force(ws: Workspace, state: State) -> None:
    with ws.catalog() as conn:
        conn.execute("UPDATE requests SET state = ? WHERE id = ?", (state.value, S2))


def _may(ws: Workspace, act: Act, state: State, name: str) -> bool:
    with ws.catalog() as conn:
        request = review.get(ws, S2)
        return allowed(act, state, review.person(conn, name, request))


@pytest.fixture
def walk(review_ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    with audit.acting("sam"):
        users.add(review_ws, "olga", "researcher", PASSWORD)
    permit(review_ws, "s2", "olga")  # the committee named olga a user of s2's permit (rob wrote the request)
    cli_sign_in(review_ws, *PEOPLE)
    return review_ws


def _restore(ws: Workspace, snapshot: Path) -> None:
    shutil.rmtree(ws.root)
    shutil.copytree(snapshot, ws.root)


@pytest.mark.slow
def test_the_command_line_refuses_exactly_what_the_table_refuses(walk: Workspace, tmp_path: Path) -> None:
    runner, wrong, seen = CliRunner(), [], {True: 0, False: 0}
    for state in State:
        _force(walk, state)
        snapshot = tmp_path / f"snapshot-{state}"
        shutil.copytree(walk.root, snapshot)
        for act, args in CLI.items():
            for name in PEOPLE:
                common._acting.clear()
                result = contextvars.copy_context().run(runner.invoke, app, ["--as", name, *args])
                refused = isinstance(result.exception, PolicyRefusal) or "no review request" in str(result.exception)
                seen[refused] += 1
                if refused == _may(walk, act, state, name):
                    wrong.append((state.value, act.value, name, result.exit_code, str(result.exception)[:120]))
                if result.exit_code == 0:
                    _restore(walk, snapshot)
    assert wrong == []
    assert seen[True] > 100
    assert seen[False] > 50


@pytest.mark.slow
def test_the_web_app_refuses_exactly_what_the_table_refuses(walk: Workspace, tmp_path: Path) -> None:
    browsers = {name: Browser(walk).sign_in(name) for name in PEOPLE}
    wrong, seen = [], {True: 0, False: 0}
    for state in State:
        _force(walk, state)
        snapshot = tmp_path / f"snapshot-{state}"
        shutil.copytree(walk.root, snapshot)
        for act, (method, path, data) in WEB.items():
            for name, browser in browsers.items():
                got = browser.get(path) if method == "get" else browser.post(path, data)  # type: ignore[arg-type]
                refused = got.status_code in (403, 404)
                seen[refused] += 1
                if refused == _may(walk, act, state, name):
                    wrong.append((state.value, act.value, name, got.status_code))
                if got.status_code in (200, 303) and method == "post":
                    _restore(walk, snapshot)
    assert wrong == []
    assert seen[True] > 80
    assert seen[False] > 40
