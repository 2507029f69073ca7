"""``serve``: the committee's review web app."""

from __future__ import annotations

from typing import Annotated

import typer

from research_kit.cli.common import console, workspace
from research_kit.web.server import serve as run_server

app = typer.Typer(add_completion=False)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback unless a TLS proxy sits in front).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8765,
) -> None:
    """The committee's review web app: requests, flagged cells, votes, releases, budgets, the audit log."""
    run_server(workspace(signed_in=False), host=host, port=port, console=console)
