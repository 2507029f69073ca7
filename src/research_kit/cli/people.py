"""``users add|list|disable|password``: the workspace's users and their roles."""

from __future__ import annotations

import sys
from typing import Annotated

import typer
from rich.markup import escape

from research_kit.actions import people
from research_kit.cli.common import actor, console, workspace
from research_kit.console.people import print_users
from research_kit.core.errors import BadInput
from research_kit.core.users import ROLES

app = typer.Typer(add_completion=False)
users_app = typer.Typer(help="The workspace's users and their roles.", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The user's name (letters, digits, '.', '_', '-').")],
    role: Annotated[str, typer.Option(help=f"{', '.join(ROLES[:-1])} or {ROLES[-1]}.")],
) -> None:
    """Add a user, or give an existing user one more role (a steward does; the first steward by anyone)."""
    user = people.add(workspace(), actor=actor(), name=name, role=role)
    console.print(f"user {escape(user.name)}: {user.role}")


@users_app.command("list")
def list_users() -> None:
    """List the users and their roles."""
    print_users(console, people.list_users(workspace()))


@users_app.command("disable")
def disable(name: Annotated[str, typer.Argument(help="The user to disable.")]) -> None:
    """Disable a user (a steward does); their past votes and entries stay."""
    people.disable(workspace(), actor=actor(), name=name)
    console.print(f"user {escape(name)} disabled")


@users_app.command("password")
def password(
    name: Annotated[str, typer.Argument(help="The user who will sign in to the web app with it.")],
    stdin: Annotated[bool, typer.Option("--stdin", help="Read the password from the first line of stdin.")] = False,
) -> None:
    """Set a user's password for the review web app (a steward does); their open sessions end."""
    if stdin:
        secret = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        secret = typer.prompt(f"new password for {name}", hide_input=True, confirmation_prompt=True)
    else:
        raise BadInput("no terminal to ask the password on: pipe it in with --stdin")
    people.set_password(workspace(), actor=actor(), name=name, password=secret)
    console.print(f"password set for {escape(name)}; they sign in at 'research-kit serve'")
