"""What every command group shares: the console, the signed-in acting user, the workspace, list options."""

from __future__ import annotations

import os
import sys

from rich.console import Console

from research_kit.core import audit, identity, service
from research_kit.core.errors import BadInput
from research_kit.core.sessions import ANONYMOUS
from research_kit.core.workspace import Workspace, open_workspace

console = Console(highlight=False)

# Set by the root command from --as, and from RESEARCH_KIT_USER, which only demo mode believes.
requested: dict[str, str | None] = {"as": None, "demo": None, "token": None}
_acting: dict[str, str] = {}  # workspace root -> who this process acts as there, once resolved


def workspace(*, signed_in: bool = True) -> Workspace:
    """The workspace (``$RESEARCH_KIT_HOME``, else ``./.workspace``), and who acts on it.

    ``signed_in=False`` only for what acts for no one (``audit verify``) or bootstraps a workspace.
    """
    if os.environ.get(service.URL_ENV):
        raise BadInput(
            f"{service.URL_ENV} is set: this command runs on the server's machine only (a client sends: "
            f"{', '.join(sorted(service.REMOTE_COMMANDS))}, login and logout)"
        )
    ws = open_workspace()
    if signed_in:
        actor(ws)
    return ws


def actor(ws: Workspace | None = None) -> str:
    """Who is acting: the caller's signed-in user (``--as`` picks one of several); in demo mode, whom --as names."""
    ws = ws or open_workspace()
    key = str(ws.root)
    if key not in _acting:
        name = identity.acting_user(ws, requested["as"], demo_name=requested["demo"], token=requested["token"])
        if requested["token"] is None and identity.demo_mode(ws):
            print(f"research-kit: {identity.DEMO_WARNING}", file=sys.stderr)
        audit.act_as(name)  # the rest of this process acts as them, down to every audit line
        _acting[key] = name
    return _acting[key]


def signed_in_or_anonymous(ws: Workspace) -> str:
    """For what acts for no one: "anonymous" when the caller named nobody and is signed in as nobody; else the
    acting user (a wrong --as, or several sign-ins without one, is refused as for any command)."""
    nobody = requested["as"] is None and requested["token"] is None and not identity.demo_mode(ws)
    if nobody and not identity.signed_in(ws):
        return ANONYMOUS
    return actor(ws)


def bootstrapping(ws: Workspace) -> bool:
    """Whether ``ws`` has no user yet: its first steward is made without signing in."""
    return not identity.has_users(ws)


def numbers(text: str | None, what: str) -> list[float] | None:
    """``"1,2.5,3"`` as numbers; ``None`` when the option was not given."""
    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BadInput(f"{what}: give numbers separated by commas, not {text!r}") from None
