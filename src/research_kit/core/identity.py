"""Who is acting on the command line: the user signed in with ``research-kit login``.

``login NAME`` checks the password (and, for committee members and
stewards when ``[auth].second_factor`` asks, a one-time code) and keeps
the session's token in the caller's own runtime folder:
``$XDG_RUNTIME_DIR/research-kit/`` (else ``~/.local/state/research-kit/``),
a folder of mode 0700 holding one file of mode 0600 per workspace. A token
file anyone else could read is refused, as ssh refuses a loose key. The
catalog keeps only the token's SHA-256 (:mod:`research_kit.core.sessions`);
a session lasts ``[auth].session_hours``.

Every command that acts for someone acts as the caller's signed-in user: the
only one, or the one ``--as NAME`` picks among several signed-in sessions.
``--as`` never names a user the caller has not signed in as, and
``RESEARCH_KIT_USER`` is not read at all, except in demo mode.

Bootstrap: while a workspace has no user, ``init``, ``key new`` and the first
``users add NAME --role steward`` need no sign-in (or ``init --steward NAME``
makes the first steward at once).

Demo mode (``[auth].mode = "demo"``) believes ``--as NAME`` (or
``RESEARCH_KIT_USER``, or the login name) and says so on every command. It is
for the simulator's data: a workspace holding an extract the simulator did
not make refuses it unless a signed-in steward opted in (audited).
"""

from __future__ import annotations

import fcntl
import getpass
import hashlib
import json
import os
import stat
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from research_kit.core import optins, sessions, users
from research_kit.core.errors import BadInput, PolicyRefusal
from research_kit.core.extracts import unsimulated_extracts
from research_kit.core.permissions import Duty
from research_kit.core.workspace import Workspace

RERUN_SERVICE = "service:reruns"  # the identity automatic reruns act as: run and rerun, nothing else; not a user
DEMO_WARNING = "demo mode: identities are not verified ([auth].mode = 'demo'); never use it on real data"


def _address() -> str:
    """Where a command-line sign-in comes from, for the sign-in back-off: this OS account (one person's
    failures never slow another account's sign-ins)."""
    return f"command line, uid {os.getuid()}"


def session_folder() -> Path:
    """The caller's own folder for session tokens (made mode 0700; refused when others may enter it)."""
    base = os.environ.get("XDG_RUNTIME_DIR") or str(Path.home() / ".local" / "state")
    folder = Path(base) / "research-kit"
    try:
        folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError as exc:
        raise BadInput(f"{folder}: cannot keep sign-ins there ({exc.strerror or exc}); check XDG_RUNTIME_DIR") from None
    _check_private(folder, "folder")
    return folder


def _check_private(path: Path, what: str) -> None:
    info = path.lstat()
    if stat.S_ISLNK(info.st_mode) or (what == "file" and not stat.S_ISREG(info.st_mode)):
        raise PolicyRefusal(f"{path}: this session {what} is not a plain {what}; remove it and sign in again")
    if info.st_uid != os.getuid():
        raise PolicyRefusal(f"{path}: this session {what} belongs to another account; remove it and sign in again")
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise PolicyRefusal(
            f"{path}: others may read this session {what} (mode {stat.S_IMODE(info.st_mode):o}); "
            f"remove it and sign in again: research-kit login NAME"
        )


def _place(ws: Workspace) -> str:
    return str(ws.root.resolve())


def _token_file(place: str) -> Path:
    """Where the caller's tokens for ``place`` (a workspace's folder, or a server's address) are kept."""
    digest = hashlib.sha256(place.encode("utf-8")).hexdigest()[:16]
    return session_folder() / f"sessions-{digest}.json"


