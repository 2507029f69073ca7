"""The command line as a client of ``research-kit serve`` (the service mode): ``RESEARCH_KIT_URL`` is set.

``login`` and ``logout`` talk to the server's JSON API and keep the token as
the embedded mode does (the caller's runtime folder, mode 0600, one file per
server address). Each command of
:data:`~research_kit.core.service.REMOTE_COMMANDS` is sent whole to the server,
which runs it as the signed-in user and sends back what it printed and its
exit code; ``--as NAME`` picks among the caller's sign-ins at that server and
is not sent. Every other command runs on the server's machine only, and is
refused here in one line. Nothing here opens the workspace.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import sys
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from research_kit.core import identity, service
from research_kit.core.errors import BadInput, MissingData, PolicyRefusal, UserError

TIMEOUT_SECONDS = 3700  # a little longer than the server lets a command run
WIDEST = 400  # the most columns the server draws its output in


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect is an error: the token (and a password) go to the address the user gave, nowhere else."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def server_url(value: str) -> str:
    """``RESEARCH_KIT_URL`` checked: http on loopback, or https anywhere; without a trailing slash."""
    parts = urlsplit(value)
    loopback = parts.hostname in ("127.0.0.1", "localhost", "::1")
    if parts.scheme not in ("http", "https") or not parts.hostname or (parts.scheme == "http" and not loopback):
        raise BadInput(
            f"{service.URL_ENV}={value!r}: give http://127.0.0.1:PORT (the server on this machine) or an "
            "https:// address"
        )
    return value.rstrip("/")


def _call(url: str, path: str, body: dict[str, Any] | None, token: str | None = None) -> tuple[int, dict[str, Any]]:
    data = None if body is None else json.dumps(body).encode("utf-8")
    headers = {"content-type": "application/json", **({"authorization": f"Bearer {token}"} if token else {})}
    request = urllib.request.Request(f"{url}{service.API}{path}", data=data, headers=headers,
                                     method="GET" if body is None else "POST")  # fmt: skip
    try:
        with _OPENER.open(request, timeout=TIMEOUT_SECONDS) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        try:
            return error.code, json.loads(error.read() or b"{}")
        except ValueError:
            return error.code, {"error": f"the server answered {error.code}"}
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise BadInput(f"cannot reach {url} ({reason}): is 'research-kit serve' running there?") from None


def _refusal(status: int, answer: dict[str, Any]) -> UserError:
    message = str(answer.get("error") or f"the server answered {status}")
    if status == 404:
        return MissingData(message)
    if status in (401, 403):
        return PolicyRefusal(message)
    return BadInput(message)


def split_as(argv: list[str]) -> tuple[str | None, list[str]]:
    """``--as NAME`` (or ``--as=NAME``) before the command, and the rest."""
    rest, as_name = list(argv), None
    while rest and (rest[0] == "--as" or rest[0].startswith("--as=")):
        if rest[0] == "--as":
            if len(rest) < 2:
                raise BadInput("--as needs a user name")
            as_name, rest = rest[1], rest[2:]
        else:
            as_name, rest = rest[0].split("=", 1)[1], rest[1:]
    return as_name, rest


LOCAL = ("login", "logout")  # what a client runs itself (talking to the server's API)


def sends(argv: list[str]) -> bool:
    """Whether ``argv`` is a command this client sends to the server; a command that runs on the server's
    machine only is refused in one line (--help, login and logout run here)."""
    _, rest = split_as(argv)
    if not rest or rest[0] in ("--help", "-h", "--version") or rest[0] in LOCAL:
        return False
    if rest[0] not in service.REMOTE_COMMANDS and rest[0] != service.RUN:
        if rest[-1] in ("--help", "-h") and len(rest) <= 3 and not any(a.startswith("-") for a in rest[1:-1]):
            return False  # 'COMMAND [SUBCOMMAND] --help': its help, shown here; nothing runs
        raise BadInput(
            f"{service.URL_ENV} is set: research-kit {rest[0]} runs on the server's machine only (a client sends: "
            f"{', '.join(sorted(service.REMOTE_COMMANDS | {service.RUN}))}, login and logout)"
        )
    return True


def _token(url: str, as_name: str | None) -> tuple[str, str]:
    tokens = identity.stored_tokens(url)
    if as_name is not None:
        if as_name not in tokens:
            raise PolicyRefusal(
                f"--as {as_name}: you are not signed in as {as_name!r} at {url}: research-kit login {as_name}"
            )
        return as_name, tokens[as_name]
    if len(tokens) == 1:
        return next(iter(tokens.items()))
    if tokens:
        raise PolicyRefusal(f"you are signed in at {url} as {', '.join(sorted(tokens))}: say which with --as NAME")
    raise PolicyRefusal(f"sign in first: research-kit login NAME (at {url})")


def forward(url: str, argv: list[str]) -> int:
    """Run ``argv`` on the server as the signed-in user; print what it printed; its exit code."""
    as_name, rest = split_as(argv)
    name, token = _token(url, as_name)
    columns = _columns()
    if rest[0] == service.RUN:
        path, body = "/run", {**_project(rest[1:]), "columns": columns}
    else:
        stdin = sys.stdin.read(service.MAX_STDIN_CHARS + 1) if "--password-stdin" in rest else ""
        path, body = "/command", {"argv": rest, "stdin": stdin, "columns": columns}
    status, answer = _call(url, path, body, token)
    if status == 401:
        identity.store_tokens(url, {n: t for n, t in identity.stored_tokens(url).items() if n != name})
        raise PolicyRefusal(f"your sign-in as {name} at {url} has ended: research-kit login {name}")
    if status != 200:
        raise _refusal(status, answer)
    sys.stdout.write(str(answer.get("stdout", "")))
    sys.stderr.write(str(answer.get("stderr", "")))
    return int(answer.get("exit_code", 1))


def _columns() -> int:
    """The width the server draws for: ``COLUMNS``, else this terminal's; into a pipe or a file, the widest it
    draws, so that a table's cells come whole (as they do without the server)."""
    if sys.stdout.isatty() or os.environ.get("COLUMNS", "").isdigit():
        return shutil.get_terminal_size((100, 24)).columns
    return WIDEST


