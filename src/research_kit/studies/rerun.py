"""Rerun every registered study on a new extract: for cron or a systemd timer.

- One at a time: a second call while one runs exits at once (a file lock,
  released by the kernel even if the holder is killed).
- Idempotent: an extract whose rerun finished is not rerun; within a rerun,
  an action whose inputs did not change is reused (its content key).
- Resumable: a rerun killed midway is found 'running' by the next call, which
  goes on; the actions that finished before the kill are reused.
- Each moderately_sensitive output that changed enters the review queue with
  its diff against the last version (see :mod:`~research_kit.studies.runner`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from research_kit.core import audit
from research_kit.core.catalog import transaction
from research_kit.core.errors import UserError
from research_kit.core.extracts import get_extract
from research_kit.core.locks import hold
from research_kit.core.workspace import Workspace
from research_kit.studies import records
from research_kit.studies.runner import Listener, RunReport, run_pipeline, studies_dir
from research_kit.studies.spec import load_pipeline


@dataclass
class RerunReport:
    extract: str
    already_done: bool = False
    resumed: bool = False
    runs: list[RunReport] = field(default_factory=list)
    problems: dict[str, str] = field(default_factory=dict)  # study -> why it did not run

    @property
    def ok(self) -> bool:
        return not self.problems and all(r.outcome == "succeeded" for r in self.runs)


def rerun_all(
    ws: Workspace,
    extract_id: str,
    *,
    executor: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    listener: Listener | None = None,
    on_study: Listener | None = None,
    run: Callable[..., RunReport] = run_pipeline,
    requested_by: str | None = None,
) -> RerunReport:
    """Rerun every registered study on ``extract_id``; ``run`` runs one (the run action passes its own);
    ``requested_by`` is who started it, recorded beside the identity it acts as."""
    extract = get_extract(ws, extract_id)
    report = RerunReport(extract.id)
    with hold(studies_dir(ws) / ".rerun.lock", "a rerun"):
        with ws.catalog() as conn:
            row = conn.execute("SELECT state FROM reruns WHERE extract = ?", (extract.id,)).fetchone()
            if row is not None and row["state"] == "done":
                report.already_done = True
                return report
            report.resumed = row is not None
            if row is None:
                with transaction(conn):
                    conn.execute(
                        "INSERT INTO reruns (extract, started_at, state) VALUES (?, ?, 'running')",
                        (extract.id, records.now()),
                    )
                    details = {"extract": extract.id} | ({"requested_by": requested_by} if requested_by else {})
                    audit.append(conn, ws.audit_path, "study.rerun.start", details)
            pipelines = records.registered_pipelines(conn)
        for study, path in pipelines:
            if on_study is not None:
                on_study(study, "started", str(path))
            try:
                pipeline = load_pipeline(path)
                report.runs.append(
                    run(
                        ws,
                        pipeline,
                        extract=extract.id,
                        executor=executor,
                        workers=workers,
                        scheduler=scheduler,
                        trigger="rerun",
                        listener=listener,
                    )
                )
            except UserError as exc:  # a pipeline file gone or broken, a study busy: the others still rerun
                report.problems[study] = str(exc)
        summary = {
            "studies": {r.study: r.outcome for r in report.runs} | {s: "not run" for s in report.problems},
            "problems": report.problems,
        }
        with ws.catalog() as conn, transaction(conn):
            conn.execute(
                "UPDATE reruns SET state = 'done', finished_at = ?, summary = ? WHERE extract = ?",
                (records.now(), json.dumps(summary), extract.id),
            )
            audit.append(conn, ws.audit_path, "study.rerun.done", {"extract": extract.id, **summary})
    return report
