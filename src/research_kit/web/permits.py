"""The permits page: every data permit with its state and use, for the committee and stewards; a researcher's own.

Each permit shows what it grants (purpose, holder, users, tier, tables,
period, legal basis, an opt-out exception) and what its study has done under
it: the budget spent, the runs, the review requests. Permits ending within
``[permits].notice_days`` are named first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from research_kit.actions import permits
from research_kit.core.permits import CATEGORIES, Permit
from research_kit.core.users import ROLES
from research_kit.core.workspace import Workspace
from research_kit.dp import ledger
from research_kit.dp.accounting import from_picorho
from research_kit.web.http import call, need, render, workspace


@dataclass(frozen=True)
class PermitUse:
    permit: Permit
    status: str
    granted_rho: float
    spent_rho: float
    runs: int
    requests: int
    days_left: int | None


def _uses(ws: Workspace, actor: str) -> dict[str, Any]:
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
            uses.append(PermitUse(p, p.status(today), from_picorho(balance.granted), from_picorho(balance.spent),
                                  int(runs), int(requests), left))  # fmt: skip
    ending = [u for u in uses if u.days_left is not None and u.days_left <= notice]
    return {"uses": uses, "ending": ending, "notice": notice, "categories": CATEGORIES}


async def permits_page(request: Request) -> Response:
    session = await need(request, *ROLES)
    context = await call(_uses, workspace(request), session.user.name)
    return render(request, "permits.html", context)


ROUTES = [Route("/permits", permits_page, methods=["GET"])]
