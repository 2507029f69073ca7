"""Study pipeline files: validated, and the Slurm job script their runs would use."""

from __future__ import annotations

from pathlib import Path

from research_kit.core.workspace import Workspace
from research_kit.studies.executors import slurm_cluster
from research_kit.studies.spec import Pipeline, load_pipeline


def check_pipeline(path: Path) -> Pipeline:
    """The pipeline file at ``path``, validated (keys, graph, notebooks, parameters)."""
    return load_pipeline(path)


def slurm_script(ws: Workspace) -> str:
    """The sbatch script each Slurm job of ``executor='slurm'`` runs."""
    cluster = slurm_cluster(ws.policy())
    try:
        return str(cluster.job_script())
    finally:
        cluster.close()
