"""The kinds of error, each with its exit code: a user's mistake, shown as one line, and everything else.

A :class:`UserError` is something the person at the keyboard can fix (a bad
file, a missing extract, a request the policy refuses) or must know about (a
study run that failed, a tampered log). The CLI prints its message on one line
without a traceback and exits with the error's code. Any other exception is an
internal error (a bug): it keeps its traceback and exits with
:data:`INTERNAL_ERROR`, so that a script can tell the two apart.

Messages must never contain a raw identifier, a registry row or a key: name
the file, row number and field instead.
"""

from __future__ import annotations


def quoted(value: object, longest: int = 40) -> str:
    """A value a user typed, as a one-line message may quote it: at most ``longest`` characters, and never
    the digits of a huge number (whose text is slow to make, and refused past 4,300 digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return "a very large number"
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= longest else text[: longest - 3] + "..."


class UserError(Exception):
    """A problem the user can fix; shown as one line, never with a traceback."""

    exit_code = 3
    label = "error"


class BadInput(UserError):
    """The input (a file, an argument, a config value) is malformed."""

    exit_code = 3
    label = "bad input"


class MissingData(UserError):
    """Something the command needs does not exist (workspace, extract, file)."""

    exit_code = 4
    label = "not found"


class PolicyRefusal(UserError):
    """The request is well-formed but the workspace policy refuses it."""

    exit_code = 5
    label = "refused"


class IntegrityError(UserError):
    """Stored state failed an integrity check (e.g. the audit chain is broken)."""

    exit_code = 6
    label = "integrity check failed"


class RunFailed(UserError):
    """A study run (or rerun) ran, and an action failed: its log says why."""

    exit_code = 7
    label = "run failed"


USAGE = 2  # click's own code for a bad option or argument
INTERNAL_ERROR = 70  # sysexits' EX_SOFTWARE: a bug in research-kit, never a user's mistake
NO_SPACE = 74  # sysexits' EX_IOERR: the disk (or a quota) filled up; the change was rolled back
INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)
TERMINATED = 143  # 128 + SIGTERM: `lab` and `serve` stopped by a signal, their children stopped with them

# Exit codes, for the docs and for scripts that call the CLI: the one list, used by the CLI's entry point.
EXIT_CODES: dict[str, int] = {
    "ok": 0,
    "usage (bad arguments)": USAGE,
    BadInput.label: BadInput.exit_code,
    MissingData.label: MissingData.exit_code,
    PolicyRefusal.label: PolicyRefusal.exit_code,
    IntegrityError.label: IntegrityError.exit_code,
    RunFailed.label: RunFailed.exit_code,
    "out of space (the disk or a quota is full; nothing was changed)": NO_SPACE,
    "internal error (a bug in research-kit: the traceback goes with the report)": INTERNAL_ERROR,
    "interrupted (Ctrl-C)": INTERRUPTED,
    "stopped by SIGTERM (lab, serve: after stopping everything they started)": TERMINATED,
}
