"""A run's new moderately_sensitive outputs, queued for review with their diff against the last version.

An output already queued with the same content is not queued again (a rerun that changes nothing queues
nothing). The run action then hands the queue to review (:mod:`research_kit.review.intake`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from research_kit.core.workspace import Workspace
from research_kit.studies import records
from research_kit.studies.diff import diff_outputs
from research_kit.studies.tasks import OutputFile

Finished = tuple[str, str, Path, list[OutputFile]]  # (action, its cache key, its result folder, its outputs)


def queue_new_outputs(
    conn: sqlite3.Connection, ws: Workspace, *, study: str, extract: str, run_id: int, finished: Iterable[Finished]
) -> int:
    """Queue the new moderately_sensitive outputs of the actions that ``finished`` (ran or reused); how many."""
    queued = 0
    for name, cache_key, folder, outputs in finished:
        for output in outputs:
            if output.sensitivity != "moderately_sensitive":
                continue
            known = conn.execute(
                "SELECT 1 FROM review_queue WHERE study = ? AND action = ? AND name = ? AND sha256 = ?",
                (study, name, output.name, output.sha256),
            ).fetchone()
            if known:
                continue
            diff = None
            previous = records.previous_version(conn, study, name, output.name, output.sha256)
            if previous is not None and previous[0].is_file():
                diff = diff_outputs(previous[0], folder / "outputs" / output.path, previous[1])
            queued += records.queue_for_review(
                conn, ws, study=study, action=name, output=output, cache_key=cache_key, run_id=run_id,
                extract=extract, diff=diff,
            )  # fmt: skip
    return queued
