"""The review web app: a Starlette application over the same actions as the CLI.

No rule lives here. Who may vote, what a vote needs, when a request is
approved, what a release holds: the actions (:mod:`research_kit.actions`)
decide, exactly as for ``research-kit review``. Each route calls one action as
its signed-in user; :mod:`research_kit.web.http` adds what a browser needs.

The routes: :mod:`~research_kit.web.signin` (sign-in and out),
:mod:`~research_kit.web.pages` (requests, outputs, votes, releases) and
:mod:`~research_kit.web.records` (budgets and the audit log), :mod:`~research_kit.web.transparency` (the
transparency register, a person's letter) and
:mod:`~research_kit.web.api` (the JSON API a command-line client uses).
"""

from __future__ import annotations

from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from research_kit.core.errors import UserError
from research_kit.core.i18n import N_
from research_kit.core.workspace import Workspace
from research_kit.web import api, pages, permits, records, signin, transparency
from research_kit.web.http import (
    HERE,
    Refused,
    SecurityHeaders,
    SignInNeeded,
    render,
    safe_next,
    status_of,
    translate,
)


async def _sign_in_needed(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInNeeded)
    if request.method != "GET":
        message = translate(request, N_("Your session has ended: sign in again."))
        return render(request, "error.html", {"status": 401, "message": message}, 401)
    return RedirectResponse(f"/signin?next={quote(safe_next(exc.next_path), safe='/')}", status_code=303)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if isinstance(exc, Refused):  # this app's own words, in the page's language
        message = translate(request, exc.detail, **exc.params)
    elif exc.status_code == 404 and exc.detail == "Not Found":
        message = translate(request, N_("There is no such page."))
    elif exc.status_code in (400, 401, 403, 404, 405):
        message = exc.detail  # Starlette's (405 Method Not Allowed) or a library's: English
    else:
        message = translate(request, N_("Something went wrong."))
    return render(request, "error.html", {"status": exc.status_code, "message": message}, exc.status_code)


async def _user_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, UserError)
    status = status_of(exc)
    return render(request, "error.html", {"status": status, "message": str(exc)}, status)


def create_app(ws: Workspace, *, secure_cookies: bool = False) -> Starlette:
    """The app for workspace ``ws``; ``secure_cookies`` when it is served over HTTPS (behind a TLS proxy)."""
    routes = [
        *signin.ROUTES,
        *pages.ROUTES,
        *records.ROUTES,
        *permits.ROUTES,
        *transparency.ROUTES,
        *api.ROUTES,
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            SignInNeeded: _sign_in_needed,
            HTTPException: _http_error,
            UserError: _user_error,
        },
    )
    app.state.ws = ws
    app.state.secure_cookies = secure_cookies
    app.add_middleware(SecurityHeaders)
    return app
