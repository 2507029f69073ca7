"""The platform's stable interfaces keep their public shape unless a new version says otherwise.

The shape of each interface named in ``docs/interfaces.md`` is read from the
live code (signatures with :mod:`inspect`, dataclass fields with
:mod:`dataclasses`, the constants the validators use, and, where a key set
exists only as a literal inside a function, the literal read from its source
with :mod:`ast`). It is compared with the committed snapshot
``tests/unit/interfaces.json``; a difference fails with what changed. An
intended change is recorded with::

    .venv/bin/python -m tests.unit.test_interfaces --update --version N

and a note "Version N" under "Changes" in ``docs/interfaces.md``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import functools
import inspect
import json
import re
import sys
import textwrap
import typing
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SNAPSHOT = Path(__file__).with_name("interfaces.json")
DOCS = ROOT / "docs" / "interfaces.md"
UPDATE = "`.venv/bin/python -m tests.unit.test_interfaces --update`"

# Constants whose wording is documentation, not shape: only their type is recorded.
PROSE_CONSTANTS = {"rk.analysis.POPULATION_SOURCE"}


# -- describing live objects ----------------------------------------------------------------------------------------


def _default(value: Any) -> str:
    return re.sub(r" at 0x[0-9a-f]+", "", repr(value))  # an object's repr without its address


def _annotation(value: Any) -> str:
    return value if isinstance(value, str) else inspect.formatannotation(value)


def describe_function(func: Callable[..., Any], *, skip_first: bool = False) -> dict[str, Any]:
    """Parameters in order: position, kind and default (repr; absent when the parameter is required)."""
    params = list(inspect.signature(func).parameters.values())
    if skip_first:  # self / cls
        params = params[1:]
    out: dict[str, Any] = {}
    for position, p in enumerate(params):
        entry: dict[str, Any] = {"position": position, "kind": p.kind.name.lower()}
        if p.default is not inspect.Parameter.empty:
            entry["default"] = _default(p.default)
        out[p.name] = entry
    return {"kind": "function", "parameters": out}


def describe_fields(cls: type) -> dict[str, Any]:
    """A dataclass's fields in order: the annotation as written, and the default (absent when required)."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        entry: dict[str, Any] = {"type": _annotation(f.type)}
        if f.default is not dataclasses.MISSING:
            entry["default"] = _default(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            entry["default"] = f"{getattr(f.default_factory, '__name__', _default(f.default_factory))}()"
        out[f.name] = entry
    return out


def describe_class(cls: type, *, members: bool = True) -> dict[str, Any]:
    """A dataclass: its fields and (``members``) its public methods' parameters and its properties."""
    shape: dict[str, Any] = {"kind": "dataclass", "fields": describe_fields(cls)}
    if not members:
        return shape
    methods: dict[str, Any] = {}
    properties: list[str] = []
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(member, property):
            properties.append(name)
        elif isinstance(member, classmethod | staticmethod):
            described = describe_function(member.__func__, skip_first=isinstance(member, classmethod))
            methods[name] = {**described, "kind": type(member).__name__}
        elif inspect.isfunction(member):
            methods[name] = {**describe_function(member, skip_first=True), "kind": "method"}
    return {**shape, "methods": methods, "properties": properties}


def jsonable(value: Any) -> Any:
    if isinstance(value, frozenset | set):
        return sorted(jsonable(v) for v in value)
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, str | int | float | bool):
        return value
    raise TypeError(f"no JSON form for {type(value).__name__}: describe it explicitly")


def constant(value: Any) -> dict[str, Any]:
    return {"kind": "constant", "value": jsonable(value)}


def describe(qualified: str, obj: Any) -> dict[str, Any]:
    if qualified in PROSE_CONSTANTS:
        return {"kind": "constant", "type": type(obj).__name__}
    if inspect.isclass(obj) and dataclasses.is_dataclass(obj):
        return describe_class(obj)
    if inspect.isfunction(obj):
        return describe_function(obj)
    if inspect.ismodule(obj) or callable(obj):
        raise TypeError(f"{qualified}: a {type(obj).__name__} is not described yet: add it to describe()")
    return constant(obj)


# -- reading literals from source ------------------------------------------------------------------------------------


def _tree(obj: Any) -> ast.AST:
    return ast.parse(textwrap.dedent(inspect.getsource(obj)))


def _constant_keys(node: ast.Dict) -> list[str]:
    return [k.value for k in node.keys if isinstance(k, ast.Constant) and isinstance(k.value, str)]


def _found(what: str, value: list[str]) -> list[str]:
    # A refactor that moves the literal must move this reader too: never compare an empty shape.
    assert value, f"could not find {what} in the source: update its reader in tests/unit/test_interfaces.py"
    return value


