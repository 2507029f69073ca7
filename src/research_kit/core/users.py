"""The workspace's users and their roles: who may submit, review, release, and manage users.

Roles: ``researcher`` (runs studies, submits their outputs), ``committee``
(reviews and releases), ``steward`` (manages users; ingests and publishes
twins). A user may hold several (a small registry's steward may sit on the
committee): what each role allows is :mod:`research_kit.core.permissions`,
and nobody reviews a request they wrote or a study they own. People sign in, on the command line
(:mod:`research_kit.core.identity`) as on the web app, with a password stored
only as its argon2id hash (argon2-cffi's defaults, RFC 9106).

While a workspace has no user at all, its first steward is added without
signing in (the bootstrap, audited); after that only a signed-in, active
steward adds or disables users and sets passwords.
"""

from __future__ import annotations

import functools
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from research_kit.core import audit
from research_kit.core.catalog import transaction
from research_kit.core.errors import BadInput, MissingData, PolicyRefusal
from research_kit.core.permissions import DUTIES, Duty
from research_kit.core.workspace import Workspace, check_name

ROLES = ("researcher", "committee", "steward")
FIRST_STEWARD = "add a steward first: research-kit users add NAME --role steward"
_HASHER = PasswordHasher()


@functools.cache
def _dummy_hash() -> str:
    """Verified when the user is unknown or has no password, so that a wrong name costs as long as a wrong
    password (made on first use: hashing costs time every command would pay)."""
    return _HASHER.hash("research-kit: no such user")


@dataclass(frozen=True)
class User:
    name: str
    roles: frozenset[str]
    active: bool
    added_at: str
    added_by: str
    has_password: bool = False  # may sign in to the web app

    @property
    def researcher_only(self) -> bool:
        """Holds no role but researcher: reads only their own requests and studies."""
        return self.roles == {"researcher"}

    @property
    def role(self) -> str:
        """The user's roles as one word or a list: "committee", "committee, steward"."""
        return ", ".join(r for r in ROLES if r in self.roles)


def _roles(conn: sqlite3.Connection, name: str) -> frozenset[str]:
    return frozenset(r[0] for r in conn.execute("SELECT role FROM user_roles WHERE user = ?", (name,)))


def _row(conn: sqlite3.Connection, row: sqlite3.Row) -> User:
    return User(
        row["name"], _roles(conn, row["name"]), bool(row["active"]), row["added_at"], row["added_by"],
        bool(row["password_hash"]),
    )  # fmt: skip


def get(conn: sqlite3.Connection, name: str) -> User | None:
    row = conn.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
    return None if row is None else _row(conn, row)


def require(conn: sqlite3.Connection, name: str, duty: Duty) -> User:
    """The acting user, who must be active and hold a role :data:`~research_kit.core.permissions.DUTIES` gives
    ``duty``; otherwise a one-line refusal."""
    roles, doing = tuple(r.value for r in DUTIES[duty]), duty.value
    user = get(conn, name)
    if user is None:
        raise PolicyRefusal(
            f"{name!r} is not a user of this workspace; {doing} needs the {' or '.join(roles)} role "
            "(sign in as another user: research-kit login NAME; or ask a steward to add you)"
        )
    if not user.active:
        raise PolicyRefusal(f"user {name!r} is disabled")
    if not user.roles & set(roles):
        held = " and a ".join(r for r in ROLES if r in user.roles)
        raise PolicyRefusal(f"{name!r} is a {held}; {doing} needs the {' or '.join(roles)} role")
    return user


def add(ws: Workspace, name: str, role: str, password: str | None = None) -> User:
    """Add a user with ``role`` (and ``password``), or give an existing user one more role (a steward does;
    audited, in one transaction)."""
    check_name(name, "user name")
    if role not in ROLES:
        raise BadInput(f"--role {role!r}: use one of {', '.join(ROLES)}")
    hashed = None if password is None else _hashed(ws, password)
    actor = audit.current_actor()
    with ws.catalog() as conn, transaction(conn):
        if conn.execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None:
            require(conn, actor, Duty.ADD_USER)
        elif role != "steward":
            raise PolicyRefusal(FIRST_STEWARD)
        at = datetime.now(UTC).isoformat(timespec="seconds")
        existing = get(conn, name)
        if existing is not None and role in existing.roles:
            raise PolicyRefusal(f"user {name!r} is a {role} already")
        if existing is None:
            conn.execute(
                "INSERT INTO users (name, role, added_at, added_by) VALUES (?, ?, ?, ?)", (name, role, at, actor)
            )
        conn.execute("INSERT INTO user_roles (user, role, added_by, added_at) VALUES (?, ?, ?, ?)",
                     (name, role, actor, at))  # fmt: skip
        conn.execute("DELETE FROM sessions WHERE user = ?", (name,))  # a new role: they sign in again
        audit.append(conn, ws.audit_path, "user.add" if existing is None else "user.role", {"user": name, "role": role})
        if hashed is not None:
            conn.execute("UPDATE users SET password_hash = ? WHERE name = ?", (hashed, name))
            conn.execute("DELETE FROM sessions WHERE user = ?", (name,))
            audit.append(conn, ws.audit_path, "user.password", {"user": name})
        added = get(conn, name)
    assert added is not None
    return added


