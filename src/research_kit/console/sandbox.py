"""How researcher code is confined here (``sandbox check``), on the terminal and as JSON."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from research_kit.sandbox.limits import Limits
    from research_kit.sandbox.modes import Confinement


def print_confinement(console: Console, confined: Confinement, limits: Limits) -> None:
    where = f" ({confined.bwrap})" if confined.bwrap else ""
    console.print(f"sandbox: {confined.mode}{where}: works here", soft_wrap=True)
    console.print(f"limits per action: {limits.describe()}", soft_wrap=True)
    for notice in confined.notices:
        console.print(f"[yellow]{escape(notice)}[/]", soft_wrap=True)


def confinement_json(confined: Confinement, limits: Limits) -> dict[str, Any]:
    """``sandbox check --json`` (printed only when confinement works here): ``mode``, ``bwrap`` (the bubblewrap
    used, or null), ``limits`` per action (``memory_bytes``, ``cpu_seconds``, ``wall_seconds``, ``work_bytes``,
    ``max_files``, ``max_processes``) and ``notices``."""
    return {
        "mode": confined.mode,
        "bwrap": confined.bwrap or None,
        "limits": {
            "memory_bytes": limits.memory_bytes,
            "cpu_seconds": limits.cpu_seconds,
            "wall_seconds": limits.wall_seconds,
            "work_bytes": limits.work_bytes,
            "max_files": limits.max_files,
            "max_processes": limits.max_processes,
        },
        "notices": list(confined.notices),
    }
