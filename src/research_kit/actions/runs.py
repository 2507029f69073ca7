"""Study pipelines: run one on a real extract, rerun every study on a new extract.

A run's new moderately_sensitive outputs are queued by the runner; this layer
hands them to review (the study's open request, checked at once), so the
runner knows nothing of review.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from research_kit.actions.acting import as_user
from research_kit.core import users
from research_kit.core.faults import fault
from research_kit.core.identity import RERUN_SERVICE
from research_kit.core.permissions import Duty
from research_kit.core.workspace import Workspace
from research_kit.review.intake import collect
from research_kit.studies.rerun import RerunReport, rerun_all
from research_kit.studies.runner import Listener, RunReport, run_pipeline
from research_kit.studies.spec import Pipeline


def _run_and_collect(ws: Workspace, pipeline: Pipeline, **options: Any) -> RunReport:
    report = run_pipeline(ws, pipeline, **options)
    fault("run.after_queue")
    with ws.catalog() as conn:
        request = collect(conn, ws, report.study, report.run_id)
    return dataclasses.replace(report, request=request)


def run(
    ws: Workspace,
    *,
    actor: str,
    pipeline: Pipeline,
    extract: str | None = None,
    action: str | None = None,
    executor: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    force: bool = False,
    listener: Listener | None = None,
) -> RunReport:
    """Run ``pipeline`` (or one ``action`` and what it needs) on ``extract``; its new outputs enter review."""
    return as_user(
        actor, _run_and_collect, ws, pipeline, extract=extract, action=action, executor=executor, workers=workers,
        scheduler=scheduler, force=force, listener=listener,
    )  # fmt: skip


def rerun(
    ws: Workspace,
    *,
    actor: str,
    extract: str,
    executor: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    on_study: Callable[[str, str, str], None] | None = None,
) -> RerunReport:
    """A steward starts the rerun of every registered study on ``extract`` (one at a time, idempotent,
    resumable). The reruns act as the service identity :data:`~research_kit.core.identity.RERUN_SERVICE` (it
    runs and reruns, nothing else), each running its owner's registered pipeline, unchanged, on their behalf."""
    with ws.catalog() as conn:
        users.require(conn, actor, Duty.RERUN)
    return as_user(
        RERUN_SERVICE, rerun_all, ws, extract, executor=executor, workers=workers, scheduler=scheduler,
        on_study=on_study, run=_run_and_collect, requested_by=actor,
    )  # fmt: skip
