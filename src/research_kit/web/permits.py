"""The permits page: every data permit with its state and use, for the committee and stewards; a researcher's own.

Each permit shows what it grants (purpose, holder, users, tier, tables,
period, legal basis, an opt-out exception) and what its study has done under
it: the budget spent, the runs, the review requests. Permits ending within
``[permits].notice_days`` are named first.

A researcher applies for a permit here; a committee member grants, refuses
or revokes one. Each form calls the action ``research-kit permit`` calls
(:mod:`research_kit.actions.permits`), which checks who may: the page shows a
form only to those it would let through, and a form POSTed by anyone else gets
the action's one-line refusal.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import Any

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from research_kit.actions import permits
from research_kit.core import permits as rules
from research_kit.core.errors import BadInput, UserError
from research_kit.core.i18n import N_
from research_kit.core.permissions import Role
from research_kit.core.permits import CATEGORIES, TIERS, Permit
from research_kit.core.sessions import Session
from research_kit.core.users import ROLES
from research_kit.core.workspace import Workspace
from research_kit.dp import ledger
from research_kit.dp.accounting import from_picorho
from research_kit.model.tables import TABLE_NAMES
from research_kit.transparency import labels
from research_kit.web.http import (
    call,
    done_message,
    form,
    need,
    render,
    status_of,
    text_field,
    translate,
    workspace,
)

DONE = {  # the message after a successful form, by key (no text from the address is ever shown)
    "apply": N_("Your application is filed: it waits for the committee."),
    "grant": N_("The permit is granted."),
    "refuse": N_("The application is refused."),
    "revoke": N_("The permit is revoked: its study's runs, reruns and queries stop."),
}
APPLY_FIELDS = ("study", "purpose", "category", "tier", "until", "holder", "users", "rho")


@dataclass(frozen=True)
class PermitUse:
    permit: Permit
    status: str
    granted_rho: float
    spent_rho: float
    runs: int
    requests: int
    days_left: int | None
    may_decide: bool  # the reader is a committee member who is none of its study's users
    earlier: tuple[int, ...]  # earlier granted (never revoked) permits of its study: what a grant may continue


def _uses(ws: Workspace, actor: str, roles: frozenset[str]) -> dict[str, Any]:
    found = permits.listed(ws, actor=actor)
    notice = ws.policy().permits.notice_days
    today = date.today()
    uses = []
    with ws.catalog() as conn:
        for p in found:
            balance = ledger.balance(ws, p.study)
            runs = conn.execute("SELECT COUNT(*) FROM runs WHERE study = ?", (p.study,)).fetchone()[0]
            requests = conn.execute("SELECT COUNT(*) FROM requests WHERE study = ?", (p.study,)).fetchone()[0]
            left = (p.until - today).days if p.in_force(today) else None
            # Only whether to show the forms: the action decides (core.permits._require_decider).
            may_decide = Role.COMMITTEE in roles and actor not in {*p.users, *rules.users_of(conn, p.study)}
            earlier = tuple(e.id for e in rules.of_study(conn, p.study) if e.id < p.id and e.state == "granted")
            uses.append(PermitUse(p, p.status(today), from_picorho(balance.granted), from_picorho(balance.spent),
                                  int(runs), int(requests), left, may_decide, earlier))  # fmt: skip
    ending = [u for u in uses if u.days_left is not None and u.days_left <= notice]
    return {
        "uses": uses,
        "ending": ending,
        "notice": notice,
        "categories": CATEGORIES,
        "tiers": TIERS,
        "tables": TABLE_NAMES,
        "may_apply": Role.RESEARCHER in roles,
    }


async def permits_page(request: Request) -> Response:
    session = await need(request, *ROLES)
    return await _page(request, session)


async def _page(
    request: Request,
    session: Session,
    *,
    error: str | None = None,
    status_code: int = 200,
    filled: dict[str, Any] | None = None,
) -> Response:
    """The page; after a refused form, with its one-line reason, its status and (``filled``) what was typed into
    the application form."""
    context = await call(_uses, workspace(request), session.user.name, session.user.roles)
    # The purposes under the regulation in the page's language: the register's words (the same English).
    context["categories"] = {key: translate(request, labels.CATEGORY[key]) for key in CATEGORIES}
    blank = {k: "" for k in APPLY_FIELDS} | {"category": "scientific-research", "tier": "dp", "tables": []}
    context |= {
        "error": error,
        "done": done_message(request, DONE),
        "filled": filled or blank,
        "apply_refused": filled is not None,
    }
    return render(request, "permits.html", context, status_code)


async def _perform(request: Request, kind: str, work: Callable[[Workspace, str, FormData], Permit]) -> Response:
    """Check the session and the form's token, run ``work(ws, actor, form)`` (one action), then back to the page.

    Open to every signed-in role: the action says who may. Its refusal (not the committee, a user of the
    permit, a date that has passed, an empty note) re-shows the page with its one-line reason and the status
    :func:`~research_kit.web.http.status_of` gives; nothing was changed.
    """
    session = await need(request, *ROLES)
    data = await form(request, session)
    try:
        done = await call(work, workspace(request), session.user.name, data)
    except UserError as exc:
        filled = _filled(data) if kind == "apply" else None
        return await _page(request, session, error=str(exc), status_code=status_of(exc), filled=filled)
    return RedirectResponse(f"/permits?done={kind}#permit-{done.id}", status_code=303)


def _filled(data: FormData) -> dict[str, Any]:
    """What was typed into the application form, to show it again."""
    return {k: text_field(data, k) for k in APPLY_FIELDS} | {"tables": _ticked(data)}


def _ticked(data: FormData) -> list[str]:
    return [v for v in data.getlist("tables") if isinstance(v, str)]


def _tables(data: FormData) -> str:
    """The ticked tables as ``--tables`` takes them: comma-separated, or ``all``."""
    ticked = _ticked(data)
    if permits.EVERY in ticked and len(ticked) > 1:
        raise BadInput("tables: tick every table, or some tables, not both")
    return ",".join(ticked)


def _optional(data: FormData, name: str) -> str | None:
    value = text_field(data, name).strip()
    return value or None


def _number(data: FormData, name: str) -> int | None:
    value = text_field(data, name).strip()
    if not value:
        return None
    if not value.isdigit() or not 1 <= int(value) <= 2**63 - 1:
        raise BadInput(f"{name} {value!r}: a permit is named by its number")
    return int(value)


async def apply(request: Request) -> Response:
    def work(ws: Workspace, actor: str, data: FormData) -> Permit:
        return permits.apply(
            ws, actor=actor, study=text_field(data, "study").strip(), holder=text_field(data, "holder"),
            purpose=text_field(data, "purpose"), category=text_field(data, "category"),
            tier=text_field(data, "tier"), tables=_tables(data), until=text_field(data, "until").strip(),
            users_named=_optional(data, "users"), rho=_optional(data, "rho"),
        )  # fmt: skip

    return await _perform(request, "apply", work)


async def grant(request: Request) -> Response:
    permit_id = int(request.path_params["permit_id"])

    def work(ws: Workspace, actor: str, data: FormData) -> Permit:
        return permits.decide(
            ws, actor=actor, permit_id=permit_id, legal_basis=text_field(data, "legal_basis"),
            note=text_field(data, "note"), rho=_optional(data, "rho"),
            optout_exception=text_field(data, "optout_exception"), continues=_number(data, "continues"),
        )  # fmt: skip

    return await _perform(request, "grant", work)


async def refuse(request: Request) -> Response:
    permit_id = int(request.path_params["permit_id"])

    def work(ws: Workspace, actor: str, data: FormData) -> Permit:
        return permits.refuse(ws, actor=actor, permit_id=permit_id, note=text_field(data, "note"))

    return await _perform(request, "refuse", work)


async def revoke(request: Request) -> Response:
    permit_id = int(request.path_params["permit_id"])

    def work(ws: Workspace, actor: str, data: FormData) -> Permit:
        return permits.revoke(ws, actor=actor, permit_id=permit_id, note=text_field(data, "note"))

    return await _perform(request, "revoke", work)


ROUTES = [
    Route("/permits", permits_page, methods=["GET"]),
    Route("/permits/apply", apply, methods=["POST"]),
    Route("/permits/{permit_id:int}/grant", grant, methods=["POST"]),
    Route("/permits/{permit_id:int}/refuse", refuse, methods=["POST"]),
    Route("/permits/{permit_id:int}/revoke", revoke, methods=["POST"]),
]
