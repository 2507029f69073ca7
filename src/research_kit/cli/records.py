"""``audit verify|show``: the tamper-evident audit log."""

from __future__ import annotations

from typing import Annotated

import typer

from research_kit.actions import records
from research_kit.cli.common import actor, console, workspace
from research_kit.console.output import print_json
from research_kit.console.records import audit_json, print_audit

app = typer.Typer(add_completion=False)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def verify() -> None:
    """Check every entry of the audit log; exit 0 only when the chain is intact."""
    verdict = records.verify(workspace(signed_in=False))  # anyone may check the chain
    console.print(f"audit log intact: {verdict.entries} entries, chain and anchor verified")


@audit_app.command("show")
def show(
    last: Annotated[int, typer.Option(help="How many of the latest entries.")] = 20,
    as_json: Annotated[bool, typer.Option("--json", help="Print the entries as a JSON array of objects.")] = False,
) -> None:
    """List the latest audit entries (who did what, when)."""
    ws = workspace()
    found = records.entries(ws, actor=actor(ws), last=last)
    if as_json:
        print_json(audit_json(found))
    else:
        print_audit(console, found)
