"""Pipeline files: what a valid one gives, and every mistake refused before anything runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from research_kit.core.errors import BadInput
from research_kit.studies.spec import load_pipeline


def notebook(
    path: Path, parameters: str | None = "min_year = 2000\nthreshold: int = 10\n", kernel: bool = True
) -> None:
    cells: list[dict[str, Any]] = [{"cell_type": "markdown", "metadata": {}, "source": "# A study"}]
    if parameters is not None:
        cells.append({"cell_type": "code", "metadata": {"tags": ["parameters"]}, "source": parameters,
                      "outputs": [], "execution_count": None})  # fmt: skip
    cells.append({"cell_type": "code", "metadata": {}, "source": "print(min_year)", "outputs": [],
                  "execution_count": None})  # fmt: skip
    meta = {"kernelspec": {"name": "python3", "language": "python", "display_name": "Python 3"}} if kernel else {}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cells": cells, "metadata": meta, "nbformat": 4, "nbformat_minor": 5}))


def project(tmp_path: Path, pipeline: dict[str, Any]) -> Path:
    for name in ("cohort", "delay", "figures"):
        notebook(tmp_path / "notebooks" / f"{name}.ipynb")
    path = tmp_path / "pipelines" / "delay.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(pipeline))
    return path


def valid() -> dict[str, Any]:
    return {
        "study": "delay",
        "title": "Diagnostic delay",
        "budget": {"rho": 0.5},
        "actions": {
            "cohort": {
                "notebook": "notebooks/cohort.ipynb",
                "parameters": {"min_year": 2005},
                "outputs": {"highly_sensitive": {"cohort": "cohort.parquet"}},
            },
            "delay": {
                "notebook": "notebooks/delay.ipynb",
                "needs": ["cohort"],
                "outputs": {"moderately_sensitive": {"table": "delay.csv"}},
            },
            "figures": {
                "notebook": "notebooks/figures.ipynb",
                "needs": ["cohort"],
                "parameters": {"threshold": 5},
                "outputs": {"moderately_sensitive": {"figure": "figures/delay.png"}},
            },
        },
    }


def test_a_valid_pipeline_and_its_order(tmp_path: Path) -> None:
    pipeline = load_pipeline(project(tmp_path, valid()))
    assert pipeline.study == "delay"
    assert pipeline.budget == {"rho": 0.5}
    assert pipeline.levels() == [["cohort"], ["delay", "figures"]]
    assert pipeline.actions["cohort"].parameters == {"min_year": 2005}
    assert pipeline.actions["delay"].notebook == (tmp_path / "notebooks" / "delay.ipynb").resolve()
    assert [o.sensitivity for o in pipeline.actions["cohort"].outputs] == ["highly_sensitive"]


def _broken(tmp_path: Path, change: Any) -> str:
    data = valid()
    change(data)
    with pytest.raises(BadInput) as info:
        load_pipeline(project(tmp_path, data))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(tmp_path / "pipelines" / "delay.yaml"))
    return message


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d["actions"]["cohort"].update(needs=["figures"]), "actions: cycle: "),
        (lambda d: d["actions"]["delay"].update(needs=["cohrt"]), "actions.delay.needs: unknown action 'cohrt'"),
        (lambda d: d["actions"]["figures"]["outputs"]["moderately_sensitive"].update(figure="delay.csv"),
         "actions.figures.outputs.moderately_sensitive.figure: delay.csv is also written by actions.delay"),
        (lambda d: d["actions"]["delay"].update(notebook="notebooks/missing.ipynb"),
         "actions.delay.notebook: notebooks/missing.ipynb: no such notebook"),
        (lambda d: d["actions"]["delay"].update(parameters={"colour": "red"}),
         "actions.delay.parameters.colour: notebooks/delay.ipynb does not declare it"),
        (lambda d: d["actions"]["delay"].update(outputs={"public": {"t": "t.csv"}}),
         "actions.delay.outputs.public: unknown sensitivity"),
        (lambda d: d["actions"]["delay"].update(outputs={"moderately_sensitive": {"t": "../escape.csv"}}),
         "give a relative path inside the run's output folder"),
        (lambda d: d["actions"]["delay"].update(notebok="x"), "actions.delay.notebok: unknown key"),
        (lambda d: d.update(budget={"rho": -1}), "budget.rho: must be a number > 0"),
        (lambda d: d.update(budget={}), "budget: give rho, or epsilon"),
        (lambda d: d.update(study="../x"), "study: study '../x'"),
        (lambda d: d.pop("title"), "title: required"),
        (lambda d: d.update(colour="red"), "colour: unknown key"),
    ],
)  # fmt: skip
def test_each_mistake_is_named_with_its_key(tmp_path: Path, change: Any, expected: str) -> None:
    assert expected in _broken(tmp_path, change)


def test_every_mistake_is_reported_at_once(tmp_path: Path) -> None:
    def many(d: dict[str, Any]) -> None:
        d["actions"]["delay"]["needs"] = ["nope"]
        d["budget"] = {"rho": 0}

    message = _broken(tmp_path, many)
    assert "actions.delay.needs" in message
    assert "budget.rho" in message


def test_notebooks_without_parameters_cell_or_kernel_are_refused(tmp_path: Path) -> None:
    path = project(tmp_path, valid())
    notebook(tmp_path / "notebooks" / "delay.ipynb", parameters=None)
    notebook(tmp_path / "notebooks" / "figures.ipynb", kernel=False)
    with pytest.raises(BadInput) as info:
        load_pipeline(path)
    assert "actions.delay.notebook: notebooks/delay.ipynb: no cell tagged 'parameters'" in str(info.value)
    assert "actions.figures.notebook: notebooks/figures.ipynb: no kernel" in str(info.value)


def test_pipeline_check_from_the_shell(tmp_path: Path) -> None:
    path = project(tmp_path, valid())
    env = {**os.environ, "COLUMNS": "200"}
    ok = subprocess.run([sys.executable, "-m", "research_kit", "pipeline", "check", str(path)],
                        capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert "valid; requests budget rho 0.5" in ok.stdout
    path.write_text("study: [unclosed")
    bad = subprocess.run([sys.executable, "-m", "research_kit", "pipeline", "check", str(path)],
                         capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert bad.returncode == 3
    assert "not valid YAML" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1
