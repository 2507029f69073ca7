"""The review web app: a Starlette application over the same functions as the CLI.

No rule lives here. Who may vote, what a vote needs, when a request is
approved, what a release holds: :mod:`research_kit.outputs.review`,
:mod:`~research_kit.outputs.release` and :mod:`~research_kit.outputs.users`
decide, exactly as for ``research-kit review``. The app adds what a browser
needs:

- **who**: a signed-in session (:mod:`research_kit.web.sessions`); each
  request acts as its user (:func:`research_kit.audit.acting`), so the audit
  log names them;
- **may they**: every route names the roles it serves (:func:`need`) and a
  researcher sees only their own requests; a direct URL gets the same answer
  as a link;
- **forms**: every POST carries the session's CSRF token; the sign-in form a
  token of its own (a double-submit cookie);
- **headers**: a strict Content-Security-Policy (no script at all, images and
  styles from the app only), no framing, no caching of pages, no referrer.

Templates autoescape everything: a cell holding ``<script>`` shows as text.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from research_kit import __version__, audit
from research_kit.errors import BadInput, MissingData, PolicyRefusal, UserError
from research_kit.web import sessions
from research_kit.workspace import Workspace

HERE = Path(__file__).parent
SESSION_COOKIE = "rk_session"
SIGNIN_COOKIE = "rk_signin"  # the sign-in form's own CSRF token (there is no session yet)
T = TypeVar("T")

PAGE_HEADERS = {
    "content-security-policy": (
        "default-src 'none'; img-src 'self'; style-src 'self'; form-action 'self'; base-uri 'none'; "
        "frame-ancestors 'none'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "cache-control": "no-store",
    "cross-origin-opener-policy": "same-origin",
}


class SignInNeeded(Exception):
    """No live session: the browser goes to the sign-in page, then back."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


