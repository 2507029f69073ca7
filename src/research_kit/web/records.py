"""The budget page (grants and spends per study) and the audit log with its verify button.

Committee members and stewards see every study's budget and the audit log; a
researcher sees the budgets of the studies they registered or asked for
outputs from, and no audit log (it names every user's actions).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from research_kit import audit
from research_kit.dp import ledger
from research_kit.dp.accounting import epsilon_of, from_picorho
from research_kit.web.app import act, form, need, render, workspace
from research_kit.web.sessions import Session
from research_kit.workspace import Workspace

AUDIT_PAGE = 100  # entries per page, newest first


@dataclass
class StudyBudget:
    study: str
    balance: ledger.Balance
    grants: list[ledger.Grant]
    spends: list[ledger.Spend]

    def rho(self, picorho: int) -> float:
        return from_picorho(picorho)


def _own_studies(ws: Workspace, name: str) -> set[str]:
    with ws.catalog() as conn:
        rows = conn.execute(
            "SELECT study FROM pipelines WHERE registered_by = ? UNION SELECT study FROM requests WHERE author = ?",
            (name, name),
        ).fetchall()
    return {r[0] for r in rows}


def _budgets(ws: Workspace, session: Session) -> list[StudyBudget]:
    names = ledger.studies(ws)
    if session.user.role == "researcher":
        mine = _own_studies(ws, session.user.name)
        names = [n for n in names if n in mine]
    return [
        StudyBudget(n, ledger.balance(ws, n, "real"), ledger.grants(ws, n), ledger.history(ws, n, "real"))
        for n in names
    ]


async def budget(request: Request) -> Response:
    session = await need(request, "researcher", "committee", "steward")
    ws = workspace(request)
    studies = await act(session, _budgets, ws, session)
    delta = ws.policy().dp.delta
    return render(request, "budget.html", {"studies": studies, "delta": delta, "epsilon_of": epsilon_of,
                                           "from_picorho": from_picorho})  # fmt: skip


def _audit_context(ws: Workspace, page: int) -> dict[str, Any]:
    entries = audit.read_entries(ws.audit_path)
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
    context = await act(session, _audit_context, workspace(request), page)
    return render(request, "audit.html", {**context, "verdict": None})


async def audit_verify(request: Request) -> Response:
    session = await need(request, "committee", "steward")
    await form(request, session)
    ws = workspace(request)

    def check() -> audit.Verdict:
        with ws.catalog() as conn:
            return audit.verify(conn, ws.audit_path)

    verdict = await act(session, check)
    context = await act(session, _audit_context, ws, 1)
    return render(request, "audit.html", {**context, "verdict": verdict}, 200 if verdict.ok else 409)


ROUTES = [
    Route("/budget", budget, methods=["GET"]),
    Route("/audit", audit_page, methods=["GET"]),
    Route("/audit/verify", audit_verify, methods=["POST"]),
]
