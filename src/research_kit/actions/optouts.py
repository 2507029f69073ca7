"""The opt-out register: the steward records opt-outs (national IDs read, hashed, never kept); steward and committee
read its count and version."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date
from pathlib import Path

from research_kit.actions.acting import as_user, on_duty
from research_kit.core import users
from research_kit.core.extracts import OptoutRegister
from research_kit.core.permissions import Duty
from research_kit.core.workspace import Workspace
from research_kit.pseudonymise import optouts
from research_kit.pseudonymise.keys import load_key
from research_kit.pseudonymise.optouts import Recorded


def add(
    ws: Workspace, *, actor: str, lines: Iterable[str], effective: date | None = None, key_file: Path | None = None
) -> Recorded:
    """Record the national IDs of ``lines`` (one per line; the CLI's standard input), effective on ``effective``
    (default: today). All or nothing: a malformed line refuses every one, naming its number."""
    _steward(ws, actor)
    entries = optouts.read_lines(lines)
    return as_user(actor, optouts.record, ws, load_key(key_file), entries, effective=effective)


def import_file(
    ws: Workspace, *, actor: str, path: Path, effective: date | None = None, key_file: Path | None = None
) -> Recorded:
    """Record the national IDs of a CSV or text file (header ``national_id`` optional; an optional second column
    ``date``/``effective`` overrides ``effective`` for its row). All or nothing: a bad row refuses the file."""
    _steward(ws, actor)
    entries = optouts.read_file(path)
    return as_user(actor, optouts.record, ws, load_key(key_file), entries, effective=effective)


def count(ws: Workspace, *, actor: str) -> OptoutRegister:
    """How many people opted out, and the register's version (a steward or a committee member)."""
    return on_duty(ws, actor, Duty.READ_OPTOUTS, optouts.current, ws)


def _steward(ws: Workspace, actor: str) -> None:
    """Refused before any national ID is read, and before the key is."""
    with ws.catalog() as conn:
        users.require(conn, actor, Duty.RECORD_OPTOUT)
