"""``simulate``: an identifiable raw export of a simulated registry."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from research_kit.actions import simulation
from research_kit.cli.common import console, signed_in_or_anonymous, workspace
from research_kit.console import extracts as show
from research_kit.console.progress import patient_progress
from research_kit.simulator.export import SimulationSpec

app = typer.Typer(add_completion=False)


@app.command()
def simulate(
    patients: Annotated[int, typer.Option(help="Number of patients.")] = 30_000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same export.")] = 1,
    fmt: Annotated[str, typer.Option("--format", help="File format: parquet or csv.")] = "parquet",
    faults: Annotated[
        bool, typer.Option("--faults", help="Inject realistic faults; list them in faults.json.")
    ] = False,
    name: Annotated[str | None, typer.Option(help="Export name [default: sim-n<patients>-s<seed>].")] = None,
    out: Annotated[Path | None, typer.Option(help="Write here instead of the workspace's raw/ folder.")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Replace an existing export of that name.")] = False,
) -> None:
    """Simulate an identifiable raw export of the registry (patients, diagnoses, phenotypes, encounters)."""
    spec = SimulationSpec(patients=patients, seed=seed, format=fmt, faults=faults)
    with patient_progress(console, patients) as advance:
        ws = workspace(signed_in=False)  # simulated data belong to no one: no sign-in needed
        export_id, result = simulation.simulate(
            ws, actor=signed_in_or_anonymous(ws), spec=spec, name=name, out=out, replace=replace, progress=advance
        )
    show.print_simulation(console, export_id, result)
