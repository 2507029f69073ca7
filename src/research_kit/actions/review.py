"""A review request's life: its author checks, mitigates and submits; the committee votes; a member releases."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from research_kit.actions.acting import as_user
from research_kit.core.errors import BadInput, MissingData
from research_kit.core.workspace import Workspace
from research_kit.review import decisions, intake, requests
from research_kit.review import release as releasing
from research_kit.review.requests import STATES, Output, Request

READ_ALL = ("committee", "steward")  # the roles that read every request; others read the ones they wrote


def _readable(ws: Workspace, actor: str) -> Callable[[Request], bool]:
    with ws.catalog() as conn:
        role = requests.active_role(conn, actor)
    return lambda request: role in READ_ALL or request.author == actor


def list_requests(
    ws: Workspace, *, actor: str, states: tuple[str, ...] = (), study: str | None = None
) -> list[Request]:
    """The requests ``actor`` may read in any of ``states`` (default: all), of ``study`` (default: every study)."""
    unknown = [s for s in states if s not in STATES]
    if unknown:
        raise BadInput(f"no request state {unknown[0]!r}: use {', '.join(STATES)}")
    readable = _readable(ws, actor)
    return [r for r in requests.all_requests(ws, states=states, study=study) if readable(r)]


def read(ws: Workspace, *, actor: str, request: int) -> Request:
    """Request ``request`` as ``actor`` may read it; one they may not read is missing, as if it did not exist."""
    found = requests.get(ws, request, viewer=actor)
    if not _readable(ws, actor)(found):
        raise MissingData(f"no review request {request}")
    return found


def show(ws: Workspace, *, actor: str, request: int) -> tuple[Request, dict[str, dict[str, Any]]]:
    """:func:`read`, with each output's provenance (by ``ACTION/NAME``)."""
    found = read(ws, actor=actor, request=request)
    return found, {o.key: requests.provenance(ws, o) for o in found.outputs}


def check(ws: Workspace, *, actor: str, request: int) -> Request:
    """Every automatic check again on the request's outputs; the request as ``actor`` reads it."""
    read(ws, actor=actor, request=request)
    as_user(actor, intake.recheck, ws, request)
    return read(ws, actor=actor, request=request)


def submit(ws: Workspace, *, actor: str, request: int) -> Request:
    """The author submits the request to the committee."""
    return as_user(actor, decisions.submit, ws, request)


def mitigate(ws: Workspace, *, actor: str, request: int, output: str, method: str, column: str | None = None) -> Output:
    """The author applies a disclosure-control mitigation to a table: a new version."""
    return as_user(actor, decisions.mitigate, ws, request, output, method, column=column)


def vote(
    ws: Workspace,
    *,
    actor: str,
    request: int,
    decision: str,
    outputs: tuple[str, ...] = (),
    comment: str | None = None,
    private: bool = False,
) -> Request:
    """A committee member approves (all outputs, or those named), rejects or returns the request."""
    return as_user(actor, decisions.vote, ws, request, decision, outputs=outputs, comment=comment, private=private)


def comment(
    ws: Workspace, *, actor: str, request: int, text: str, private: bool = False, output: str | None = None
) -> None:
    """A comment on the request (or one output): committee-private or visible to its author."""
    as_user(actor, decisions.comment, ws, request, text, private=private, output_name=output)


def release(ws: Workspace, *, actor: str, request: int) -> Path:
    """A committee member releases an approved request: the bundle's path."""
    return as_user(actor, releasing.release, ws, request)
