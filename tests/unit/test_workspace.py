from __future__ import annotations

import stat
from pathlib import Path

import pytest

from research_kit.core import audit
from research_kit.core.errors import BadInput, MissingData
from research_kit.core.workspace import init_workspace, open_workspace


def test_init_makes_a_private_workspace_and_records_the_policy(tmp_path: Path) -> None:
    ws, created = init_workspace(tmp_path / "ws")
    assert created
    assert stat.S_IMODE(ws.root.stat().st_mode) == 0o700
    entries = audit.read_entries(ws.audit_path)
    assert [e["action"] for e in entries] == ["workspace.init"]
    assert entries[0]["details"]["policy"]["sdc"]["min_cell_count"] == 10


def test_init_in_an_empty_folder_locks_it_down(tmp_path: Path) -> None:
    folder = tmp_path / "empty"
    folder.mkdir(mode=0o755)
    ws, _ = init_workspace(folder)
    assert stat.S_IMODE(ws.root.stat().st_mode) == 0o700


def test_init_refuses_a_folder_that_holds_other_things(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(BadInput, match="not empty and not a workspace"):
        init_workspace(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_open_finds_the_workspace_from_the_environment(home: Path) -> None:
    with pytest.raises(MissingData, match="no workspace here"):
        open_workspace()
    init_workspace()
    assert open_workspace().root == home.resolve()
