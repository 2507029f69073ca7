"""The project's notebooks are stored clean (no outputs), parameterised, and every pipeline file is valid."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from research_kit.studies.spec import load_pipeline

PROJECT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((PROJECT / "notebooks").glob("*.ipynb"))
PIPELINES = sorted((PROJECT / "pipelines").glob("*.yaml"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_a_notebook_is_stored_without_outputs_and_with_a_parameters_cell(path: Path) -> None:
    notebook = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    stored = [i for i, c in enumerate(code) if c.get("outputs") or c.get("execution_count") is not None]
    assert stored == [], f"{path.name}: code cells {stored} hold outputs (clear them before committing)"
    assert ["parameters" in c.get("metadata", {}).get("tags", []) for c in code].count(True) == 1
    assert notebook["metadata"]["kernelspec"]["language"] == "python"


def test_every_pipeline_is_valid_and_every_notebook_belongs_to_one() -> None:
    used = set()
    for path in PIPELINES:
        pipeline = load_pipeline(path)  # raises, naming the key, on any mistake
        used |= {action.notebook.resolve() for action in pipeline.actions.values()}
    assert {p.resolve() for p in NOTEBOOKS} == used
    assert len(NOTEBOOKS) >= 4
