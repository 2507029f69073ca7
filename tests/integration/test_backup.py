"""Backups and restores: a consistent, checksummed snapshot of a small registry, restored onto a fresh folder
where the audit chain verifies and the studies rerun; a snapshot changed anywhere is refused in one line naming
the file, and only a steward backs up or restores."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import PASSWORD, STEWARD, Project, sign_in

from research_kit.actions import backup as backups
from research_kit.actions import records
from research_kit.core import audit, permits, users
from research_kit.core.errors import BadInput, IntegrityError, PolicyRefusal
from research_kit.core.workspace import Workspace
from research_kit.pseudonymise.study_secrets import stored_secret
from research_kit.studies.rerun import rerun_all
from research_kit.studies.runner import run_pipeline
from research_kit.studies.spec import load_pipeline

TABLE = """\
import research_kit as rk
patients = rk.load("patients")
table = patients.groupby("sex").size().rename("n").reset_index()
table.to_csv("by_sex.csv", index=False)
"""


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory, registry_template: Path) -> Workspace:
    """A copy of the small registry (extracts e1 and e2), with a steward and a researcher who have passwords."""
    root = tmp_path_factory.mktemp("backup-source") / "ws"
    shutil.copytree(registry_template, root)
    ws = Workspace(root)
    with audit.acting(STEWARD):
        users.add(ws, STEWARD, "steward", PASSWORD)
        users.add(ws, "rita", "researcher", PASSWORD)
    return ws


@pytest.fixture(scope="module")
def pristine(source: Workspace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A snapshot of ``source``, the extracts' data by reference (each test changes a copy of it)."""
    out = tmp_path_factory.mktemp("snapshots") / "snap"
    backups.backup(source, actor=STEWARD, out=out)
    return out


