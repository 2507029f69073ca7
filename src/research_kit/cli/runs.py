"""``run`` and ``rerun``: study pipelines on a real extract."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from research_kit.actions import pipelines, runs
from research_kit.cli.common import actor, console, workspace
from research_kit.console.progress import RunProgress
from research_kit.console.runs import print_run
from research_kit.core.errors import RunFailed
from research_kit.core.locks import Busy
from research_kit.studies.runner import selected_actions

app = typer.Typer(add_completion=False)


@app.command()
def run(
    pipeline_file: Annotated[Path, typer.Argument(metavar="PIPELINE", help="The pipeline file (YAML).")],
    extract: Annotated[str | None, typer.Option(help="The extract to run on (default: the newest).")] = None,
    action: Annotated[str | None, typer.Option(help="Run only this action (and what it needs).")] = None,
    executor: Annotated[str, typer.Option(help="local, dask (a LocalCluster or --scheduler) or slurm.")] = "local",
    workers: Annotated[
        int | None, typer.Option(min=1, help="Actions at once (local, dask) or Slurm jobs (slurm).")
    ] = None,
    scheduler: Annotated[str | None, typer.Option(help="A running Dask scheduler's address (tcp://...).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Run every action even if its inputs did not change.")] = False,
) -> None:
    """Run a study's pipeline on a real extract: unchanged actions are reused, outputs queue for review."""
    ws = workspace()
    pipeline = pipelines.check_pipeline(pipeline_file)
    show = RunProgress(console, len(selected_actions(pipeline, action)))
    with show.progress:
        report = runs.run(
            ws, actor=actor(), pipeline=pipeline, extract=extract, action=action, executor=executor, workers=workers,
            scheduler=scheduler, force=force, listener=show,
        )  # fmt: skip
    print_run(console, report, table=False)
    if report.outcome != "succeeded":
        raise RunFailed(f"run {report.run_id} of {report.study}: {report.outcome} (the table above names the action)")


@app.command()
def rerun(
    extract: Annotated[str, typer.Option(help="The new extract every registered study reruns on.")],
    executor: Annotated[str, typer.Option(help="local, dask or slurm.")] = "local",
    workers: Annotated[int | None, typer.Option(min=1, help="Actions at once.")] = None,
    scheduler: Annotated[str | None, typer.Option(help="A running Dask scheduler's address.")] = None,
) -> None:
    """Rerun every registered study on a new extract (safe from cron: one at a time, idempotent, resumable)."""
    try:
        report = runs.rerun(
            workspace(), actor=actor(), extract=extract, executor=executor, workers=workers, scheduler=scheduler,
            on_study=lambda study, _e, path: console.print(f"[bold]{escape(study)}[/] ({escape(path)})"),
        )  # fmt: skip
    except Busy as exc:
        console.print(f"nothing done: {exc}")
        return
    if report.already_done:
        console.print(f"every registered study already reran on {extract}; nothing to do")
        return
    if report.resumed:
        console.print(f"resumed the rerun on {extract} where it stopped")
    for run_report in report.runs:
        print_run(console, run_report, table=False)
    for study, problem in report.problems.items():
        console.print(f"[red]{escape(study)}: not rerun: {escape(problem)}[/]")
    if not report.runs and not report.problems:
        console.print("no study registered yet (a pipeline is registered by its first 'research-kit run')")
    if not report.ok:
        raise RunFailed(f"the rerun on {extract} did not succeed for every study (see above)")
