"""Who owns a study: the users its data permits name (:mod:`research_kit.core.permits`).

An owner's pipeline is the study's pipeline: another user's pipeline that
declares the study is refused, and only an owner registers it again. Owners
never vote on their study's outputs (:mod:`research_kit.core.permissions`),
nor decide on its permits; a user a past permit named stays an owner.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from research_kit.core import audit, permits


def owners(conn: sqlite3.Connection, study: str) -> tuple[str, ...]:
    """The study's owners, in name order (none before its first permit)."""
    return permits.users_of(conn, study)


def owned_by(conn: sqlite3.Connection, name: str) -> set[str]:
    """The studies ``name`` owns."""
    return permits.studies_of(conn, name)


def evict(conn: sqlite3.Connection, audit_path: Path, study: str) -> None:
    """Forget a pipeline registered to someone who is not (or no longer) an owner: an owner registers it again."""
    row = conn.execute("SELECT registered_by FROM pipelines WHERE study = ?", (study,)).fetchone()
    if row is not None and row["registered_by"] not in owners(conn, study):
        conn.execute("DELETE FROM pipelines WHERE study = ?", (study,))
        audit.append(conn, audit_path, "pipeline.unregister", {"study": study, "registered_by": row["registered_by"]})
