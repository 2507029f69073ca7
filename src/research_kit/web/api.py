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
  :data:`~research_kit.core.service.REMOTE_COMMANDS`, run on the server as the session's user;
- ``POST /run`` ``{"pipeline", "files": {path: base64}, "options"?, "columns"?}`` -> the same: the project kept in
  the workspace's ``projects/USER/`` (each file replaced whole), then ``research-kit run`` on it as the user.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path, PurePosixPath
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


def _relative(name: object) -> PurePosixPath:
    """A project file's path as the client sent it: relative, inside the project, no dot-folders."""
    if not isinstance(name, str) or not name or len(name) > 512 or "\\" in name or "\x00" in name:
        raise BadInput("a project file's path must be a relative path of at most 512 characters")
    path = PurePosixPath(name)
    if path.is_absolute() or any(part in ("", ".", "..") or part.startswith(".") for part in path.parts):
        raise BadInput(f"project file {name!r}: a relative path inside the project, without '..' or dot-folders")
    return path


def _options(options: object) -> list[str]:
    """run's options as sent: only those of :data:`~research_kit.core.service.RUN_OPTIONS`, each value once."""
    if not isinstance(options, list) or not all(isinstance(o, str) for o in options) or len(options) > 16:
        raise BadInput("'options' must be a list of run's options")
    out, items = [], iter(options)
    for option in items:
        if option not in service.RUN_OPTIONS:
            raise BadInput(f"run option {option!r}: a client sends {', '.join(service.RUN_OPTIONS)}")
        out.append(option)
        if service.RUN_OPTIONS[option]:
            value = next(items, None)
            if value is None or value.startswith("-") or len(value) > 256:
                raise BadInput(f"run option {option} needs a value")
            out.append(value)
    return out


def _store_project(folder: Path, files: object) -> None:
    """Write the sent files under ``folder`` (the user's projects folder), each whole (a temp file, renamed)."""
    if not isinstance(files, dict) or not 0 < len(files) <= service.MAX_PROJECT_FILES:
        raise BadInput(f"'files': the pipeline and its notebooks, at most {service.MAX_PROJECT_FILES}")
    decoded, total = {}, 0
    for name, content in files.items():
        if not isinstance(content, str):
            raise BadInput(f"project file {name!r}: its content must be base64 text")
        try:
            data = base64.b64decode(content, validate=True)
        except ValueError:
            raise BadInput(f"project file {name!r}: its content is not base64") from None
        total += len(data)
        if total > service.MAX_PROJECT_BYTES:
            raise BadInput(f"the project is over {service.MAX_PROJECT_BYTES // (1024 * 1024)} MB")
        decoded[_relative(name)] = data
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    for relative, data in decoded.items():
        target = folder.joinpath(*relative.parts)
        target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        if target.is_symlink() or not target.resolve().is_relative_to(folder.resolve()):
            raise BadInput(f"project file {relative}: not inside the project")
        tmp = target.with_name(f".{target.name}.upload")
        tmp.unlink(missing_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, target)


async def run_project(request: Request) -> Response:
    """``research-kit run`` for a client: its project stored in ``projects/USER/``, then run there as the user."""
    found = await _session(request)
    if isinstance(found, Response):
        return found
    token, session = found
    ws = workspace(request)
    folder = ws.root / service.PROJECTS / session.user.name
    try:
        data = await _body(request)
        pipeline = _relative(data.get("pipeline"))
        options = _options(data.get("options", []))
        columns = data.get("columns", 100)
        columns = columns if isinstance(columns, int) and 40 <= columns <= 400 else 100
        files = data.get("files")
        if not isinstance(files, dict) or str(pipeline) not in files:
            raise BadInput("'files' must hold the pipeline file itself")
        await run_in_threadpool(_store_project, folder, files)
    except UserError as exc:
        return _error(str(exc), status_of(exc))
    argv = [service.RUN, str(folder.joinpath(*pipeline.parts)), *options]
    ran = await run_in_threadpool(_run, str(ws.root), token, argv, "", columns)
    return _json(ran)


ROUTES = [
    Route(f"{service.API}/login", login, methods=["POST"]),
    Route(f"{service.API}/logout", logout, methods=["POST"]),
    Route(f"{service.API}/whoami", whoami, methods=["GET"]),
    Route(f"{service.API}/requests", requests_list, methods=["GET"]),
    Route(f"{service.API}/requests/{{request_id:int}}", request_one, methods=["GET"]),
    Route(f"{service.API}/budgets", budgets_visible, methods=["GET"]),
    Route(f"{service.API}/command", command, methods=["POST"]),
    Route(f"{service.API}/run", run_project, methods=["POST"]),
]
