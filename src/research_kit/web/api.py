"""The JSON API of ``research-kit serve`` (:data:`~research_kit.core.service.API`): the same actions as the pages.

Credential: the token ``POST /api/v1/login`` returns (a command-line session,
as ``research-kit login`` makes), as ``Authorization: Bearer TOKEN``; no
cookie, so no CSRF. Every refusal is JSON ``{"error": "..."}`` with the
status :func:`~research_kit.web.http.status_of` gives.

- ``POST /login`` ``{"name", "password", "code"?, "enrol"?}`` -> ``{"token", "user", "roles"}``; a committee
  member or steward without a code gets 401 with ``"code_needed": true`` (``"enrol": true`` before they set
  codes up: the client makes a secret, shows it, and sends it back with a code from it);
- ``POST /logout``; ``GET /whoami``;
- ``GET /requests[?state=S]``, ``GET /requests/{id}``: the review requests the user may read, as JSON;
- ``GET /budgets``: the study budgets the user may see;
- ``POST /command`` ``{"argv", "stdin"?, "columns"?}`` -> ``{"exit_code", "stdout", "stderr"}``: one command of
  :data:`~research_kit.core.service.REMOTE_COMMANDS`, run on the server as the session's user.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from research_kit.actions import budget as budgets
from research_kit.actions import review as reviewing
from research_kit.core import service, sessions
from research_kit.core.errors import BadInput, UserError
from research_kit.core.workspace import HOME_ENV
from research_kit.web.http import status_of, workspace

COMMAND_SECONDS = 3600  # the longest a command sent by a client may run (a rerun of every study)


def _json(data: Any, status: int = 200) -> Response:
    body = json.dumps(data, default=str, ensure_ascii=False, separators=(",", ":"))
    return Response(body, status_code=status, media_type="application/json")


def _error(message: str, status: int, **extra: Any) -> Response:
    return _json({"error": message, **extra}, status)


def _token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def _session(request: Request) -> tuple[str, sessions.Session] | Response:
    token = _token(request)
    found = await run_in_threadpool(sessions.lookup, workspace(request), token, kind="cli") if token else None
    if token is None or found is None:
        return _error("sign in first: research-kit login NAME", 401)
    return token, found


async def _body(request: Request) -> dict[str, Any]:
    try:
        data = json.loads(await request.body() or b"{}")
    except (ValueError, UnicodeDecodeError):
        raise BadInput("the request body is not JSON") from None
    if not isinstance(data, dict):
        raise BadInput("the request body must be a JSON object")
    return data


def _text(data: dict[str, Any], key: str, *, required: bool = True) -> str | None:
    value = data.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str):
        raise BadInput(f"{key!r} must be a string")
    return value


async def login(request: Request) -> Response:
    try:
        data = await _body(request)
        name, password = _text(data, "name") or "", _text(data, "password") or ""
        code, enrol = _text(data, "code", required=False), _text(data, "enrol", required=False)
    except UserError as exc:
        return _error(str(exc), status_of(exc))
    ws = workspace(request)
    address = request.client.host if request.client else ""
    try:
        await run_in_threadpool(sessions.check_wait, ws, name, address)  # too soon after failures: refused unread
        token, session = await run_in_threadpool(
            lambda: sessions.sign_in(ws, name, password, address=address, code=code, enrol=enrol, kind="cli")
        )
    except sessions.CodeNeeded as needed:
        return _error(str(needed), 401, code_needed=True, enrol=needed.enrol)
    except sessions.SignInRefused as refused:
        return _error(str(refused), 401)
    return _json({"token": token, "user": session.user.name, "roles": sorted(session.user.roles)})


async def logout(request: Request) -> Response:
    found = await _session(request)
    if isinstance(found, Response):
        return found
    await run_in_threadpool(sessions.sign_out, workspace(request), found[0])
    return _json({"signed_out": found[1].user.name})


async def whoami(request: Request) -> Response:
    found = await _session(request)
    if isinstance(found, Response):
        return found
    user = found[1].user
    return _json({"user": user.name, "roles": sorted(user.roles)})


async def _acting(request: Request, work: Any) -> Response:
    """``work(ws, actor)`` as the session's user; its result as JSON, or its refusal."""
    found = await _session(request)
    if isinstance(found, Response):
        return found
    try:
        result = await run_in_threadpool(work, workspace(request), found[1].user.name)
    except UserError as exc:
        return _error(str(exc), status_of(exc))
    return _json(result)


