"""Who owns a study: the researchers the committee names when it first grants the study a budget.

An owner's pipeline is the study's pipeline: another user's pipeline that
declares the study is refused, and only an owner registers it again. Owners
never vote on their study's outputs (:mod:`research_kit.core.permissions`).
A study nobody owns yet (no grant so far) belongs, for its pipeline, to the
user who registered it first.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path

from research_kit.core import audit, users
from research_kit.core.errors import BadInput, PolicyRefusal
from research_kit.core.permissions import Role


def owners(conn: sqlite3.Connection, study: str) -> tuple[str, ...]:
    """The study's owners, in name order (none before its first grant)."""
    rows = conn.execute("SELECT owner FROM study_owners WHERE study = ? ORDER BY owner", (study,))
    return tuple(r[0] for r in rows)


def owned_by(conn: sqlite3.Connection, name: str) -> set[str]:
    """The studies ``name`` owns."""
    return {r[0] for r in conn.execute("SELECT study FROM study_owners WHERE owner = ?", (name,))}


def add(conn: sqlite3.Connection, audit_path: Path, study: str, names: Iterable[str], *, by: str) -> list[str]:
    """Name ``names`` owners of ``study`` (inside the caller's transaction, audited); the ones newly added."""
    added = []
    for name in dict.fromkeys(n.strip() for n in names):
        user = users.get(conn, name)
        if user is None or not user.active:
            raise BadInput(f"--owner {name!r}: not an active user of this workspace")
        if Role.RESEARCHER not in user.roles:
            raise BadInput(f"--owner {name!r}: a study's owner is a researcher, not a {user.role}")
        if name in owners(conn, study):
            continue
        at = datetime.now(UTC).isoformat(timespec="seconds")
        conn.execute(
            "INSERT INTO study_owners (study, owner, added_by, added_at) VALUES (?, ?, ?, ?)", (study, name, by, at)
        )
        audit.append(conn, audit_path, "study.owner", {"study": study, "owner": name})
        added.append(name)
    return added


def require(conn: sqlite3.Connection, study: str, name: str, *, doing: str) -> None:
    """Refuse ``name`` unless they own ``study`` and are active (a study without owners refuses only the disabled)."""
    user = users.get(conn, name)
    if user is not None and not user.active:
        raise PolicyRefusal(f"user {name!r} is disabled")
    found = owners(conn, study)
    if found and name not in found:
        raise PolicyRefusal(f"study {study} belongs to {', '.join(found)}: {doing} is for its owners only")


def evict(conn: sqlite3.Connection, audit_path: Path, study: str) -> None:
    """Forget a pipeline registered to someone who is not (or no longer) an owner: an owner registers it again."""
    row = conn.execute("SELECT registered_by FROM pipelines WHERE study = ?", (study,)).fetchone()
    if row is not None and row["registered_by"] not in owners(conn, study):
        conn.execute("DELETE FROM pipelines WHERE study = ?", (study,))
        audit.append(conn, audit_path, "pipeline.unregister", {"study": study, "registered_by": row["registered_by"]})
