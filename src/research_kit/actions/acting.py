"""How an action acts as its user: every audit line written inside names them."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from research_kit.core import users
from research_kit.core.audit import acting
from research_kit.core.permissions import Duty
from research_kit.core.workspace import Workspace

P = ParamSpec("P")
T = TypeVar("T")


def as_user(actor: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` acting as ``actor``."""
    with acting(actor):
        return fn(*args, **kwargs)


def on_duty(ws: Workspace, actor: str, duty: Duty, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` acting as ``actor``, who must hold a role for ``duty`` (a one-line refusal if not)."""
    with ws.catalog() as conn:
        users.require(conn, actor, duty)
    return as_user(actor, fn, *args, **kwargs)