def disable(ws: Workspace, name: str) -> None:
    actor = audit.current_actor()
    with ws.catalog() as conn, transaction(conn):
        require(conn, actor, Duty.DISABLE_USER)
        user = get(conn, name)
        if user is None:
            raise MissingData(f"no user {name!r}")
        if name == actor:
            raise PolicyRefusal("a steward cannot disable themselves")
        conn.execute("UPDATE users SET active = 0 WHERE name = ?", (name,))
        conn.execute("DELETE FROM sessions WHERE user = ?", (name,))  # signed out of the web app at once
        audit.append(conn, ws.audit_path, "user.disable", {"user": name})


def all_users(ws: Workspace) -> list[User]:
    with ws.catalog() as conn:
        return [_row(conn, r) for r in conn.execute("SELECT * FROM users ORDER BY role, name")]


def _hashed(ws: Workspace, password: str) -> str:
    """``password``'s argon2id hash, once it passes the policy's rules."""
    minimum = ws.policy().web.min_password_length
    if len(password) < minimum:
        raise BadInput(f"the password is {len(password)} characters long; it needs at least {minimum}")
    if password.strip() != password or not password.isprintable():
        raise BadInput("the password starts or ends with a space, or holds a control character")
    return _HASHER.hash(password)


def set_password(ws: Workspace, name: str, password: str) -> None:
    """Set ``name``'s password (a steward does); every open session of theirs ends."""
    hashed = _hashed(ws, password)
    actor = audit.current_actor()
    with ws.catalog() as conn, transaction(conn):
        require(conn, actor, Duty.SET_PASSWORD)
        if get(conn, name) is None:
            raise MissingData(f"no user {name!r}")
        conn.execute("UPDATE users SET password_hash = ? WHERE name = ?", (hashed, name))
        conn.execute("DELETE FROM sessions WHERE user = ?", (name,))
        audit.append(conn, ws.audit_path, "user.password", {"user": name})


def reset_codes(ws: Workspace, name: str) -> None:
    """Forget ``name``'s one-time-code secret (a lost phone, a setup someone else made); they set codes up again
    at their next sign-in, and every open session of theirs ends (a steward does; audited)."""
    actor = audit.current_actor()
    with ws.catalog() as conn, transaction(conn):
        require(conn, actor, Duty.RESET_CODES)
        if get(conn, name) is None:
            raise MissingData(f"no user {name!r}")
        conn.execute("UPDATE users SET totp_secret = NULL, totp_step = 0 WHERE name = ?", (name,))
        conn.execute("DELETE FROM sessions WHERE user = ?", (name,))
        audit.append(conn, ws.audit_path, "user.codes_reset", {"user": name})


def code_secret(conn: sqlite3.Connection, name: str) -> str | None:
    """``name``'s one-time-code secret, or None before they set the codes up."""
    row = conn.execute("SELECT totp_secret FROM users WHERE name = ?", (name,)).fetchone()
    return None if row is None else row["totp_secret"]


def check_password(conn: sqlite3.Connection, name: str, password: str) -> User | None:
    """The active user ``name`` if ``password`` is theirs, else None (taking as long either way)."""
    row = conn.execute("SELECT * FROM users WHERE name = ?", (name,)).fetchone()
    stored = row["password_hash"] if row is not None and row["password_hash"] else None
    try:
        _HASHER.verify(stored or _dummy_hash(), password)
    except (VerificationError, InvalidHashError):
        return None
    if row is None or stored is None or not row["active"]:
        return None
    if _HASHER.check_needs_rehash(stored):  # the library's parameters grew stronger since it was set
        conn.execute("UPDATE users SET password_hash = ? WHERE name = ?", (_HASHER.hash(password), name))
    return _row(conn, row)
