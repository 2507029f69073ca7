"""Review requests: a study's outputs on their way out, and the committee's votes on them.

A request moves ``pending -> submitted -> (approved | rejected | returned) -> released``:

- the runner puts each new moderately_sensitive output of a study into the
  study's open request (a new ``pending`` one if none is open), checks it at
  once (:mod:`research_kit.outputs.checks`) and records its author: whoever
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

import hashlib
import json
import os
import sqlite3
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from research_kit import audit
from research_kit.catalog import transaction
from research_kit.checksums import file_sha256
from research_kit.errors import BadInput, MissingData, PolicyRefusal
from research_kit.outputs import checks as checks_mod
from research_kit.outputs import mitigate as mitigate_mod
from research_kit.outputs import sdc, users
from research_kit.outputs import sidecar as sc
from research_kit.workspace import Workspace

OPEN = ("pending", "submitted", "returned", "approved")
VISIBILITIES = ("committee", "researcher")


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
    checks: dict[str, Any]
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
        out = dict.fromkeys(checks_mod.STATUSES, 0)
        for o in self.outputs:
            out[o.status] += 1
        return out

    @property
    def reviewable(self) -> list[Output]:
        return [o for o in self.outputs if o.status != "gated"]


# -- the runner's side ----------------------------------------------------------------------------------------------


def collect(conn: sqlite3.Connection, ws: Workspace, study: str, run_id: int) -> int | None:
    """Put the outputs queued by run ``run_id`` into the study's open request and check them; its id."""
    queued = conn.execute(
        "SELECT q.id, q.action, q.name, q.sha256, q.extract, o.path, o.sensitivity, r.folder"
        " FROM review_queue q JOIN action_outputs o ON o.cache_key = q.cache_key AND o.name = q.name"
        " JOIN action_results r ON r.cache_key = q.cache_key"
        " WHERE q.run_id = ? AND q.study = ? ORDER BY q.id",
        (run_id, study),
    ).fetchall()
    if not queued:
        return None
    author = _author(conn, study, run_id)
    with transaction(conn):
        request = conn.execute(
            f"SELECT id, state FROM requests WHERE study = ? AND state IN ({','.join('?' * len(OPEN))})"
            " ORDER BY id DESC LIMIT 1",
            (study, *OPEN),
        ).fetchone()
        if request is None:
            cursor = conn.execute(
                "INSERT INTO requests (study, author, state, created_at, updated_at) VALUES (?, ?, 'pending', ?, ?)",
                (study, author, now(), now()),
            )
            request_id = int(cursor.lastrowid or 0)
            audit.append(conn, ws.audit_path, "request.open", {"request": request_id, "study": study})
        else:
            request_id = int(request["id"])
        for row in queued:
            path = Path(row["folder"]) / "outputs" / row["path"]
            _add_version(conn, request_id, row["action"], row["name"], path, row["sha256"], row["sensitivity"],
                         author, row["extract"], queue=int(row["id"]))  # fmt: skip
        _check(conn, ws, request_id)
    return request_id


def _author(conn: sqlite3.Connection, study: str, run_id: int) -> str:
    run = conn.execute("SELECT actor, trigger FROM runs WHERE id = ?", (run_id,)).fetchone()
    if run["trigger"] == "rerun":
        registered = conn.execute("SELECT registered_by FROM pipelines WHERE study = ?", (study,)).fetchone()
        if registered is not None:
            return str(registered["registered_by"])
    return str(run["actor"])


def _add_version(
    conn: sqlite3.Connection,
    request_id: int,
    action: str,
    name: str,
    path: Path,
    sha256: str,
    sensitivity: str,
    author: str,
    extract: str,
    *,
    queue: int | None,
) -> int:
    """A new version of an output in the request; the previous one (and its votes) retired."""
    conn.execute(
        "UPDATE request_outputs SET active = 0 WHERE request = ? AND action = ? AND name = ? AND active = 1",
        (request_id, action, name),
    )
    cursor = conn.execute(
        "INSERT INTO request_outputs (request, queue, action, name, path, sha256, sensitivity, author, extract,"
        " status, checks, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'review', '{}', ?)",
        (request_id, queue, action, name, str(path), sha256, sensitivity, author, extract, now()),
    )
    state = conn.execute("SELECT state FROM requests WHERE id = ?", (request_id,)).fetchone()["state"]
    if state == "approved":  # a changed output needs its votes again
        conn.execute("UPDATE requests SET state = 'submitted' WHERE id = ?", (request_id,))
    conn.execute("UPDATE requests SET updated_at = ? WHERE id = ?", (now(), request_id))
    return int(cursor.lastrowid or 0)


