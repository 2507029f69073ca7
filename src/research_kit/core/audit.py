"""The hash-chained, append-only audit log.

Each entry is one JSON line carrying its number, time, actor, action, details,
the hash of the entry before it and its own SHA-256 over all of those. The
catalog anchors the last entry's number and hash, so an entry edited, deleted,
inserted or moved anywhere (the end included) breaks the chain somewhere
:func:`verify` can name.

Appends take SQLite's write lock (``BEGIN IMMEDIATE``), so processes appending
at once are serialised and the chain never forks. Details must never hold a
raw identifier, a registry row or a key.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from research_kit.core.catalog import transaction

GENESIS = "0" * 64
ACTOR_ENV = "RESEARCH_KIT_USER"
RUNNER = "runner:"  # what a study action's broker acts as: "runner:" and the name of whoever ran it
# The web app serves many users from one process: each request acts as its signed-in user through this
# context variable, which (unlike the environment) is private to the request's thread or task.
_ACTOR: ContextVar[str | None] = ContextVar("research_kit_actor", default=None)


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    ts: str
    actor: str
    action: str
    details: dict[str, Any]
    prev: str
    hash: str


@dataclass(frozen=True)
class Verdict:
    ok: bool
    entries: int
    problem: str | None = None
    first_bad_seq: int | None = None


def current_actor() -> str:
    """Who is acting: the web app's signed-in user, else ``RESEARCH_KIT_USER`` (``--as``), else the OS user."""
    return _ACTOR.get() or os.environ.get(ACTOR_ENV) or getpass.getuser()


def act_as(name: str) -> None:
    """Act as ``name`` from now on in this thread (a command, once it knows who signed in)."""
    _ACTOR.set(name)


@contextmanager
def acting(name: str) -> Iterator[None]:
    """Act as ``name`` inside the block (this thread or task only)."""
    token = _ACTOR.set(name)
    try:
        yield
    finally:
        _ACTOR.reset(token)


def _digest(seq: int, ts: str, actor: str, action: str, details: dict[str, Any], prev: str) -> str:
    body = {"seq": seq, "ts": ts, "actor": actor, "action": action, "details": details, "prev": prev}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def head(conn: sqlite3.Connection) -> tuple[int, str]:
    row = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
    return (0, GENESIS) if row is None else (int(row[0]), str(row[1]))


def append(
    conn: sqlite3.Connection, path: Path, action: str, details: dict[str, Any], *, actor: str | None = None
) -> AuditEntry:
    """Append one entry, chained to the anchored head, and move the anchor.

    Inside an open catalog transaction the entry commits (or rolls back) with it;
    otherwise it takes a transaction of its own.
    """
    if conn.in_transaction:
        return _append(conn, path, action, details, actor)
    with transaction(conn):
        return _append(conn, path, action, details, actor)


def _append(
    conn: sqlite3.Connection, path: Path, action: str, details: dict[str, Any], actor: str | None
) -> AuditEntry:
    # Round-trip the details through JSON now, so the hash is over what is stored.
    clean = json.loads(json.dumps(details, default=str))
    seq, prev = head(conn)
    dropped = _drop_uncommitted(path, seq)
    if dropped:
        clean["_recovered_uncommitted"] = dropped
    seq += 1
    ts = datetime.now(UTC).isoformat(timespec="microseconds")
    who = actor or current_actor()
    digest = _digest(seq, ts, who, action, clean, prev)
    entry = AuditEntry(seq, ts, who, action, clean, prev, digest)
    line = json.dumps(asdict(entry), sort_keys=True, ensure_ascii=False) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        os.write(fd, line.encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)
    conn.execute(
        "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) "
        "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        (seq, digest),
    )
    return entry


def _drop_uncommitted(path: Path, anchored: int) -> list[str]:
    """Cut lines past the anchored entry: written by a transaction that never committed (a crash).

    Returns a note on each line cut, recorded in the next entry so the recovery is itself audited.
    """
    if not path.exists():
        return []
    with path.open("rb") as fh:
        raw = fh.read()
    lines = raw.splitlines(keepends=True)
    if len(lines) <= anchored:
        return []
    notes = []
    for line in lines[anchored:]:
        try:
            item = json.loads(line)
            notes.append(f"entry {item['seq']} {item['action']} {item['hash'][:16]}")
        except (ValueError, KeyError, TypeError):
            notes.append("an unreadable line")
    keep = sum(len(line) for line in lines[:anchored])
    with path.open("r+b") as fh:
        fh.truncate(keep)
        fh.flush()
        os.fsync(fh.fileno())
    return notes


def read_entries(path: Path) -> list[dict[str, Any]]:
    """Entries as stored (unchecked); an unreadable line becomes ``{"_line": text}``."""
    if not path.exists():
        return []
    out: list[dict[str, Any]] = []
    with path.open(encoding="utf-8", errors="replace") as fh:
        for text in fh:
            try:
                item = json.loads(text)
                out.append(item if isinstance(item, dict) else {"_line": text})
            except json.JSONDecodeError:
                out.append({"_line": text})
    return out


def verify(conn: sqlite3.Connection, path: Path) -> Verdict:
    """Walk the chain and compare its end with the anchor; name the first bad entry."""
    anchored_seq, anchored_hash = head(conn)
    entries = read_entries(path)
    prev_hash, expected = GENESIS, 1
    for line_no, item in enumerate(entries, start=1):
        where = f"line {line_no}"
        try:
            seq, ts, actor, action = int(item["seq"]), item["ts"], item["actor"], item["action"]
            details, prev, digest = item["details"], item["prev"], item["hash"]
        except (KeyError, TypeError, ValueError):
            return Verdict(False, len(entries), f"{where}: not an audit entry (edited or corrupted)", expected)
        if seq > expected:
            return Verdict(
                False,
                len(entries),
                f"entry {expected} is missing ({where} holds entry {seq}): deleted or moved",
                expected,
            )
        if seq < expected:
            return Verdict(
                False, len(entries), f"{where} holds entry {seq} where entry {expected} belongs: inserted or moved", seq
            )
        if _digest(seq, ts, actor, action, details, prev) != digest:
            return Verdict(False, len(entries), f"entry {seq} ({where}): content does not match its hash (edited)", seq)
        if prev != prev_hash:
            bad = seq - 1 if seq > 1 else seq
            return Verdict(
                False,
                len(entries),
                f"entry {seq} ({where}) does not chain to entry {seq - 1}: entry {bad} was rewritten "
                "or the chain was spliced",
                bad,
            )
        prev_hash, expected = digest, seq + 1
    last = expected - 1
    if last < anchored_seq:
        return Verdict(
            False, len(entries), f"entries {last + 1} to {anchored_seq} are missing from the end (deleted)", last + 1
        )
    if last > anchored_seq:
        return Verdict(
            False,
            len(entries),
            f"entries after {anchored_seq} are not anchored in the catalog (added outside research-kit)",
            anchored_seq + 1,
        )
    if last and prev_hash != anchored_hash:
        return Verdict(False, len(entries), f"entry {last} does not match the catalog's anchor (rewritten)", last)
    return Verdict(True, len(entries))
