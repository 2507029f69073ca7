"""The review flow from the shell, each user signed in and picked with --as; mistakes are one line and a non-zero
exit."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from tests.conftest import PASSWORD, Project
from tests.integration.review.test_review import as_user, run_study

from research_kit.core import users


def cli(home: Path, *args: str, input_text: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RESEARCH_KIT_HOME": str(home), "COLUMNS": "200"}
    env.pop("RESEARCH_KIT_USER", None)
    return subprocess.run(
        [sys.executable, "-m", "research_kit", *args], env=env, capture_output=True, text=True, timeout=300,
        check=False, input=input_text,
    )  # fmt: skip


def ok(home: Path, *args: str) -> str:
    done = cli(home, *args)
    assert done.returncode == 0, done.stderr
    return done.stdout


def refused(home: Path, code: int, text: str, *args: str) -> None:
    done = cli(home, *args)
    assert done.returncode == code, (done.stdout, done.stderr)
    assert done.stderr.count("\n") == 1, done.stderr
    assert text in done.stderr
    assert "Traceback" not in done.stderr


def test_review_and_release_from_the_shell(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    home = project.ws.root
    line = f"{PASSWORD}\n"
    assert cli(home, "users", "add", "sam", "--role", "steward", "--password-stdin", input_text=line).returncode == 0
    assert cli(home, "login", "sam", "--password-stdin", input_text=line).returncode == 0
    refused(home, 5, "not signed in as 'rita'", "--as", "rita", "users", "add", "eve", "--role", "steward")
    for name, role in (("rita", "researcher"), ("carla", "committee"), ("chen", "committee")):
        done = cli(home, "--as", "sam", "users", "add", name, "--role", role, "--password-stdin", input_text=line)
        assert done.returncode == 0, done.stderr
        assert cli(home, "login", name, "--password-stdin", input_text=line).returncode == 0
    assert "committee" in ok(home, "--as", "sam", "users", "list")
    rid = str(run_study(project, monkeypatch))
    listed = ok(home, "--as", "rita", "outputs", "list")
    assert "pending" in listed
    assert "s1" in listed
    refused(home, 5, "only a submitted request is reviewed", "--as", "carla", "review", "approve", rid)
    refused(home, 3, "mitigation 'shuffle'", "--as", "rita", "outputs", "mitigate", rid, "big", "--method", "shuffle")
    assert "midpoint6 applied" in ok(home, "--as", "rita", "outputs", "mitigate", rid, "big", "--method", "midpoint6")
    assert "submitted" in ok(home, "--as", "rita", "outputs", "submit", rid)
    refused(home, 5, "needs the committee role", "--as", "rita", "review", "approve", rid)
    refused(home, 3, "fails the SDC checks", "--as", "carla", "review", "approve", rid)
    refused(home, 4, "no review request 99", "--as", "carla", "review", "show", "99")
    shown = ok(home, "--as", "carla", "review", "show", rid)
    assert "fail (threshold): row 1, n: 3 patients" in shown
    assert "gate: column 'patient_id' is named like an identifier" in shown
    assert "still submitted" not in ok(home, "--as", "carla", "review", "approve", rid, "--comment", "published")
    assert "the request is approved" in ok(home, "--as", "chen", "review", "approve", rid, "--comment", "agreed")
    refused(home, 5, "needs the committee role", "--as", "rita", "release", rid)
    out = ok(home, "--as", "chen", "release", rid)
    bundle = Path(out.split("released: ")[1].strip().replace("\n", ""))
    assert "results.json" in zipfile.ZipFile(bundle).namelist()
    assert "released" in ok(home, "--as", "carla", "review", "list", "--all")
    refused(home, 5, "not signed in as 'eve'", "--as", "eve", "review", "list", "--all")  # not a user: reads nothing
    as_user(monkeypatch, "sam")
    assert [u.name for u in users.all_users(project.ws) if u.role == "committee"] == ["carla", "chen"]
