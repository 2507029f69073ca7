"""`research-kit budget` and `research-kit query` from the shell."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import MEMBER, sign_in
from tests.integration.dp.conftest import Registry

pytestmark = pytest.mark.slow  # about ten command-line processes each


@pytest.fixture(autouse=True)
def signed_in(registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """ana and rob (researchers) and the committee member sign in on this test's command line."""
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    sign_in(registry.ws, ana="researcher", rob="researcher", **{MEMBER: "committee"})


def _run(registry: Registry, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RESEARCH_KIT_HOME": str(registry.ws.root), "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "research_kit", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_grant_query_and_show_from_the_shell(registry: Registry) -> None:
    refused = _run(registry, "--as", "ana", "budget", "grant", "shell", "--epsilon", "1", "--owner", "ana")
    assert refused.returncode == 5
    assert "'ana' is a researcher; granting a study budget or a data permit needs the committee role" in refused.stderr
    unowned = _run(registry, "--as", MEMBER, "budget", "grant", "shell", "--epsilon", "1")
    assert unowned.returncode == 3
    assert "study shell has no permit in force: name its researcher(s) with --owner NAME" in unowned.stderr
    granted = _run(registry, "--as", MEMBER, "budget", "grant", "shell", "--epsilon", "1", "--note", "DAC #1",
                   "--owner", "ana")  # fmt: skip
    assert granted.returncode == 0, granted.stderr
    assert "shell" in granted.stdout
    dry = _run(
        registry, "--as", "ana", "query", "count", "diagnoses", "--study", "shell", "--by", "status", "--dry-run"
    )
    assert dry.returncode == 0, dry.stderr
    assert "nothing spent" in dry.stdout
    asked = _run(
        registry, "--as", "ana", "query", "median", "diagnoses", "--study", "shell", "--column", "onset_age_years",
        "--bounds", "0,90", "--where", "sex = female", "--rho", "0.005", "--json",
    )  # fmt: skip
    assert asked.returncode == 0, asked.stderr
    answer = json.loads(asked.stdout)
    assert answer["rank_error"] > 0
    assert answer["rho"] <= 0.005
    assert 0 <= answer["table"][0]["value"] <= 90
    shown = _run(registry, "--as", "ana", "budget", "show", "shell")
    assert shown.returncode == 0
    assert "quantile(onset_age_years, 0.5)" in shown.stdout
    assert "spent" in shown.stdout


def test_shell_mistakes_are_one_line_with_their_exit_code(registry: Registry) -> None:
    cases = [
        (("--as", MEMBER, "budget", "grant", "x"), 3, "give the grant as --rho"),
        (("--as", MEMBER, "budget", "grant", "x", "--rho", "2000000", "--owner", "ana"), 3, "larger than any budget"),
        (("--as", "ana", "query", "count", "patients", "--study", "nobody"), 5, "study nobody has no data permit"),
        (
            ("--as", "ana", "query", "count", "patients", "--study", "shell", "--by", "eye_colour"),
            3,
            "no column 'eye_colour'",
        ),
        (("--as", "ana", "query", "mean", "patients", "--study", "shell"), 3, "needs --column"),
        (
            ("--as", "ana", "query", "count", "patients", "--study", "shell", "--extract", "nope"),
            4,
            "no extract 'nope'",
        ),
        (("--as", "ana", "query", "count", "patients", "--study", "../etc"), 3, "study '../etc'"),
        (
            ("--as", "rob", "query", "count", "patients", "--study", "shell"),
            5,
            "permit 1 (study shell) does not name rob: asking the real extract on its budget is for its users only",
        ),
    ]
    for args, code, message in cases:
        result = _run(registry, *args)
        assert result.returncode == code, (args, result.stderr)
        assert message in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
