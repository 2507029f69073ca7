"""``transparency publish|person``: the public transparency register, and a person's "where was my data used?"
letter (their national ID on standard input, never on the command line, where shell history would keep it)."""

from __future__ import annotations

import getpass
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from research_kit.actions import transparency
from research_kit.cli.common import actor, console, workspace
from research_kit.core.errors import BadInput

app = typer.Typer(add_completion=False)
transparency_app = typer.Typer(
    help="What the public may see: the transparency register (steward or committee), a person's letter (steward).",
    no_args_is_help=True,
)
app.add_typer(transparency_app, name="transparency")


@transparency_app.command("publish")
def publish(
    out: Annotated[Path, typer.Argument(help="A new folder, or a register published before (replaced whole).")],
) -> None:
    """Write the public transparency register (static HTML in English, French and German, and each language
    [transparency].extra_catalogs supplies whole; and register.json):
    every permit, the privacy budget it spent, the results released, their publication, opt-outs per quarter."""
    ws = workspace()
    done = transparency.publish(ws, actor=actor(ws), out=out)
    console.print(
        escape(
            f"the transparency register is in {done.out}: {done.permits} permits, {done.releases} releases, "
            f"{done.pages} pages in {', '.join(done.languages)} (open {done.out / 'index.html'})"
        ),
        soft_wrap=True,
    )


@transparency_app.command("person", context_settings={"allow_extra_args": True})
def person(
    ctx: typer.Context,
    out: Annotated[Path, typer.Option("--out", help="The letter's file (HTML, written with mode 0600).")],
    lang: Annotated[
        str | None,
        typer.Option(
            "--lang",
            help="en, fr, de, or a language [transparency].extra_catalogs supplies "
            "[default: [transparency].default_language].",
        ),
    ] = None,
    key: Annotated[Path | None, typer.Option(help="Key file [default: $RESEARCH_KIT_KEY_FILE or .secrets/...]")] = None,
) -> None:
    """Write the "where was my data used?" letter of one person, whose national ID is read on standard input
    (at a terminal: asked without showing it). A steward, who has checked the person's identity; audited without
    the ID."""
    if ctx.args:  # refused without being shown back (click would quote an unexpected argument)
        raise BadInput(
            "the national ID is read on standard input only, never as an argument (the shell's history keeps it: "
            "remove that line from it): research-kit transparency person --out FILE < ID-FILE"
        )
    ws = workspace()
    who = actor(ws)  # signed in first, whatever else is wrong with the command
    lines = _typed() if sys.stdin is not None and sys.stdin.isatty() else (sys.stdin or [])
    done = transparency.person(ws, actor=who, lines=lines, out=out, lang=lang, key_file=key)
    found = f"{done.extracts} extract version{'s' if done.extracts != 1 else ''} hold this person's data"
    console.print(escape(f"the letter ({done.lang}) is in {done.out}: {found}"), soft_wrap=True)


def _typed() -> Iterator[str]:
    """The national ID typed at the terminal, not shown as it is typed: asked only when the action reads it
    (after it has checked who is asking)."""
    yield getpass.getpass("national ID (not shown): ", stream=sys.stderr)
