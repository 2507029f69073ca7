"""Signing in and out of the web app, and the language switch."""

from __future__ import annotations

import secrets

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from research_kit.core import sessions
from research_kit.core.i18n import N_
from research_kit.core.users import ROLES
from research_kit.web.http import (
    LANG_COOKIE,
    SESSION_COOKIE,
    SIGNIN_COOKIE,
    form,
    need,
    offered_languages,
    render,
    safe_next,
    set_cookie,
    text_field,
    translate,
    workspace,
)


async def signin_page(request: Request) -> Response:
    token = secrets.token_urlsafe(32)
    next_path = safe_next(request.query_params.get("next"))
    context = {"signin_token": token, "next": next_path, "error": None, "name": ""}
    response = render(request, "signin.html", context)
    set_cookie(request, response, SIGNIN_COOKIE, token)
    return response


async def signin(request: Request) -> Response:
    data = await request.form()
    name, password = text_field(data, "name").strip(), text_field(data, "password")
    code = text_field(data, "code").strip() or None
    expected = request.cookies.get(SIGNIN_COOKIE)
    next_path = safe_next(text_field(data, "next"))
    if not expected or not sessions.same_token(expected, text_field(data, "signin_token")):
        error, status = translate(request, N_("The sign-in form expired: please try again.")), 403
    else:
        try:
            address = request.client.host if request.client else ""
            await run_in_threadpool(sessions.check_wait, workspace(request), name, address)  # refused unread
            token, _ = await run_in_threadpool(
                sessions.sign_in, workspace(request), name, password, address=address, code=code
            )
        except sessions.CodeNeeded as exc:  # the password was right: say what is missing
            error, status = f"{str(exc)[:1].upper()}{str(exc)[1:]}.", 401
        except sessions.SignInRefused as exc:
            error, status = f"{str(exc)[:1].upper()}{str(exc)[1:]}.", 401
        else:
            signed_in = RedirectResponse(next_path, status_code=303)
            set_cookie(request, signed_in, SESSION_COOKIE, token)
            signed_in.delete_cookie(SIGNIN_COOKIE, path="/")
            return signed_in
    fresh = secrets.token_urlsafe(32)
    context = {"signin_token": fresh, "next": next_path, "error": error, "name": name}
    response = render(request, "signin.html", context, status)
    set_cookie(request, response, SIGNIN_COOKIE, fresh)
    return response


async def signout(request: Request) -> Response:
    session = await need(request, *ROLES)
    await form(request, session)
    token = request.cookies.get(SESSION_COOKIE)
    if token:
        await run_in_threadpool(sessions.sign_out, workspace(request), token)
    response = RedirectResponse("/signin?signed_out=1", status_code=303)
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


async def switch_language(request: Request) -> Response:
    """The header's language switch: ``/language?lang=fr&next=/requests`` keeps the choice in a cookie and goes
    back (to a path of this app only); an unknown language changes nothing. Open signed in or out."""
    response = RedirectResponse(safe_next(request.query_params.get("next")), status_code=303)
    chosen = request.query_params.get("lang", "")
    if chosen in offered_languages(request).names:
        set_cookie(request, response, LANG_COOKIE, chosen)
    return response


async def home(request: Request) -> Response:
    await need(request, *ROLES)
    return RedirectResponse("/requests", status_code=303)


ROUTES = [
    Route("/", home),
    Route("/signin", signin_page, methods=["GET"]),
    Route("/signin", signin, methods=["POST"]),
    Route("/signout", signout, methods=["POST"]),
    Route("/language", switch_language, methods=["GET"]),
]
