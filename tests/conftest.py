from __future__ import annotations

from pathlib import Path

import pytest

from research_kit.registry.codes import CodeSystems, load_code_systems
from research_kit.workspace import Workspace, init_workspace


@pytest.fixture(scope="session")
def codes() -> CodeSystems:
    return load_code_systems()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh workspace root for this test, as RESEARCH_KIT_HOME."""
    root = tmp_path / "ws"
    monkeypatch.setenv("RESEARCH_KIT_HOME", str(root))
    monkeypatch.setenv("RESEARCH_KIT_USER", "test-steward")
    return root


@pytest.fixture
def workspace(home: Path) -> Workspace:
    ws, _ = init_workspace(home)
    return ws


@pytest.fixture
def key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh key outside the workspace, as RESEARCH_KIT_KEY_FILE."""
    from research_kit.pseudonymise.keys import new_key

    path = tmp_path / "secrets" / "test.key"
    monkeypatch.setenv("RESEARCH_KIT_KEY_FILE", str(path))
    new_key(path)
    return path
