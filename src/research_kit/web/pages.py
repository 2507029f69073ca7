"""The review pages: the queue, one request with its outputs, votes, comments, release and download.

Who sees what:

- committee members and stewards read every request; a researcher reads the
  requests they wrote and nothing else (another's request is a 404, as if it
  did not exist);
- committee members vote and release; the author submits; both comment;
- committee-private comments reach committee members and stewards only
  (:func:`research_kit.review.requests.get` filters them for the viewer);
- an output's file is found by its number in the request, never by a path
  from the address, and must lie inside the workspace.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request
from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import Route

from research_kit.actions import budget as budgets
from research_kit.actions import review as reviewing
from research_kit.core import permits
from research_kit.core.errors import BadInput, MissingData, UserError
from research_kit.core.i18n import N_
from research_kit.core.permissions import Act
from research_kit.core.permits import Permit
from research_kit.core.sessions import Session
from research_kit.core.users import ROLES
from research_kit.core.workspace import Workspace
from research_kit.dp.accounting import epsilon_of, from_picorho
from research_kit.outputs import sidecar as sc
from research_kit.review import requests as review
from research_kit.review.release import finish_release, releases_dir
from research_kit.web import grid
from research_kit.web.http import Refused, call, done_message, form, need, render, status_of, text_field, workspace

TEXT_SUFFIXES = {".txt", ".json", ".html", ".md"}
MAX_TEXT = 200_000  # characters of a text output shown on the page
DONE = {  # the message after a successful form, by key (no text from the address is ever shown)
    "vote": N_("Your vote is recorded."),
    "comment": N_("Your comment is added."),
    "submit": N_("The request is submitted to the committee."),
    "release": N_("Released: the bundle is ready to download."),
}
FIGURES = (".png", ".svg")
MEDIA = {".png": "image/png", ".svg": "image/svg+xml"}
FILE_HEADERS = {"content-security-policy": "default-src 'none'; sandbox", "x-content-type-options": "nosniff"}


@dataclass
class OutputView:
    output: review.Output
    sidecar: sc.Sidecar | None
    grid: grid.Grid | None
    text: str | None
    is_figure: bool
    provenance: dict[str, Any]
    flags: list[dict[str, Any]]

    @property
    def anchor(self) -> str:
        return f"output-{self.output.id}"


def _load_request(ws: Workspace, session: Session, request_id: int) -> tuple[review.Request, dict[str, Any]]:
    """The request as ``session``'s user may read it, with provenance; a 404 when they may not."""
    try:
        return reviewing.show(ws, actor=session.user.name, request=request_id)
    except MissingData:
        raise Refused(404, N_("There is no review request %(id)s."), id=request_id) from None


def _inside(path: Path, folder: Path) -> bool:
    try:
        return path.resolve(strict=True).is_relative_to(folder.resolve())
    except OSError:
        return False


# -- the queue ------------------------------------------------------------------------------------------------------


async def queue(request: Request) -> Response:
    session = await need(request, *ROLES)
    show = request.query_params.get("show", "open")
    states = review.OPEN if show == "open" else ()
    visible = await call(reviewing.list_requests, workspace(request), actor=session.user.name, states=states)
    visible.sort(key=lambda r: (r.state != "submitted", r.state != "approved", -r.id))
    return render(request, "queue.html", {"requests": visible, "show": "open" if show == "open" else "all"})


# -- one request ----------------------------------------------------------------------------------------------------


def _views(ws: Workspace, request: review.Request, provenance: dict[str, Any], only_flagged: bool) -> list[OutputView]:
    views = []
    for output in request.outputs:
        car = sc.read(output.path) if output.path.is_file() else None
        found = output.checks.sdc
        flags = [f.to_json() for f in found.flags] if found is not None else []  # the grid reads flags as dicts
        table = text = None
        shown = output.path.is_file() and output.status != "gated"  # a gated output shows its reasons, never itself
        if shown and grid.is_table(output.path):
            table = grid.table_grid(
                output.path, flags, prefix=f"o{output.id}", roles=car.roles if car else None,
                only_flagged=only_flagged, max_rows=ws.policy().outputs.max_table_rows,
            )  # fmt: skip
        elif shown and output.path.suffix.lower() in TEXT_SUFFIXES:
            text = output.path.read_text(encoding="utf-8", errors="replace")[:MAX_TEXT]
        is_figure = shown and output.path.suffix.lower() in FIGURES
        views.append(OutputView(output, car, table, text, is_figure, provenance.get(output.key, {}), flags))
    return views


