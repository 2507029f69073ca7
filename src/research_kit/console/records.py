"""The audit log on the terminal, and as JSON."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from research_kit.console.output import print_table


def _details(entry: dict[str, Any]) -> dict[str, Any]:
    """An entry's details as shown, by key (the policy an entry may carry is left out: it is in the log)."""
    return {k: v for k, v in sorted(entry.get("details", {}).items()) if k != "policy"}


def print_audit(console: Console, entries: list[dict[str, Any]]) -> None:
    table = Table(title="audit log")
    for col in ("#", "when (UTC)", "who", "action", "details"):
        table.add_column(col)
    for e in entries:
        if "_line" in e:
            table.add_row("?", "", "", "(unreadable line)", "")
            continue
        details = ", ".join(f"{k}={v}" for k, v in _details(e).items())
        table.add_row(str(e.get("seq")), str(e.get("ts", ""))[:19], str(e.get("actor")), str(e.get("action")), details)
    print_table(console, table)


def audit_json(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """``audit show --json``: per entry, oldest first, ``seq``, ``ts`` (ISO 8601, UTC), ``actor``, ``action``,
    ``details`` and ``readable``. An unreadable line is ``readable: false`` with the rest null (its text is not
    shown: ``research-kit audit verify`` names it)."""
    return [_entry_json(e) for e in entries]


def _entry_json(entry: dict[str, Any]) -> dict[str, Any]:
    if "_line" in entry:
        return {"seq": None, "ts": None, "actor": None, "action": None, "details": {}, "readable": False}
    return {
        "seq": entry.get("seq"),
        "ts": entry.get("ts"),
        "actor": entry.get("actor"),
        "action": entry.get("action"),
        "details": _details(entry),
        "readable": True,
    }
