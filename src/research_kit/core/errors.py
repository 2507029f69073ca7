"""The two kinds of error: a user's mistake, shown as one line, and everything else.

A :class:`UserError` is something the person at the keyboard can fix (a bad
file, a missing extract, a request the policy refuses). The CLI prints its
message on one line without a traceback and exits with the error's code. Any
other exception is an internal error and keeps its traceback.

Messages must never contain a raw identifier, a registry row or a key: name
the file, row number and field instead.
"""

from __future__ import annotations


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


# Exit codes, for the README and for scripts that call the CLI.
EXIT_CODES: dict[str, int] = {
    "ok": 0,
    "usage (bad arguments)": 2,
    BadInput.label: BadInput.exit_code,
    MissingData.label: MissingData.exit_code,
    PolicyRefusal.label: PolicyRefusal.exit_code,
    IntegrityError.label: IntegrityError.exit_code,
}
