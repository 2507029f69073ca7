"""``optout add|import|count``: the opt-out register of secondary use (national IDs on standard input or in a file,
never on the command line, where shell history would keep them)."""

from __future__ import annotations

import sys
from datetime import date
from pathlib import Path
from typing import Annotated

import typer

from research_kit.actions import optouts
from research_kit.cli.common import actor, console, workspace
from research_kit.console import optouts as show
from research_kit.console.output import print_json
from research_kit.core.errors import BadInput

app = typer.Typer(add_completion=False)
optout_app = typer.Typer(
    help="The opt-out register (EHDS): the steward records, steward and committee read the count.",
    no_args_is_help=True,
)
app.add_typer(optout_app, name="optout")

KeyOption = Annotated[Path | None, typer.Option(help="Key file [default: $RESEARCH_KIT_KEY_FILE or .secrets/...]")]
DateOption = Annotated[
    str | None, typer.Option("--date", help="The date the opt-outs took effect, YYYY-MM-DD [default: today].")
]


def _effective(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        if len(text) != 10:
            raise ValueError(text)
        return date.fromisoformat(text)
    except ValueError:
        raise BadInput(f"--date {text!r}: give a real date as YYYY-MM-DD") from None


@optout_app.command("add", context_settings={"allow_extra_args": True})
def add(ctx: typer.Context, date_: DateOption = None, key: KeyOption = None) -> None:
    """Record opt-outs: national IDs on standard input, one per line (never as arguments). All or nothing."""
    if ctx.args:  # refused without being shown back (click would quote an unexpected argument)
        raise BadInput(
            "national IDs are read on standard input only, never as arguments (the shell's history keeps "
            "them: remove that line from it): research-kit optout add < FILE"
        )
    ws = workspace()
    who = actor(ws)  # signed in first, whatever else is wrong with the command
    effective = _effective(date_)
    if sys.stdin is None or sys.stdin.isatty():
        raise BadInput(
            "optout add reads national IDs from standard input, never typed at a terminal (they would show): "
            "research-kit optout add < FILE, or research-kit optout import FILE"
        )
    show.print_recorded(console, optouts.add(ws, actor=who, lines=sys.stdin, effective=effective, key_file=key))


@optout_app.command("import")
def import_(
    file: Annotated[
        Path,
        typer.Argument(help="A CSV or text file: a national ID a row (header national_id optional), maybe a date."),
    ],
    date_: DateOption = None,
    key: KeyOption = None,
) -> None:
    """Record opt-outs from a file; a second column (date or effective) gives a row's own date. All or nothing."""
    ws = workspace()
    who = actor(ws)
    done = optouts.import_file(ws, actor=who, path=file, effective=_effective(date_), key_file=key)
    show.print_recorded(console, done)


@optout_app.command("count")
def count(
    as_json: Annotated[bool, typer.Option("--json", help="Print count, version and newest as a JSON object.")] = False,
) -> None:
    """How many people opted out, and the register's version (a steward or a committee member)."""
    ws = workspace()
    register = optouts.count(ws, actor=actor(ws))
    if as_json:
        print_json(show.register_json(register))
    else:
        show.print_register(console, register)
