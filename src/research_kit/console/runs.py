"""Study pipelines and their runs on the terminal; a checked pipeline as JSON too."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from research_kit.console.output import print_table

if TYPE_CHECKING:
    from research_kit.studies.runner import RunReport
    from research_kit.studies.spec import Pipeline


def print_run(console: Console, report: RunReport, *, table: bool = True) -> None:
    """A pipeline run: each action's outcome (with ``table``), a summary line, and every failure in full."""
    if table:
        shown = Table(title=f"run {report.run_id} of {report.study} on {report.extract}")
        for column in ("action", "outcome", "seconds", "outputs"):
            shown.add_column(column)
        for outcome in report.actions.values():
            outputs = ", ".join(f"{o.path} ({o.sensitivity.split('_')[0]})" for o in outcome.outputs)
            shown.add_row(outcome.action, outcome.outcome, f"{outcome.seconds:.1f}", outputs)
        print_table(console, shown)
    counts = ", ".join(f"{report.count(o)} {o}" for o in ("ran", "cached", "failed", "skipped") if report.count(o))
    colour = "green" if report.outcome == "succeeded" else "red"
    console.print(
        f"[{colour}]run {report.run_id} of {report.study} on {report.extract}: {report.outcome}[/] "
        f"({counts}; {report.seconds:.2f} s; {report.queued} output(s) queued for review)",
        soft_wrap=True,
    )
    for notice in report.notices:
        console.print(f"[yellow]{escape(notice)}[/]", soft_wrap=True)
    for outcome in report.actions.values():
        if outcome.dropped:
            console.print(
                f"action {outcome.action}: {len(outcome.dropped)} undeclared file(s) dropped (listed in its provenance)"
            )
        if outcome.outcome == "failed":
            console.print(f"[red]{escape(outcome.error)}[/]", soft_wrap=True)


def print_pipeline(console: Console, pipeline: Pipeline) -> None:
    """A valid pipeline: its actions in the order they run, and the budget it asks for."""
    table = Table(title=f"{pipeline.study}: {pipeline.title} ({pipeline.path})")
    for name in ("step", "action", "notebook", "needs", "outputs"):
        table.add_column(name)
    for step, level in enumerate(pipeline.levels(), start=1):
        for name in level:
            action = pipeline.actions[name]
            outputs = ", ".join(f"{o.path} ({o.sensitivity.split('_')[0]})" for o in action.outputs)
            table.add_row(str(step), name, action.notebook.name, ", ".join(action.needs), outputs)
    print_table(console, table)
    budget = ", ".join(f"{k} {v:g}" for k, v in sorted(pipeline.budget.items()))
    console.print(f"valid; requests budget {budget}; actions of one step can run at the same time")


def pipelines_json(pipelines: list[Pipeline]) -> list[dict[str, Any]]:
    """``pipeline check --json``: one :func:`pipeline_json` object per valid pipeline file."""
    return [pipeline_json(p) for p in pipelines]


def pipeline_json(pipeline: Pipeline) -> dict[str, Any]:
    """A valid pipeline: ``study``, ``title``, ``path``, ``budget`` (what it asks for, by unit) and ``actions`` in
    the order they run, each with its ``step`` (actions of one step can run at the same time), ``name``,
    ``notebook``, ``needs`` and declared ``outputs`` (each ``name``, ``path``, ``sensitivity``)."""
    actions = []
    for step, level in enumerate(pipeline.levels(), start=1):
        for name in level:
            action = pipeline.actions[name]
            outputs = [{"name": o.name, "path": o.path, "sensitivity": o.sensitivity} for o in action.outputs]
            actions.append(
                {"step": step, "name": name, "notebook": str(action.notebook), "needs": list(action.needs),
                 "outputs": outputs}
            )  # fmt: skip
    return {
        "study": pipeline.study,
        "title": pipeline.title,
        "path": str(pipeline.path),
        "budget": dict(sorted(pipeline.budget.items())),
        "actions": actions,
    }
