"""Every mistake found by trying the platform as a careless user: one line, the right exit code, no traceback.

The command line runs in process (its real entry point, as the fuzzing does); the web app through Starlette's
TestClient, signed in as its users are.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
from pathlib import Path

import pytest
from starlette.testclient import TestClient
from tests.conftest import MEMBER, STEWARD, sign_in
from tests.functional.webapp import PASSWORD, browser

from research_kit.cli import common, main
from research_kit.core import errors
from research_kit.core.workspace import Workspace
from research_kit.web.app import create_app

HUGE = str(2**70)


def run(*argv: str) -> tuple[int, str]:
    """``research-kit ARGV`` in this process: (exit code, stderr)."""
    err = io.StringIO()
    common._acting.clear()
    code = 0
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            contextvars.copy_context().run(main, list(argv))
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
    return code, err.getvalue()


def one_line(code: int, err: str, expected: int, says: str) -> None:
    assert code == expected, err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert says in err, err


@pytest.fixture
def signed(workspace: Workspace) -> Workspace:
    sign_in(workspace, ana="researcher", **{MEMBER: "committee", STEWARD: "steward"})
    return workspace


@pytest.mark.parametrize("command", [("review", "show", HUGE), ("review", "comment", HUGE, "hello"),
                                     ("release", HUGE), ("review", "show", "0")])  # fmt: skip
def test_a_request_id_no_row_can_have_is_not_found(signed: Workspace, command: tuple[str, ...]) -> None:
    one_line(*run("--as", MEMBER, *command), errors.MissingData.exit_code, "no review request")


def test_a_cost_below_the_ledgers_unit_and_an_empty_filter_are_bad_input(signed: Workspace) -> None:
    query = ("--as", "ana", "query", "count", "patients", "--study", "s")
    one_line(*run(*query, "--rho", "1e-300"), errors.BadInput.exit_code, "smaller than the ledger's unit")
    one_line(*run("--as", MEMBER, "budget", "grant", "s", "--rho", "nan", "--owner", "ana"), 3, "finite number")


def test_a_notebook_whose_cells_are_a_number_is_named(tmp_path: Path) -> None:
    kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    (tmp_path / "n.ipynb").write_text(json.dumps({"cells": 3, "metadata": kernel, "nbformat": 4,
                                                 "nbformat_minor": 5}))  # fmt: skip
    (tmp_path / "p.yml").write_text("study: s\ntitle: t\nbudget: {rho: 0.1}\nactions:\n  a: {notebook: n.ipynb}\n")
    one_line(*run("pipeline", "check", str(tmp_path / "p.yml")), 3, "n.ipynb: not a valid Jupyter notebook (cells")


@pytest.mark.parametrize(
    ("text", "says"),
    [
        (b"[sdc]\nmin_cell_count = 10\n# caf\xe9\n", "line 3 is not UTF-8 text"),
        (b"[dp]\ndefault_query_rho = nan\n", "[dp].default_query_rho must be a finite number"),
        (b"[dp]\nmax_study_rho = inf\n", "[dp].max_study_rho must be a finite number"),
        (b"[sdc]\ndominance_k = -inf\n", "[sdc].dominance_k must be a finite number"),
    ],
)
def test_a_policy_that_is_not_utf8_or_holds_nan_or_inf_is_refused(signed: Workspace, text: bytes, says: str) -> None:
    (signed.root / "research-kit.toml").write_bytes(text)
    one_line(*run("--as", STEWARD, "budget", "show"), errors.BadInput.exit_code, says)


def test_an_internal_error_has_its_own_exit_code_and_keeps_its_traceback(
    signed: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from research_kit.actions import budget

    def broken(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(budget, "visible_studies", broken)
    code, err = run("--as", STEWARD, "budget", "show")
    assert code == errors.INTERNAL_ERROR
    assert "Traceback" in err
    assert "internal error: this is a bug in research-kit" in err


def test_a_control_character_from_a_file_is_shown_escaped_never_sent_to_the_terminal(tmp_path: Path) -> None:
    (tmp_path / "p.yml").write_text('study: "s\\e[31m"\ntitle: t\nbudget: {rho: 0.1}\nactions: {}\n')
    code, err = run("pipeline", "check", str(tmp_path / "p.yml"))
    assert code == errors.BadInput.exit_code
    assert "\x1b" not in err
    assert "\\x1b[31m" in err


def test_the_web_app_answers_a_huge_request_id_with_404_not_500(review_ws: Workspace) -> None:
    page = browser(review_ws, "carla")
    assert page.get(f"/requests/{HUGE}").status_code == 404
    assert page.post(f"/requests/{HUGE}/comment", {"body": "x"}).status_code == 404
    api = TestClient(create_app(review_ws))
    token = api.post("/api/v1/login", json={"name": "carla", "password": PASSWORD}).json()["token"]
    got = api.get(f"/api/v1/requests/{HUGE}", headers={"authorization": f"Bearer {token}"})
    assert got.status_code == 404
    assert "no review request" in got.json()["error"]
