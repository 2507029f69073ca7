"""``synth``: an extract's synthetic twin."""

from __future__ import annotations

from pathlib import Path
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
        str,
        typer.Option(
            help="Patients' model: gaussian_copula, ctgan, tvae or copulagan; or a DP twin: aim or mst "
            "(with --rho or --epsilon, charged to the registry's DP-twin budget)."
        ),
    ] = "gaussian_copula",
    seed: Annotated[int, typer.Option(help="The same extract and seed give the same twin.")] = 0,
    replace: Annotated[bool, typer.Option("--replace", help="Replace the extract's published twin.")] = False,
    rho: Annotated[str | None, typer.Option("--rho", help="A DP twin's budget, in rho (zCDP).")] = None,
    epsilon: Annotated[str | None, typer.Option("--epsilon", help="... or in epsilon, at [dp].delta.")] = None,
) -> None:
    """Build an extract's synthetic twin; publish it to synthetic/ID/ (a DP twin: synthetic/ID@dp/) only if every
    policy figure holds."""
    with steps(console, f"synthetic twin of {extract}") as step:
        result = twin.twin(
            workspace(), actor=actor(), extract=extract, model=model, seed=seed, replace=replace, progress=step,
            rho=rho, epsilon=epsilon,
        )  # fmt: skip
    print_twin(console, result)


@app.command()
def export(
    twin_id: Annotated[str, typer.Argument(metavar="ID", help="The published twin (its extract's id).")],
    out: Annotated[Path, typer.Option("--out", help="A new (or empty) folder for the files.")],
    fmt: Annotated[str, typer.Option("--format", help="phenopackets: one GA4GH Phenopacket v2 per patient.")] = (
        "phenopackets"
    ),
) -> None:
    """Export a published synthetic twin (the shareable tier) for the field's tools; audited."""
    done = twin.export(workspace(), actor=actor(), twin_id=twin_id, out=out, fmt=fmt)
    console.print(f"{done.count:,} phenopackets of twin {twin_id} (synthetic patients) in {done.folder}")