class SecurityHeaders:
    """Adds :data:`PAGE_HEADERS` to every response that does not set its own."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {k.decode("latin-1").lower() for k, _ in message.get("headers", [])}
                extra = [(k.encode(), v.encode()) for k, v in PAGE_HEADERS.items() if k not in present]
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        await self.app(scope, receive, with_headers)


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals["version"] = __version__
    env.filters["when"] = lambda text: str(text or "").replace("T", " ")[:19]  # UTC, to the second
    return Jinja2Templates(env=env)


TEMPLATES = _templates()


def workspace(request: Request) -> Workspace:
    ws: Workspace = request.app.state.ws
    return ws


def session_of(request: Request) -> sessions.Session:
    """The signed-in session, looked up once per request (by the route's :func:`need`)."""
    session: sessions.Session | None = request.scope.get("rk_session")
    if session is None:
        raise SignInNeeded(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    return session


async def need(request: Request, *roles: str) -> sessions.Session:
    """The signed-in session, whose user must hold one of ``roles`` (403 otherwise)."""
    token = request.cookies.get(SESSION_COOKIE)
    session = await run_in_threadpool(sessions.lookup, workspace(request), token)
    if session is None:
        raise SignInNeeded(request.url.path + (f"?{request.url.query}" if request.url.query else ""))
    request.scope["rk_session"] = session
    if session.user.role not in roles:
        raise HTTPException(403, f"this page is for the {' or '.join(roles)} role; you are signed in as a "
                                 f"{session.user.role}")  # fmt: skip
    return session


async def form(request: Request, session: sessions.Session) -> FormData:
    """The POSTed form, once its CSRF token matches the session's (403 otherwise)."""
    data = await request.form()
    token = data.get("csrf")
    if not sessions.same_token(session.csrf, token if isinstance(token, str) else None):
        raise HTTPException(403, "this form has expired or did not come from this app: reload the page and try again")
    return data


def text_field(data: FormData, name: str) -> str:
    value = data.get(name)
    return value if isinstance(value, str) else ""


async def act(session: sessions.Session, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run a library function in a worker thread, acting as the session's user."""

    def run() -> T:
        with audit.acting(session.user.name):
            return fn(*args, **kwargs)

    return await run_in_threadpool(run)


def render(request: Request, template: str, context: dict[str, Any], status_code: int = 200) -> Response:
    session: sessions.Session | None = request.scope.get("rk_session")
    user, csrf = (session.user, session.csrf) if session else (None, "")
    base = {"user": user, "csrf": csrf, "path": request.url.path}
    return TEMPLATES.TemplateResponse(request, template, {**base, **context}, status_code=status_code)


def safe_next(path: str | None) -> str:
    """Only a path of this app (never another site's address) is a place to go back to."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/requests"
    return path


# -- sign-in and sign-out -------------------------------------------------------------------------------------------


async def signin_page(request: Request) -> Response:
    token = secrets.token_urlsafe(32)
    next_path = safe_next(request.query_params.get("next"))
    context = {"signin_token": token, "next": next_path, "error": None, "name": ""}
    response = render(request, "signin.html", context)
    _set_cookie(request, response, SIGNIN_COOKIE, token)
    return response


async def signin(request: Request) -> Response:
    data = await request.form()
    name, password = text_field(data, "name").strip(), text_field(data, "password")
    expected = request.cookies.get(SIGNIN_COOKIE)
    next_path = safe_next(text_field(data, "next"))
    if not expected or not sessions.same_token(expected, text_field(data, "signin_token")):
        error, status = "The sign-in form expired: please try again.", 403
    else:
        try:
            token, _ = await run_in_threadpool(sessions.sign_in, workspace(request), name, password)
        except sessions.SignInRefused as exc:
            error, status = f"{str(exc)[:1].upper()}{str(exc)[1:]}.", 401
        else:
            signed_in = RedirectResponse(next_path, status_code=303)
            _set_cookie(request, signed_in, SESSION_COOKIE, token)
            signed_in.delete_cookie(SIGNIN_COOKIE, path="/")
            return signed_in
    fresh = secrets.token_urlsafe(32)
    context = {"signin_token": fresh, "next": next_path, "error": error, "name": name}
    response = render(request, "signin.html", context, status)
    _set_cookie(request, response, SIGNIN_COOKIE, fresh)
    return response


async def signout(request: Request) -> Response:
    session = await need(request, "researcher", "committee", "steward")
    await form(request, session)
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await run_in_threadpool(sessions.sign_out, workspace(request), token)
    response = RedirectResponse("/signin?signed_out=1", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def _set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    response.set_cookie(
        name, value, httponly=True, samesite="strict", secure=request.app.state.secure_cookies, path="/"
    )


async def home(request: Request) -> Response:
    await need(request, "researcher", "committee", "steward")
    return RedirectResponse("/requests", status_code=303)


# -- errors ---------------------------------------------------------------------------------------------------------


async def _sign_in_needed(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInNeeded)
    if request.method != "GET":
        return render(request, "error.html", {"status": 401, "message": "Your session has ended: sign in again."}, 401)
    return RedirectResponse(f"/signin?next={quote(safe_next(exc.next_path), safe='/')}", status_code=303)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = exc.detail if exc.status_code in (400, 401, 403, 404, 405) else "Something went wrong."
    if exc.status_code == 404 and message == "Not Found":
        message = "There is no such page."
    return render(request, "error.html", {"status": exc.status_code, "message": message}, exc.status_code)


async def _user_error(request: Request, exc: Exception) -> Response:
    status = 404 if isinstance(exc, MissingData) else 403 if isinstance(exc, PolicyRefusal) else 400
    if not isinstance(exc, (BadInput, MissingData, PolicyRefusal)):
        status = 409
    return render(request, "error.html", {"status": status, "message": str(exc)}, status)


def create_app(ws: Workspace, *, secure_cookies: bool = False) -> Starlette:
    """The app for workspace ``ws``; ``secure_cookies`` when it is served over HTTPS (behind a TLS proxy)."""
    from research_kit.web import pages, records

    routes = [
        Route("/", home),
        Route("/signin", signin_page, methods=["GET"]),
        Route("/signin", signin, methods=["POST"]),
        Route("/signout", signout, methods=["POST"]),
        *pages.ROUTES,
        *records.ROUTES,
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