def stored_tokens(place: str) -> dict[str, str]:
    """The caller's session tokens for ``place`` (a workspace's folder, or a server's address), by user name."""
    path = _token_file(place)
    if not path.exists():
        return {}
    _check_private(path, "file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError, OSError):
        raise BadInput(f"{path}: not a session file; remove it and sign in again") from None
    if not isinstance(data, dict) or not all(isinstance(v, str) for v in data.values()):
        raise BadInput(f"{path}: not a session file; remove it and sign in again")
    return dict(data)


def store_tokens(place: str, tokens: dict[str, str]) -> None:
    """Write the token file whole (mode 0600 from its creation, then renamed over the old one)."""
    path = _token_file(place)
    if not tokens:
        path.unlink(missing_ok=True)
        return
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.unlink(missing_ok=True)  # left by a killed process of the same number
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(tokens, out)
        os.replace(tmp, path)
    except OSError as exc:
        raise BadInput(f"{path}: cannot keep the sign-in there ({exc.strerror or exc})") from None


@contextmanager
def token_file_lock(place: str) -> Iterator[None]:
    """Hold the caller's token file for ``place`` while it is read and rewritten (two sign-ins at once keep
    both tokens)."""
    lock = _token_file(place).with_suffix(".lock")
    fd = os.open(lock, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def login(ws: Workspace, name: str, password: str, *, code: str | None = None, enrol: str | None = None) -> users.User:
    """Sign ``name`` in on this command line; raises :class:`~research_kit.core.sessions.SignInRefused`.

    A sign-in too soon after failures is refused unread, as on the web app (slowed, never locked out).
    Signing in again as the same user replaces the older session.
    """
    if ws.policy().auth.mode == "demo":
        raise PolicyRefusal(f"{DEMO_WARNING}: there is nothing to sign in to; act with --as NAME")
    sessions.check_wait(ws, name, _address())
    token, session = sessions.sign_in(ws, name, password, address=_address(), code=code, enrol=enrol, kind="cli")
    with token_file_lock(_place(ws)):
        tokens = stored_tokens(_place(ws))
        old = tokens.get(session.user.name)
        tokens[session.user.name] = token
        store_tokens(_place(ws), tokens)
    if old:
        sessions.sign_out(ws, old)
    return session.user


def logout(ws: Workspace, name: str | None = None) -> list[str]:
    """End the caller's session as ``name`` (every session of theirs when None); the names signed out."""
    with token_file_lock(_place(ws)):
        tokens = stored_tokens(_place(ws))
        if name is not None and name not in tokens:
            raise PolicyRefusal(f"not signed in as {name!r} here")
        ended = []
        for who in [name] if name is not None else sorted(tokens):
            sessions.sign_out(ws, tokens.pop(who))
            ended.append(who)
        store_tokens(_place(ws), tokens)
    return ended


def signed_in(ws: Workspace) -> list[str]:
    """The users the caller is signed in as on ``ws``: each token counts for the user whose session it is (the
    name it is filed under in the token file is not believed); tokens of sessions that ended are forgotten."""
    with token_file_lock(_place(ws)):
        tokens = stored_tokens(_place(ws))
        live = {}
        for token in tokens.values():
            session = sessions.lookup(ws, token, kind="cli")
            if session is not None:
                live[session.user.name] = token
        if live != tokens:
            store_tokens(_place(ws), live)
    return sorted(live)


def has_users(ws: Workspace) -> bool:
    with ws.catalog() as conn:
        return conn.execute("SELECT 1 FROM users LIMIT 1").fetchone() is not None


def demo_mode(ws: Workspace) -> bool:
    """Whether identities go unverified on ``ws``; refused when it holds real data and no steward opted in."""
    if ws.policy().auth.mode != "demo":
        return False
    real = unsimulated_extracts(ws)
    if real and not demo_optin(ws):
        raise PolicyRefusal(
            f"[auth].mode = 'demo' is for simulated data only, and extract {real[0]!r} was not made by the "
            "simulator: set [auth].mode = 'embedded' and sign in (research-kit login NAME), or a signed-in "
            "steward opts in with 'research-kit users allow-demo --reason TEXT' (audited)"
        )
    return True


def acting_user(ws: Workspace, as_name: str | None, *, demo_name: str | None = None, token: str | None = None) -> str:
    """Who the command acts as: the caller's signed-in user (``as_name`` picks one of several).

    A command the server runs for a client (service mode) acts as the user of ``token``, the session the
    client sent. In demo mode: ``as_name``, else ``demo_name`` (``RESEARCH_KIT_USER``), else the login name,
    unverified.
    """
    if token is not None:
        session = sessions.lookup(ws, token, kind="cli")
        if session is None:
            raise PolicyRefusal("your sign-in has ended: research-kit login NAME")
        if as_name is not None and as_name != session.user.name:
            raise PolicyRefusal("--as: a command sent to the server acts as the user who sent it")
        return session.user.name
    if demo_mode(ws):
        return as_name or demo_name or getpass.getuser()
    live = signed_in(ws)
    if as_name is not None:
        if as_name not in live:
            raise PolicyRefusal(f"--as {as_name}: you are not signed in as {as_name!r}: research-kit login {as_name}")
        return as_name
    if len(live) == 1:
        return live[0]
    if live:
        raise PolicyRefusal(f"you are signed in as {', '.join(live)}: say which with --as NAME")
    if not has_users(ws):
        raise PolicyRefusal(
            "this workspace has no user yet: make its first steward with 'research-kit users add NAME --role "
            "steward' (or 'research-kit init --steward NAME'), then research-kit login NAME"
        )
    raise PolicyRefusal("sign in first: research-kit login NAME")


def demo_optin(ws: Workspace) -> str:
    """Who opted in to demo mode on this workspace's real data and why ('' when nobody did)."""
    return optins.standing(ws, "demo_optins")


def allow_demo(ws: Workspace, *, reason: str) -> None:
    """A steward's opt-in to demo mode on real data (catalog and audit, one transaction)."""
    optins.grant(
        ws, "demo_optins", Duty.ALLOW_DEMO, "auth.demo_allowed", reason=reason,
        why="identities may go unverified on this workspace's real data",
    )  # fmt: skip


def disallow_demo(ws: Workspace) -> int:
    """Revoke every opt-in to demo mode on real data (a steward; audited); how many there were."""
    return optins.revoke(ws, "demo_optins", Duty.ALLOW_DEMO, "auth.demo_disallowed")