def _project(args: list[str]) -> dict[str, Any]:
    """``run``'s arguments as sent: its options, and the pipeline file with the notebooks it names, relative to
    the project's folder (the one above ``pipelines/``), as base64."""
    from research_kit.studies.spec import load_pipeline, project_root

    pipeline_file, options, items = None, [], iter(args)
    for arg in items:
        if arg in service.RUN_OPTIONS:
            options.append(arg)
            if service.RUN_OPTIONS[arg]:
                options.append(next(items, ""))
        elif arg.startswith("-"):
            raise BadInput(f"run {arg}: a client sends {', '.join(service.RUN_OPTIONS)}")
        elif pipeline_file is None:
            pipeline_file = Path(arg)
        else:
            raise BadInput(f"run: one pipeline file, not {arg!r} as well")
    if pipeline_file is None:
        raise BadInput("run: name the pipeline file (YAML)")
    pipeline = load_pipeline(pipeline_file)  # checked here first: a mistake is named before anything is sent
    root = project_root(pipeline.path.resolve())
    files = {}
    for path in [pipeline.path, *(a.notebook for a in pipeline.actions.values())]:
        full = path.resolve()
        if not full.is_relative_to(root):
            raise BadInput(f"{path}: outside the project {root}; a client sends only the project's own files")
        files[full.relative_to(root).as_posix()] = base64.b64encode(full.read_bytes()).decode("ascii")
    return {"pipeline": pipeline.path.resolve().relative_to(root).as_posix(), "files": files, "options": options}


def login(url: str, name: str, password: str, *, code: str | None, ask_code: Callable[[], str]) -> str:
    """Sign in at the server; the user's roles as one word. ``ask_code()`` gets a one-time code when one is
    needed (codes are set up in person on the server's machine, never through here)."""
    body: dict[str, Any] = {"name": name, "password": password, "code": code}
    status, answer = _call(url, "/login", body)
    if status == 401 and answer.get("code_needed") and not answer.get("enrol"):
        body["code"] = code or ask_code()
        status, answer = _call(url, "/login", body)
    if status != 200:
        raise _refusal(status, answer)
    tokens = identity.stored_tokens(url)
    old = tokens.get(name)
    tokens[name] = str(answer["token"])
    identity.store_tokens(url, tokens)
    if old:
        _call(url, "/logout", {}, old)
    return ", ".join(answer.get("roles", []))


def logout(url: str, name: str | None) -> list[str]:
    tokens = identity.stored_tokens(url)
    if name is not None and name not in tokens:
        raise PolicyRefusal(f"not signed in as {name!r} at {url}")
    ended = [name] if name is not None else sorted(tokens)
    for who in ended:
        _call(url, "/logout", {}, tokens.pop(who))
    identity.store_tokens(url, tokens)
    return ended