def _budget(ws: Workspace, study: str) -> dict[str, Any]:
    balance = budgets.balances(ws, study=study)[0]
    delta = ws.policy().dp.delta
    granted, spent = from_picorho(balance.granted), from_picorho(balance.spent)
    return {
        "granted": granted,
        "spent": spent,
        "remaining": from_picorho(balance.remaining),
        "epsilon_spent": epsilon_of(spent, delta) if spent else 0.0,
        "delta": delta,
        "share": spent / granted if granted else 0.0,
    }


def _permit(ws: Workspace, study: str) -> Permit | None:
    """The permit a request's outputs fall under: the study's in force, else its last granted one."""
    with ws.catalog() as conn:
        found = [p for p in permits.of_study(conn, study) if p.state in ("granted", "revoked")]
    return next((p for p in found if p.in_force()), found[0] if found else None)


async def request_page(request: Request) -> Response:
    session = await need(request, *ROLES)
    return await _request_page(request, session)


async def _request_page(
    request: Request, session: Session, *, error: str | None = None, status_code: int = 200
) -> Response:
    ws = workspace(request)
    request_id = int(request.path_params["request_id"])
    only_flagged = request.query_params.get("flagged") == "1"

    def gather() -> tuple[review.Request, list[OutputView], dict[str, Any], dict[Act, bool], Permit | None]:
        req, provenance = _load_request(ws, session, request_id)
        may = reviewing.may(ws, actor=session.user.name, request=req)
        views = _views(ws, req, provenance, only_flagged)
        reviewing.viewed(ws, actor=session.user.name, request=req)  # every look at unreleased outputs is audited
        return req, views, _budget(ws, req.study), may, _permit(ws, req.study)

    req, views, budget, may, permit = await call(gather)
    context = {
        "req": req,
        "permit": permit,
        "views": views,
        "budget": budget,
        "only_flagged": only_flagged,
        "error": error,
        "done": done_message(request, DONE),
        "can_vote": may[Act.APPROVE],
        "is_author": session.user.name == req.author,
        "can_submit": may[Act.SUBMIT],
        "can_release": may[Act.RELEASE],
        "can_download": req.state == "released" and req.bundle is not None,
        "can_comment": may[Act.COMMENT],
        "can_comment_privately": may[Act.COMMENT_PRIVATELY],
    }
    return render(request, "request.html", context, status_code)


async def _perform(request: Request, roles: tuple[str, ...], kind: str, work: Any) -> Response:
    """Check the role and the form, run ``work(ws, actor, request_id, form)`` (one action), then go back.

    A refusal from the action (not the committee, the author, a missing comment) re-shows the page with
    its one-line reason and its status (:func:`~research_kit.web.http.status_of`); nothing was changed.
    """
    session = await need(request, *roles)
    data = await form(request, session)
    ws = workspace(request)
    request_id = int(request.path_params["request_id"])
    await call(_load_request, ws, session, request_id)  # a 404 for a request they may not read
    try:
        await call(work, ws, session.user.name, request_id, data)
    except UserError as exc:
        status = status_of(exc)
        return await _request_page(request, session, error=str(exc), status_code=400 if status == 404 else status)
    return RedirectResponse(f"/requests/{request_id}?done={kind}", status_code=303)