async def requests_list(request: Request) -> Response:
    states = tuple(request.query_params.getlist("state"))

    def work(ws: Any, actor: str) -> Any:
        return [dataclasses.asdict(r) for r in reviewing.list_requests(ws, actor=actor, states=states)]

    return await _acting(request, work)


async def request_one(request: Request) -> Response:
    number = int(request.path_params["request_id"])

    def work(ws: Any, actor: str) -> Any:
        found, provenance = reviewing.show(ws, actor=actor, request=number)
        return {"request": dataclasses.asdict(found), "provenance": provenance}

    return await _acting(request, work)


async def budgets_visible(request: Request) -> Response:
    def work(ws: Any, actor: str) -> Any:
        return [dataclasses.asdict(b) for b in budgets.visible_budgets(ws, actor=actor)]

    return await _acting(request, work)


def _argv(data: dict[str, Any]) -> list[str]:
    argv = data.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise BadInput("'argv' must be a list of strings: the command and its arguments")
    if len(argv) > service.MAX_ARGS or any(len(a) > service.MAX_ARG_CHARS or "\x00" in a for a in argv):
        raise BadInput(f"'argv': at most {service.MAX_ARGS} arguments of {service.MAX_ARG_CHARS} characters")
    if argv[0] not in service.REMOTE_COMMANDS:
        raise BadInput(
            f"research-kit {argv[0]} is not run through the server "
            f"(it runs: {', '.join(sorted(service.REMOTE_COMMANDS))})"
        )
    if any(a == "--as" or a.startswith("--as=") for a in argv):
        raise BadInput("--as: the server acts as the user whose token came with the command")
    return argv


def _run(ws_root: str, token: str, argv: list[str], stdin: str, columns: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="rk-command-") as private:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": private,
            "XDG_RUNTIME_DIR": private,  # the command reads no session file: it acts with the token
            "LANG": os.environ.get("LANG", "C.UTF-8"),
            "COLUMNS": str(columns),
            HOME_ENV: ws_root,
            service.SESSION_ENV: token,
        }
        done = subprocess.run(
            [sys.executable, "-m", "research_kit", *argv], input=stdin, capture_output=True, text=True, env=env,
            cwd=ws_root, timeout=COMMAND_SECONDS, check=False,
        )  # fmt: skip
    return {"exit_code": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


async def command(request: Request) -> Response:
    found = await _session(request)
    if isinstance(found, Response):
        return found
    try:
        data = await _body(request)
        argv = _argv(data)
        stdin = _text(data, "stdin", required=False) or ""
        if len(stdin) > service.MAX_STDIN_CHARS:
            raise BadInput(f"'stdin': at most {service.MAX_STDIN_CHARS} characters")
        columns = data.get("columns", 100)
        if not isinstance(columns, int) or not 40 <= columns <= 400:
            columns = 100
    except UserError as exc:
        return _error(str(exc), status_of(exc))
    ran = await run_in_threadpool(_run, str(workspace(request).root), found[0], argv, stdin, columns)
    return _json(ran)


ROUTES = [
    Route(f"{service.API}/login", login, methods=["POST"]),
    Route(f"{service.API}/logout", logout, methods=["POST"]),
    Route(f"{service.API}/whoami", whoami, methods=["GET"]),
    Route(f"{service.API}/requests", requests_list, methods=["GET"]),
    Route(f"{service.API}/requests/{{request_id:int}}", request_one, methods=["GET"]),
    Route(f"{service.API}/budgets", budgets_visible, methods=["GET"]),
    Route(f"{service.API}/command", command, methods=["POST"]),
]