def _template(node: ast.JoinedStr) -> str:
    """An f-string as a pattern: ``f"outputs/{o.action}/{o.path.name}"`` -> ``outputs/ACTION/NAME``."""
    parts = []
    for part in node.values:
        if isinstance(part, ast.Constant):
            parts.append(str(part.value))
        else:
            assert isinstance(part, ast.FormattedValue)
            parts.append(ast.unparse(part.value).split(".")[-1].upper())
    return "".join(parts)


def runner_provenance_keys(runner: ModuleType) -> list[str]:
    """The keys of the dict the runner's ``provenance`` method returns."""
    keys: list[str] = []
    for node in ast.walk(_tree(runner)):
        if isinstance(node, ast.FunctionDef) and node.name == "provenance":
            for inner in ast.walk(node):
                if isinstance(inner, ast.Return) and isinstance(inner.value, ast.Dict):
                    keys += _constant_keys(inner.value)
    return _found("the runner's provenance dict (studies/runner.py)", keys)


def executor_provenance(execute: ModuleType) -> tuple[list[str], list[str]]:
    """The keys the executor adds to the task's provenance (``{**task.provenance, ...}``), and the result folder's
    entries (``staging / "NAME"``)."""
    added: list[str] = []
    folder: set[str] = set()
    for node in ast.walk(_tree(execute)):
        if isinstance(node, ast.Dict) and any(
            k is None and isinstance(v, ast.Attribute) and v.attr == "provenance"
            for k, v in zip(node.keys, node.values, strict=True)
        ):
            added += _constant_keys(node)
        if (
            isinstance(node, ast.BinOp)
            and isinstance(node.op, ast.Div)
            and isinstance(node.left, ast.Name)
            and node.left.id == "staging"
            and isinstance(node.right, ast.Constant)
        ):
            folder.add(str(node.right.value))
    return (
        _found("the keys added to provenance.json (studies/execute.py)", added),
        _found("the result folder's entries (studies/execute.py)", sorted(folder)),
    )


def release_files(release: ModuleType) -> tuple[list[str], str]:
    """The names written into the bundle (``files[...]``), and the bundle's own file name pattern."""
    names: set[str] = set()
    bundle = ""
    for node in ast.walk(_tree(release.release)):
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Subscript) and isinstance(target.slice, ast.Constant):
                    names.add(str(target.slice.value))
                if isinstance(target, ast.Name) and target.id == "files" and isinstance(node.value, ast.DictComp):
                    key = node.value.key
                    if isinstance(key, ast.JoinedStr):
                        names.add(_template(key))
        if isinstance(node, ast.JoinedStr) and _template(node).endswith(".zip"):
            bundle = _template(node)
    assert bundle, "could not find the bundle's file name in review/release.py: update release_files()"
    return _found("the bundle's files (review/release.py)", sorted(names)), bundle


# -- the shape ------------------------------------------------------------------------------------------------------


def notebook_api() -> dict[str, Any]:
    import research_kit as rk

    shape: dict[str, Any] = {"rk": {"kind": "module", "exports": list(rk.__all__)}}
    shape["rk.load"] = describe("rk.load", rk.load)
    for module_name in ("dp", "outputs", "analysis"):
        module = getattr(rk, module_name)
        for name in module.__all__:
            qualified = f"rk.{module_name}.{name}"
            obj = getattr(module, name)
            if qualified == "rk.dp.COLUMNS":
                # Column objects hold callables (the public key sets) and prose: the shape is what a query names.
                obj = {c.name: {"tables": c.tables, "kind": c.kind, "bounds": c.bounds} for c in obj.values()}
            shape[qualified] = describe(qualified, obj)
    return shape


def pipeline_file() -> dict[str, Any]:
    from research_kit.core import workspace
    from research_kit.studies import spec

    def declares(tags: list[str], source: str) -> list[str] | None:
        notebook = {"cells": [{"cell_type": "code", "metadata": {"tags": tags}, "source": source}]}
        found = spec.declared_parameters(notebook)
        return None if found is None else sorted(found)

    return {
        "TOP_KEYS": constant(spec.TOP_KEYS),
        "ACTION_KEYS": constant(spec.ACTION_KEYS),
        "BUDGET_KEYS": constant(spec.BUDGET_KEYS),
        "SENSITIVITIES": constant(spec.SENSITIVITIES),
        "check_name": constant(workspace._NAME.pattern),  # study and action names
        "declared_parameters": {
            "kind": "probe",
            "value": {
                "tagged parameters, plain and annotated assignments": declares(
                    ["parameters"], "assigned = 1\nannotated: int = 2\n"
                ),
                "untagged cell": declares([], "assigned = 1\n"),
            },
        },
    }


