"""The audit log on the terminal."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table


def print_audit(console: Console, entries: list[dict[str, Any]]) -> None:
    table = Table(title="audit log")
    for col in ("#", "when (UTC)", "who", "action", "details"):
        table.add_column(col)
    for e in entries:
        if "_line" in e:
            table.add_row("?", "", "", "(unreadable line)", "")
            continue
        details = ", ".join(f"{k}={v}" for k, v in sorted(e.get("details", {}).items()) if k != "policy")
        table.add_row(str(e.get("seq")), str(e.get("ts", ""))[:19], str(e.get("actor")), str(e.get("action")), details)
    console.print(table)
