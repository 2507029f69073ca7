"""Advisory file locks: one ingest, one twin build, one run of a study, one rerun, at a time."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from research_kit.core.errors import PolicyRefusal


class Busy(PolicyRefusal):
    """Another process holds the lock."""


@contextmanager
def hold(path: Path, what: str, *, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock on ``path``: wait for it, or (by default) raise :class:`Busy` at once,
    naming ``what`` and its holder.

    The lock is the kernel's (``flock``): a process that dies, even killed, releases it.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "another process"
            raise Busy(f"{what} is already running (pid {holder}); try again when it has finished") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)


def alive(pid: int) -> bool:
    """Whether a process ``pid`` runs (a staging file named after its writer's pid is stale when it does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's: it runs
        return True
    return True