def sidecar() -> dict[str, Any]:
    from research_kit.outputs import sidecar as sc

    minimal = sc.Sidecar(name="x", file="x.csv", type="table", kind="descriptive")
    return {
        "FORMAT": constant(sc.FORMAT),
        "SUFFIX": constant(sc.SUFFIX),
        "ROLES": constant(sc.ROLES),
        "MAGNITUDE_ROLES": constant(sc.MAGNITUDE_ROLES),
        "KINDS": constant(sc.KINDS),
        "OutputType": constant(typing.get_args(sc.OutputType)),
        "TOP_KEPT": constant(sc.TOP_KEPT),
        "Sidecar": describe_class(sc.Sidecar, members=False),
        "Contribution": describe_class(sc.Contribution, members=False),
        "DpFacts": describe_class(sc.DpFacts, members=False),
        "ModelFacts": describe_class(sc.ModelFacts, members=False),
        "json_keys": constant(sorted(json.loads(minimal.to_json()))),
    }


def provenance() -> dict[str, Any]:
    from research_kit.sandbox.limits import Limits
    from research_kit.sandbox.modes import Confinement
    from research_kit.studies import execute, runner, tasks

    added, folder = executor_provenance(execute)
    settings = Confinement(mode="bwrap", bwrap="", notices=()).settings(Limits(1, 1, 1, 1, 1))
    return {
        "runner_keys": constant(runner_provenance_keys(runner)),
        "executor_keys": constant(added),
        "sandbox_keys": constant(list(settings)),
        "OutputFile": describe_class(tasks.OutputFile, members=False),
        "result_folder": constant(folder),
    }


def release_bundle() -> dict[str, Any]:
    from research_kit.review import acro_format, release

    files, bundle = release_files(release)
    return {
        "files": constant(files),
        "bundle_name": constant(bundle),
        "ACRO_VERSION": constant(acro_format.ACRO_VERSION),
    }


@functools.cache
def _live() -> str:
    shape = {
        "notebook_api": notebook_api(),
        "pipeline_file": pipeline_file(),
        "sidecar": sidecar(),
        "provenance": provenance(),
        "release_bundle": release_bundle(),
    }
    return json.dumps(shape)


def live_shape() -> dict[str, Any]:
    """The shape of every stable interface, as the code stands (a fresh copy)."""
    return json.loads(_live())


def load_snapshot() -> dict[str, Any]:
    return json.loads(SNAPSHOT.read_text(encoding="utf-8"))


def dumps(value: Any, indent: str = "") -> str:
    """JSON with one line per leaf (a parameter, a field, a list of keys), so a change reads as a one-line diff."""
    flat = json.dumps(value)
    if isinstance(value, dict) and value and len(indent) + len(flat) > 100:
        inner = indent + "  "
        items = [f"{inner}{json.dumps(k)}: {dumps(v, inner)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + f"\n{indent}}}"
    return flat


# -- comparing ------------------------------------------------------------------------------------------------------


def differences(old: Any, new: Any, path: tuple[str, ...] = ()) -> list[str]:
    """What changed from ``old`` to ``new``, one line each: added, removed or changed, with its path."""
    where = " > ".join(path)
    if isinstance(old, dict) and isinstance(new, dict):
        lines = [f"removed: {' > '.join((*path, k))} (was {json.dumps(old[k])})" for k in old if k not in new]
        lines += [f"added:   {' > '.join((*path, k))} = {json.dumps(new[k])}" for k in new if k not in old]
        for key in (k for k in new if k in old):
            lines += differences(old[key], new[key], (*path, key))
        kept_old, kept_new = [k for k in old if k in new], [k for k in new if k in old]
        if kept_old != kept_new:  # fields and keys in another order
            lines.append(f"changed: {where}: order {json.dumps(kept_old)} -> {json.dumps(kept_new)}")
        return lines
    if old == new:
        return []
    if isinstance(old, list) and isinstance(new, list):
        added = [v for v in new if v not in old]
        removed = [v for v in old if v not in new]
        parts = ([f"items added {json.dumps(added)}"] if added else []) + (
            [f"items removed {json.dumps(removed)}"] if removed else []
        )
        return [f"changed: {where}: {', '.join(parts) or f'order {json.dumps(old)} -> {json.dumps(new)}'}"]
    return [f"changed: {where}: {json.dumps(old)} -> {json.dumps(new)}"]


