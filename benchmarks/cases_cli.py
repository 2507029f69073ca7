"""The CLI's start-up: a command loads its own group's module, against a CLI that loads every command first."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

COMMANDS = (["users", "list"], ["audit", "show"], ["extracts"], ["budget", "show"], ["pipeline", "check", "--help"])
_EAGER = (
    "import importlib, sys\nfrom research_kit.cli import COMMANDS, main\n"
    "for module in sorted(set(COMMANDS.values())):\n    importlib.import_module(f'research_kit.cli.{module}')\n"
    "main(sys.argv[1:])\n"
)


def _run(params: dict[str, Any], scratch: Path, prefix: list[str]) -> dict[str, float]:
    env = {**os.environ, "RESEARCH_KIT_HOME": str(scratch / "ws"), "RESEARCH_KIT_USER": "bench"}
    subprocess.run([sys.executable, "-m", "research_kit", "init"], env=env, capture_output=True, check=True)
    start = time.perf_counter()
    for argv in COMMANDS:
        subprocess.run([*prefix, *argv], env=env, capture_output=True, check=True)
    return {"seconds": time.perf_counter() - start, "items": len(COMMANDS)}


def lazy(params: dict[str, Any], scratch: Path) -> dict[str, float]:
    return _run(params, scratch, [sys.executable, "-m", "research_kit"])


def eager(params: dict[str, Any], scratch: Path) -> dict[str, float]:
    return _run(params, scratch, [sys.executable, "-c", _EAGER])
