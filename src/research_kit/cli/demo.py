"""``demo``: the whole flow on a simulated registry."""

from __future__ import annotations

from typing import Annotated

import typer

from research_kit.cli.common import console
from research_kit.demo import run_demo

app = typer.Typer(add_completion=False)


@app.command()
def demo(
    patients: Annotated[int, typer.Option(help="Number of simulated patients.")] = 30_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
) -> None:
    """The whole flow on a simulated registry, in the workspace ($RESEARCH_KIT_HOME or .workspace)."""
    run_demo(console, patients=patients, seed=seed)
