"""The opt-out register on the terminal, and as JSON: counts and a version, never an ID or a hash."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from research_kit.core.extracts import OptoutRegister
from research_kit.pseudonymise.optouts import Recorded


def print_recorded(console: Console, done: Recorded) -> None:
    console.print(
        f"opt-out register: {done.recorded:,} recorded, {done.already:,} already in the register "
        f"(now {done.register.count:,}, version {done.register.version}); extracts built before this are "
        "refused for research: ingest a new one"
        if done.recorded
        else f"opt-out register: nothing new, {done.already:,} already in the register "
        f"({done.register.count:,}, version {done.register.version})"
    )


def register_json(register: OptoutRegister) -> dict[str, Any]:
    """``optout count --json``: ``count`` (people in the register), ``version`` (what each extract's manifest
    records as ``optout_register.version``) and ``newest`` (when the newest entry was recorded; '' when none)."""
    return register.as_manifest()


def print_register(console: Console, register: OptoutRegister) -> None:
    newest = f", newest recorded {register.newest}" if register.newest else ""
    console.print(f"opt-out register: {register.count:,} people (version {register.version}{newest})")
