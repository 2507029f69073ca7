"""What every page of the web app shares: who is signed in, what they may open, forms, templates, headers.

- **who**: a signed-in session (:mod:`research_kit.web.sessions`), looked up by
  :func:`need`, which also names the roles a route serves (403 otherwise);
- **forms**: every POST carries the session's CSRF token (:func:`form`); the
  sign-in form a token of its own (a double-submit cookie);
- **headers**: a strict Content-Security-Policy (no script at all, images and
  styles from the app only), no framing, no caching of pages, no referrer;
- **errors**: :func:`status_of` is the one map from a library refusal to an HTTP status;
- **language**: each page in English, French or German, or a language whose complete catalog the policy supplies
  (:func:`offered_languages`; an incomplete one is not offered), chosen by :func:`language`: the ``rk_lang``
  cookie the header's switch sets, else the browser's Accept-Language, else English; through the gettext catalogs
  and the Jinja2 setup of :mod:`research_kit.core.i18n`; a string built here is marked with ``N_()`` and translated by
  :func:`translate`. A refusal from the core (a :class:`~research_kit.core.errors.UserError`) stays English.

Templates autoescape everything: a cell holding ``<script>`` shows as text.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import jinja2
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from research_kit import __version__
from research_kit.core import i18n, sessions
from research_kit.core.errors import BadInput, MissingData, PolicyRefusal, UserError
from research_kit.core.i18n import N_
from research_kit.core.workspace import Workspace

HERE = Path(__file__).parent
SESSION_COOKIE = "rk_session"
SIGNIN_COOKIE = "rk_signin"  # the sign-in form's own CSRF token (there is no session yet)
LANG_COOKIE = "rk_lang"  # the language the header's switch chose (en, fr, de)
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


class Refused(HTTPException):
    """An HTTP refusal whose message is this app's own: an English constant marked ``N_()``, with ``%(name)s``
    filled from ``params`` after translation (the error page shows it in the page's language)."""

    def __init__(self, status_code: int, message: str, **params: Any) -> None:
        super().__init__(status_code, message)
        self.params = params


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


def templates(lang: str, languages: i18n.Languages = i18n.BUILT_IN) -> Jinja2Templates:
    """The pages in ``lang``: :func:`research_kit.core.i18n.environment` (autoescape, gettext, strict names) over
    this app's templates, built once per language (and per version of a supplied catalog)."""
    po = languages.catalogs.get(lang)
    return _templates(lang, (po, po.stat().st_mtime_ns) if po is not None else None)


@functools.lru_cache(maxsize=32)
def _templates(lang: str, supplied: tuple[Path, int] | None) -> Jinja2Templates:
    languages = (
        i18n.Languages({**i18n.LANGUAGES, lang: lang}, {lang: supplied[0]}) if supplied else i18n.BUILT_IN
    )  # the switch's names come with each page (render)
    env = languages.environment(jinja2.FileSystemLoader(HERE / "templates"), lang, version=__version__)
    env.filters["when"] = lambda text: str(text or "").replace("T", " ")[:19]  # UTC, to the second
    return Jinja2Templates(env=env)


def offered_languages(request: Request) -> i18n.Languages:
    """The languages this app offers: the built-in ones and each complete one the policy supplies
    (``[transparency].extra_catalogs``); a supplied catalog that is incomplete, unreadable or of an unknown
    language is left out (``research-kit transparency publish`` names what is wrong with it)."""
    found: i18n.Languages | None = request.scope.get("rk_languages")
    if found is None:
        ws = workspace(request)
        try:
            found = i18n.offered(ws.root, ws.policy().transparency.extra_catalogs, strict=False)
        except UserError:  # a policy that cannot be read: the pages' own languages (the page says what is wrong)
            found = i18n.BUILT_IN
        request.scope["rk_languages"] = found
    return found


def accepted_language(header: str, languages: i18n.Languages = i18n.BUILT_IN) -> str:
    """The language of the pages a browser's ``Accept-Language`` prefers most (``fr-LU`` is ``fr``); English,
    the source language, when it names none of them."""
    best, chosen = 0.0, i18n.SOURCE
    for part in header.split(",")[:20]:
        tag, _, params = part.strip().partition(";")
        weight = 1.0
        if params.strip().startswith("q="):
            try:
                weight = float(params.strip()[2:])
            except ValueError:
                continue
        primary = tag.strip().split("-")[0].lower()
        if primary in languages.names and weight > best:
            best, chosen = weight, primary
    return chosen


def language(request: Request) -> str:
    """The language of this page: the switch's cookie, else the browser's preference, else English."""
    languages = offered_languages(request)
    chosen = request.cookies.get(LANG_COOKIE, "")
    if chosen in languages.names:
        return chosen
    return accepted_language(request.headers.get("accept-language", ""), languages)


def translate(request: Request, message: str, **params: Any) -> str:
    """``message`` (an English constant marked ``N_()``) in the page's language, ``%(name)s`` filled from
    ``params``; plain text, escaped where a template shows it. Never for a text that is not a constant."""
    text = offered_languages(request).gettext(language(request))(message)
    return text % params if params else text


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
    if not session.user.roles & set(roles):
        raise Refused(403, N_("this page is for the %(roles)s role; you are signed in as a %(role)s"),
                      roles=" or ".join(roles), role=session.user.role)  # fmt: skip
    return session


async def form(request: Request, session: sessions.Session) -> FormData:
    """The POSTed form, once its CSRF token matches the session's (403 otherwise)."""
    data = await request.form()
    token = data.get("csrf")
    if not sessions.same_token(session.csrf, token if isinstance(token, str) else None):
        raise Refused(403, N_("this form has expired or did not come from this app: reload the page and try again"))
    return data


def text_field(data: FormData, name: str) -> str:
    value = data.get(name)
    return value if isinstance(value, str) else ""


async def call(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run an action (or a read) in a worker thread: the event loop never waits on SQLite or a file."""
    return await run_in_threadpool(fn, *args, **kwargs)


def render(request: Request, template: str, context: dict[str, Any], status_code: int = 200) -> Response:
    session: sessions.Session | None = request.scope.get("rk_session")
    user, csrf = (session.user, session.csrf) if session else (None, "")
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    if request.method != "GET":  # a form's answer: the language switch goes to a page, never back to a POST
        here = "/requests"
    languages = offered_languages(request)
    lang = language(request)
    base = {"user": user, "csrf": csrf, "path": request.url.path, "here": safe_next(here), "languages": languages.names}
    response = templates(lang, languages).TemplateResponse(
        request, template, {**base, **context}, status_code=status_code
    )
    response.headers["content-language"] = lang
    return response


def safe_next(path: str | None) -> str:
    """Only a path of this app (never another site's address) is a place to go back to."""
    if not path or not path.startswith("/") or path.startswith("//") or "\\" in path:
        return "/requests"
    return path


def set_cookie(request: Request, response: Response, name: str, value: str) -> None:
    response.set_cookie(
        name, value, httponly=True, samesite="strict", secure=request.app.state.secure_cookies, path="/"
    )


def status_of(exc: UserError) -> int:
    """The HTTP status of a refusal: 404 for what is not there (or not theirs), 403 for a rule, 400 for bad input."""
    if isinstance(exc, MissingData):
        return 404
    if isinstance(exc, PolicyRefusal):
        return 403
    if isinstance(exc, BadInput):
        return 400
    return 409


def done_message(request: Request, messages: dict[str, str]) -> str | None:
    """The message after a successful form, chosen by the address's ``done`` key among ``messages`` (constants
    marked ``N_()``: no text from the address is ever shown), in the page's language."""
    message = messages.get(request.query_params.get("done", ""))
    return translate(request, message) if message else None
