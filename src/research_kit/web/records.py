"""The budget page (grants and spends per study) and the audit log with its verify button.

Committee members and stewards see every study's budget and the audit log; a
researcher sees the budgets of the studies they registered or asked for
outputs from, and no audit log (it names every user's actions).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from research_kit.actions import budget as budgets
from research_kit.actions import records
from research_kit.core.audit import Verdict
from research_kit.core.users import ROLES
from research_kit.core.workspace import Workspace
from research_kit.dp.accounting import epsilon_of, from_picorho
from research_kit.web.http import call, form, need, render, workspace

AUDIT_PAGE = 100  # entries per page, newest first


async def budget(request: Request) -> Response:
    session = await need(request, *ROLES)
    ws = workspace(request)
    studies = await call(budgets.visible_budgets, ws, actor=session.user.name)
    delta = ws.policy().dp.delta
    return render(request, "budget.html", {"studies": studies, "delta": delta, "epsilon_of": epsilon_of,
                                           "from_picorho": from_picorho})  # fmt: skip


def _audit_context(ws: Workspace, actor: str, page: int) -> dict[str, Any]:
    entries = records.entries(ws, actor=actor)
    newest_first = list(reversed(entries))
    pages = max(1, -(-len(newest_first) // AUDIT_PAGE))
    page = min(max(page, 1), pages)
    shown = newest_first[(page - 1) * AUDIT_PAGE : page * AUDIT_PAGE]
    return {"entries": shown, "total": len(entries), "page": page, "pages": pages}


async def audit_page(request: Request) -> Response:
    session = await need(request, "committee", "steward")
    try:
        page = int(request.query_params.get("page", "1"))
    except ValueError:
        page = 1
    context = await call(_audit_context, workspace(request), session.user.name, page)
    return render(request, "audit.html", {**context, "verdict": None})


async def audit_verify(request: Request) -> Response:
    session = await need(request, "committee", "steward")
    await form(request, session)
    ws = workspace(request)
    verdict: Verdict = await call(records.check, ws)
    context = await call(_audit_context, ws, session.user.name, 1)
    return render(request, "audit.html", {**context, "verdict": verdict}, 200 if verdict.ok else 409)


ROUTES = [
    Route("/budget", budget, methods=["GET"]),
    Route("/audit", audit_page, methods=["GET"]),
    Route("/audit/verify", audit_verify, methods=["POST"]),
]
