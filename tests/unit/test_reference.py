"""docs/reference.md is what docs/gen_reference.py writes, and names every command, option and policy key.

The last two tests walk the CLI and the policy themselves rather than trusting
the generator, so a generator that skips a command or a key fails here too.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import typer
from typer.core import TyperGroup

from research_kit import cli
from research_kit.core.config import Policy

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "docs" / "gen_reference.py"
REFERENCE = ROOT / "docs" / "reference.md"
STALE = "docs/reference.md is out of date: run `make docs` (it runs docs/gen_reference.py)"


@pytest.fixture(scope="module")
def reference() -> str:
    assert REFERENCE.exists(), STALE
    return REFERENCE.read_text(encoding="utf-8")


def generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gen_reference", SCRIPT)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def commands(cmd: Any, path: list[str], parent: typer.Context | None = None) -> list[tuple[str, Any]]:
    """Every visible command of the app, as ("research-kit budget grant", command)."""
    ctx = typer.Context(cmd, info_name=path[-1], parent=parent)
    found = [(" ".join(path), cmd)]
    if isinstance(cmd, TyperGroup):
        for name in cmd.list_commands(ctx):
            sub = cmd.get_command(ctx, name)
            assert sub is not None, f"{' '.join(path)} lists {name!r} but cannot load it"
            if not sub.hidden:
                found += commands(sub, [*path, name], ctx)
    return found


def section(reference: str, title: str) -> str:
    """The text under the heading `title` (in backticks), up to the next command's heading."""
    match = re.search(rf"^#+ `{re.escape(title)}`\n(.*?)(?=^#+ `|^## |\Z)", reference, re.M | re.S)
    assert match is not None, f"no heading for `{title}` in docs/reference.md: run `make docs`"
    return match.group(1)


def test_the_reference_is_what_the_generator_writes_now(reference: str) -> None:
    assert generator().render() == reference, STALE


def test_every_command_and_option_is_in_the_reference(reference: str) -> None:
    root = typer.main.get_command(cli.app)
    found = commands(root, ["research-kit"])
    assert {name.split()[1] for name, _ in found[1:]} == set(cli.COMMANDS)
    for name, cmd in found:
        text = section(reference, name)
        for param in cmd.params:
            if getattr(param, "hidden", False) or param.name in ("install_completion", "show_completion"):
                continue  # hidden, or Typer's completion options, which the reference leaves out
            for opt in param.opts + param.secondary_opts:
                shown = (param.metavar or opt.upper()) if param.param_type_name == "argument" else opt
                assert f"`{shown}" in text, f"`{name}` lacks {shown} in docs/reference.md: run `make docs`"


def toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    return json.dumps(value)


def test_every_policy_key_is_in_the_reference_with_its_default(reference: str) -> None:
    policy = Policy()
    keys = 0
    for section_field in dataclasses.fields(policy):
        values = getattr(policy, section_field.name)
        for f in dataclasses.fields(values):
            key = f"`[{section_field.name}].{f.name}`"
            rows = [line for line in reference.splitlines() if line.startswith(f"| {key} |")]
            assert rows, f"{key} is not in docs/reference.md: run `make docs`"
            default = toml(getattr(values, f.name))
            assert f"`{default}`" in rows[0], f"{key}: docs/reference.md lacks its default {default}: run `make docs`"
            keys += 1
    assert keys > 40  # the policy's ten sections, walked
