"""The workspace's users: added, listed, disabled, given a password (stewards do); signing in and out."""

from __future__ import annotations

from research_kit.actions.acting import as_user
from research_kit.core import identity, users
from research_kit.core.users import User
from research_kit.core.workspace import Workspace


def add(ws: Workspace, *, actor: str, name: str, role: str, password: str | None = None) -> User:
    """Add ``name`` with ``role`` (and a password to sign in with); the first steward adds themselves."""
    return as_user(actor, users.add, ws, name, role, password)


def reset_codes(ws: Workspace, *, actor: str, name: str) -> None:
    as_user(actor, users.reset_codes, ws, name)


def login(ws: Workspace, *, name: str, password: str, code: str | None = None, enrol: str | None = None) -> User:
    return identity.login(ws, name, password, code=code, enrol=enrol)


def logout(ws: Workspace, *, name: str | None = None) -> list[str]:
    return identity.logout(ws, name)


def allow_demo(ws: Workspace, *, actor: str, reason: str) -> None:
    as_user(actor, identity.allow_demo, ws, reason=reason)


def disallow_demo(ws: Workspace, *, actor: str) -> int:
    return as_user(actor, identity.disallow_demo, ws)


def list_users(ws: Workspace) -> list[User]:
    return users.all_users(ws)


def disable(ws: Workspace, *, actor: str, name: str) -> None:
    as_user(actor, users.disable, ws, name)


def set_password(ws: Workspace, *, actor: str, name: str, password: str) -> None:
    as_user(actor, users.set_password, ws, name, password)
