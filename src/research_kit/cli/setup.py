"""``init`` and ``key new|show``: setting a workspace up."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from research_kit.actions import setup
from research_kit.cli.common import actor, bootstrapping, console
from research_kit.cli.signin import read_secret
from research_kit.console import extracts as show
from research_kit.console.output import print_json

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
    steward: Annotated[
        str | None, typer.Option(help="Make this the workspace's first steward (asks a password).")
    ] = None,
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the first steward's password from stdin.")
    ] = False,
) -> None:
    """Create a workspace: policy file, catalog and audit log (an existing one is brought up to date)."""
    secret = None
    if steward is not None:
        secret = read_secret(f"password for {steward}", from_stdin=password_stdin, confirm=True)
    ws, created = setup.init(path, steward=steward, password=secret)
    show.print_init(console, ws, created)
    if steward is not None:
        console.print(f"first steward: {escape(steward)}; sign in with 'research-kit login {escape(steward)}'")


@key_app.command("new")
def key_new(path: KeyOption = None) -> None:
    """Write a new 256-bit random key (mode 0600; a steward does, once the workspace has users)."""
    _steward()
    target, fingerprint = setup.make_key(path)
    console.print(f"new key written: {target} (mode 0600), fingerprint {fingerprint}")
    console.print("Back it up somewhere safe: without it, later extracts will not link to earlier ones.")


@key_app.command("show")
def key_show(
    path: KeyOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print its path and fingerprint as one JSON object.")] = False,
) -> None:
    """Check the key and show its fingerprint (never the key; a steward does, once the workspace has users)."""
    _steward()
    target, fingerprint = setup.show_key(path)
    if as_json:
        print_json(show.key_json(target, fingerprint))
    else:
        show.print_key(console, target, fingerprint)


def _steward() -> None:
    """The key is the steward's, once the workspace has users; before that (the bootstrap) anyone's."""
    ws = setup.existing_workspace()
    if ws is not None and not bootstrapping(ws):
        setup.require_steward(ws, actor(ws))
