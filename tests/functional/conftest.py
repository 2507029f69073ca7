from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(home: Path, tmp_path: Path) -> Run:
    """Run ``research-kit ARGS`` in a subprocess, in a scratch directory, against the test workspace."""

    def run(
        *args: str, check: bool | None = True, env: dict[str, str] | None = None, input_text: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "research_kit", *args],
            cwd=tmp_path,
            env={**os.environ, "COLUMNS": "200", **(env or {})},
            input=input_text,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}")
        return result

    return run


def set_up_codes(env: dict[str, str], name: str, password_line: str, cwd: Path | None = None) -> Any:
    """``research-kit login NAME`` at its first sign-in with one-time codes, as a person does it: the address
    shown once on stderr is read into an authenticator (pyotp), and a code from it typed back. The TOTP."""
    import pyotp

    first = subprocess.Popen(
        [sys.executable, "-m", "research_kit", "login", name, "--password-stdin"], cwd=cwd,
        env={**os.environ, "COLUMNS": "200", **env}, text=True,
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert first.stdin is not None
    assert first.stderr is not None
    first.stdin.write(password_line)
    first.stdin.flush()
    uri = next(line.strip() for line in first.stderr if line.strip().startswith("otpauth://"))
    totp = pyotp.TOTP(pyotp.parse_uri(uri).secret)
    out, err = first.communicate(totp.now() + "\n", timeout=60)
    assert first.returncode == 0, err
    assert f"signed in as {name}" in out
    return totp


@pytest.fixture
def signed_in(cli: Run) -> Run:
    """``cli``, in a workspace made with its first steward (``stew``), signed in as a steward does."""
    from tests.conftest import PASSWORD, STEWARD

    cli("init", "--steward", STEWARD, "--password-stdin", input_text=f"{PASSWORD}\n")
    cli("login", STEWARD, "--password-stdin", input_text=f"{PASSWORD}\n")
    return cli


# The review web app's workspace (built once per session) and its per-test copy.
from tests.functional.webapp import review_template, review_ws  # noqa: E402, F401
