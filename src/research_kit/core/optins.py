"""A steward's standing waiver of a safeguard on real data, kept in the catalog: who gave it and why.

Two safeguards refuse real data unless a signed-in steward waives them
(recorded with a reason, audited): the sandbox's ``off`` mode
(``sandbox_waivers``, :mod:`research_kit.sandbox.modes`) and demo mode's
unverified identities (``demo_optins``, :mod:`research_kit.core.identity`).
"""

from __future__ import annotations

from research_kit.core.workspace import Workspace

TABLES = ("sandbox_waivers", "demo_optins")


def standing(ws: Workspace, table: str) -> str:
    """Who gave the newest waiver in ``table`` still in force, and why ('' when none is)."""
    if table not in TABLES:
        raise ValueError(table)
    with ws.catalog() as conn:
        row = conn.execute(
            f"SELECT granted_by, reason FROM {table} WHERE revoked_at IS NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()
    return f"{row['granted_by']}: {row['reason']}" if row else ""
