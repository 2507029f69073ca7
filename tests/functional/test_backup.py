"""``research-kit backup`` and ``restore`` from the shell: what a steward sees, where the restore goes, and
one-line refusals with their exit codes."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.conftest import PASSWORD, STEWARD, Project, sign_in

from .conftest import Run
from .test_cli import assert_one_line_error


def test_a_steward_backs_up_and_restores_from_the_shell(project: Project, cli: Run, tmp_path: Path) -> None:
    sign_in(project.ws)
    snap, restored = tmp_path / "snap", tmp_path / "restored"
    out = cli("backup", str(snap), "--copy-data").stdout
    assert f"snapshot written: {snap}" in out
    assert "extracts: e1 (copied), e2 (copied)" in out
    assert "The pseudonymisation key is not in it" in out
    assert_one_line_error(cli("backup", str(snap), check=False), 3, "exists already")

    # Onto the live workspace (RESEARCH_KIT_HOME, the default): refused; into a new folder: restored.
    assert_one_line_error(cli("restore", str(snap), check=False), 5, "live workspace", "--to FOLDER")
    out = cli("restore", str(snap), "--to", str(restored)).stdout
    assert f"restored into {restored}" in out
    assert "Every sign-in ended" in out
    verified = cli("audit", "verify", env={"RESEARCH_KIT_HOME": str(restored)}).stdout
    assert "audit log intact" in verified

    # Where no workspace is left to sign in to: the snapshot's steward, by their password, into RESEARCH_KIT_HOME.
    lost = tmp_path / "new-home"
    assert_one_line_error(
        cli("restore", str(snap), check=False, env={"RESEARCH_KIT_HOME": str(lost)}), 3, "--steward NAME"
    )
    cli("restore", str(snap), "--steward", STEWARD, "--password-stdin", input_text=f"{PASSWORD}\n",
        env={"RESEARCH_KIT_HOME": str(lost)})  # fmt: skip
    assert "audit log intact" in cli("audit", "verify", env={"RESEARCH_KIT_HOME": str(lost)}).stdout


def test_a_changed_snapshot_and_a_researcher_are_refused_in_one_line(
    project: Project, cli: Run, tmp_path: Path
) -> None:
    sign_in(project.ws)
    sign_in(project.ws, rita="researcher")
    assert_one_line_error(
        cli("--as", "rita", "backup", str(tmp_path / "theirs"), check=False), 5, "needs the steward role"
    )
    assert not (tmp_path / "theirs").exists()

    snap = tmp_path / "snap"
    cli("--as", STEWARD, "backup", str(snap))
    changed = tmp_path / "changed"
    shutil.copytree(snap, changed)
    catalog = changed / "catalog.sqlite"
    data = bytearray(catalog.read_bytes())
    data[len(data) // 2] ^= 0x01
    catalog.write_bytes(bytes(data))
    result = cli("--as", STEWARD, "restore", str(changed), "--to", str(tmp_path / "restored"), check=False)
    assert_one_line_error(result, 6, f"{catalog}: its SHA-256 does not match the snapshot's manifest")
    assert not (tmp_path / "restored").exists()
