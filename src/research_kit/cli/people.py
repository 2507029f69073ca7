"""``users add|list|disable|password|reset-codes|allow-demo|disallow-demo``: the workspace's users and their roles."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.markup import escape

from research_kit.actions import people
from research_kit.cli.common import actor, bootstrapping, console, workspace
from research_kit.cli.signin import read_secret
from research_kit.console.output import print_json
from research_kit.console.people import print_users, users_json
from research_kit.core.errors import PolicyRefusal
from research_kit.core.users import FIRST_STEWARD, ROLES

app = typer.Typer(add_completion=False)
users_app = typer.Typer(help="The workspace's users and their roles.", no_args_is_help=True)
app.add_typer(users_app, name="users")


@users_app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="The user's name (letters, digits, '.', '_', '-').")],
    role: Annotated[str, typer.Option(help=f"{', '.join(ROLES[:-1])} or {ROLES[-1]}.")],
    password_stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read their password from the first line of stdin.")
    ] = False,
    password: Annotated[
        bool, typer.Option("--password", help="Ask their password on the terminal (the first steward is asked anyway).")
    ] = False,
) -> None:
    """Add a user, or give one more role to a user (a signed-in steward does; the first steward, no one)."""
    ws = workspace(signed_in=False)
    first = bootstrapping(ws)
    if first and role != "steward":
        raise PolicyRefusal(FIRST_STEWARD)  # before asking a password
    who = name if first else actor(ws)  # the workspace's first steward adds themselves
    secret = None
    if first or password or password_stdin:
        secret = read_secret(f"password for {name}", from_stdin=password_stdin, confirm=True)
    user = people.add(ws, actor=who, name=name, role=role, password=secret)
    console.print(f"user {escape(user.name)}: {user.role}")
    if first:
        console.print(f"sign in: research-kit login {escape(user.name)}")


@users_app.command("list")
def list_users(
    as_json: Annotated[bool, typer.Option("--json", help="Print the users as a JSON array of objects.")] = False,
) -> None:
    """List the users and their roles."""
    found = people.list_users(workspace())
    if as_json:
        print_json(users_json(found))
    else:
        print_users(console, found)


@users_app.command("disable")
def disable(name: Annotated[str, typer.Argument(help="The user to disable.")]) -> None:
    """Disable a user (a steward does); their past votes and entries stay."""
    people.disable(workspace(), actor=actor(), name=name)
    console.print(f"user {escape(name)} disabled")


@users_app.command("password")
def password(
    name: Annotated[str, typer.Argument(help="The user who will sign in with it.")],
    stdin: Annotated[
        bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin.")
    ] = False,
) -> None:
    """Set a user's password (a steward does); their open sessions end."""
    ws = workspace()
    secret = read_secret(f"new password for {name}", from_stdin=stdin, confirm=True)
    people.set_password(ws, actor=actor(ws), name=name, password=secret)
    console.print(f"password set for {escape(name)}; they sign in with 'research-kit login {escape(name)}'")


@users_app.command("reset-codes")
def reset_codes(name: Annotated[str, typer.Argument(help="The user whose one-time codes are set up again.")]) -> None:
    """Forget a user's one-time-code setup (a lost phone); they set it up again at their next sign-in (a steward
    does; their open sessions end)."""
    ws = workspace()
    people.reset_codes(ws, actor=actor(ws), name=name)
    console.print(f"one-time codes of {escape(name)} reset: they set them up at their next 'research-kit login'")


@users_app.command("allow-demo")
def allow_demo(
    reason: Annotated[str, typer.Option(help="Why identities may go unverified on this workspace's real data.")],
) -> None:
    """Let [auth].mode = 'demo' run on a workspace holding real data (a steward does; audited)."""
    ws = workspace()
    people.allow_demo(ws, actor=actor(ws), reason=reason)
    console.print("demo mode allowed on this workspace's real data: identities go unverified while it is on")


@users_app.command("disallow-demo")
def disallow_demo() -> None:
    """Revoke the opt-in to demo mode on real data (a steward does; audited)."""
    ws = workspace()
    revoked = people.disallow_demo(ws, actor=actor(ws))
    console.print("demo mode refused again on this workspace's real data" if revoked else "no opt-in was in force")
