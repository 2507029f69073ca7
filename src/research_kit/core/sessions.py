"""Sign-in sessions, kept in the catalog: the web app's and the command line's.

A session is a random token (``secrets``): the web app's travels in an
HttpOnly, SameSite=Strict cookie, the command line's is kept in the user's
own runtime folder (:mod:`research_kit.core.identity`). The catalog stores
only its SHA-256, the user, its kind, a CSRF token and two times. A web
session ends on sign-out, after ``[web].session_idle_minutes`` unused, after
``[web].session_max_hours`` in all; a command-line one after
``[auth].session_hours``; both when their user is disabled, and when a
steward sets the user a new password.

Committee members and stewards also give a one-time code (TOTP, RFC 6238,
with ``pyotp``) when ``[auth].second_factor`` asks for it. A user sets the
codes up at their first sign-in on the command line (``research-kit login``):
the secret is shown to them once, and kept in the catalog. After ``[web].max_failed_signins``
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

import pyotp

from research_kit.core import audit, users
from research_kit.core.catalog import transaction
from research_kit.core.config import Policy
from research_kit.core.errors import PolicyRefusal
from research_kit.core.workspace import Workspace

SEEN_EVERY = timedelta(seconds=30)  # a page view refreshes seen_at at most this often (fewer catalog writes)


class SignInRefused(PolicyRefusal):
    """Wrong name, password or code, or a disabled user: said the same way to the person signing in."""


class CodeNeeded(SignInRefused):
    """The password was right; this user must also give a one-time code (or first set the codes up)."""

    def __init__(self, message: str, *, enrol: bool) -> None:
        super().__init__(message)
        self.enrol = enrol


KINDS = ("web", "cli")
SECOND_FACTOR_ROLES = frozenset({"committee", "steward"})


def needs_code(policy: Policy, user: users.User) -> bool:
    """Whether ``user`` gives a one-time code to sign in: committee members and stewards, when the policy asks."""
    wanted = policy.auth.second_factor == "always" or (
        policy.auth.second_factor == "service" and policy.auth.mode == "service"
    )
    return wanted and bool(user.roles & SECOND_FACTOR_ROLES)


def new_code_secret() -> str:
    """A fresh TOTP secret (base32, 160 bits from ``secrets``) for :func:`sign_in`'s ``enrol``."""
    return pyotp.random_base32(32)


def code_uri(name: str, secret: str) -> str:
    """The ``otpauth://`` address an authenticator app reads (as text or a QR code)."""
    return pyotp.TOTP(secret).provisioning_uri(name=name, issuer_name="research-kit")


def _code_step(secret: str, code: str | None, after: int) -> int | None:
    """The 30 s time step whose one-time code ``code`` is (now, or the step either side, for a slow typist's
    clock), if it is later than ``after``, the step last used: a code is good once. None otherwise."""
    if not code:
        return None
    totp, now = pyotp.TOTP(secret), _now()
    for offset in (0, -1, 1):
        when = now + timedelta(seconds=30 * offset)
        step = totp.timecode(when)
        if step > after and secrets.compare_digest(totp.at(when), code.strip()):
            return step
    return None


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


REFUSED = "wrong user name, password or code"  # every failed sign-in, whatever the cause, gets this and no other answer


MAX_NAME = 64  # characters of a sign-in name looked at; a longer one is no user's
MAX_PASSWORD = 1024  # characters of a password; a longer one is refused unread


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


class TooSoon(SignInRefused):
    """A sign-in too soon after failures for this name or from this address: refused unread."""


def check_wait(ws: Workspace, name: str, address: str = "") -> None:
    """:class:`TooSoon` (saying how long to wait) when a sign-in as ``name`` from ``address`` must wait."""
    wait = signin_wait(ws, name, address)
    if wait > 0:
        raise TooSoon(f"too many failed sign-ins: try again in {math.ceil(wait)} seconds")


