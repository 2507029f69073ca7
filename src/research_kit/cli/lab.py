"""``lab``: JupyterLab on the synthetic twin."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from research_kit.actions import confinement
from research_kit.cli.common import actor, console, workspace

app = typer.Typer(add_completion=False)


@app.command()
def lab(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.", min=1, max=65535)] = 8888,
    notebooks: Annotated[
        Path, typer.Option(help="Folder of notebooks JupyterLab opens (writable in its sandbox).")
    ] = Path("notebooks"),
    home: Annotated[
        Path, typer.Option(help="The lab's own workspace: twins, policy, sandbox ledger (outside the real one).")
    ] = Path(".lab"),
    open_browser: Annotated[bool, typer.Option("--open/--no-open", help="Open a browser tab.")] = False,
    twin: Annotated[
        str | None,
        typer.Option(
            metavar="KIND_OR_ID",
            help="The twin rk.load() reads: 'dp' (the newest DP twin), a twin's id, or 'default' (the newest "
            "default twin, as without --twin). Every published twin is in the lab whichever is chosen.",
        ),
    ] = None,
) -> None:
    """JupyterLab for researchers on the synthetic twin, server and kernels in a sandbox reached on loopback."""
    confinement.lab(
        workspace(), actor=actor(), home=home, port=port, notebooks=notebooks, console=console,
        open_browser=open_browser, twin=twin,
    )  # fmt: skip
