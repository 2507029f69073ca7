"""How an action acts as its user: every audit line written inside names them."""

from __future__ import annotations

from collections.abc import Callable
from typing import ParamSpec, TypeVar

from research_kit.core.audit import acting

P = ParamSpec("P")
T = TypeVar("T")


def as_user(actor: str, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``fn(*args, **kwargs)`` acting as ``actor``."""
    with acting(actor):
        return fn(*args, **kwargs)
