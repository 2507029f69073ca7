"""The workspace's users on the terminal."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from research_kit.core.users import User


def print_users(console: Console, rows: list[User]) -> None:
    table = Table(title="users")
    for column in ("name", "role", "active", "password", "added", "by"):
        table.add_column(column)
    for u in rows:
        table.add_row(
            escape(u.name), u.role, "yes" if u.active else "no", "set" if u.has_password else "-", u.added_at,
            escape(u.added_by),
        )  # fmt: skip
    console.print(table)
