"""Pipeline files: a study's actions as YAML, validated before anything runs.

::

    study: delay                      # the study's id (its budget and its outputs are filed under it)
    title: Diagnostic delay in rare diseases
    budget: {rho: 0.5}                # requested privacy budget (or {epsilon: 1, delta: 1e-7})
    actions:
      cohort:
        notebook: notebooks/cohort.ipynb
        parameters: {min_year: 2000}
        outputs:
          highly_sensitive: {cohort: cohort.parquet}        # stays in the workspace; may feed later actions
      delay:
        notebook: notebooks/delay.ipynb
        needs: [cohort]
        outputs:
          moderately_sensitive: {table: delay.csv, figure: delay.png}   # goes to output checking

Paths of notebooks are relative to the project (the folder holding
``pipelines/``); output paths are relative to the run's output folder.
Every mistake is reported with the file and the key, and the pipeline is
refused before anything runs: an unknown key, a wrong type, a cycle, an
unknown ``needs``, two actions writing the same path, a missing notebook, a
notebook without a ``parameters`` cell or without a kernel, a parameter the
notebook does not declare.
"""

from __future__ import annotations

import ast
import graphlib
import hashlib
import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from research_kit.core.errors import BadInput, MissingData, quoted
from research_kit.core.workspace import check_name

SENSITIVITIES = ("highly_sensitive", "moderately_sensitive")
TOP_KEYS = {"study", "title", "budget", "actions"}
ACTION_KEYS = {"notebook", "parameters", "needs", "outputs"}
BUDGET_KEYS = {"rho", "epsilon", "delta"}


@dataclass(frozen=True)
class Output:
    name: str
    path: str  # relative to the run's output folder
    sensitivity: str


@dataclass(frozen=True)
class Action:
    name: str
    notebook: Path
    parameters: dict[str, Any] = field(default_factory=dict)
    needs: tuple[str, ...] = ()
    outputs: tuple[Output, ...] = ()


@dataclass(frozen=True)
class Pipeline:
    path: Path
    study: str
    title: str
    budget: dict[str, float]
    actions: dict[str, Action]

    def levels(self) -> list[list[str]]:
        """Actions in dependency order, grouped: the actions of one group can run at the same time."""
        sorter = graphlib.TopologicalSorter({a.name: set(a.needs) for a in self.actions.values()})
        sorter.prepare()
        levels = []
        while sorter.is_active():
            ready = sorted(sorter.get_ready())
            levels.append(ready)
            sorter.done(*ready)
        return levels


def content_hash(pipeline: Pipeline) -> str:
    """SHA-256 over the pipeline file and every notebook it names: what an owner ran, byte for byte."""
    digest = hashlib.sha256(pipeline.path.read_bytes())
    for notebook in sorted({a.notebook for a in pipeline.actions.values()}):
        digest.update(b"\0" + str(notebook).encode() + b"\0" + notebook.read_bytes())
    return digest.hexdigest()


class _Problems:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.items: list[str] = []

    def add(self, key: str, message: str) -> None:
        self.items.append(f"{key}: {message}")

    def raise_any(self) -> None:
        if self.items:
            raise BadInput(f"{self.path}: " + "; ".join(self.items))


def project_root(path: Path) -> Path:
    """A pipeline file's project: the folder above ``pipelines/``, else the file's own folder."""
    return path.parent.parent if path.parent.name == "pipelines" else path.parent


