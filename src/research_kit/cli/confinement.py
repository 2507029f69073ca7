"""``sandbox check|waive|unwaive``: the sandbox researcher code runs in (docs/security.md)."""

from __future__ import annotations

from typing import Annotated

import typer

from research_kit.actions import confinement
from research_kit.cli.common import actor, console, workspace
from research_kit.console.output import print_json
from research_kit.console.sandbox import confinement_json, print_confinement

app = typer.Typer(add_completion=False)
sandbox_app = typer.Typer(help="The sandbox researcher code runs in (docs/security.md).", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")


@sandbox_app.command("check")
def check(
    as_json: Annotated[bool, typer.Option("--json", help="Print the confinement as one JSON object.")] = False,
) -> None:
    """Say how researcher code would be confined here, with which limits; exit 5 if it cannot be."""
    confined, limits = confinement.check(workspace())
    if as_json:
        print_json(confinement_json(confined, limits))
    else:
        print_confinement(console, confined, limits)


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