def _check(conn: sqlite3.Connection, ws: Workspace, request_id: int) -> dict[str, int]:
    """Run every check on the request's current outputs; store and audit the results."""
    rows = conn.execute(
        "SELECT * FROM request_outputs WHERE request = ? AND active = 1 ORDER BY action, name", (request_id,)
    ).fetchall()
    items = [checks_mod.Item(f"{r['action']}/{r['name']}", Path(r["path"]), r["sensitivity"]) for r in rows]
    released = [
        checks_mod.Item(f"request {r['request']}: {r['action']}/{r['name']}", Path(r["path"]), r["sensitivity"], True)
        for r in conn.execute(
            "SELECT o.* FROM request_outputs o JOIN requests q ON q.id = o.request"
            " WHERE q.state = 'released' AND o.active = 1 AND o.status != 'gated' AND o.request != ?",
            (request_id,),
        )
        if Path(r["path"]).is_file()
    ]
    checks_mod.check_items(items, released, ws.policy())
    summary: dict[str, int] = dict.fromkeys(checks_mod.STATUSES, 0)
    for row, item in zip(rows, items, strict=True):
        conn.execute(
            "UPDATE request_outputs SET status = ?, checks = ? WHERE id = ?",
            (item.status, json.dumps(item.checks, sort_keys=True), row["id"]),
        )
        summary[item.status] += 1
    audit.append(conn, ws.audit_path, "request.check", {"request": request_id, **summary})
    return summary


# -- reading ----------------------------------------------------------------------------------------------------------


def get(ws: Workspace, request_id: int, *, viewer: str | None = None) -> Request:
    """A request with its current outputs, votes, and the comments ``viewer`` may read."""
    with ws.catalog() as conn:
        return _get(conn, ws, request_id, viewer)


def _get(conn: sqlite3.Connection, ws: Workspace, request_id: int, viewer: str | None) -> Request:
    row = conn.execute("SELECT * FROM requests WHERE id = ?", (request_id,)).fetchone()
    if row is None:
        raise MissingData(f"no review request {request_id}")
    outputs = []
    for o in conn.execute(
        "SELECT * FROM request_outputs WHERE request = ? AND active = 1 ORDER BY action, name", (request_id,)
    ):
        output = Output(
            o["id"], o["action"], o["name"], Path(o["path"]), o["sha256"], o["sensitivity"], o["author"],
            o["extract"], o["status"], json.loads(o["checks"]), o["queue"],
        )  # fmt: skip
        for v in conn.execute("SELECT member, vote FROM votes WHERE output = ? ORDER BY at, id", (o["id"],)):
            (output.approvals if v["vote"] == "approve" else output.rejections).append(v["member"])
        outputs.append(output)
    by_id = {o.id: o.key for o in outputs}
    sees_private = viewer is None or _role(conn, viewer) in ("committee", "steward")
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


def _role(conn: sqlite3.Connection, name: str) -> str | None:
    user = users.get(conn, name)
    return user.role if user is not None and user.active else None


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
        return [_get(conn, ws, i, None) for i in ids]


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


# -- the researcher's side --------------------------------------------------------------------------------------------


def recheck(ws: Workspace, request_id: int) -> Request:
    """Run every check again (after a policy change, or a new release elsewhere)."""
    with ws.catalog() as conn:
        _get(conn, ws, request_id, None)
        with transaction(conn):
            _check(conn, ws, request_id)
        return _get(conn, ws, request_id, None)