async def vote(request: Request) -> Response:
    def work(ws: Workspace, actor: str, request_id: int, form_data: Any) -> None:
        decision = text_field(form_data, "decision")
        if decision not in review.DECISIONS:
            raise BadInput("choose approve, return or reject")
        chosen = tuple(v for v in form_data.getlist("output") if isinstance(v, str))
        if decision == "approve" and not chosen:
            raise BadInput("tick at least one output to approve")
        reviewing.vote(
            ws, actor=actor, request=request_id, decision=decision, outputs=chosen if decision == "approve" else (),
            comment=text_field(form_data, "comment"), private=text_field(form_data, "private") == "on",
        )  # fmt: skip

    return await _perform(request, ("committee",), "vote", work)


async def comment(request: Request) -> Response:
    def work(ws: Workspace, actor: str, request_id: int, data: Any) -> None:
        reviewing.comment(
            ws, actor=actor, request=request_id, text=text_field(data, "comment"),
            private=text_field(data, "private") == "on",
        )  # fmt: skip

    return await _perform(request, ROLES, "comment", work)


async def submit(request: Request) -> Response:
    def work(ws: Workspace, actor: str, request_id: int, data: Any) -> None:
        reviewing.submit(ws, actor=actor, request=request_id)

    return await _perform(request, ROLES, "submit", work)


async def release_request(request: Request) -> Response:
    def work(ws: Workspace, actor: str, request_id: int, data: Any) -> None:
        reviewing.release(ws, actor=actor, request=request_id)

    return await _perform(request, ("committee",), "release", work)


# -- files ----------------------------------------------------------------------------------------------------------


async def output_file(request: Request) -> Response:
    """A figure of the request, by its number, for the page's ``<img>``: shown inline, never a download.

    Tables and text are rendered on the request's page; a gated output is never shown; only a released
    request's bundle is downloaded. A reader can still save what the browser shows: this deters, it does not
    prevent (docs/security.md).
    """
    session = await need(request, *ROLES)
    ws = workspace(request)
    req, _ = await call(_load_request, ws, session, int(request.path_params["request_id"]))
    wanted = int(request.path_params["output_id"])
    found = [o for o in req.outputs if o.id == wanted]
    if not found or not _inside(found[0].path, ws.root):
        raise Refused(404, N_("This request has no such output."))
    output = found[0]
    suffix = output.path.suffix.lower()
    if suffix not in FIGURES or output.status == "gated":
        raise Refused(404, N_("This output is shown on its request's page; only a released bundle downloads."))
    await call(reviewing.viewed, ws, actor=session.user.name, request=req, output=output.key)
    return FileResponse(
        output.path, media_type=MEDIA[suffix], filename=output.path.name, content_disposition_type="inline",
        headers=FILE_HEADERS,
    )  # fmt: skip


async def bundle(request: Request) -> Response:
    """A released request's zip, for whoever may read the request (its author, its owners, the committee, stewards)."""
    session = await need(request, *ROLES)
    ws = workspace(request)
    req, _ = await call(_load_request, ws, session, int(request.path_params["request_id"]))
    if req.state != "released" or not req.bundle:
        raise Refused(
            404, N_("Request %(id)s is %(state)s: there is no bundle to download yet."), id=req.id, state=req.state
        )
    path = Path(req.bundle)
    if not path.exists():
        await call(finish_release, ws, req.id)  # a release killed after committing: put its bundle in place
    if not _inside(path, releases_dir(ws)):
        raise Refused(404, N_("The bundle is not in the workspace's releases folder."))
    return FileResponse(path, media_type="application/zip", filename=path.name, headers=FILE_HEADERS)


ROUTES = [
    Route("/requests", queue, methods=["GET"]),
    Route("/requests/{request_id:int}", request_page, methods=["GET"]),
    Route("/requests/{request_id:int}/vote", vote, methods=["POST"]),
    Route("/requests/{request_id:int}/comment", comment, methods=["POST"]),
    Route("/requests/{request_id:int}/submit", submit, methods=["POST"]),
    Route("/requests/{request_id:int}/release", release_request, methods=["POST"]),
    Route("/requests/{request_id:int}/outputs/{output_id:int}/file", output_file, methods=["GET"]),
    Route("/requests/{request_id:int}/bundle", bundle, methods=["GET"]),
]