@pytest.fixture
def snapshot(pristine: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "snap"
    shutil.copytree(pristine, copy)
    return copy


def restore(snapshot: Path, to: Path, *, actor: str = STEWARD, password: str = PASSWORD) -> backups.Restored:
    return backups.restore(snapshot, actor=actor, to=to, password=password)


def flip(path: Path, at: int | None = None) -> None:
    """Change one byte of ``path`` (the middle one unless ``at`` says)."""
    data = bytearray(path.read_bytes())
    i = len(data) // 2 if at is None else at
    data[i] ^= 0x01
    path.write_bytes(bytes(data))


def redo_checksums(snapshot: Path, rel: str) -> None:
    """Record ``rel``'s new SHA-256 and size in the manifest and redo its checksum, as a forger would."""
    path, mpath = snapshot / rel, snapshot / "manifest.json"
    manifest = json.loads(mpath.read_text())
    manifest["files"][rel] = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "bytes": path.stat().st_size}
    rest = {k: v for k, v in manifest.items() if k != "checksum"}
    canonical = json.dumps(rest, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    manifest["checksum"] = hashlib.sha256(canonical.encode()).hexdigest()
    mpath.write_text(json.dumps(manifest, indent=2, sort_keys=True))


def refused(exc: pytest.ExceptionInfo[Exception], target: Path, *fragments: str) -> None:
    """One line naming what failed; nothing restored, nothing half-written beside the target."""
    message = str(exc.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message
    assert not target.exists()
    assert not [p for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.")]


def test_a_snapshot_restores_onto_a_fresh_folder_where_the_chain_verifies_and_the_studies_rerun(
    project: Project, tmp_path: Path, registry_template: Path
) -> None:
    project.notebook("table", "unused = 0", TABLE)
    action = {"notebook": "notebooks/table.ipynb", "outputs": {"moderately_sensitive": {"table": "by_sex.csv"}}}
    pipeline = project.pipeline("t1", {"by_sex": action})
    assert run_pipeline(project.ws, load_pipeline(pipeline), extract="e1").outcome == "succeeded"
    sign_in(project.ws)  # a steward, signed in on the command line: a session the restore ends

    snap = backups.backup(project.ws, actor=STEWARD, out=tmp_path / "snap", copy_data=True)
    inside = sorted(p.relative_to(snap.path).as_posix() for p in snap.path.rglob("*") if p.is_file())
    tables = ["diagnoses.parquet", "encounters.parquet", "manifest.json", "patients.parquet", "phenotypes.parquet",
              "reconciliation.json"]  # fmt: skip
    assert inside == sorted(
        ["audit.jsonl", "catalog.sqlite", "manifest.json", "research-kit.toml"]
        + [f"extracts/{e}/{t}" for e in ("e1", "e2") for t in tables]
    )
    # The source's log records the backup by its manifest's checksum, and no path.
    entry = audit.read_entries(project.ws.audit_path)[-1]
    assert entry["action"] == "workspace.backup"
    assert entry["actor"] == STEWARD
    assert entry["details"]["manifest_sha256"] == hashlib.sha256((snap.path / "manifest.json").read_bytes()).hexdigest()
    assert entry["details"]["extracts"] == {"e1": "copy", "e2": "copy"}
    assert str(tmp_path) not in json.dumps(entry)
    # The key is nowhere in it.
    key = (registry_template.parent / "secrets" / "k.key").read_text().strip()
    for path in snap.path.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert key.encode() not in data
            assert bytes.fromhex(key) not in data

    target = tmp_path / "restored"
    done = restore(snap.path, target)
    assert done.root == target
    assert done.sessions_ended >= 1
    assert done.relocated >= 1  # the study result's folder moved with the workspace
    restored = Workspace(target)
    assert oct(target.stat().st_mode & 0o777) == "0o700"
    last = audit.read_entries(restored.audit_path)[-1]
    assert (last["action"], last["actor"]) == ("workspace.restored", STEWARD)
    assert last["details"]["snapshot_sha256"] == snap.checksum
    with restored.catalog() as conn:
        assert conn.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 0
        dump = "\n".join(conn.iterdump())
    assert f"{project.ws.root}/" not in dump  # no path of the catalog points into the source workspace

    verified = subprocess.run(
        [sys.executable, "-m", "research_kit", "audit", "verify"],
        env={**os.environ, "RESEARCH_KIT_HOME": str(target)}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stderr
    assert "audit log intact" in verified.stdout

    # Each study's pseudonym secret comes back with the catalog: the study sees the same pseudonyms.
    with project.ws.catalog() as before, restored.catalog() as after:
        line = permits.pseudonym_line(before, "t1")
        assert stored_secret(after, line) == stored_secret(before, line) is not None

    report = rerun_all(restored, "e2")
    assert report.ok
    assert [(r.study, r.extract, r.actions["by_sex"].outcome) for r in report.runs] == [("t1", "e2", "ran")]
    assert (target / "studies" / "t1" / "results").is_dir()
    assert records.verify(restored).ok
    assert records.verify(project.ws).ok


def test_extract_data_kept_by_reference_are_checked_where_they_are(project: Project, tmp_path: Path) -> None:
    sign_in(project.ws)
    snap = backups.backup(project.ws, actor=STEWARD, out=tmp_path / "snap")
    assert not list(snap.path.rglob("*.parquet"))
    assert snap.extracts == {"e1": "reference", "e2": "reference"}
    assert snap.manifest["extracts"]["e1"]["path"] == str((project.ws.extracts_dir / "e1").resolve())

    first = backups.restore(snap.path, actor=STEWARD, to=tmp_path / "one", live=project.ws)
    for name in ("patients.parquet", "encounters.parquet"):
        assert (first.root / "extracts" / "e1" / name).read_bytes() == (
            project.ws.extracts_dir / "e1" / name
        ).read_bytes()

    data = project.ws.extracts_dir / "e1" / "patients.parquet"
    data.chmod(0o600)
    flip(data)
    with pytest.raises(IntegrityError) as exc:
        backups.restore(snap.path, actor=STEWARD, to=tmp_path / "two", live=project.ws)
    refused(exc, tmp_path / "two", str(data), "does not match")
    data.unlink()
    with pytest.raises(IntegrityError) as exc:
        backups.restore(snap.path, actor=STEWARD, to=tmp_path / "two", live=project.ws)
    refused(exc, tmp_path / "two", str(data), "missing")


def _one_byte_in_the_manifest(path: Path) -> None:
    text = path.read_bytes()
    at = text.index(b'"created_at": "2') + len(b'"created_at": "')
    flip(path, at)


@pytest.mark.parametrize(
    ("rel", "change", "says"),
    [
        ("catalog.sqlite", flip, "its SHA-256 does not match the snapshot's manifest"),
        ("audit.jsonl", flip, "its SHA-256 does not match the snapshot's manifest"),
        ("research-kit.toml", flip, "its SHA-256 does not match the snapshot's manifest"),
        ("extracts/e1/manifest.json", flip, "its SHA-256 does not match the snapshot's manifest"),
        ("manifest.json", _one_byte_in_the_manifest, "does not match its own checksum"),
        ("extracts/e2/reconciliation.json", Path.unlink, "missing from the snapshot"),
    ],
    ids=["catalog", "audit log", "policy", "an extract's manifest", "the snapshot's manifest", "a file removed"],
)
def test_a_snapshot_changed_anywhere_is_refused_naming_the_file(
    snapshot: Path, tmp_path: Path, rel: str, change: Callable[[Path], Any], says: str
) -> None:
    change(snapshot / rel)
    with pytest.raises(IntegrityError) as exc:
        restore(snapshot, tmp_path / "restored")
    refused(exc, tmp_path / "restored", str(snapshot / rel), says)


def test_a_file_added_to_a_snapshot_is_refused(snapshot: Path, tmp_path: Path) -> None:
    (snapshot / "extracts" / "e1" / "patients.parquet").write_bytes(b"PAR1")
    with pytest.raises(IntegrityError) as exc:
        restore(snapshot, tmp_path / "restored")
    refused(exc, tmp_path / "restored", "extracts/e1/patients.parquet", "not in the snapshot's manifest")


@pytest.mark.parametrize("edit", ["an entry rewritten", "the last entry cut"])
def test_an_audit_log_edited_with_its_checksums_redone_is_refused_by_its_chain(
    snapshot: Path, tmp_path: Path, edit: str
) -> None:
    log = snapshot / "audit.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    if edit == "an entry rewritten":
        entry = json.loads(lines[1])
        entry["actor"] = "someone-else"
        lines[1] = json.dumps(entry, sort_keys=True) + "\n"
        says = "entry 2 (line 2): content does not match its hash"
    else:
        lines = lines[:-1]
        says = "missing from the end"
    log.write_text("".join(lines))
    redo_checksums(snapshot, "audit.jsonl")
    with pytest.raises(IntegrityError) as exc:
        restore(snapshot, tmp_path / "restored")
    refused(exc, tmp_path / "restored", str(log), says)


def test_only_a_steward_backs_up_or_restores(source: Workspace, snapshot: Path, tmp_path: Path) -> None:
    with pytest.raises(PolicyRefusal, match="'rita' is a researcher; backing the workspace up needs the steward"):
        backups.backup(source, actor="rita", out=tmp_path / "theirs")
    assert not (tmp_path / "theirs").exists()
    with pytest.raises(PolicyRefusal) as exc:
        restore(snapshot, tmp_path / "restored", actor="rita")
    refused(
        exc, tmp_path / "restored", "'rita' is a researcher; restoring a workspace from a snapshot needs the steward"
    )
    with pytest.raises(PolicyRefusal) as exc:
        restore(snapshot, tmp_path / "restored", password="not the password")
    refused(exc, tmp_path / "restored", "not a user of this snapshot with that password")
    with pytest.raises(PolicyRefusal, match="needs the steward role"):
        backups.restore(snapshot, actor="rita", to=tmp_path / "restored", live=source)
    assert not (tmp_path / "restored").exists()


def test_a_backup_or_restore_never_writes_over_anything(source: Workspace, snapshot: Path, tmp_path: Path) -> None:
    (tmp_path / "taken").mkdir()
    with pytest.raises(BadInput, match="exists already"):
        backups.backup(source, actor=STEWARD, out=tmp_path / "taken")
    with pytest.raises(BadInput, match="inside the workspace"):
        backups.backup(source, actor=STEWARD, out=source.root / "snapshots" / "one")
    assert not (source.root / "snapshots").exists()

    with pytest.raises(PolicyRefusal, match="live workspace; restore never writes over or into one"):
        restore(snapshot, source.root)
    with pytest.raises(PolicyRefusal, match="lies in the workspace"):
        restore(snapshot, source.root / "restored")
    (tmp_path / "taken" / "a-file").write_text("mine")
    with pytest.raises(BadInput, match="not empty"):
        restore(snapshot, tmp_path / "taken")
    assert (tmp_path / "taken" / "a-file").read_text() == "mine"

    (tmp_path / "empty").mkdir()
    assert restore(snapshot, tmp_path / "empty").root == tmp_path / "empty"  # an empty folder is filled
    assert records.verify(Workspace(tmp_path / "empty")).ok
