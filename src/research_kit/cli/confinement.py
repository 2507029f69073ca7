"""``sandbox check|waive|unwaive``: the sandbox researcher code runs in (docs/security.md)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from research_kit.actions import confinement
from research_kit.cli.common import actor, console, workspace

app = typer.Typer(add_completion=False)
sandbox_app = typer.Typer(help="The sandbox researcher code runs in (docs/security.md).", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.command("check")
def check() -> None:
    """Say how researcher code would be confined here, with which limits; exit 5 if it cannot be."""
    confined, limits = confinement.check(workspace())
    where = f" ({confined.bwrap})" if confined.bwrap else ""
    console.print(f"sandbox: {confined.mode}{where}: works here", soft_wrap=True)
    console.print(f"limits per action: {limits.describe()}", soft_wrap=True)
    for notice in confined.notices:
        console.print(f"[yellow]{escape(notice)}[/]", soft_wrap=True)


@sandbox_app.command("waive")
def waive(
    reason: Annotated[str, typer.Option(help="Why researcher code may run unconfined on this workspace's real data.")],
) -> None:
    """Let [runner].sandbox = 'off' run on real data (a steward; audited). Prefer 'container' where it applies."""
    confinement.waive(workspace(), actor=actor(), reason=reason)
    console.print("sandbox waived for this workspace's real data (recorded in the audit log)")


@sandbox_app.command("unwaive")
def unwaive() -> None:
    """Revoke the waiver: 'off' is refused again on real data (a steward; audited)."""
    revoked = confinement.unwaive(workspace(), actor=actor())
    console.print(f"{revoked} waiver(s) revoked" if revoked else "no waiver was in force")
