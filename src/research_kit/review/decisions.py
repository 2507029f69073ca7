"""What people decide on a request: its author submits, mitigates and comments; the committee votes.

Every decision is checked against the acting user's role and the request's
state, and recorded in the audit log in the same transaction as the catalog
change.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
from pathlib import Path

import pandas as pd

from research_kit.core import audit, permissions, permits
from research_kit.core.catalog import transaction
from research_kit.core.checksums import file_sha256
from research_kit.core.errors import BadInput, PolicyRefusal
from research_kit.core.permissions import Act, State
from research_kit.core.workspace import Workspace
from research_kit.disclosure import mitigate as mitigate_mod
from research_kit.outputs import sidecar as sc
from research_kit.review.intake import add_version, check_request
from research_kit.review.requests import DECISIONS, Output, Request, now, output, person, read_request


def submit(ws: Workspace, request_id: int) -> Request:
    actor = audit.current_actor()
    with ws.catalog() as conn:
        request = read_request(conn, ws, request_id, actor)
        _check(conn, Act.SUBMIT, request, actor)
        permits.check(conn, request.study, actor, tier="twin", doing="submitting its outputs", after_end=True)
        with transaction(conn):
            check_request(conn, ws, request_id)
            request = read_request(conn, ws, request_id, actor)
            if not request.reviewable:
                raise PolicyRefusal(
                    f"request {request_id}: every output is gated; nothing to review ({_gated(request)})"
                )
            conn.execute(
                "UPDATE requests SET state = ?, submitted_at = ?, updated_at = ? WHERE id = ?",
                (permissions.next_state(Act.SUBMIT, State(request.state)), now(), now(), request_id),
            )
            audit.append(conn, ws.audit_path, "request.submit", {"request": request_id, **request.counts()})
        return read_request(conn, ws, request_id, actor)


def _check(conn: sqlite3.Connection, act: Act, request: Request, actor: str) -> None:
    """The one permissions table (:mod:`research_kit.core.permissions`) says whether ``actor`` may."""
    permissions.check(act, State(request.state), person(conn, actor, request), request=request.id,
                      author=request.author)  # fmt: skip


def _gated(request: Request) -> str:
    first = request.outputs[0]
    return f"{first.key}: {first.checks.gate.reasons[0]}" if request.outputs else "no outputs"


def mitigate(ws: Workspace, request_id: int, name: str, method: str, *, column: str | None = None) -> Output:
    """Apply a mitigation to an output on the author's request: a new version, its votes gone, recorded."""
    actor = audit.current_actor()
    with ws.catalog() as conn:
        request = read_request(conn, ws, request_id, actor)
        _check(conn, Act.MITIGATE, request, actor)
        target = output(request, name)
        car = sc.read(target.path)
        if car is None or car.type != "table":
            raise BadInput(f"{target.key}: only tables declared with rk.outputs.table can be mitigated")
        mitigation = mitigate_mod.get_mitigation(method)
        frame = pd.read_csv(target.path)
        done = mitigation(frame, car, ws.policy().sdc, column=column)
        path = _mitigated_dir(ws, request, target) / target.path.name
        record = {**done.record, "by": actor, "at": now(), "from_sha256": target.sha256}
        new_car = sc.Sidecar(**{**car.__dict__, "rows": len(done.frame), "mitigations": [*car.mitigations, record]})
        if not done.rows_kept or len(done.frame) != len(frame):
            new_car = sc.Sidecar(**{**new_car.__dict__, "contributions": {}})  # cells merged: rows behind unknown
        tmp = path.with_name(f".{path.name}.tmp")
        done.frame.to_csv(tmp, index=False, lineterminator="\n")
        os.replace(tmp, path)
        path.chmod(0o444)
        sc.write(path, new_car)
        sha = file_sha256(path)
        with transaction(conn):
            new_id = add_version(conn, request_id, target.action, target.name, path, sha, target.sensitivity,
                                  target.author, target.extract, queue=target.queue)  # fmt: skip
            audit.append(conn, ws.audit_path, "output.mitigate",
                         {"request": request_id, "output": target.key, "method": method, "sha256": sha,
                          "cells_changed": record.get("cells_changed")})  # fmt: skip
            check_request(conn, ws, request_id)
        return next(o for o in read_request(conn, ws, request_id, actor).outputs if o.id == new_id)


def _mitigated_dir(ws: Workspace, request: Request, target: Output) -> Path:
    folder = ws.root / "studies" / request.study / "mitigated" / f"request-{request.id}" / target.action
    version = 1
    while (folder / f"v{version}").exists():
        version += 1
    path = folder / f"v{version}"
    path.mkdir(parents=True)
    return path


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
    if decision not in DECISIONS:
        raise BadInput(f"vote {decision!r}: use approve, reject or return")
    actor = audit.current_actor()
    comment = _text(ws, comment or "") or None
    with ws.catalog() as conn:
        request = read_request(conn, ws, request_id, actor)
        _check(conn, Act(decision), request, actor)
        chosen = [output(request, n) for n in outputs] if outputs else request.reviewable
        for target in chosen:
            if target.author == actor:
                raise PolicyRefusal(f"{actor} is the author of {target.key}: an author never reviews their own outputs")
            if target.status == "gated":
                raise PolicyRefusal(f"{target.key} is gated ({target.checks.gate.reasons[0]}): it cannot be reviewed")
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
            state = permissions.next_state(
                Act(decision), State(request.state), _state_after(conn, ws, request_id, decision)
            )
            conn.execute("UPDATE requests SET state = ?, updated_at = ? WHERE id = ?", (state, now(), request_id))
            if state != "submitted":
                audit.append(conn, ws.audit_path, "request.state", {"request": request_id, "state": state})
        return read_request(conn, ws, request_id, actor)


def _state_after(conn: sqlite3.Connection, ws: Workspace, request_id: int, decision: str) -> State | None:
    """Which of an approval's possible states it leads to: approved once every output has its approvals."""
    if decision != "approve":
        return None
    request = read_request(conn, ws, request_id, None)
    needed = request.approvals_required
    return State.APPROVED if all(len(set(o.approvals)) >= needed for o in request.reviewable) else State.SUBMITTED


def comment(
    ws: Workspace, request_id: int, body: str, *, private: bool = False, output_name: str | None = None
) -> None:
    """A comment on a request (or one of its outputs): committee-private, or visible to the researcher."""
    actor = audit.current_actor()
    body = _text(ws, body)
    if not body:
        raise BadInput("an empty comment")
    with ws.catalog() as conn:
        request = read_request(conn, ws, request_id, actor)
        _check(conn, Act.COMMENT_PRIVATELY if private else Act.COMMENT, request, actor)
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


def _text(ws: Workspace, text: str) -> str:
    """A comment as kept: stripped, and no longer than ``[review].max_comment_chars``."""
    text = text.strip()
    limit = ws.policy().review.max_comment_chars
    if len(text) > limit:
        raise BadInput(f"the comment is {len(text):,} characters long; at most {limit:,} are kept ([review])")
    return text


def _text_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()
