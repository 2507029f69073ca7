"""A run's outputs enter review: the study's open request takes each new version, and every check runs.

The run action (:mod:`research_kit.actions.runs`) calls :func:`collect` after
the runner has queued a run's moderately_sensitive outputs; the checks of
:mod:`research_kit.disclosure` run at once, and again on :func:`recheck`.

Collecting is where a sandboxed run's outputs cross into review, so an
output's claim to be DP is verified there, against the ledger, before any
check reads its sidecar (:mod:`research_kit.review.dp_outputs`).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from pathlib import Path

from research_kit.core import audit, permissions
from research_kit.core.catalog import transaction
from research_kit.core.errors import BadInput
from research_kit.core.permissions import Act, State
from research_kit.core.workspace import Workspace
from research_kit.disclosure import checks as checks_mod
from research_kit.disclosure.results import CheckResult, result
from research_kit.outputs import sidecar as sc
from research_kit.review import dp_outputs
from research_kit.review.requests import OPEN, Request, now, read_request


def collect(conn: sqlite3.Connection, ws: Workspace, study: str, run_id: int) -> int | None:
    """Put the study's queued outputs that no request holds yet into its open request and check them; its id.

    Those of run ``run_id``, and any an earlier run queued but was stopped before collecting (a kill between
    the two steps): the next run of the study collects them, so no queued output is ever lost.
    """
    with transaction(conn):  # read and collected under one write lock: two runs never collect a row twice
        queued = conn.execute(
            "SELECT q.id, q.study, q.run_id, q.action, q.name, q.sha256, q.extract, o.path, o.sensitivity, r.folder"
            " FROM review_queue q JOIN action_outputs o ON o.cache_key = q.cache_key AND o.name = q.name"
            " JOIN action_results r ON r.cache_key = q.cache_key"
            " WHERE q.study = ?"
            " AND NOT EXISTS (SELECT 1 FROM request_outputs ro WHERE ro.queue = q.id) ORDER BY q.id",
            (study,),
        ).fetchall()
        if not queued:
            return None
        request = conn.execute(
            f"SELECT id, state FROM requests WHERE study = ? AND state IN ({','.join('?' * len(OPEN))})"
            " ORDER BY id DESC LIMIT 1",
            (study, *OPEN),
        ).fetchone()
        if request is None:
            cursor = conn.execute(
                "INSERT INTO requests (study, author, state, created_at, updated_at) VALUES (?, ?, 'pending', ?, ?)",
                (study, _author(conn, study, run_id), now(), now()),
            )
            request_id = int(cursor.lastrowid or 0)
            audit.append(conn, ws.audit_path, "request.open", {"request": request_id, "study": study})
        else:
            request_id = int(request["id"])
        delta = ws.policy().dp.delta
        for row in queued:  # each output is its own run's (a killed run's, collected now, keeps its author)
            path = Path(row["folder"]) / "outputs" / row["path"]
            # The sidecar was written in the sandbox: its DP claim holds only for the ledger's answers of the
            # study (the queue's, as the runner recorded it) on the run's extract.
            dp_outputs.settle(conn, path, study=row["study"], extract=row["extract"], delta=delta)
            add_version(conn, request_id, row["action"], row["name"], path, row["sha256"], row["sensitivity"],
                        _author(conn, study, int(row["run_id"])), row["extract"], queue=int(row["id"]))  # fmt: skip
        check_request(conn, ws, request_id)
    return request_id


def _author(conn: sqlite3.Connection, study: str, run_id: int) -> str:
    run = conn.execute("SELECT actor, trigger FROM runs WHERE id = ?", (run_id,)).fetchone()
    if run["trigger"] == "rerun":
        registered = conn.execute("SELECT registered_by FROM pipelines WHERE study = ?", (study,)).fetchone()
        if registered is not None:
            return str(registered["registered_by"])
    return str(run["actor"])


def add_version(
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
    state = State(conn.execute("SELECT state FROM requests WHERE id = ?", (request_id,)).fetchone()["state"])
    # A changed output (a new run's version, or a mitigation) needs its votes again: approved goes back to submitted.
    after = permissions.next_state(Act.MITIGATE, state)
    if after is not state:
        conn.execute("UPDATE requests SET state = ? WHERE id = ?", (after, request_id))
    conn.execute("UPDATE requests SET updated_at = ? WHERE id = ?", (now(), request_id))
    return int(cursor.lastrowid or 0)


def check_request(conn: sqlite3.Connection, ws: Workspace, request_id: int) -> dict[str, int]:
    """Run every check on the request's current outputs; store and audit the results."""
    rows = conn.execute(
        "SELECT * FROM request_outputs WHERE request = ? AND active = 1 ORDER BY action, name", (request_id,)
    ).fetchall()
    items = [checks_mod.Item(f"{r['action']}/{r['name']}", Path(r["path"]), r["sensitivity"]) for r in rows]
    released = [
        checks_mod.Item(f"request {r['request']}: {r['action']}/{r['name']}", Path(r["path"]), r["sensitivity"])
        for r in conn.execute(
            "SELECT o.* FROM request_outputs o JOIN requests q ON q.id = o.request"
            " WHERE q.state = 'released' AND o.active = 1 AND o.status != 'gated' AND o.request != ?",
            (request_id,),
        )
        if Path(r["path"]).is_file()
    ]
    results = checks_mod.check_items(items, released, ws.policy())
    summary: dict[str, int] = dict.fromkeys(checks_mod.STATUSES, 0)
    for row, checked in zip(rows, results, strict=True):
        checked = _with_intake_flags(checked, Path(row["path"]))
        conn.execute(
            "UPDATE request_outputs SET status = ?, checks = ? WHERE id = ?",
            (checked.status, json.dumps(checked.to_json(), sort_keys=True), row["id"]),
        )
        summary[checked.status] += 1
    audit.append(conn, ws.audit_path, "request.check", {"request": request_id, **summary})
    return summary


def _with_intake_flags(checked: checks_mod.OutputChecks, path: Path) -> checks_mod.OutputChecks:
    """The checks with intake's own flags added (a refused DP claim): the reviewer sees why a table declared as
    DP was checked as an ordinary one."""
    if checked.sdc is None or checked.status == "gated":
        return checked
    try:
        flags = dp_outputs.review_flags(sc.read(path))
    except BadInput:
        return checked  # the checks already report a malformed sidecar
    if not flags:
        return checked
    found = result([*checked.sdc.flags, *flags], checked.sdc.notes, ())
    sdc = CheckResult(found.status, found.flags, found.notes)  # as the catalog keeps it: no rules
    return replace(checked, sdc=sdc, status="fail" if checked.status == "fail" else "review")


def recheck(ws: Workspace, request_id: int) -> Request:
    """Run every check again (after a policy change, or a new release elsewhere)."""
    with ws.catalog() as conn:
        read_request(conn, ws, request_id, None)
        with transaction(conn):
            check_request(conn, ws, request_id)
        return read_request(conn, ws, request_id, None)
