"""The JSON API of ``research-kit serve`` (:data:`~research_kit.core.service.API`): the same actions as the pages.

Credential: the token ``POST /api/v1/login`` returns (a command-line session,
as ``research-kit login`` makes), as ``Authorization: Bearer TOKEN``; no
cookie, so no CSRF. Every refusal is JSON ``{"error": "..."}`` with the
status :func:`~research_kit.web.http.status_of` gives.

- ``POST /login`` ``{"name", "password", "code"?}`` -> ``{"token", "user", "roles"}``; a committee member or
  steward without a code gets 401 with ``"code_needed": true``. One-time codes are never set up over the
  network (a password alone would then let whoever holds it take them over): someone without them gets 403
  and sets them up in person, signing in once on the server's machine;
- ``POST /logout``; ``GET /whoami``;
- ``GET /requests[?state=S]``, ``GET /requests/{id}``: the review requests the user may read, as JSON;
- ``GET /budgets``: the study budgets the user may see;
- ``POST /command`` ``{"argv", "stdin"?, "columns"?}`` -> ``{"exit_code", "stdout", "stderr"}``: one command of
  :data:`~research_kit.core.service.REMOTE_COMMANDS`, run on the server as the session's user;
- ``POST /run`` ``{"pipeline", "files": {path: base64}, "options"?, "columns"?}`` -> the same: the project kept in
  the workspace's ``projects/USER/`` (each file replaced whole), then ``research-kit run`` on it as the user.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import yaml
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

ENROL_IN_PERSON = (
    "one-time codes are set up in person, on the server's machine: the operator runs 'research-kit login NAME' "
    "there with you (or a steward resets them: research-kit users reset-codes NAME)"
)
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


class TooLarge(BadInput):
    status = 413


async def _body(request: Request, limit: int = service.MAX_BODY_BYTES) -> dict[str, Any]:
    """The request's JSON object, read no further than ``limit`` bytes (whatever Content-Length claims)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge(f"the request is over {limit:,} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge(f"the request is over {limit:,} bytes")
        chunks.append(chunk)
    try:
        data = json.loads(b"".join(chunks) or b"{}")
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
        code = _text(data, "code", required=False)
        if "enrol" in data:  # over the network a password alone would let whoever has it take the codes over
            raise BadInput(ENROL_IN_PERSON)
    except UserError as exc:
        return _error(str(exc), status_of(exc))
    ws = workspace(request)
    address = request.client.host if request.client else ""
    try:
        await run_in_threadpool(sessions.check_wait, ws, name, address)  # too soon after failures: refused unread
        token, session = await run_in_threadpool(
            lambda: sessions.sign_in(ws, name, password, address=address, code=code, kind="cli")
        )
    except sessions.CodeNeeded as needed:
        if needed.enrol:
            return _error(ENROL_IN_PERSON, 403, code_needed=True, enrol=True)
        return _error(str(needed), 401, code_needed=True, enrol=False)
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
    if any(a.split("=", 1)[0] in service.SERVER_ONLY_OPTIONS for a in argv):
        raise BadInput(f"{', '.join(service.SERVER_ONLY_OPTIONS)}: the server's operator chooses these, not a client")
    return argv


_RUNNING: dict[str, int] = {}  # commands running now, per user (this process serves every client)


async def _run(ws_root: str, token: str, user: str, argv: list[str], stdin: str, columns: int) -> Response:
    """Run ``research-kit ARGV`` for ``user`` in a process of its own, without holding a thread while it runs;
    at most :data:`~research_kit.core.service.COMMANDS_AT_ONCE` at once, two per user (429 beyond)."""
    if sum(_RUNNING.values()) >= service.COMMANDS_AT_ONCE or _RUNNING.get(user, 0) >= service.COMMANDS_PER_USER:
        return _error("the server is busy with your (or everyone's) other commands: try again when they end", 429)
    _RUNNING[user] = _RUNNING.get(user, 0) + 1
    try:
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
            process = await asyncio.create_subprocess_exec(
                sys.executable, "-I", "-m", "research_kit", *argv, stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env, cwd=private,
                start_new_session=True,
            )  # fmt: skip
            try:
                out, err = await asyncio.wait_for(process.communicate(stdin.encode("utf-8")), COMMAND_SECONDS)
            except (TimeoutError, asyncio.CancelledError):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                await process.wait()
                return _error(f"the command ran over {COMMAND_SECONDS} s and was stopped", 504)
    finally:
        _RUNNING[user] -= 1
    return _json(
        {"exit_code": process.returncode, "stdout": out.decode("utf-8", "replace"),
         "stderr": err.decode("utf-8", "replace")}
    )  # fmt: skip


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
    token, session = found
    return await _run(str(workspace(request).root), token, session.user.name, argv, stdin, columns)


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


