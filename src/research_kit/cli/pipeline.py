"""``pipeline check|slurm-script``: study pipeline files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from research_kit.actions import pipelines
from research_kit.cli.common import console, workspace
from research_kit.console.output import print_json
from research_kit.console.runs import pipelines_json, print_pipeline

app = typer.Typer(add_completion=False)
pipeline_app = typer.Typer(help="Study pipelines (pipelines/*.yaml).", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")


@pipeline_app.command("check")
def check(
    files: Annotated[list[Path], typer.Argument(help="Pipeline files (YAML).")],
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the pipelines as a JSON array of objects (once all are valid).")
    ] = False,
) -> None:
    """Validate pipeline files (keys, graph, notebooks, parameters) and show the order their actions run in."""
    if as_json:
        print_json(pipelines_json([pipelines.check_pipeline(path) for path in files]))
        return
    for path in files:
        print_pipeline(console, pipelines.check_pipeline(path))


@pipeline_app.command("slurm-script")
def slurm_script() -> None:
    """Show the sbatch script each Slurm job of '--executor slurm' runs (from [runner] in research-kit.toml)."""
    print(pipelines.slurm_script(workspace()))
