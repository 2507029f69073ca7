"""The workspace's users on the terminal, and as JSON."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from research_kit.console.output import print_table
from research_kit.core.users import ROLES, User


def print_users(console: Console, rows: list[User]) -> None:
    table = Table(title="users")
    for column in ("name", "role", "active", "password", "added", "by"):
        table.add_column(column)
    for u in rows:
        table.add_row(
            escape(u.name), u.role, "yes" if u.active else "no", "set" if u.has_password else "-", u.added_at,
            escape(u.added_by),
        )  # fmt: skip
    print_table(console, table)


def users_json(rows: list[User]) -> list[dict[str, Any]]:
    """``users list --json``: per user ``name``, ``roles`` (a list, in the order of ROLES), ``active``,
    ``has_password`` (may sign in), ``added_at`` and ``added_by``. Never a password or its hash."""
    return [
        {
            "name": u.name,
            "roles": [r for r in ROLES if r in u.roles],
            "active": u.active,
            "has_password": u.has_password,
            "added_at": u.added_at,
            "added_by": u.added_by,
        }
        for u in rows
    ]
