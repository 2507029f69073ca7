"""``synth``: an extract's synthetic twin."""

from __future__ import annotations

from typing import Annotated

import typer

from research_kit.actions import twin
from research_kit.cli.common import actor, console, workspace
from research_kit.console.progress import steps
from research_kit.console.twin import print_twin

app = typer.Typer(add_completion=False)


@app.command()
def synth(
    extract: Annotated[str, typer.Argument(help="Id of the extract.")],
    model: Annotated[
        str, typer.Option(help="Patients' model: gaussian_copula, ctgan, tvae or copulagan.")
    ] = "gaussian_copula",
    seed: Annotated[int, typer.Option(help="The same extract and seed give the same twin.")] = 0,
    replace: Annotated[bool, typer.Option("--replace", help="Replace the extract's published twin.")] = False,
) -> None:
    """Build an extract's synthetic twin; publish it to synthetic/ID/ only if every policy figure holds."""
    with steps(console, f"synthetic twin of {extract}") as step:
        result = twin.twin(
            workspace(), actor=actor(), extract=extract, model=model, seed=seed, replace=replace, progress=step
        )
    print_twin(console, result)
