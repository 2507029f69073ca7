"""The CLI's start-up: a command loads its own group's module, against a CLI that loads every command first;
and what signing in costs each command: the signed-in user looked up, against demo mode's unverified --as."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

COMMANDS = (["users", "list"], ["audit", "show"], ["extracts"], ["budget", "show"], ["pipeline", "check", "--help"])
_EAGER = (
    "import importlib, sys\nfrom research_kit.cli import COMMANDS, main\n"
    "for module in sorted(set(COMMANDS.values())):\n    importlib.import_module(f'research_kit.cli.{module}')\n"
    "main(sys.argv[1:])\n"
)


PASSWORD = "a benchmark password\n"


def _run(params: dict[str, Any], scratch: Path, prefix: list[str], *, demo: bool = False) -> dict[str, float]:
    scratch = Path(tempfile.mkdtemp(dir=scratch))  # a workspace of its own for each repeat
    env = {**os.environ, "RESEARCH_KIT_HOME": str(scratch / "ws"), "XDG_RUNTIME_DIR": str(scratch / "run")}
    env.pop("RESEARCH_KIT_USER", None)
    rk = [sys.executable, "-m", "research_kit"]
    subprocess.run([*rk, "init", "--steward", "bench", "--password-stdin"], env=env, input=PASSWORD,
                   capture_output=True, check=True, text=True)  # fmt: skip
    acting: list[str] = []
    if demo:  # the same workspace with identities unverified: --as is believed, nothing is looked up
        policy = scratch / "ws" / "research-kit.toml"
        policy.write_text(policy.read_text().replace('mode = "embedded"', 'mode = "demo"'))
        acting = ["--as", "bench"]
    else:
        subprocess.run([*rk, "login", "bench", "--password-stdin"], env=env, input=PASSWORD, capture_output=True,
                       check=True, text=True)  # fmt: skip
    start = time.perf_counter()
    for argv in COMMANDS:
        subprocess.run([*prefix, *acting, *argv], env=env, capture_output=True, check=True)
    return {"seconds": time.perf_counter() - start, "items": len(COMMANDS)}


def lazy(params: dict[str, Any], scratch: Path) -> dict[str, float]:
    return _run(params, scratch, [sys.executable, "-m", "research_kit"])


def eager(params: dict[str, Any], scratch: Path) -> dict[str, float]:
    return _run(params, scratch, [sys.executable, "-c", _EAGER])


def unverified(params: dict[str, Any], scratch: Path) -> dict[str, float]:
    return _run(params, scratch, [sys.executable, "-m", "research_kit"], demo=True)
