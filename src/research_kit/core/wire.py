"""The broker's wire protocol: what ``rk.dp`` inside a sandbox sends, and the reply it reads.

One JSON object per line each way (the broker side is :mod:`research_kit.sandbox.broker`)::

    -> {"op": "dp", "kind": "count", "table": "patients", "spec": {...}, "study": null, "rho": null, ...}
    <- {"ok": true, "answer": {... "id": 17 ...}}
    <- {"ok": false, "error": "PolicyRefusal", "message": "..."}
"""

from __future__ import annotations

import json
import socket
from typing import Any

from research_kit.core.errors import BadInput, MissingData, PolicyRefusal, UserError

MAX_REQUEST_BYTES = 1 << 20
MAX_LIST = 10_000  # bins, candidates, group columns, filter text: bounded work for the runner
ERRORS: dict[str, type[UserError]] = {e.__name__: e for e in (BadInput, MissingData, PolicyRefusal)}
SPEC_KEYS = frozenset(
    {"by", "where", "per_group", "max_groups", "signed", "column_name", "bounds", "candidates", "alpha", "bins"}
)
REQUEST_KEYS = frozenset(
    {"op", "kind", "table", "spec", "study", "rho", "epsilon", "preview", "reuse", "extract", "tier"}
)


def ask(path: str, request: dict[str, Any]) -> dict[str, Any]:
    """Send ``request`` to the broker at ``path`` (inside the sandbox); the answer, or the broker's refusal raised."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.connect(path)
            conn.sendall(json.dumps({"op": "dp", **request}).encode() + b"\n")
            with conn.makefile("rb") as reply_file:
                line = reply_file.readline()
    except OSError as exc:
        raise MissingData(f"the platform's broker is not reachable ({exc.strerror or exc})") from None
    if not line:
        raise MissingData("the platform's broker closed the connection without an answer")
    reply = json.loads(line)
    if reply.get("ok"):
        return dict(reply["answer"])
    raise ERRORS.get(reply.get("error", ""), PolicyRefusal)(str(reply.get("message", "refused")))
