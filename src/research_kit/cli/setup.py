"""``init`` and ``key new|show``: setting a workspace up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from research_kit.actions import setup
from research_kit.cli.common import console
from research_kit.console import extracts as show

app = typer.Typer(add_completion=False)
key_app = typer.Typer(help="The pseudonymisation key (kept outside the workspace).", no_args_is_help=True)
app.add_typer(key_app, name="key")
KeyOption = Annotated[
    Path | None,
    typer.Option("--path", help="Key file [default: $RESEARCH_KIT_KEY_FILE or .secrets/pseudonymisation.key]"),
]


@app.command()
def init(
    path: Annotated[
        Path | None, typer.Argument(help="Folder of the new workspace [default: $RESEARCH_KIT_HOME or .workspace]")
    ] = None,
) -> None:
    """Create a workspace: policy file, catalog and audit log (an existing one is brought up to date)."""
    ws, created = setup.init(path)
    show.print_init(console, ws, created)


@key_app.command("new")
def key_new(path: KeyOption = None) -> None:
    """Write a new 256-bit random key (mode 0600). An existing key is never overwritten."""
    target, fingerprint = setup.make_key(path)
    console.print(f"new key written: {target} (mode 0600), fingerprint {fingerprint}")
    console.print("Back it up somewhere safe: without it, later extracts will not link to earlier ones.")


@key_app.command("show")
def key_show(path: KeyOption = None) -> None:
    """Check the key and show its fingerprint (never the key)."""
    target, fingerprint = setup.show_key(path)
    console.print(f"{target}: fingerprint {fingerprint}")