def sign_in(
    ws: Workspace,
    name: str,
    password: str,
    *,
    address: str = "",
    code: str | None = None,
    enrol: str | None = None,
    kind: str = "web",
) -> tuple[str, Session]:
    """A new session of ``kind`` for ``name``: its token and the session; :class:`SignInRefused` otherwise.

    The password is always checked against a hash (a dummy one for an unknown name), so every refusal costs
    the same time and says the same thing. A user who must give a one-time code (:func:`needs_code`) and gave
    none gets :class:`CodeNeeded` once the password is right; one who has not set the codes up yet passes
    ``enrol`` (from :func:`new_code_secret`) and a code from it, and the secret is kept. Failures are counted
    per name and per address (an unknown name only as a hash); the audit log gets one line per burst (the
    first failure, then the 10th, the 100th ...), each with the count so far. Failures older than
    ``[web].lockout_minutes`` are forgotten.
    """
    if kind not in KINDS:
        raise ValueError(kind)
    full = ws.policy()
    policy = full.web
    now = _now()
    since = (now - timedelta(minutes=policy.lockout_minutes)).isoformat()
    name = name[:MAX_NAME]
    user = None
    with ws.catalog() as conn, transaction(conn):
        known = users.get(conn, name) is not None
        # A password longer than any policy asks for is wrong unread (hashing megabytes costs the server dearly).
        user = users.check_password(conn, name, password) if len(password) <= MAX_PASSWORD else None
        second_factor = False
        if user is not None and needs_code(full, user):
            secret = users.code_secret(conn, name)
            if secret is None and enrol is None:
                raise CodeNeeded("set up your one-time codes first: research-kit login " + name, enrol=True)
            if code is None:
                raise CodeNeeded("give the one-time code from your authenticator app", enrol=False)
            last = conn.execute("SELECT totp_step FROM users WHERE name = ?", (name,)).fetchone()[0]
            step = _code_step(secret or enrol or "", code, last if secret else 0)
            if step is None:
                user = None
            else:
                second_factor = True
                conn.execute("UPDATE users SET totp_step = ? WHERE name = ?", (step, name))
                if secret is None:
                    conn.execute("UPDATE users SET totp_secret = ? WHERE name = ?", (enrol, name))
                    audit.append(conn, ws.audit_path, "user.second_factor", {"user": name}, actor=name)
        if user is None:
            conn.execute("DELETE FROM signin_failures WHERE at <= ?", (since,))
            key = _key(name, known)
            conn.execute(
                "INSERT INTO signin_failures (user, address, at) VALUES (?, ?, ?)", (key, address, now.isoformat())
            )
            count, _ = _failures(conn, key, address, since)
            if count == 1 or math.log10(count).is_integer():
                details = {"user": name if known else None, "failures": count}
                audit.append(conn, ws.audit_path, f"{kind}.signin_failed", details, actor=name if known else ANONYMOUS)
        else:
            conn.execute("DELETE FROM signin_failures WHERE user = ?", (name,))
            token, csrf = secrets.token_urlsafe(32), secrets.token_urlsafe(32)
            conn.execute(
                "INSERT INTO sessions (token_sha256, user, csrf, created_at, seen_at, kind, second_factor)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (_digest(token), name, csrf, now.isoformat(), now.isoformat(), kind, int(second_factor)),
            )
            audit.append(conn, ws.audit_path, f"{kind}.signin", {"user": name, "role": user.role}, actor=name)
    if user is None:
        raise SignInRefused(REFUSED)
    return token, Session(user, csrf, now)


def lookup(ws: Workspace, token: str | None, *, kind: str = "web") -> Session | None:
    """The live session of ``kind`` behind a token, or None (an expired one is deleted)."""
    if not token:
        return None
    policy = ws.policy()
    idle, most = (
        (timedelta(minutes=policy.web.session_idle_minutes), timedelta(hours=policy.web.session_max_hours))
        if kind == "web"
        else (timedelta(hours=policy.auth.session_hours), timedelta(hours=policy.auth.session_hours))
    )
    now = _now()
    digest = _digest(token)
    with ws.catalog() as conn:
        row = conn.execute("SELECT * FROM sessions WHERE token_sha256 = ? AND kind = ?", (digest, kind)).fetchone()
        if row is None:
            return None
        created, seen = datetime.fromisoformat(row["created_at"]), datetime.fromisoformat(row["seen_at"])
        user = users.get(conn, row["user"])
        expired = now - seen > idle or now - created > most or user is None or not user.active
        # A user who must give codes now (a role gained, the policy changed) and signed in without one: again.
        expired = expired or (user is not None and needs_code(policy, user) and not row["second_factor"])
        if expired:
            with transaction(conn):
                conn.execute("DELETE FROM sessions WHERE token_sha256 = ?", (digest,))
            return None
        if now - seen > SEEN_EVERY:
            with transaction(conn):
                conn.execute("UPDATE sessions SET seen_at = ? WHERE token_sha256 = ?", (now.isoformat(), digest))
    assert user is not None
    return Session(user, row["csrf"], created)


def sign_out(ws: Workspace, token: str) -> str | None:
    """End the session behind ``token`` (audited); whose it was, or None when it had ended already."""
    with ws.catalog() as conn, transaction(conn):
        row = conn.execute("SELECT user, kind FROM sessions WHERE token_sha256 = ?", (_digest(token),)).fetchone()
        if row is None:
            return None
        conn.execute("DELETE FROM sessions WHERE token_sha256 = ?", (_digest(token),))
        audit.append(conn, ws.audit_path, f"{row['kind']}.signout", {"user": row["user"]}, actor=row["user"])
    return str(row["user"])


def same_token(expected: str, given: str | None) -> bool:
    """Constant-time comparison of a CSRF token."""
    return given is not None and secrets.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))