def test_the_stable_interfaces_keep_their_shape() -> None:
    snapshot = load_snapshot()
    changes = differences(snapshot["shape"], live_shape())
    if changes:
        pytest.fail(
            f"{len(changes)} difference(s) from tests/unit/interfaces.json (version {snapshot['version']}):\n  "
            + "\n  ".join(changes)
            + f"\na stable interface changed: if this is intended, run {UPDATE}, bump the version and add a note "
            f"under 'Changes' in docs/interfaces.md (--update --version {snapshot['version'] + 1} does the first two)",
            pytrace=False,
        )


# -- the docs -------------------------------------------------------------------------------------------------------


def _changes_section(text: str) -> str:
    match = re.search(r"^##\s+Changes\s*$(.*?)(?=^##\s|\Z)", text, re.M | re.S)
    assert match, "docs/interfaces.md has no '## Changes' section"
    return match.group(1)


def test_the_docs_note_the_current_version() -> None:
    version = load_snapshot()["version"]
    changes = _changes_section(DOCS.read_text(encoding="utf-8"))
    note = re.compile(rf"^\s*(?:#+|[-*])\s+(?:\*\*)?Version {version}\b", re.M)
    assert note.search(changes), (
        f"tests/unit/interfaces.json is at version {version} but docs/interfaces.md has no note for it: "
        f"add a heading or list item 'Version {version} (YYYY-MM): what changed' under '## Changes'"
    )


def names_to_document(shape: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(where, name): every entry of the shape and the names inside it a reader must find in the docs."""
    for section, entries in shape.items():
        for entry, spec in entries.items():
            where = f"{section} > {entry}"
            yield where, entry
            kind = spec["kind"]
            if kind == "module":
                yield from ((where, name) for name in spec["exports"])
            elif kind == "function":
                yield from ((where, name) for name in spec["parameters"])
            elif kind == "dataclass":
                yield from ((where, name) for name in spec["fields"])
                yield from ((where, name) for name in spec.get("properties", []))
                for method, described in spec.get("methods", {}).items():
                    yield where, method
                    yield from ((f"{where}.{method}", name) for name in described["parameters"])
            elif kind == "constant" and "value" in spec:
                value = spec["value"]
                if isinstance(value, str):
                    yield where, value
                elif isinstance(value, list):
                    yield from ((where, v) for v in value if isinstance(v, str))
                elif isinstance(value, dict):
                    yield from ((where, k) for k in value)


def _code(text: str) -> str:
    """Everything the docs set as code: fenced blocks and inline spans."""
    blocks = re.findall(r"^```[^\n]*\n(.*?)^```", text, re.M | re.S)
    spans = re.findall(r"`([^`\n]+)`", re.sub(r"^```[^\n]*\n.*?^```", "", text, flags=re.M | re.S))
    return "\n".join(blocks + spans)


def test_the_docs_name_every_part_of_the_shape() -> None:
    code = _code(DOCS.read_text(encoding="utf-8"))
    missing = sorted(
        {
            f"{where}: {name}"
            for where, name in names_to_document(live_shape())
            if not re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", code)
        }
    )
    assert not missing, "docs/interfaces.md does not name (in code) these parts of the shape:\n  " + "\n  ".join(
        missing
    )


# -- updating the snapshot ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.unit.test_interfaces",
        description="Rewrite tests/unit/interfaces.json from the live code.",
    )
    parser.add_argument("--update", action="store_true", help="rewrite the snapshot's shape from the live code")
    parser.add_argument("--version", type=int, help="the new version (required, and greater, when the shape changed)")
    args = parser.parse_args(argv)
    if not args.update:
        parser.print_help()
        return 2
    current = load_snapshot() if SNAPSHOT.exists() else None
    shape = live_shape()
    version = args.version
    if current is None:
        if version is None:
            print("no snapshot yet: give --version N (1 for the first)", file=sys.stderr)
            return 2
    else:
        changes = differences(current["shape"], shape)
        if changes and (version is None or version <= current["version"]):
            print(
                f"the shape changed ({len(changes)} difference(s)):\n  " + "\n  ".join(changes) + "\n"
                f"give --version N with N > {current['version']} (and note 'Version N' under 'Changes' in "
                "docs/interfaces.md)",
                file=sys.stderr,
            )
            return 2
        if version is None:
            version = current["version"]
        elif version < current["version"]:
            print(f"--version {version} is below the current {current['version']}", file=sys.stderr)
            return 2
    SNAPSHOT.write_text(dumps({"version": version, "shape": shape}) + "\n", encoding="utf-8")
    print(f"{SNAPSHOT.relative_to(ROOT)}: version {version}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
