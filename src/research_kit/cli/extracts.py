"""``ingest``, ``extracts`` and ``risk``: from a raw export to a pseudonymised extract and its risk report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from research_kit.actions import extracts
from research_kit.cli.common import actor, console, workspace
from research_kit.console import extracts as show
from research_kit.console.output import print_json
from research_kit.console.progress import steps

app = typer.Typer(add_completion=False)


@app.command()
def ingest(
    raw: Annotated[list[Path], typer.Argument(help="The raw export: a folder, or its table files.")],
    extract: Annotated[str, typer.Option("--extract", help="Id of the new extract (e.g. 2026-11).")],
    key: Annotated[Path | None, typer.Option(help="Key file [default: $RESEARCH_KIT_KEY_FILE or .secrets/...]")] = None,
) -> None:
    """Validate, quarantine and pseudonymise a raw export into a new, immutable extract."""
    with steps(console, "ingest") as step:
        result = extracts.ingest(workspace(), actor=actor(), raw=raw, extract=extract, key_file=key, step=step)
    show.print_ingest(console, result)


@app.command("extracts")
def list_extracts(
    as_json: Annotated[bool, typer.Option("--json", help="Print the extracts as a JSON array of objects.")] = False,
) -> None:
    """List the registered extracts."""
    found = extracts.list_extracts(workspace())
    if as_json:
        print_json(show.extracts_json(found))
    else:
        show.print_extracts(console, found)


@app.command()
def risk(
    extract: Annotated[str, typer.Argument(help="Id of the extract.")],
    enforce_k: Annotated[
        int | None, typer.Option("--enforce-k", help="Also generalise/suppress until k holds; report the cost.")
    ] = None,
) -> None:
    """Re-identification risk of an extract on the policy's quasi-identifiers (table on screen, JSON on disk)."""
    show.print_risk(console, extracts.risk(workspace(), actor=actor(), extract=extract, enforce_k=enforce_k))
