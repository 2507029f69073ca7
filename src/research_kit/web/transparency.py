"""The transparency page: what the public register is and how it is published, and the steward's form for a
person's "where was my data used?" letter.

- ``GET /transparency`` (every signed-in role) explains the register and shows the command that publishes it
  (``research-kit transparency publish OUT``, a steward or a committee member: the register is a folder of
  static files that the registry's public site serves, so it is published where that site reads it);
- ``POST /transparency/person`` (CSRF protected) calls the action ``research-kit transparency person`` calls
  (:func:`research_kit.actions.transparency.person`), which refuses anyone but a steward before it reads
  anything (403 here), and returns the letter as an HTML download. The national ID comes in the form's body
  only: it is never put in the page, an address, a log or the audit line, and the letter holds none.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from research_kit.actions import transparency as actions
from research_kit.core.errors import UserError
from research_kit.core.permissions import Role
from research_kit.core.sessions import Session
from research_kit.core.users import ROLES
from research_kit.core.workspace import Workspace
from research_kit.web.http import call, form, need, offered_languages, render, status_of, text_field, workspace

LETTER_HEADERS = {"content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; sandbox",
                  "x-content-type-options": "nosniff"}  # fmt: skip


async def transparency_page(request: Request) -> Response:
    session = await need(request, *ROLES)
    return _page(request, session)


def _page(request: Request, session: Session, *, error: str | None = None, status_code: int = 200) -> Response:
    context = {
        "error": error,
        "may_answer": Role.STEWARD in session.user.roles,  # only whether to show the form: the action decides
        "letter_languages": offered_languages(request).names,
        "letter_default": workspace(request).policy().transparency.default_language,
    }
    return render(request, "transparency.html", context, status_code)


def _letter(ws: Workspace, actor: str, national_id: str, lang: str | None) -> tuple[str, bytes]:
    """The letter's language and bytes, written by the action into a private scratch folder, read back, and
    removed with it."""
    with tempfile.TemporaryDirectory(prefix="rk-letter-") as scratch:
        done = actions.person(ws, actor=actor, lines=[national_id], out=Path(scratch) / "letter.html", lang=lang)
        return done.lang, done.out.read_bytes()


async def person_letter(request: Request) -> Response:
    session = await need(request, *ROLES)
    data = await form(request, session)
    chosen = text_field(data, "lang") or None
    try:
        lang, page = await call(_letter, workspace(request), session.user.name, text_field(data, "national_id"), chosen)
    except UserError as exc:  # its one line never holds the ID (the opt-out reader names a line, not its value)
        return _page(request, session, error=str(exc), status_code=status_of(exc))
    del data
    headers = {**LETTER_HEADERS, "content-disposition": f'attachment; filename="where-was-my-data-used-{lang}.html"'}
    return Response(page, media_type="text/html; charset=utf-8", headers=headers)


ROUTES = [
    Route("/transparency", transparency_page, methods=["GET"]),
    Route("/transparency/person", person_letter, methods=["POST"]),
]
