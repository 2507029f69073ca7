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
    raw: Annotated[
        list[Path],
        typer.Argument(
            help="The sources: an export in the registry's layout (a folder, or its table files), or "
            "with --mapping/--format one or more sources (files or folders)."
        ),
    ],
    extract: Annotated[str, typer.Option("--extract", help="Id of the new extract (e.g. 2026-11).")],
    key: Annotated[Path | None, typer.Option(help="Key file [default: $RESEARCH_KIT_KEY_FILE or .secrets/...]")] = None,
    mapping: Annotated[
        list[Path] | None,
        typer.Option(
            "--mapping",
            help="A source mapping (TOML; 'research-kit mapping draft'): one per source, in the order of the sources.",
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            help="Read every source as this kind, with its usual fields: registry, csv, "
            "excel, parquet, phenopackets, fhir (a mapping says more).",
        ),
    ] = None,
) -> None:
    """Validate, quarantine and pseudonymise a raw export (or mapped sources) into a new, immutable extract."""
    with steps(console, "ingest") as step:
        result = extracts.ingest(
            workspace(), actor=actor(), raw=raw, extract=extract, key_file=key, step=step, mappings=mapping, kind=fmt
        )
    show.print_ingest(console, result)


@app.command()
def quality(
    extract: Annotated[str, typer.Argument(help="Id of the extract.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
) -> None:
    """The EU common data set coverage and quality report of an extract (HTML with a chart, and JSON)."""
    done = extracts.quality(workspace(), actor=actor(), extract=extract)
    if as_json:
        print(done.json.read_text(encoding="utf-8"))
    else:
        show.print_quality(console, done)


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
