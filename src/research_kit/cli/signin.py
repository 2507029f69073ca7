"""``login`` and ``logout``: signing in on this command line."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer
from rich.markup import escape

from research_kit.actions import people
from research_kit.cli import client
from research_kit.cli.common import console, workspace
from research_kit.core import service, sessions
from research_kit.core.errors import BadInput

app = typer.Typer(add_completion=False)


def read_secret(what: str, *, from_stdin: bool, confirm: bool = False) -> str:
    """A password or code: the next line of stdin, or asked on the terminal (never echoed)."""
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise BadInput(f"no {what} on standard input")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise BadInput(f"no terminal to ask the {what} on: pipe it in with --password-stdin")
    return str(typer.prompt(what, hide_input=True, confirmation_prompt=confirm))


@app.command()
def login(
    name: Annotated[str, typer.Argument(help="Your user name.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password (then a one-time code) from stdin lines.")
    ] = False,
    code: Annotated[str | None, typer.Option(help="The one-time code from your authenticator app.")] = None,
) -> None:
    """Sign in on this command line; later commands act as you (several users: pick one with --as NAME)."""
    url = os.environ.get(service.URL_ENV)
    if url:
        url = client.server_url(url)
        typed = read_secret(f"password for {name}", from_stdin=password_stdin)

        def ask() -> str:
            return read_secret("one-time code", from_stdin=password_stdin)

        roles = client.login(url, name, typed, code=code, ask_code=ask)
        console.print(f"signed in as {escape(name)} ({roles}) at {escape(url)}")
        return
    ws = workspace(signed_in=False)
    password = read_secret(f"password for {name}", from_stdin=password_stdin)
    try:
        user = people.login(ws, name=name, password=password, code=code)
    except sessions.CodeNeeded as needed:
        secret = None
        if needed.enrol:  # the first sign-in of someone who must give codes: set them up now
            secret = sessions.new_code_secret()
            _show_enrolment(sessions.code_uri(name, secret))
        given = code or read_secret("one-time code", from_stdin=password_stdin)
        user = people.login(ws, name=name, password=password, code=given, enrol=secret)
    console.print(f"signed in as {escape(user.name)} ({user.role}) on {escape(str(ws.root))}")


@app.command()
def logout(name: Annotated[str | None, typer.Argument(help="Sign out only this user [default: all].")] = None) -> None:
    """Sign out on this command line (every user you are signed in as, unless one is named)."""
    url = os.environ.get(service.URL_ENV)
    ended = client.logout(client.server_url(url), name) if url else people.logout(workspace(signed_in=False), name=name)
    console.print(f"signed out: {escape(', '.join(ended))}" if ended else "not signed in")


def _show_enrolment(uri: str) -> None:
    """The one-time-code secret, shown once to the person setting codes up (on stderr, never logged)."""
    print(
        "Committee members and stewards give a one-time code at each sign-in. Add this account to an "
        f"authenticator app (shown once; keep it to yourself):\n  {uri}",
        file=sys.stderr,
        flush=True,
    )
