"""The workspace's users: added, listed, disabled, given a password (stewards do)."""

from __future__ import annotations

from research_kit.actions.acting import as_user
from research_kit.core import users
from research_kit.core.users import User
from research_kit.core.workspace import Workspace


def add(ws: Workspace, *, actor: str, name: str, role: str) -> User:
    return as_user(actor, users.add, ws, name, role)


def list_users(ws: Workspace) -> list[User]:
    return users.all_users(ws)


def disable(ws: Workspace, *, actor: str, name: str) -> None:
    as_user(actor, users.disable, ws, name)


def set_password(ws: Workspace, *, actor: str, name: str, password: str) -> None:
    as_user(actor, users.set_password, ws, name, password)
