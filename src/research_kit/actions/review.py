"""A review request's life: its author checks, mitigates and submits; the committee votes; a member releases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from research_kit.actions.acting import as_user
from research_kit.core import audit, permissions
from research_kit.core.catalog import transaction
from research_kit.core.errors import BadInput, MissingData
from research_kit.core.permissions import Act, State
from research_kit.core.workspace import Workspace
from research_kit.review import decisions, intake, requests
from research_kit.review import release as releasing
from research_kit.review.requests import STATES, Output, Request


def list_requests(
    ws: Workspace, *, actor: str, states: tuple[str, ...] = (), study: str | None = None
) -> list[Request]:
    """The requests ``actor`` may read in any of ``states`` (default: all), of ``study`` (default: every study)."""
    unknown = [s for s in states if s not in STATES]
    if unknown:
        raise BadInput(f"no request state {unknown[0]!r}: use {', '.join(STATES)}")
    found = requests.all_requests(ws, states=states, study=study)
    with ws.catalog() as conn:
        return [r for r in found if permissions.allowed(Act.READ, State(r.state), requests.person(conn, actor, r))]


def read(ws: Workspace, *, actor: str, request: int) -> Request:
    """Request ``request`` as ``actor`` may read it; one they may not read is missing, as if it did not exist."""
    found = requests.get(ws, request, viewer=actor)
    with ws.catalog() as conn:
        if not permissions.allowed(Act.READ, State(found.state), requests.person(conn, actor, found)):
            raise MissingData(f"no review request {request}")
    return found


def may(ws: Workspace, *, actor: str, request: Request) -> dict[Act, bool]:
    """What ``actor`` may do to ``request`` now, action by action (the web app shows those forms)."""
    with ws.catalog() as conn:
        who = requests.person(conn, actor, request)
    return {act: permissions.allowed(act, State(request.state), who) for act in Act}


VIEW_EVERY = timedelta(hours=1)  # a look at the same outputs within this long of the last one is not audited again


def viewed(ws: Workspace, *, actor: str, request: Request, output: str | None = None) -> None:
    """Record that ``actor`` looked at ``request``'s outputs (one ``output`` by its key, or the whole page).

    One audit line per look: reloading the page within :data:`VIEW_EVERY` of the last line writes none.
    """
    now = datetime.now(UTC)
    with ws.catalog() as conn, transaction(conn):
        last = conn.execute(
            "SELECT at FROM request_views WHERE user = ? AND request = ? AND output = ?",
            (actor, request.id, output or ""),
        ).fetchone()
        if last is not None and now - datetime.fromisoformat(last["at"]) < VIEW_EVERY:
            return
        conn.execute(
            "INSERT INTO request_views (user, request, output, at) VALUES (?, ?, ?, ?)"
            " ON CONFLICT (user, request, output) DO UPDATE SET at = excluded.at",
            (actor, request.id, output or "", now.isoformat()),
        )
        details: dict[str, Any] = {"request": request.id, "state": request.state}
        if output is not None:
            details["output"] = output
        audit.append(conn, ws.audit_path, "request.view", details, actor=actor)


def show(ws: Workspace, *, actor: str, request: int) -> tuple[Request, dict[str, dict[str, Any]]]:
    """:func:`read`, with each output's provenance (by ``ACTION/NAME``)."""
    found = read(ws, actor=actor, request=request)
    if found.state == "released" and found.bundle and not Path(found.bundle).exists():
        releasing.finish_release(ws, found.id)
    return found, {o.key: requests.provenance(ws, o) for o in found.outputs}


def check(ws: Workspace, *, actor: str, request: int) -> Request:
    """Every automatic check again on the request's outputs; the request as ``actor`` reads it."""
    found = read(ws, actor=actor, request=request)
    with ws.catalog() as conn:
        permissions.check(Act.RECHECK, State(found.state), requests.person(conn, actor, found), request=request)
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
