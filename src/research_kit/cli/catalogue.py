"""``catalogue OUT``: the registry's dataset description for the national Health Data Hub (HealthDCAT-AP)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from research_kit.actions import catalogue
from research_kit.cli.common import actor, console, workspace
from research_kit.console import catalogue as show
from research_kit.console.output import print_json

app = typer.Typer(add_completion=False)


@app.command("catalogue")
def catalogue_(
    out: Annotated[
        Path,
        typer.Argument(
            help="A new or empty folder (or one holding an earlier catalogue, replaced whole) for catalogue.ttl and "
            "catalogue.jsonld."
        ),
    ],
    as_json: Annotated[bool, typer.Option("--json", help="Print where it was written and its counts as JSON.")] = False,
) -> None:
    """Write the registry's HealthDCAT-AP description (Turtle and JSON-LD), checked against the shipped DCAT-AP 3
    and HealthDCAT-AP shapes: written whole, or not at all. A steward or a committee member; the policy's
    [transparency].catalogue_* keys say who publishes it and who grants access."""
    ws = workspace()
    done = catalogue.write(ws, actor=actor(ws), out=out)
    if as_json:
        print_json(show.written_json(done))
    else:
        show.print_written(console, done)
