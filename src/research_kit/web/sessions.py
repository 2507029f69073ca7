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


def _failures(conn: sqlite3.Connection, name: str, address: str, since: str) -> int:
    """Failed sign-ins since ``since`` for this user name or from this address, whichever has more."""
    by_name = conn.execute("SELECT COUNT(*) FROM signin_failures WHERE user = ? AND at > ?", (name, since))
    by_address = conn.execute("SELECT COUNT(*) FROM signin_failures WHERE address = ? AND at > ?", (address, since))
    return max(by_name.fetchone()[0], by_address.fetchone()[0] if address else 0)


def signin_delay(ws: Workspace, name: str, address: str = "") -> float:
    """How long to wait before answering a sign-in as ``name`` from ``address``, in seconds.

    Repeated failures for one name or from one address slow every further attempt, doubling up to
    ``[web].max_signin_delay_seconds``: a guesser is slowed, and nobody can lock a committee member out.
    """
    policy = ws.policy().web
    since = (_now() - timedelta(minutes=policy.lockout_minutes)).isoformat()
    with ws.catalog() as conn:
        over = _failures(conn, name, address, since) - policy.max_failed_signins
    return 0.0 if over < 0 else min(policy.max_signin_delay_seconds, 0.25 * 2.0**over)


def sign_in(ws: Workspace, name: str, password: str, *, address: str = "") -> tuple[str, Session]:
    """A new session for ``name``: its cookie token and the session; :class:`SignInRefused` otherwise.

    The password is always checked against a hash (a dummy one for an unknown name), so every refusal costs
    the same time and says the same thing. Failures are counted per name and per address; the audit log gets
    one line per burst (the first failure, then the 10th, the 100th, ...), each with the count so far.
    """
    policy = ws.policy().web
    now = _now()
    since = (now - timedelta(minutes=policy.lockout_minutes)).isoformat()
    user = None
    with ws.catalog() as conn, transaction(conn):
        known = users.get(conn, name) is not None
        user = users.check_password(conn, name, password)
        if user is None:
            conn.execute(
                "INSERT INTO signin_failures (user, address, at) VALUES (?, ?, ?)", (name, address, now.isoformat())
            )
            count = _failures(conn, name, address, since)
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
