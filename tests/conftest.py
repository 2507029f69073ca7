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
