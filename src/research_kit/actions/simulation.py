"""A simulated identifiable raw export of the registry, for demos, tests and benchmarks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from research_kit.actions.acting import as_user
from research_kit.core.workspace import Workspace
from research_kit.simulator.export import SimulationResult, SimulationSpec
from research_kit.simulator.raw import simulate_raw_export


def simulate(
    ws: Workspace,
    *,
    actor: str,
    spec: SimulationSpec,
    name: str | None = None,
    out: Path | None = None,
    replace: bool = False,
    progress: Callable[[int], None] | None = None,
) -> tuple[str, SimulationResult]:
    """A simulated identifiable raw export; its id and what it holds."""
    return as_user(actor, simulate_raw_export, ws, spec, name=name, out=out, replace=replace, progress=progress)
