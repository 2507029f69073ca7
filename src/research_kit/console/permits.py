"""Data permits on screen (rich) and as JSON."""

from __future__ import annotations

from datetime import date
from typing import Any

from rich.console import Console
from rich.table import Table

from research_kit.console.output import print_table
from research_kit.core.permits import CATEGORIES, Permit


def print_permits(console: Console, found: list[Permit], *, title: str = "Data permits") -> None:
    if not found:
        console.print("no data permit yet ('research-kit permit apply STUDY ...')")
        return
    table = Table(title=title)
    for name in ("id", "study", "status", "tier", "data", "users", "until", "holder"):
        table.add_column(name)
    for p in found:
        table.add_row(str(p.id), p.study, p.status(), p.tier, p.data_text(), ", ".join(p.users), str(p.until),
                      p.holder)  # fmt: skip
    print_table(console, table)


def print_permit(console: Console, permit: Permit) -> None:
    p = permit
    lines = [
        f"permit {p.id}: study {p.study}, {p.status()}",
        f"  purpose: {p.purpose} ({CATEGORIES.get(p.category, p.category)})",
        f"  holder: {p.holder}",
        f"  users: {', '.join(p.users)}",
        f"  tier: {p.tier}; data: {p.data_text()}; extract versions: {p.versions_text()}",
        f"  until: {p.until}" + (f" ({(p.until - date.today()).days} days left)" if p.in_force() else ""),
        f"  applied by {p.applied_by} on {p.applied_at}" + (f", budget asked rho {p.rho_asked}" if p.rho_asked else ""),
    ]
    if p.decided_by:
        lines.append(
            f"  decided by {p.decided_by} on {p.decided_at}" + (f": {p.decision_note}" if p.decision_note else "")
        )
    if p.legal_basis:
        lines.append(f"  legal basis: {p.legal_basis}")
    if p.optout_exception:
        lines.append(f"  EXCEPTION to the opt-out register: {p.optout_exception}")
    if p.continuation_of:
        lines.append(f"  continues permit {p.continuation_of} (its users see the same pseudonyms)")
    if p.revoked_by:
        lines.append(f"  revoked by {p.revoked_by} on {p.revoked_at}")
    if p.state in ("granted", "revoked"):
        lines.append(f"  results: {p.publication}")
    console.print("\n".join(lines), highlight=False, markup=False)


def permits_json(found: list[Permit]) -> list[dict[str, Any]]:
    return [p.to_dict() for p in found]
