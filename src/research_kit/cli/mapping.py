"""``mapping draft|check``: the source mappings that say how a registry's sources are read."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from research_kit.actions import extracts
from research_kit.cli.common import actor, console, workspace
from research_kit.core.errors import BadInput

app = typer.Typer(add_completion=False)
mapping_app = typer.Typer(help="Source mappings: draft one from a source, check one.", no_args_is_help=True)
app.add_typer(mapping_app, name="mapping")


@mapping_app.command("draft")
def draft(
    source: Annotated[Path, typer.Argument(help="The source: a file or a folder.")],
    fmt: Annotated[
        str | None,
        typer.Option("--format", help="csv, excel, parquet, phenopackets, fhir or registry [default: from the files]"),
    ] = None,
    show_values: Annotated[
        list[str] | None,
        typer.Option(
            "--show-values",
            help="Show the distinct values of this column (one you know identifies no one; repeat). Audited.",
        ),
    ] = None,
) -> None:
    """Propose a mapping for a source, from its header and its values' shapes (no cell value is printed)."""
    text = extracts.draft_mapping(workspace(), actor=actor(), source=source, kind=fmt, show_values=show_values or [])
    print(text, end="" if text.endswith("\n") else "\n")


@mapping_app.command("check")
def check(mapping: Annotated[Path, typer.Argument(help="The mapping file (TOML).")]) -> None:
    """Check a mapping: every mistake is named with its key; exit 0 when it has none."""
    from research_kit.ingest.mapping import check_mapping

    mistakes = check_mapping(mapping)
    if mistakes:
        for line in mistakes:
            console.print(f"{mapping}: {line}", markup=False, highlight=False)
        raise BadInput(f"{mapping}: {len(mistakes)} mistake{'s' if len(mistakes) > 1 else ''}")
    console.print(f"{mapping}: no mistake found", markup=False, highlight=False)