def _private_dirs(base: Path, relative: PurePosixPath) -> Path:
    """``base/relative``'s folders made one by one, each 0700, none a symlink; the last of them."""
    current = base
    for part in relative.parts:
        current = current / part
        if current.is_symlink() or (current.exists() and not current.is_dir()):
            raise BadInput(f"project folder {relative}: a file of that name is in the way")
        current.mkdir(mode=0o700, exist_ok=True)
    return current


def _only_own_notebooks(staging: Path, pipeline: PurePosixPath, sent: set[PurePosixPath]) -> None:
    """Each notebook the pipeline names is one of the files sent with it (never a file of the server's, which
    reading would probe: an absolute path, a '..', another user's project)."""
    from research_kit.studies.spec import project_root

    try:
        data = yaml.safe_load(staging.joinpath(*pipeline.parts).read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError):
        return  # the pipeline's own check names the mistake
    actions = data.get("actions") if isinstance(data, dict) else None
    root = project_root(staging.joinpath(*pipeline.parts)).resolve()
    for name, action in (actions or {}).items() if isinstance(actions, dict) else ():
        notebook = action.get("notebook") if isinstance(action, dict) else None
        if not isinstance(notebook, str):
            continue
        where = (root / notebook).resolve()
        if (
            not where.is_relative_to(staging.resolve())
            or PurePosixPath(where.relative_to(staging.resolve()).as_posix()) not in sent
        ):
            raise BadInput(f"action {name}: its notebook must be one of the project's own files, sent with it")


def _store_project(folder: Path, pipeline: PurePosixPath, files: object) -> Path:
    """Check the sent project whole, then put its files under ``folder`` (the user's projects folder), each
    replaced whole; the stored pipeline file. A pipeline naming a notebook outside its project is refused before
    anything is written (on the server too, not only on the client)."""
    from research_kit.studies.spec import load_pipeline

    if not isinstance(files, dict) or not 0 < len(files) <= service.MAX_PROJECT_FILES:
        raise BadInput(f"'files': the pipeline and its notebooks, at most {service.MAX_PROJECT_FILES}")
    if str(pipeline) not in files:
        raise BadInput("'files' must hold the pipeline file itself")
    decoded: dict[PurePosixPath, bytes] = {}
    total = 0
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
    folder.parent.mkdir(mode=0o700, exist_ok=True)
    _private_dirs(folder.parent, PurePosixPath(folder.name))
    staging = Path(tempfile.mkdtemp(prefix=".upload-", dir=folder))
    try:
        for relative, data in decoded.items():
            target = _private_dirs(staging, relative.parent) / relative.name
            with open(target, "xb") as out:
                out.write(data)
        _only_own_notebooks(staging, pipeline, set(decoded))  # before anything opens a file the pipeline names
        load_pipeline(staging.joinpath(*pipeline.parts))
        for relative in decoded:
            target = _private_dirs(folder, relative.parent) / relative.name
            if target.is_symlink() or target.is_dir():
                raise BadInput(f"project file {relative}: a folder or link of that name is in the way")
            os.replace(staging.joinpath(*relative.parts), target)
    except OSError as exc:
        raise BadInput(f"the project could not be stored ({exc.strerror or exc})") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder.joinpath(*pipeline.parts)


async def run_project(request: Request) -> Response:
    """``research-kit run`` for a client: its project stored in ``projects/USER/``, then run there as the user."""
    found = await _session(request)
    if isinstance(found, Response):
        return found
    token, session = found
    ws = workspace(request)
    folder = ws.root / service.PROJECTS / session.user.name
    try:
        data = await _body(request, service.MAX_RUN_BODY_BYTES)
        pipeline = _relative(data.get("pipeline"))
        options = _options(data.get("options", []))
        columns = data.get("columns", 100)
        columns = columns if isinstance(columns, int) and 40 <= columns <= 400 else 100
        stored = await run_in_threadpool(_store_project, folder, pipeline, data.get("files"))
    except UserError as exc:
        return _error(str(exc), status_of(exc))
    return await _run(str(ws.root), token, session.user.name, [service.RUN, str(stored), *options], "", columns)


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
