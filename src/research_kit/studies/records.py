"""The runner's catalog records: registered pipelines, runs, cached action results, the review queue.

Each write that matters joins an audit entry in the same transaction, so the
catalog and the hash-chained log never disagree.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from research_kit.core import audit, permits
from research_kit.core.catalog import transaction
from research_kit.core.errors import PolicyRefusal
from research_kit.core.workspace import Workspace
from research_kit.studies.cache import Environment, canonical
from research_kit.studies.tasks import ActionResult, OutputFile


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class StoredResult:
    cache_key: str
    action: str
    folder: Path
    outputs: list[OutputFile]
    extract: str
    finished_at: str


def ensure_environment(conn: sqlite3.Connection, env: Environment) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO environments (hash, packages) VALUES (?, ?)", (env.hash, canonical(env.packages))
    )


def register_pipeline(
    conn: sqlite3.Connection,
    ws: Workspace,
    study: str,
    path: Path,
    title: str,
    sha256: str,
    *,
    rerun: bool = False,
    extract: str | None = None,
) -> bool:
    """Register (or move, or update) a study's pipeline file as the acting user; True when the register changed.

    The study's data permit must let the acting user (a ``rerun``: the user who registered it) use the real
    tier now, on ``extract`` (:func:`research_kit.core.permits.check`). A ``rerun`` runs the registered file at
    its registered content only.
    """
    actor = audit.current_actor()
    row = conn.execute("SELECT path, registered_by, sha256 FROM pipelines WHERE study = ?", (study,)).fetchone()
    if rerun:
        if row is None or row["path"] != str(path) or row["sha256"] != sha256:
            raise PolicyRefusal(
                f"study {study}: {path} or one of its notebooks is not what its owner last ran, or was registered "
                "before pipelines were fingerprinted (an owner runs it once to register it again)"
            )
        permits.check(conn, study, row["registered_by"], tier="real", extract=extract, doing="rerunning its pipeline")
        return False
    permits.check(conn, study, actor, tier="real", extract=extract, doing="running its pipeline")
    if row is not None and row["path"] == str(path) and row["sha256"] == sha256:
        return False
    with transaction(conn):
        conn.execute(
            "INSERT INTO pipelines (study, path, title, registered_at, registered_by, sha256) VALUES (?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(study) DO UPDATE SET path = excluded.path, title = excluded.title, sha256 = excluded.sha256,"
            " registered_at = excluded.registered_at, registered_by = excluded.registered_by",
            (study, str(path), title, now(), actor, sha256),
        )
        audit.append(
            conn, ws.audit_path, "pipeline.register", {"study": study, "pipeline": str(path), "sha256": sha256}
        )
    return True


def registered_by(conn: sqlite3.Connection, study: str) -> str | None:
    row = conn.execute("SELECT registered_by FROM pipelines WHERE study = ?", (study,)).fetchone()
    return None if row is None else str(row["registered_by"])


def registered_pipelines(conn: sqlite3.Connection) -> list[tuple[str, Path]]:
    return [(r["study"], Path(r["path"])) for r in conn.execute("SELECT study, path FROM pipelines ORDER BY study")]


def studies_registered_by(conn: sqlite3.Connection, name: str) -> set[str]:
    """The studies whose pipeline ``name`` registered."""
    return {r[0] for r in conn.execute("SELECT study FROM pipelines WHERE registered_by = ?", (name,))}


def lookup(conn: sqlite3.Connection, cache_key: str) -> StoredResult | None:
    """The stored result of this key, if its folder is still whole."""
    row = conn.execute("SELECT * FROM action_results WHERE cache_key = ?", (cache_key,)).fetchone()
    if row is None:
        return None
    folder = Path(row["folder"])
    outputs = [
        OutputFile(r["name"], r["path"], r["sensitivity"], r["sha256"], r["bytes"])
        for r in conn.execute("SELECT * FROM action_outputs WHERE cache_key = ? ORDER BY name", (cache_key,))
    ]
    if not all((folder / "outputs" / o.path).is_file() for o in outputs):
        return None  # removed by hand: run it again
    return StoredResult(cache_key, row["action"], folder, outputs, row["extract"], row["finished_at"])


def start_run(conn: sqlite3.Connection, **fields: Any) -> int:
    with transaction(conn):
        # Our caller holds the study's lock: a run still marked running was killed.
        conn.execute(
            "UPDATE runs SET outcome = 'interrupted' WHERE study = ? AND outcome = 'running'", (fields["study"],)
        )
        cursor = conn.execute(
            "INSERT INTO runs (study, pipeline, pipeline_hash, extract, extract_hash, git_commit, executor, trigger,"
            " actor, started_at, outcome) VALUES (:study, :pipeline, :pipeline_hash, :extract, :extract_hash,"
            " :git_commit, :executor, :trigger, :actor, :started_at, 'running')",
            {**fields, "actor": audit.current_actor(), "started_at": now()},
        )
    return int(cursor.lastrowid or 0)


def record_action(
    conn: sqlite3.Connection,
    ws: Workspace,
    run_id: int,
    outcome: str,
    action: str,
    *,
    cache_key: str | None,
    seconds: float,
    result: ActionResult | None = None,
    provenance: dict[str, Any] | None = None,
    error: str = "",
    notebook: str = "",
) -> None:
    """One action's outcome in this run; an executed action's result and outputs, with an audit entry."""
    with transaction(conn):
        if outcome == "ran" and result is not None and provenance is not None:
            conn.execute(
                "INSERT OR IGNORE INTO action_results (cache_key, study, action, notebook, notebook_hash, parameters,"
                " extract, extract_hash, upstream, environment, git_commit, folder, started_at, finished_at, seconds)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    cache_key,
                    provenance["study"],
                    action,
                    provenance["notebook"],
                    provenance["notebook_hash"],
                    canonical(provenance["parameters"]),
                    provenance["extract"],
                    provenance["extract_hash"],
                    canonical(provenance["upstream"]),
                    provenance["environment"],
                    provenance["git_commit"],
                    provenance["folder"],
                    result.started_at,
                    result.finished_at,
                    result.seconds,
                ),
            )
            conn.executemany(
                "INSERT OR IGNORE INTO action_outputs (cache_key, name, path, sensitivity, sha256, bytes)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                [(cache_key, o.name, o.path, o.sensitivity, o.sha256, o.bytes) for o in result.outputs],
            )
        conn.execute(
            "INSERT OR REPLACE INTO run_actions (run_id, action, outcome, cache_key, seconds, error, notebook)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            (run_id, action, outcome, cache_key, seconds, error, notebook),
        )
        if outcome in ("ran", "failed"):
            details: dict[str, Any] = {"run": run_id, "action": action, "outcome": outcome, "cache_key": cache_key}
            if provenance is not None:
                details |= {k: provenance[k] for k in ("study", "notebook_hash", "parameters", "extract")}
            if result is not None and result.ok:
                details["outputs"] = {o.name: o.sha256 for o in result.outputs}
            if error:
                details["error"] = error
            audit.append(conn, ws.audit_path, "study.action", details)


def finish_run(conn: sqlite3.Connection, ws: Workspace, run_id: int, outcome: str, summary: dict[str, Any]) -> None:
    with transaction(conn):
        conn.execute("UPDATE runs SET outcome = ?, finished_at = ? WHERE id = ?", (outcome, now(), run_id))
        audit.append(conn, ws.audit_path, "study.run", {"run": run_id, "outcome": outcome, **summary})


def queue_for_review(
    conn: sqlite3.Connection,
    ws: Workspace,
    *,
    study: str,
    action: str,
    output: OutputFile,
    cache_key: str,
    run_id: int,
    extract: str,
    diff: dict[str, Any] | None,
) -> bool:
    """Put a moderately_sensitive output in the review queue once (by content); True if it is new there."""
    with transaction(conn):
        cursor = conn.execute(
            "INSERT OR IGNORE INTO review_queue (study, action, name, cache_key, sha256, run_id, extract, diff,"
            " queued_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                study,
                action,
                output.name,
                cache_key,
                output.sha256,
                run_id,
                extract,
                None if diff is None else json.dumps(diff),
                now(),
            ),
        )
        if cursor.rowcount:
            audit.append(
                conn,
                ws.audit_path,
                "output.queue",
                {"study": study, "action": action, "output": output.name, "sha256": output.sha256, "run": run_id},
            )
    return bool(cursor.rowcount)


def queued_by_run(conn: sqlite3.Connection, run_id: int) -> list[tuple[str, str, dict[str, Any] | None]]:
    """What run ``run_id`` queued for review: (action, output name, diff against the last version or None)."""
    rows = conn.execute("SELECT action, name, diff FROM review_queue WHERE run_id = ? ORDER BY id", (run_id,))
    return [(r["action"], r["name"], json.loads(r["diff"]) if r["diff"] else None) for r in rows]


def previous_version(
    conn: sqlite3.Connection, study: str, action: str, name: str, sha256: str
) -> tuple[Path, str] | None:
    """The file to compare a new version with, and what it is: the last released one, else the last queued."""
    row = conn.execute(
        "SELECT q.cache_key, q.state, q.run_id, q.extract, o.path FROM review_queue q JOIN action_outputs o"
        " ON o.cache_key = q.cache_key AND o.name = q.name"
        " WHERE q.study = ? AND q.action = ? AND q.name = ? AND q.sha256 != ?"
        " ORDER BY (q.state = 'released') DESC, q.id DESC LIMIT 1",
        (study, action, name, sha256),
    ).fetchone()
    if row is None:
        return None
    result = conn.execute("SELECT folder FROM action_results WHERE cache_key = ?", (row["cache_key"],)).fetchone()
    if result is None:
        return None
    what = "released" if row["state"] == "released" else "not yet released"
    label = f"the version of run {row['run_id']} on extract {row['extract']} ({what})"
    return Path(result["folder"]) / "outputs" / row["path"], label