def submit(ws: Workspace, request_id: int) -> Request:
    actor = audit.current_actor()
    with ws.catalog() as conn:
        request = _get(conn, ws, request_id, actor)
        if actor != request.author:
            raise PolicyRefusal(f"only the request's author ({request.author}) submits it")
        if request.state not in ("pending", "returned"):
            raise PolicyRefusal(f"request {request_id} is {request.state}: only a pending or returned one is submitted")
        with transaction(conn):
            _check(conn, ws, request_id)
            request = _get(conn, ws, request_id, actor)
            if not request.reviewable:
                raise PolicyRefusal(
                    f"request {request_id}: every output is gated; nothing to review ({_gated(request)})"
                )
            conn.execute(
                "UPDATE requests SET state = 'submitted', submitted_at = ?, updated_at = ? WHERE id = ?",
                (now(), now(), request_id),
            )
            audit.append(conn, ws.audit_path, "request.submit", {"request": request_id, **request.counts()})
        return _get(conn, ws, request_id, actor)


def _gated(request: Request) -> str:
    first = request.outputs[0]
    return f"{first.key}: {first.checks['gate']['reasons'][0]}" if request.outputs else "no outputs"


def mitigate(ws: Workspace, request_id: int, name: str, method: str, *, column: str | None = None) -> Output:
    """Apply a mitigation to an output on the author's request: a new version, its votes gone, recorded."""
    actor = audit.current_actor()
    with ws.catalog() as conn:
        request = _get(conn, ws, request_id, actor)
        if actor != request.author:
            raise PolicyRefusal(f"only the request's author ({request.author}) changes its outputs")
        if request.state in ("released", "rejected"):
            raise PolicyRefusal(f"request {request_id} is {request.state}")
        target = output(request, name)
        car = sc.read(target.path)
        if car is None or car.type != "table":
            raise BadInput(f"{target.key}: only tables declared with rk.outputs.table can be mitigated")
        frame = pd.read_csv(target.path)
        policy = ws.policy().sdc
        if method == "suppress":
            done = mitigate_mod.suppress(frame, car, sdc.check(frame, car, policy))
            if done.record.get("unprotected"):
                raise PolicyRefusal(
                    f"{target.key}: suppression cannot protect {len(done.record['unprotected'])} cell(s) of this "
                    "table (its zeros and margins pin them down): round it or roll it up instead"
                )
        elif method in ("round", "midpoint6"):
            done = mitigate_mod.round_counts(
                frame, car, method="base" if method == "round" else "midpoint6", base=policy.rounding_base
            )
        elif method == "roll-up":
            if not column:
                raise BadInput("--roll-up needs the ICD-10 column to roll up")
            done = mitigate_mod.roll_up(frame, car, column, policy)
        else:
            raise BadInput(f"mitigation {method!r}: use suppress, round, midpoint6 or roll-up")
        path = _mitigated_dir(ws, request, target) / target.path.name
        record = {**done.record, "by": actor, "at": now(), "from_sha256": target.sha256}
        new_car = sc.Sidecar(**{**car.__dict__, "rows": len(done.frame), "mitigations": [*car.mitigations, record]})
        if method == "roll-up" or len(done.frame) != len(frame):
            new_car = sc.Sidecar(**{**new_car.__dict__, "contributions": {}})  # cells merged: rows behind unknown
        tmp = path.with_name(f".{path.name}.tmp")
        done.frame.to_csv(tmp, index=False, lineterminator="\n")
        os.replace(tmp, path)
        path.chmod(0o444)
        sc.write(path, new_car)
        sha = file_sha256(path)
        with transaction(conn):
            new_id = _add_version(conn, request_id, target.action, target.name, path, sha, target.sensitivity,
                                  target.author, target.extract, queue=target.queue)  # fmt: skip
            audit.append(conn, ws.audit_path, "output.mitigate",
                         {"request": request_id, "output": target.key, "method": method, "sha256": sha,
                          "cells_changed": record.get("cells_changed")})  # fmt: skip
            _check(conn, ws, request_id)
        return next(o for o in _get(conn, ws, request_id, actor).outputs if o.id == new_id)


def _mitigated_dir(ws: Workspace, request: Request, target: Output) -> Path:
    folder = ws.root / "studies" / request.study / "mitigated" / f"request-{request.id}" / target.action
    version = 1
    while (folder / f"v{version}").exists():
        version += 1
    path = folder / f"v{version}"
    path.mkdir(parents=True)
    return path


# -- the committee's side ---------------------------------------------------------------------------------------------


