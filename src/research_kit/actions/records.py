"""The audit log: read it, verify its chain."""

from __future__ import annotations

from typing import Any

from research_kit.core import audit, users
from research_kit.core.errors import IntegrityError
from research_kit.core.permissions import Duty
from research_kit.core.workspace import Workspace


def verify(ws: Workspace) -> audit.Verdict:
    """The chain and its anchor checked; an :class:`IntegrityError` naming the first bad entry if broken."""
    with ws.catalog() as conn:
        verdict = audit.verify(conn, ws.audit_path)
    if not verdict.ok:
        raise IntegrityError(f"{ws.audit_path}: {verdict.problem}")
    return verdict


def check(ws: Workspace) -> audit.Verdict:
    """The verdict, broken or not (the web app shows either)."""
    with ws.catalog() as conn:
        return audit.verify(conn, ws.audit_path)


def entries(ws: Workspace, *, actor: str, last: int | None = None) -> list[dict[str, Any]]:
    """The audit entries, oldest first (only the ``last`` ones when given), for a committee member or steward."""
    with ws.catalog() as conn:
        users.require(conn, actor, Duty.READ_AUDIT)
    found = audit.read_entries(ws.audit_path)
    if last is None:
        return found
    return found[-last:] if last > 0 else []
