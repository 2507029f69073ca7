"""Fault-injection points: where the crash-safety tests stop a command, as a power cut or a full disk would.

A multi-step change calls :func:`fault` with the name of each point between
its steps. Nothing happens unless ``RESEARCH_KIT_FAULT`` names that point: then
``NAME`` (or ``NAME:kill``) kills the process at once with SIGKILL (no clean-up
runs, as in a power cut), and ``NAME:enospc`` raises the error a write to a
full disk raises. The tests (``tests/integration/test_crash_safety.py``) run
real commands with each point set and check that the workspace is whole or
absent afterwards. ``RESEARCH_KIT_FAULT`` is for tests only: it is never set in
operation, and reading it costs one dictionary lookup.
"""

from __future__ import annotations

import errno
import os
import signal

FAULT_ENV = "RESEARCH_KIT_FAULT"

# Every point, in the order of the flows it belongs to; the crash-safety tests walk this list.
POINTS: tuple[str, ...] = (
    "ingest.before_register",
    "ingest.after_register",
    "run.after_queue",
    "release.after_bundle",
    "release.after_commit",
    "synth.after_commit",
    "audit.after_write",
)


def fault(point: str) -> None:
    """Stop here if the tests asked to (see the module's docstring); otherwise do nothing."""
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    name, _, kind = wanted.partition(":")
    if name != point:
        return
    if kind == "enospc":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
    os.kill(os.getpid(), signal.SIGKILL)
