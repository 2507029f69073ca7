"""Sign-in sessions of the review web app, kept in the catalog.

A session is a random token (``secrets``) in an HttpOnly, SameSite=Strict
cookie; the catalog stores only its SHA-256, the user, a CSRF token and two
times. It ends on sign-out, after ``[web].session_idle_minutes`` unused, after
``[web].session_max_hours`` in all, when its user is disabled, and when a
steward sets the user a new password. After ``[web].max_failed_signins``
failures for one name or from one address within ``[web].lockout_minutes``,
every further attempt waits, doubling up to ``[web].max_signin_delay_seconds``:
slowed, never locked out, so nobody can keep a committee member out.

Sign-ins, failures and sign-outs are audited as the person named (not as the
server's account). A failed sign-in with a name that is no user is recorded
as ``anonymous``, without the name: people type passwords into the name field.
"""

from __future__ import annotations

import hashlib
import math
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from research_kit.core import audit, users
from research_kit.core.catalog import transaction
from research_kit.core.errors import PolicyRefusal
from research_kit.core.workspace import Workspace

SEEN_EVERY = timedelta(seconds=30)  # a page view refreshes seen_at at most this often (fewer catalog writes)


class SignInRefused(PolicyRefusal):
    """Wrong name or password, or a locked or disabled user: said the same way to the person signing in."""


@dataclass(frozen=True)
class Session:
    user: users.User
    csrf: str
    created_at: datetime


ANONYMOUS = "anonymous"  # the audit log's actor for a sign-in with an unknown name


def _now() -> datetime:
    return datetime.now(UTC)


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


REFUSED = "wrong user name or password"  # every failed sign-in, whatever the cause, gets this and no other answer


MAX_NAME = 64  # characters of a sign-in name looked at; a longer one is no user's


def _key(name: str, known: bool) -> str:
    """How a failure is filed: a user's name, or the hash of what was typed (people type passwords there)."""
    return name if known else "unknown:" + hashlib.sha256(name[:MAX_NAME].encode("utf-8")).hexdigest()[:16]


def _failures(conn: sqlite3.Connection, key: str, address: str, since: str) -> tuple[int, str | None]:
    """Failed sign-ins since ``since`` for this name or from this address (whichever has more), and the last one."""
    rows = [
        conn.execute(
            "SELECT COUNT(*), MAX(at) FROM signin_failures WHERE user = ? AND at > ?", (key, since)
        ).fetchone(),
        conn.execute(
            "SELECT COUNT(*), MAX(at) FROM signin_failures WHERE address = ? AND address != '' AND at > ?",
            (address, since),
        ).fetchone(),
    ]
    count, last = max((r[0], r[1]) for r in rows)
    return int(count), last


def signin_wait(ws: Workspace, name: str, address: str = "") -> float:
    """Seconds before a sign-in as ``name`` from ``address`` is looked at; 0 when it may be tried now.

    After ``[web].max_failed_signins`` failures for one name or from one address within
    ``[web].lockout_minutes``, each further attempt must wait after the last failure, doubling up to
    ``[web].max_signin_delay_seconds``. An attempt that comes too soon is refused unread, with the same
    words: a guesser, even in parallel, is slowed, and nobody can lock a committee member out.
    """
    policy = ws.policy().web
    now = _now()
    since = (now - timedelta(minutes=policy.lockout_minutes)).isoformat()
    with ws.catalog() as conn:
        known = users.get(conn, name[:MAX_NAME]) is not None
        count, last = _failures(conn, _key(name, known), address, since)
    over = count - policy.max_failed_signins
    if over < 0 or last is None:
        return 0.0
    delay = min(policy.max_signin_delay_seconds, 0.25 * 2.0**over)
    return max(0.0, delay - (now - datetime.fromisoformat(last)).total_seconds())


def sign_in(ws: Workspace, name: str, password: str, *, address: str = "") -> tuple[str, Session]:
    """A new session for ``name``: its cookie token and the session; :class:`SignInRefused` otherwise.

    The password is always checked against a hash (a dummy one for an unknown name), so every refusal costs
    the same time and says the same thing. Failures are counted per name and per address (an unknown name
    only as a hash); the audit log gets one line per burst (the first failure, then the 10th, the 100th ...),
    each with the count so far. Failures older than ``[web].lockout_minutes`` are forgotten.
    """
    policy = ws.policy().web
    now = _now()
    since = (now - timedelta(minutes=policy.lockout_minutes)).isoformat()
    name = name[:MAX_NAME]
    user = None
    with ws.catalog() as conn, transaction(conn):
        known = users.get(conn, name) is not None
        user = users.check_password(conn, name, password)
        if user is None:
            conn.execute("DELETE FROM signin_failures WHERE at <= ?", (since,))
            key = _key(name, known)
            conn.execute(
                "INSERT INTO signin_failures (user, address, at) VALUES (?, ?, ?)", (key, address, now.isoformat())
            )
            count, _ = _failures(conn, key, address, since)
            if count == 1 or math.log10(count).is_integer():
                details = {"user": name if known else None, "failures": count}
                audit.append(conn, ws.audit_path, "web.signin_failed", details, actor=name if known else ANONYMOUS)
        else:
            conn.execute("DELETE FROM signin_failures WHERE user = ?", (name,))
            token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
            conn.execute(
                "INSERT INTO sessions (token_sha256, user, csrf, created_at, seen_at) VALUES (?, ?, ?, ?, ?)",
                (_digest(token), name, csrf, now.isoformat(), now.isoformat()),
            )
            audit.append(conn, ws.audit_path, "web.signin", {"user": name, "role": user.role}, actor=name)
    if user is None:
        raise SignInRefused(REFUSED)
    return token, Session(user, csrf, now)


def lookup(ws: Workspace, token: str | None) -> Session | None:
    """The live session behind a cookie token, or None (an expired one is deleted)."""
    if not token:
        return None
    policy = ws.policy().web
    now = _now()
    digest = _digest(token)
    with ws.catalog() as conn:
        row = conn.execute("SELECT * FROM sessions WHERE token_sha256 = ?", (digest,)).fetchone()
        if row is None:
            return None
        created, seen = datetime.fromisoformat(row["created_at"]), datetime.fromisoformat(row["seen_at"])
        user = users.get(conn, row["user"])
        expired = (
            now - seen > timedelta(minutes=policy.session_idle_minutes)
            or now - created > timedelta(hours=policy.session_max_hours)
            or user is None
            or not user.active
        )
        if expired:
            with transaction(conn):
                conn.execute("DELETE FROM sessions WHERE token_sha256 = ?", (digest,))
            return None
        if now - seen > SEEN_EVERY:
            with transaction(conn):
                conn.execute("UPDATE sessions SET seen_at = ? WHERE token_sha256 = ?", (now.isoformat(), digest))
    assert user is not None
    return Session(user, row["csrf"], created)


def sign_out(ws: Workspace, token: str) -> None:
    with ws.catalog() as conn, transaction(conn):
        row = conn.execute("SELECT user FROM sessions WHERE token_sha256 = ?", (_digest(token),)).fetchone()
        if row is not None:
            conn.execute("DELETE FROM sessions WHERE token_sha256 = ?", (_digest(token),))
            audit.append(conn, ws.audit_path, "web.signout", {"user": row["user"]}, actor=row["user"])


def same_token(expected: str, given: str | None) -> bool:
    """Constant-time comparison of a CSRF token."""
    return given is not None and secrets.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))
