"""The broker: what confined code may ask of the platform, answered outside the sandbox.

The sandbox holds no catalog, no ledger and no extract outside its view, so
``rk.dp`` inside it cannot answer a query itself. It sends the query's
specification over a Unix socket bound into the sandbox; the broker (a thread
of the process that started the action) checks that the study is the
action's own and the extract the action's, charges the ledger, runs the
query on the DP view and sends back the answer: noisy figures with their
intervals, and the ledger's id for it. Nothing else crosses: never a row,
never a path, and there is no request that grants budget, votes or writes the
catalog.

The protocol is in :mod:`research_kit.core.wire`, shared with the client inside.
"""

from __future__ import annotations

import json
import socketserver
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from research_kit.core.errors import BadInput, PolicyRefusal, UserError
from research_kit.core.wire import ERRORS, MAX_LIST, MAX_REQUEST_BYTES, REQUEST_KEYS, SPEC_KEYS


@dataclass(frozen=True)
class Grant:
    """What the broker answers for: one action's workspace, study, extract and actor (set by the runner)."""

    workspace: str
    study: str
    extract: str
    actor: str


def handle(grant: Grant, request: Any) -> dict[str, Any]:
    """Answer one request for ``grant``; a refusal is an answer too."""
    try:
        return {"ok": True, "answer": _answer(grant, request)}
    except UserError as exc:
        name = next((n for n, cls in ERRORS.items() if isinstance(exc, cls)), "PolicyRefusal")
        return {"ok": False, "error": name, "message": str(exc)}
    except Exception as exc:  # noqa: BLE001 - the kernel gets a name, never a traceback that could hold data
        return {"ok": False, "error": "internal", "message": f"the broker could not answer ({type(exc).__name__})"}


def _answer(grant: Grant, request: Any) -> dict[str, Any]:
    from research_kit import dp
    from research_kit.core.audit import acting
    from research_kit.core.workspace import open_workspace
    from research_kit.tiers import real_source

    if not isinstance(request, dict) or request.get("op") != "dp":
        raise BadInput("the broker answers DP queries only")
    unknown = set(request) - REQUEST_KEYS
    spec = request.get("spec") or {}
    if unknown or not isinstance(spec, dict) or set(spec) - SPEC_KEYS:
        raise BadInput(f"unknown field in the query: {sorted(unknown or set(spec) - SPEC_KEYS)[0]!r}")
    if request.get("tier") not in (None, "real"):
        raise PolicyRefusal("an action's queries run on its own extract (the real tier)")
    if request.get("extract") not in (None, grant.extract):
        raise PolicyRefusal(f"extract {request['extract']!r}: this action's queries run on {grant.extract!r}")
    for key in ("bounds", "candidates", "bins", "by", "where"):
        if isinstance(spec.get(key), list | dict | str) and len(spec[key]) > MAX_LIST:
            raise BadInput(f"{key}: at most {MAX_LIST} entries")
        if key in ("bounds", "candidates", "bins") and isinstance(spec.get(key), list):
            spec[key] = tuple(spec[key]) if key == "bounds" else list(spec[key])
    ws = open_workspace(Path(grant.workspace))
    with acting(grant.actor):
        answer = dp.answer_query(
            ws,
            str(request.get("kind")),
            str(request.get("table")),
            study=request.get("study"),
            pipeline_study=grant.study,
            rho=request.get("rho"),
            epsilon=request.get("epsilon"),
            preview=bool(request.get("preview")),
            reuse=bool(request.get("reuse")),
            source=real_source(ws, grant.extract),
            spec=spec,
        )
    return answer.to_dict()


class _Handler(socketserver.StreamRequestHandler):
    server: _Server
    timeout = 60  # a connection that sends nothing for this long is closed

    def handle(self) -> None:
        while True:
            line = self.rfile.readline(MAX_REQUEST_BYTES + 1)
            if not line:
                return
            if len(line) > MAX_REQUEST_BYTES:
                reply: dict[str, Any] = {"ok": False, "error": "BadInput", "message": "request too large"}
            else:
                try:
                    request = json.loads(line)
                except ValueError:
                    reply = {"ok": False, "error": "BadInput", "message": "a request is one JSON object per line"}
                else:
                    reply = handle(self.server.grant, request)
            self.wfile.write(json.dumps(reply, default=str).encode() + b"\n")
            self.wfile.flush()


class _Server(socketserver.UnixStreamServer):
    """One connection at a time: an action's queries queue; none runs beside another in the runner."""

    def __init__(self, path: str, grant: Grant) -> None:
        self.grant = grant
        super().__init__(path, _Handler)


class Broker:
    """A broker listening on ``path`` for one action, until :meth:`close`."""

    def __init__(self, path: Path, grant: Grant) -> None:
        self.path = path
        self._server = _Server(str(path), grant)
        path.chmod(0o666)  # the sandbox's uid connects to it; only the sandbox can see the folder
        self._thread = threading.Thread(target=self._server.serve_forever, name="rk-broker", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
        self.path.unlink(missing_ok=True)
