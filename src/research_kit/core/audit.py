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

from research_kit.core.catalog import before_commit, commit_hooks, transaction
from research_kit.core.faults import fault

GENESIS = "0" * 64
ACTOR_ENV = "RESEARCH_KIT_USER"
SYSTEM = "research-kit"  # the actor of what research-kit records by itself (a log repaired after a crash)
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
    """Chain one entry to the head and move the head, in the open transaction; its line is written at commit."""
    # Round-trip the details through JSON now, so the hash is over what is stored.
    clean = json.loads(json.dumps(details, default=str))
    seq, prev = head(conn)
    lines = _pending(conn, path)
    if not lines.data:  # the first entry of this change: cut what a crash left past the anchor
        dropped = _drop_uncommitted(conn, path, seq)
        if dropped:
            clean["_recovered_uncommitted"] = dropped
    seq += 1
    ts = datetime.now(UTC).isoformat(timespec="microseconds")
    who = actor or current_actor()
    digest = _digest(seq, ts, who, action, clean, prev)
    entry = AuditEntry(seq, ts, who, action, clean, prev, digest)
    lines.data.append((json.dumps(asdict(entry), sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8"))
    conn.execute(
        "INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) "
        "ON CONFLICT(id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        (seq, digest),
    )
    return entry


class _Lines:
    """A change's audit lines, written to the log just before the change commits (never if it rolls back)."""

    def __init__(self, conn: sqlite3.Connection, path: Path) -> None:
        self.conn, self.path, self.data = conn, path, list[bytes]()

    def __call__(self) -> None:
        data = b"".join(self.data)
        fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # a log whose last line lost its newline (an editor, a copy): never glue to it
            _write_all(fd, data)
            os.fsync(fd)
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        fault("audit.after_write")
        self.conn.execute("UPDATE audit_head SET bytes = ? WHERE id = 1", (size,))


def _pending(conn: sqlite3.Connection, path: Path) -> _Lines:
    for hook in commit_hooks(conn):
        if isinstance(hook, _Lines) and hook.path == path:
            return hook
    lines = _Lines(conn, path)
    before_commit(conn, lines)
    return lines


def _write_all(fd: int, data: bytes) -> None:
    """Write all of ``data``; a disk that fills up mid-line raises (and the caller's transaction rolls back)."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def repair(conn: sqlite3.Connection, path: Path) -> list[str]:
    """Cut lines a crash left past the anchored entry (appended, never committed) and record that in the log.

    The check is one ``stat``: the catalog keeps the log's length at its anchor. Only a log longer than that
    is repaired, under the write lock and after checking again (an append under way is committed by then). A
    shorter one is left for :func:`verify` to report: lines deleted are never "repaired".
    """
    row = conn.execute("SELECT bytes FROM audit_head WHERE id = 1").fetchone()
    if row is None or row[0] is None:
        return []
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return []
    if size <= int(row[0]):
        return []
    with transaction(conn):
        seq, _ = head(conn)
        again = conn.execute("SELECT bytes FROM audit_head WHERE id = 1").fetchone()
        if path.stat().st_size <= int(again[0]):
            return []
        dropped = _drop_uncommitted(conn, path, seq)
        if dropped:
            why = "a command stopped after writing its audit line, before its change committed: the line was cut"
            _append(conn, path, "audit.recovered", {"reason": why, "cut": dropped}, SYSTEM)
        return dropped


_TAIL = 1 << 20  # bytes read back from the anchor to find the anchored line


def _drop_uncommitted(conn: sqlite3.Connection, path: Path, anchored: int) -> list[str]:
    """Cut lines past the anchored entry: written by a change that never committed (a crash).

    Returns a note on each line cut, recorded in the next entry so the recovery is itself audited. Where the
    catalog knows the log's length at the anchor, the log is cut there, and only if the line ending there is
    the anchored entry itself (its number and hash): a log edited anywhere else is left as it is, for
    :func:`verify` to report, never "repaired".
    """
    if not path.exists():
        return []
    known = conn.execute("SELECT bytes, hash FROM audit_head WHERE id = 1").fetchone()
    if known is None or known["bytes"] is None:
        return _drop_by_lines(path, anchored)
    keep, size = int(known["bytes"]), path.stat().st_size
    if size <= keep:
        return []
    start = max(0, keep - _TAIL)
    with path.open("rb") as fh:
        fh.seek(start)
        data = fh.read()
    before, after = data[: keep - start], data[keep - start :]
    try:
        last = json.loads(before.rstrip(b"\n").rsplit(b"\n", 1)[-1])
        is_anchor = before.endswith(b"\n") and last["seq"] == anchored and last["hash"] == known["hash"]
    except (ValueError, KeyError, TypeError):
        is_anchor = False
    if not is_anchor:
        return []
    return _cut(path, keep, after.splitlines(keepends=True))


def _drop_by_lines(path: Path, anchored: int) -> list[str]:
    """The same for a log whose length at the anchor is not recorded (a workspace before migration 12)."""
    with path.open("rb") as fh:
        lines = fh.read().splitlines(keepends=True)
    if len(lines) <= anchored:
        return []
    return _cut(path, sum(len(line) for line in lines[:anchored]), lines[anchored:])


def _cut(path: Path, keep: int, lines: list[bytes]) -> list[str]:
    notes = []
    for line in lines:
        try:
            item = json.loads(line)
            notes.append(f"entry {item['seq']} {item['action']} {item['hash'][:16]}")
        except (ValueError, KeyError, TypeError):
            notes.append("an unreadable line")
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
    """Walk the chain and compare its end with the anchor; name the first bad entry.

    Under the write lock, so that no change appends while the log and its anchor are read.
    """
    if conn.in_transaction:
        return _verify(conn, path)
    with transaction(conn):
        return _verify(conn, path)


def _verify(conn: sqlite3.Connection, path: Path) -> Verdict:
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
