"""``research-kit synth`` from the shell: publishes, refuses in one line, and validates its options."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import sign_in
from tests.integration.synth.conftest import Registry

from research_kit.core.workspace import Workspace


@pytest.fixture(autouse=True)
def sessions(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))  # this test's command-line sessions


def _synth(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    sign_in(Workspace(home))  # the steward builds twins
    return subprocess.run(
        [sys.executable, "-m", "research_kit", "synth", *args],
        env={**os.environ, "RESEARCH_KIT_HOME": str(home), "COLUMNS": "200"},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.slow
def test_synth_publishes_then_refuses_to_overwrite(registry: Registry, tmp_path: Path) -> None:
    home = tmp_path / "ws"
    shutil.copytree(registry.ws.root, home, ignore=shutil.ignore_patterns("synthetic", "reports"))
    done = _synth(home, "e1", "--seed", "0")
    assert done.returncode == 0, done.stderr
    assert "synthetic twin e1 of extract e1 (gaussian_copula, seed 0)" in done.stdout
    assert "SDMetrics DCR overfitting protection" in done.stdout
    assert f"published: {home / 'synthetic' / 'e1'}" in done.stdout.replace("\n", "")
    assert (home / "synthetic" / "e1" / "twin.json").is_file()
    again = _synth(home, "e1")
    assert again.returncode == 5
    assert again.stderr.count("\n") == 1
    assert "already published" in again.stderr
    assert "--replace" in again.stderr


@pytest.mark.slow  # builds twins, ~20 s
def test_synth_options_are_checked_in_one_line(registry: Registry) -> None:
    home = registry.ws.root
    for args, code, text in (
        (("e1", "--model", "hmm"), 3, "unknown model 'hmm'"),
        (("e1", "--seed", "-1"), 3, "--seed must be zero or more"),
        (("nope",), 4, "nope"),
    ):
        out = _synth(home, *args)
        assert out.returncode == code, out.stderr
        assert out.stderr.count("\n") == 1
        assert text in out.stderr
        assert "Traceback" not in out.stderr
