"""Review requests: a study's outputs on their way out, and the committee's votes on them.

A request moves ``pending -> submitted -> (approved | rejected | returned) -> released``:

- the runner puts each new moderately_sensitive output of a study into the
  study's open request (a new ``pending`` one if none is open), checks it at
  once (:mod:`research_kit.disclosure.checks`) and records its author: whoever
  ran the pipeline (a ``rerun``'s outputs belong to the researcher who
  registered the study);
- the author submits it (``returned`` requests too, once revised); a
  request whose outputs are all gated cannot be submitted;
- each committee member votes per output. An output is approved with
  ``[review].approvals_required`` approvals from distinct committee members,
  none of them its author; approving an output the SDC checks fail needs a
  comment saying why. When every output that is not gated is approved, the
  request is ``approved``. A reject closes the request (``rejected``); a
  return sends it back to the author (``returned``); both need a comment;
- a changed output (a new run's version, or a mitigation) is a new version
  in the request: the old one's votes no longer count, and an approved
  request goes back to ``submitted``.

Comments are private to the committee or visible to the researcher. Every
check, vote, comment, submission and mitigation is in the audit log, with
its actor, in the same transaction as the catalog change.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, get_args

from research_kit.core import owners, users
from research_kit.core.catalog import row_id
from research_kit.core.errors import MissingData
from research_kit.core.permissions import Person, Role
from research_kit.core.workspace import Workspace
from research_kit.disclosure.checks import STATUSES
from research_kit.disclosure.results import OutputChecks

State = Literal["pending", "submitted", "returned", "approved", "rejected", "released"]
STATES: tuple[State, ...] = get_args(State)
OPEN: tuple[State, ...] = ("pending", "submitted", "returned", "approved")  # a run's new outputs join these
VISIBILITIES = ("committee", "researcher")
DECISIONS = ("approve", "reject", "return")


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass
class Output:
    id: int
    action: str
    name: str
    path: Path
    sha256: str
    sensitivity: str
    author: str
    extract: str
    status: str
    checks: OutputChecks
    queue: int | None
    approvals: list[str] = field(default_factory=list)
    rejections: list[str] = field(default_factory=list)

    @property
    def key(self) -> str:
        return f"{self.action}/{self.name}"


@dataclass
class Comment:
    author: str
    visibility: str
    body: str
    at: str
    output: str | None


@dataclass
class Request:
    id: int
    study: str
    author: str
    state: str
    created_at: str
    updated_at: str
    submitted_at: str | None
    released_at: str | None
    bundle: str | None
    outputs: list[Output]
    comments: list[Comment]
    approvals_required: int

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(STATUSES, 0)
        for o in self.outputs:
            out[o.status] += 1
        return out

    @property
    def reviewable(self) -> list[Output]:
        return [o for o in self.outputs if o.status != "gated"]


def get(ws: Workspace, request_id: int, *, viewer: str | None = None) -> Request:
    """A request with its current outputs, votes, and the comments ``viewer`` may read."""
    with ws.catalog() as conn:
        return read_request(conn, ws, request_id, viewer)


def read_request(conn: sqlite3.Connection, ws: Workspace, request_id: int, viewer: str | None) -> Request:
    if not row_id(request_id):
        raise MissingData(f"no review request {request_id}")
    row = conn.execute("SELECT * FROM requests WHERE id = ?", (request_id,)).fetchone()
    if row is None:
        raise MissingData(f"no review request {request_id}")
    outputs = []
    for o in conn.execute(
        "SELECT * FROM request_outputs WHERE request = ? AND active = 1 ORDER BY action, name", (request_id,)
    ):
        output = Output(
            o["id"], o["action"], o["name"], Path(o["path"]), o["sha256"], o["sensitivity"], o["author"],
            o["extract"], o["status"], OutputChecks.from_json(json.loads(o["checks"])), o["queue"],
        )  # fmt: skip
        for v in conn.execute("SELECT member, vote FROM votes WHERE output = ? ORDER BY at, id", (o["id"],)):
            (output.approvals if v["vote"] == "approve" else output.rejections).append(v["member"])
        outputs.append(output)
    by_id = {o.id: o.key for o in outputs}
    # Committee-private comments: for the committee and stewards, never for the request's author or the study's
    # owners, whatever other roles they hold.
    sees_private = viewer is None or (
        bool(active_roles(conn, viewer) & {"committee", "steward"})
        and viewer != row["author"]
        and viewer not in owners.owners(conn, row["study"])
    )
    comments = [
        Comment(c["author"], c["visibility"], c["body"], c["at"], by_id.get(c["output"]) if c["output"] else None)
        for c in conn.execute("SELECT * FROM comments WHERE request = ? ORDER BY id", (request_id,))
        if sees_private or c["visibility"] == "researcher"
    ]
    return Request(
        row["id"], row["study"], row["author"], row["state"], row["created_at"], row["updated_at"],
        row["submitted_at"], row["released_at"], row["bundle"], outputs, comments,
        ws.policy().review.approvals_required,
    )  # fmt: skip


def person(conn: sqlite3.Connection, name: str, request: Request) -> Person:
    """``name`` as :mod:`research_kit.core.permissions` sees them for ``request``: roles, author, owner."""
    user = users.get(conn, name)
    active = user is None or user.active  # a disabled user may do nothing; a name that is no user holds no role
    standing = "" if user is not None and active else "disabled" if user is not None else "not a user of this workspace"
    roles = frozenset(Role(r) for r in user.roles) if user is not None and active else frozenset()
    owner = name in owners.owners(conn, request.study)
    return Person(name, roles, author=request.author == name, owner=owner, standing=standing, active=active)


def active_roles(conn: sqlite3.Connection, name: str) -> frozenset[str]:
    user = users.get(conn, name)
    return user.roles if user is not None and user.active else frozenset()


def all_requests(ws: Workspace, *, states: tuple[str, ...] = (), study: str | None = None) -> list[Request]:
    with ws.catalog() as conn:
        sql, args = "SELECT id FROM requests WHERE 1 = 1", []
        if states:
            sql += f" AND state IN ({','.join('?' * len(states))})"
            args += list(states)
        if study:
            sql += " AND study = ?"
            args.append(study)
        ids = [r["id"] for r in conn.execute(sql + " ORDER BY id", args)]
        return [read_request(conn, ws, i, None) for i in ids]


def studies_authored_by(ws: Workspace, name: str) -> set[str]:
    """The studies ``name`` has asked outputs out of."""
    with ws.catalog() as conn:
        return {r[0] for r in conn.execute("SELECT DISTINCT study FROM requests WHERE author = ?", (name,))}


def output(request: Request, name: str) -> Output:
    """An output of the request by ``ACTION/NAME`` or by ``NAME`` when that is unique."""
    found = [o for o in request.outputs if name in (o.key, o.name)]
    if len(found) != 1:
        names = ", ".join(o.key for o in request.outputs)
        raise MissingData(
            f"request {request.id} has {'no' if not found else 'more than one'} output {name!r} ({names})"
        )
    return found[0]


def provenance(ws: Workspace, output: Output) -> dict[str, Any]:
    """Where an output came from: pipeline, notebook, parameters, extract, commit, run."""
    with ws.catalog() as conn:
        row = conn.execute(
            "SELECT r.*, q.run_id, q.diff FROM review_queue q JOIN action_results r ON r.cache_key = q.cache_key"
            " WHERE q.id = ?",
            (output.queue,),
        ).fetchone()
        if row is None:
            return {}
        run = conn.execute("SELECT pipeline, actor, trigger FROM runs WHERE id = ?", (row["run_id"],)).fetchone()
    return {
        "pipeline": run["pipeline"] if run else None,
        "run": row["run_id"],
        "trigger": run["trigger"] if run else None,
        "notebook": row["notebook"],
        "parameters": json.loads(row["parameters"]),
        "extract": row["extract"],
        "git_commit": row["git_commit"],
        "finished_at": row["finished_at"],
        "diff": None if row["diff"] is None else json.loads(row["diff"]),
    }
