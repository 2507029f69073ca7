"""Backing a workspace up and restoring it from a snapshot: a steward does both (audited).

Who may restore: a steward signed in on the workspace the command runs on (``RESEARCH_KIT_HOME``), restoring
into another folder; or, where there is no workspace to sign in to (it was lost), a steward of the snapshot
itself, by their password as the snapshot's catalog keeps it. Whoever holds a snapshot holds its catalog:
the check records who restored it, and the snapshot must be kept as privately as the workspace.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

from research_kit.actions.acting import on_duty
from research_kit.core import backup as snapshots
from research_kit.core import users
from research_kit.core.errors import BadInput, PolicyRefusal
from research_kit.core.permissions import Duty
from research_kit.core.workspace import Workspace, default_root

Snapshot = snapshots.Snapshot
Restored = snapshots.Restored


def backup(
    ws: Workspace, *, actor: str, out: Path, copy_data: bool = False, progress: snapshots.Progress | None = None
) -> Snapshot:
    """Write a snapshot of ``ws`` to the new folder ``out`` (a steward does); its manifest's SHA-256 is audited."""
    return on_duty(ws, actor, Duty.BACKUP, _backup, ws, out, copy_data, progress)


def _backup(ws: Workspace, out: Path, copy_data: bool, progress: snapshots.Progress | None) -> Snapshot:
    snap = snapshots.backup(ws, out, copy_data=copy_data, progress=progress)
    seq, head = snap.audit_head
    try:
        ws.audit(
            "workspace.backup",
            manifest_sha256=snap.checksum,
            audit_head={"seq": seq, "hash": head},
            schema_version=snap.manifest["schema_version"],
            extracts=snap.extracts,
            files=snap.files,
            bytes=snap.bytes,
        )
    except BaseException:
        shutil.rmtree(snap.path, ignore_errors=True)  # a snapshot the log does not record is not left behind
        raise
    return snap


def restore(
    snapshot: Path,
    *,
    actor: str,
    to: Path | None = None,
    live: Workspace | None = None,
    password: str | None = None,
    progress: snapshots.Progress | None = None,
) -> Restored:
    """Check ``snapshot`` and restore it into ``to`` (default: ``$RESEARCH_KIT_HOME``), new or empty.

    ``live``: the workspace ``actor`` is signed in on, where they must be a steward. Without one, ``actor`` is
    a steward of the snapshot and ``password`` is theirs there.
    """
    target = to if to is not None else default_root()
    if live is not None:
        with live.catalog() as conn:
            users.require(conn, actor, Duty.RESTORE)
        return snapshots.restore(snapshot, target, actor=actor, progress=progress)
    if password is None:
        raise BadInput("restoring without a workspace to sign in to needs the snapshot's steward and their password")

    def authorise(conn: sqlite3.Connection) -> None:
        if users.check_password(conn, actor, password) is None:
            raise PolicyRefusal(f"{actor!r}: not a user of this snapshot with that password (or disabled)")
        users.require(conn, actor, Duty.RESTORE)

    return snapshots.restore(snapshot, target, actor=actor, authorise=authorise, progress=progress)
