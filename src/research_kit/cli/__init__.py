"""The ``research-kit`` command: parses arguments, calls one action, prints its result.

No rule lives here: each command group (one module per group) calls
:mod:`research_kit.actions` and shows the result with :mod:`research_kit.console`.
A :class:`~research_kit.core.errors.UserError` becomes one line on stderr and
its exit code; anything else keeps its traceback (without local variables,
which could hold registry rows).

A group's module is imported only when one of its commands runs (``--help``
imports them all), so a command loads only the libraries it needs.
"""

from __future__ import annotations

import errno
import importlib
import os
import sys
import traceback
from typing import Annotated, Any, NoReturn

import typer
from typer.core import TyperCommand, TyperGroup

from research_kit import __version__
from research_kit.core import audit, errors, service
from research_kit.core.audit import ACTOR_ENV
from research_kit.core.errors import UserError
from research_kit.core.sessions import ANONYMOUS

# Each command (top-level name) and the module of research_kit.cli that holds it, in the order of the flow.
COMMANDS: dict[str, str] = {
    "init": "setup",
    "key": "setup",
    "login": "signin",
    "logout": "signin",
    "simulate": "simulate",
    "mapping": "mapping",
    "ingest": "extracts",
    "extracts": "extracts",
    "risk": "extracts",
    "quality": "extracts",
    "optout": "optout",
    "synth": "twin",
    "export": "twin",
    "catalogue": "catalogue",
    "permit": "permit",
    "budget": "budget",
    "query": "query",
    "pipeline": "pipeline",
    "run": "runs",
    "rerun": "runs",
    "lab": "lab",
    "outputs": "review",
    "review": "review",
    "release": "review",
    "transparency": "transparency",
    "serve": "web",
    "users": "people",
    "audit": "records",
    "backup": "backup",
    "restore": "backup",
    "sandbox": "confinement",
    "demo": "demo",
}


class _Commands(TyperGroup):
    """The root group: finds a command in its module on first use."""

    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        return list(COMMANDS)

    def get_command(self, ctx: typer.Context, cmd_name: str) -> TyperCommand | TyperGroup | None:  # type: ignore[override]
        module = COMMANDS.get(cmd_name)
        if module is None:
            return None
        group = typer.main.get_command(importlib.import_module(f"research_kit.cli.{module}").app)
        if isinstance(group, TyperGroup):
            return group.get_command(ctx, cmd_name)  # type: ignore[return-value]
        return group if group.name == cmd_name else None  # type: ignore[return-value]


app = typer.Typer(
    name="research-kit",
    cls=_Commands,
    help="A research workspace for a national rare-disease registry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"research-kit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
    acting_as: Annotated[
        str | None,
        typer.Option("--as", help="Act as this user, one you are signed in as (research-kit login NAME)."),
    ] = None,
) -> None:
    """A research workspace for a national rare-disease registry.

    The workspace is ./.workspace unless RESEARCH_KIT_HOME names another folder. Sign in first:
    research-kit login NAME.
    """
    from research_kit.cli import common

    common.requested["as"] = acting_as
    # Until the command knows who signed in, it acts as nobody: no environment variable names its actor.
    audit.act_as(ANONYMOUS)
    # Believed in demo mode only; removed so that nothing this process starts reads it either.
    common.requested["demo"] = os.environ.pop(ACTOR_ENV, None)
    # Set only by 'research-kit serve' for a command a client sent: it acts as that token's user.
    common.requested["token"] = os.environ.pop(service.SESSION_ENV, None)


def command(name: str) -> TyperCommand | TyperGroup:
    """The command ``name`` (a group for ``budget``, ``review``, ...): for the reference and tests."""
    root = typer.main.get_command(app)
    assert isinstance(root, _Commands)
    found = root.get_command(typer.Context(root), name)
    if found is None:
        raise KeyError(name)
    return found


def main(argv: list[str] | None = None) -> Any:
    """Entry point: run the app; a user's mistake exits with one line, never a traceback."""
    args = sys.argv[1:] if argv is None else argv
    try:
        url = os.environ.get(service.URL_ENV)
        if url:
            from research_kit.cli import client

            if client.sends(args):  # a client of 'research-kit serve': the server runs it
                sys.exit(client.forward(client.server_url(url), args))
        app(args=args, prog_name="research-kit")
    except UserError as exc:
        print(f"research-kit: {exc.label}: {_printable(str(exc))}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:  # Ctrl-C: what was under way has recorded itself as interrupted
        print("research-kit: interrupted", file=sys.stderr)
        sys.exit(errors.INTERRUPTED)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.EDQUOT):
            _internal_error()
        where = f" writing {exc.filename}" if exc.filename else ""
        print(f"research-kit: out of space{where}: free some space and run the command again "
              "(what it was changing was rolled back)", file=sys.stderr)  # fmt: skip
        sys.exit(errors.NO_SPACE)
    except Exception:  # noqa: BLE001 (a bug: its traceback, never with local variables, and its own code)
        _internal_error()


def _printable(message: str) -> str:
    """The message on one line, any control character in it (a file's own text: a newline, an escape
    sequence) shown escaped rather than acted on by the terminal."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)


def _internal_error() -> NoReturn:
    """A bug: its traceback (never with local variables) and a code no user's mistake has."""
    traceback.print_exc()
    print("research-kit: internal error: this is a bug in research-kit; please report it", file=sys.stderr)
    sys.exit(errors.INTERNAL_ERROR)
