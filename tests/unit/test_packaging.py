"""The project's own files agree with each other: dependencies, README commands, ignore rules."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def normalise(spec: str) -> str:
    return re.sub(r"\s+", "", spec).lower().replace("_", "-")


def test_environment_yml_declares_the_same_dependencies_as_pyproject() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    assert "python=3.11" in env["dependencies"]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    declared = {normalise(s) for s in pip if not s.startswith(("-e ", "torch=="))}
    wanted = [*project["dependencies"], *project["optional-dependencies"]["dp-twin"]]
    assert declared == {normalise(s) for s in wanted}
    assert "-e .[dp-twin]" in pip  # the DP twin's extra, as make setup installs it
    assert "torch==2.13.0" in pip  # the CPU build, installed before SDV pulls a CUDA one


def test_the_readme_opens_with_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    first_block = re.search(r"```(?:sh|bash|console)?\n(.*?)```", readme, re.S)
    assert first_block is not None
    assert first_block.group(1).split() == ["make", "demo", "make", "test"]


def test_sensitive_and_generated_paths_are_ignored() -> None:
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    for entry in (".venv/", ".workspace/", ".secrets/", "synthetic/*", "!synthetic/README.md"):
        assert entry in ignored


def test_the_install_stamp_is_keyed_on_the_dependency_spec() -> None:
    makefile = (ROOT / "Makefile").read_text()
    assert re.search(r"STAMP := .*pyproject\.toml.*sha256sum", makefile)
    assert re.search(r"^demo: \$\(STAMP\)", makefile, re.M)
    assert re.search(r"^test: \$\(STAMP\)", makefile, re.M)


def test_the_readme_documents_every_policy_key_with_its_default() -> None:
    import dataclasses

    from research_kit.core.config import SECTIONS, Policy, _toml_value

    readme = (ROOT / "README.md").read_text()
    policy = Policy()
    for cls in SECTIONS:
        for f in dataclasses.fields(getattr(policy, cls.name)):
            default = _toml_value(getattr(getattr(policy, cls.name), f.name))
            row = f"| `{cls.name}` | `{f.name}` | `{default}` |"
            assert row in readme, f"README lacks the row for [{cls.name}].{f.name} = {default}"