def load_pipeline(path: Path, root: Path | None = None) -> Pipeline:
    """Read and validate a pipeline file; every mistake is named (file, key) in one :class:`BadInput`."""
    if not path.is_file():
        raise MissingData(f"{path}: no such pipeline file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BadInput(f"{path}: not valid YAML ({first})") from None
    problems = _Problems(path)
    if not isinstance(data, dict):
        raise BadInput(f"{path}: a pipeline is a mapping with keys {', '.join(sorted(TOP_KEYS))}")
    for key in sorted(set(data) - TOP_KEYS):
        problems.add(str(key), f"unknown key (use {', '.join(sorted(TOP_KEYS))})")
    study = data.get("study")
    if not isinstance(study, str):
        problems.add("study", "required: the study's id")
    else:
        try:
            check_name(study, "study")
        except BadInput as exc:
            problems.add("study", str(exc))
    title = data.get("title", "")
    if not isinstance(title, str) or not title.strip():
        problems.add("title", "required: a line saying what the study is")
    budget = _budget(data.get("budget"), problems)
    root = root or project_root(path)
    actions = _actions(data.get("actions"), root, problems)
    _check_graph(actions, problems)
    _check_outputs(actions, problems)
    problems.raise_any()
    return Pipeline(path, str(study), str(title).strip(), budget, actions)


def _finite(number: float) -> bool:
    try:
        return math.isfinite(number)
    except OverflowError:  # a whole number too large for a float
        return False


def _budget(value: Any, problems: _Problems) -> dict[str, float]:
    if not isinstance(value, dict):
        problems.add("budget", "required: {rho: R} or {epsilon: E, delta: D}")
        return {}
    for key in sorted(set(value) - BUDGET_KEYS):
        problems.add(f"budget.{key}", "unknown key (use rho, or epsilon and delta)")
    out: dict[str, float] = {}
    for key in BUDGET_KEYS & set(value):
        number = value[key]
        if isinstance(number, bool) or not isinstance(number, int | float) or not _finite(number) or number <= 0:
            shown = quoted(number)
            problems.add(f"budget.{key}", f"must be a number > 0, not {shown}")
        else:
            out[key] = float(number)
    if ("rho" in value) == ("epsilon" in value):
        problems.add("budget", "give rho, or epsilon (with an optional delta), not both or neither")
    return out


def _actions(value: Any, root: Path, problems: _Problems) -> dict[str, Action]:
    if not isinstance(value, dict) or not value:
        problems.add("actions", "required: a mapping of action names to actions")
        return {}
    actions: dict[str, Action] = {}
    for name, spec in value.items():
        key = f"actions.{name}"
        try:
            check_name(str(name), "action")
        except BadInput as exc:
            problems.add(key, str(exc))
            continue
        if not isinstance(spec, dict):
            problems.add(key, "an action is a mapping with notebook, parameters, needs, outputs")
            continue
        for extra in sorted(set(spec) - ACTION_KEYS):
            problems.add(f"{key}.{extra}", f"unknown key (use {', '.join(sorted(ACTION_KEYS))})")
        notebook = spec.get("notebook")
        parameters = spec.get("parameters") or {}
        needs = spec.get("needs") or []
        if not isinstance(parameters, dict):
            problems.add(f"{key}.parameters", "must be a mapping of names to values")
            parameters = {}
        if not isinstance(needs, list) or not all(isinstance(n, str) for n in needs):
            problems.add(f"{key}.needs", "must be a list of action names")
            needs = []
        outputs = _outputs(spec.get("outputs"), key, problems)
        if isinstance(notebook, str):
            path = (root / notebook).resolve()
            _check_notebook(path, notebook, parameters, f"{key}.notebook", problems)
        else:
            problems.add(f"{key}.notebook", "required: the notebook's path")
            path = root
        actions[str(name)] = Action(str(name), path, dict(parameters), tuple(needs), outputs)
    return actions


def _outputs(value: Any, key: str, problems: _Problems) -> tuple[Output, ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        problems.add(f"{key}.outputs", f"must map {' or '.join(SENSITIVITIES)} to {{name: path}}")
        return ()
    outputs = []
    for sensitivity, declared in value.items():
        where = f"{key}.outputs.{sensitivity}"
        if sensitivity not in SENSITIVITIES:
            problems.add(where, f"unknown sensitivity (use {' or '.join(SENSITIVITIES)})")
            continue
        if not isinstance(declared, dict):
            problems.add(where, "must map output names to paths")
            continue
        for name, raw in declared.items():
            pure = PurePosixPath(str(raw))
            if not isinstance(raw, str) or pure.is_absolute() or ".." in pure.parts or not pure.parts:
                problems.add(f"{where}.{name}", f"{raw!r}: give a relative path inside the run's output folder")
                continue
            outputs.append(Output(str(name), str(pure), sensitivity))
    return tuple(outputs)


def declared_parameters(notebook: dict[str, Any]) -> set[str] | None:
    """Names assigned in the notebook's cell tagged ``parameters`` (None when it has no such cell)."""
    for cell in notebook.get("cells", []):
        if cell.get("cell_type") == "code" and "parameters" in cell.get("metadata", {}).get("tags", []):
            source = cell.get("source", "")
            tree = ast.parse("".join(source) if isinstance(source, list) else source)
            names: set[str] = set()
            for node in tree.body:
                targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
                names.update(t.id for t in targets if isinstance(t, ast.Name))
            return names
    return None


def _invalid(notebook: Any) -> str | None:
    """What makes ``notebook`` (parsed JSON) not a notebook by the nbformat schema, in a few words; or None."""
    if not isinstance(notebook, dict):
        return "not a JSON object"
    cells = notebook.get("cells")
    if not isinstance(cells, list) or not all(isinstance(c, dict) for c in cells):
        return "cells: must be a list of cells"
    if notebook.get("nbformat") != 4 or isinstance(notebook.get("nbformat"), bool):
        return "nbformat: must be 4 (save it with JupyterLab)"
    if not isinstance(notebook.get("metadata"), dict):
        return "metadata: must be a mapping"
    import nbformat  # here: the CLI starts without it

    try:
        with warnings.catch_warnings():  # a cell without an id (older notebooks) is fine to run: not our concern
            warnings.simplefilter("ignore")
            nbformat.validate(nbformat.from_dict(notebook), relax_add_props=True)
    except nbformat.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "the top level"
        return f"{where}: {str(exc.message).splitlines()[0][:120]}"
    except Exception as exc:  # noqa: BLE001 - nbformat asserts, indexes and converts: any failure is "invalid"
        return type(exc).__name__
    return None


def _check_notebook(path: Path, shown: str, parameters: dict[str, Any], key: str, problems: _Problems) -> None:
    if not path.is_file():
        problems.add(key, f"{shown}: no such notebook")
        return
    try:
        notebook = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
        problems.add(key, f"{shown}: not a readable notebook ({type(exc).__name__})")
        return
    invalid = _invalid(notebook)
    if invalid:
        problems.add(key, f"{shown}: not a valid Jupyter notebook ({invalid})")
        return
    try:
        declared = declared_parameters(notebook)
    except SyntaxError as exc:
        problems.add(key, f"{shown}: the cell tagged 'parameters' is not valid Python (line {exc.lineno})")
        return
    if not notebook.get("metadata", {}).get("kernelspec", {}).get("language"):
        problems.add(key, f"{shown}: no kernel (metadata.kernelspec with a language); open and save it in JupyterLab")
    if declared is None:
        problems.add(key, f"{shown}: no cell tagged 'parameters'")
        return
    for name in sorted(set(parameters) - declared):
        problems.add(
            key.replace(".notebook", f".parameters.{name}"),
            f"{shown} does not declare it (its parameters: {', '.join(sorted(declared)) or 'none'})",
        )


def _check_graph(actions: dict[str, Action], problems: _Problems) -> None:
    for action in actions.values():
        for need in action.needs:
            if need not in actions:
                problems.add(f"actions.{action.name}.needs", f"unknown action {need!r} (actions: {', '.join(actions)})")
    try:
        graphlib.TopologicalSorter({a.name: {n for n in a.needs if n in actions} for a in actions.values()}).prepare()
    except graphlib.CycleError as exc:
        cycle = exc.args[1]
        problems.add("actions", f"cycle: {' -> '.join(cycle)}")


def _check_outputs(actions: dict[str, Action], problems: _Problems) -> None:
    writers: dict[str, str] = {}
    for action in actions.values():
        for output in action.outputs:
            earlier = writers.get(output.path)
            if earlier is not None:
                problems.add(
                    f"actions.{action.name}.outputs.{output.sensitivity}.{output.name}",
                    f"{output.path} is also written by {earlier}",
                )
            writers[output.path] = f"actions.{action.name}"
