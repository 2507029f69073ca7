"""A steward's standing waiver of a safeguard on real data, kept in the catalog: who gave it and why.

Two safeguards refuse real data unless a signed-in steward waives them
(recorded with a reason, audited): the sandbox's ``off`` mode
(``sandbox_waivers``, :mod:`research_kit.sandbox.modes`) and demo mode's
unverified identities (``demo_optins``, :mod:`research_kit.core.identity`).
"""

from __future__ import annotations

from datetime import UTC, datetime

from research_kit.core import audit, users
from research_kit.core.catalog import transaction
from research_kit.core.errors import BadInput
from research_kit.core.permissions import Duty
from research_kit.core.workspace import Workspace

TABLES = ("sandbox_waivers", "demo_optins")


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def standing(ws: Workspace, table: str) -> str:
    """Who gave the newest waiver in ``table`` still in force, and why ('' when none is)."""
    if table not in TABLES:
        raise ValueError(table)
    with ws.catalog() as conn:
        row = conn.execute(
            f"SELECT granted_by, reason FROM {table} WHERE revoked_at IS NULL ORDER BY id DESC LIMIT 1"
        ).fetchone()
    return f"{row['granted_by']}: {row['reason']}" if row else ""


def grant(ws: Workspace, table: str, duty: Duty, action: str, *, reason: str, why: str) -> None:
    """The acting steward's waiver in ``table``, with its ``reason`` (``why`` asks for one when it is blank);
    the catalog row and the audit line ``action`` in one transaction."""
    if table not in TABLES:
        raise ValueError(table)
    if not reason.strip():
        raise BadInput(f"--reason: say why {why}")
    by = audit.current_actor()
    with ws.catalog() as conn, transaction(conn):
        users.require(conn, by, duty)
        conn.execute(f"INSERT INTO {table} (granted_by, granted_at, reason) VALUES (?, ?, ?)", (by, _now(), reason))
        audit.append(conn, ws.audit_path, action, {"reason": reason})


def revoke(ws: Workspace, table: str, duty: Duty, action: str) -> int:
    """Revoke every waiver in force in ``table`` (the acting steward; audited when there was one); how many."""
    if table not in TABLES:
        raise ValueError(table)
    with ws.catalog() as conn, transaction(conn):
        users.require(conn, audit.current_actor(), duty)
        revoked = conn.execute(f"UPDATE {table} SET revoked_at = ? WHERE revoked_at IS NULL", (_now(),)).rowcount
        if revoked:
            audit.append(conn, ws.audit_path, action, {"waivers": revoked})
    return int(revoked)