def vote(
    ws: Workspace,
    request_id: int,
    decision: str,
    *,
    outputs: tuple[str, ...] = (),
    comment: str | None = None,
    private: bool = False,
) -> Request:
    """``approve`` (every reviewable output, or those named), ``reject`` or ``return`` the request."""
    if decision not in ("approve", "reject", "return"):
        raise BadInput(f"vote {decision!r}: use approve, reject or return")
    actor = audit.current_actor()
    comment = (comment or "").strip() or None
    with ws.catalog() as conn:
        users.require(conn, actor, "committee", doing="reviewing outputs")
        request = _get(conn, ws, request_id, actor)
        if request.state != "submitted":
            raise PolicyRefusal(f"request {request_id} is {request.state}: only a submitted request is reviewed")
        chosen = [output(request, n) for n in outputs] if outputs else request.reviewable
        for target in chosen:
            if target.author == actor:
                raise PolicyRefusal(f"{actor} is the author of {target.key}: an author never reviews their own outputs")
            if target.status == "gated":
                raise PolicyRefusal(
                    f"{target.key} is gated ({target.checks['gate']['reasons'][0]}): it cannot be reviewed"
                )
        if decision in ("reject", "return") and comment is None:
            raise BadInput(f"--comment: say why you {decision} the request (the researcher reads it)")
        if decision == "approve":
            failing = [t.key for t in chosen if t.status == "fail"]
            if failing and comment is None:
                raise BadInput(f"{failing[0]} fails the SDC checks: approving it needs a --comment saying why")
        with transaction(conn):
            for target in chosen:
                conn.execute(
                    "INSERT INTO votes (request, output, member, vote, at) VALUES (?, ?, ?, ?, ?)"
                    " ON CONFLICT(output, member) DO UPDATE SET vote = excluded.vote, at = excluded.at",
                    (request_id, target.id, actor, decision, now()),
                )
                audit.append(conn, ws.audit_path, f"review.{decision}",
                             {"request": request_id, "output": target.key, "sha256": target.sha256})  # fmt: skip
            if comment is not None:
                _comment(conn, ws, request_id, actor, comment, "committee" if private else "researcher", None)
            state = _state_after(conn, ws, request_id, decision)
            conn.execute("UPDATE requests SET state = ?, updated_at = ? WHERE id = ?", (state, now(), request_id))
            if state != "submitted":
                audit.append(conn, ws.audit_path, "request.state", {"request": request_id, "state": state})
        return _get(conn, ws, request_id, actor)


def _state_after(conn: sqlite3.Connection, ws: Workspace, request_id: int, decision: str) -> str:
    if decision == "reject":
        return "rejected"
    if decision == "return":
        return "returned"
    request = _get(conn, ws, request_id, None)
    needed = request.approvals_required
    return "approved" if all(len(set(o.approvals)) >= needed for o in request.reviewable) else "submitted"


def comment(
    ws: Workspace, request_id: int, body: str, *, private: bool = False, output_name: str | None = None
) -> None:
    """A comment on a request (or one of its outputs): committee-private, or visible to the researcher."""
    actor = audit.current_actor()
    body = body.strip()
    if not body:
        raise BadInput("an empty comment")
    with ws.catalog() as conn:
        request = _get(conn, ws, request_id, actor)
        role = _role(conn, actor)
        if role != "committee" and actor != request.author:
            raise PolicyRefusal(f"{actor} may not comment on request {request_id}")
        if private and role != "committee":
            raise PolicyRefusal("only committee members write private comments")
        target = output(request, output_name).id if output_name else None
        with transaction(conn):
            _comment(conn, ws, request_id, actor, body, "committee" if private else "researcher", target)


def _comment(
    conn: sqlite3.Connection, ws: Workspace, request_id: int, actor: str, body: str, visibility: str, target: int | None
) -> None:
    conn.execute(
        "INSERT INTO comments (request, output, author, visibility, body, at) VALUES (?, ?, ?, ?, ?, ?)",
        (request_id, target, actor, visibility, body, now()),
    )
    # The comment's text stays in the catalog; the audit log records that it was made, and its hash.
    audit.append(conn, ws.audit_path, "review.comment",
                 {"request": request_id, "visibility": visibility, "sha256": _text_hash(body)})  # fmt: skip


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
