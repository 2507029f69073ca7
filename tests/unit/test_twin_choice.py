"""Several twins of one extract side by side (the default one, a DP one): which one each call reads.

The twins here are tiny tables written by hand, with a twin.json as ``research-kit synth`` writes it; what is
under test is the choice (``rk.load(twin=...)``, ``RESEARCH_KIT_TWIN``, an action's view, the lab), not SDV or
the DP mechanisms. A twin is told apart by its number of patients.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from rich.console import Console
from tests.conftest import people

import research_kit as rk
from research_kit.core import audit
from research_kit.core.catalog import transaction
from research_kit.core.errors import MissingData
from research_kit.core.workspace import Workspace
from research_kit.lab import lab_environment, prepare_lab_home, startup_line
from research_kit.sandbox.views import StudyPseudonyms, build_view
from research_kit.tiers import (
    STAGING,
    TWIN_ENV,
    TWIN_MANIFEST,
    finish_publications,
    published_twins,
    source_for,
    twin_kind,
    twin_source,
)

AIM = {"mechanism": "aim", "epsilon": 4.0, "rho": 0.1577, "delta": 1e-6}


def write_tables(folder: Path, patients: int) -> None:
    folder.mkdir(parents=True)
    ids = [f"{i:02x}" * 16 for i in range(patients)]
    pl.DataFrame({"pseudonym": ids, "birth_year": [1950 + i for i in range(patients)]}).write_parquet(
        folder / "patients.parquet"
    )
    for table in ("diagnoses", "phenotypes", "encounters"):
        pl.DataFrame({"pseudonym": ids, "code": [f"{table}-{i}" for i in range(patients)]}).write_parquet(
            folder / f"{table}.parquet"
        )


def publish(
    ws: Workspace,
    twin_id: str,
    patients: int,
    at: str,
    *,
    kind: str | None = "default",
    dp: dict[str, object] | None = None,
) -> Path:
    """A published twin at synthetic/TWIN_ID; ``kind=None``: as published before DP twins (no twin, no kind)."""
    folder = ws.synthetic_dir / twin_id
    write_tables(folder, patients)
    manifest: dict[str, object] = {
        "extract": twin_id.removesuffix("@dp"), "content_hash": f"hash-{twin_id}", "reference_year": 2026,
        "published_at": at,
    }  # fmt: skip
    if kind is not None:
        manifest |= {"twin": twin_id, "kind": kind} | ({"dp": dp} if dp else {})
    (folder / TWIN_MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return folder


@pytest.fixture
def twins(workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    """An older twin of another extract (published before DP twins), demo's default twin and, newer, its DP twin."""
    for name in ("RESEARCH_KIT_TIER", "RESEARCH_KIT_VIEW", TWIN_ENV):
        monkeypatch.delenv(name, raising=False)
    publish(workspace, "e1", 2, "2026-01-01T00:00:00+00:00", kind=None)
    publish(workspace, "demo", 3, "2026-02-01T00:00:00+00:00")
    publish(workspace, "demo@dp", 5, "2026-03-01T00:00:00+00:00", kind="dp", dp=AIM)
    return workspace


def test_a_notebook_reads_the_default_twin_until_it_names_the_dp_one(twins: Workspace) -> None:
    assert len(rk.load("patients")) == 3  # the DP twin is newer, yet rk.load() stays on the default one
    assert len(rk.load("patients", twin=True)) == 3
    assert len(rk.load("patients", twin="default")) == 3
    assert len(rk.load("patients", twin="dp")) == 5
    assert len(rk.load("patients", twin="demo@dp")) == 5
    assert len(rk.load("patients", twin="e1")) == 2  # a twin published before DP twins, by its folder's name
    assert [twin_kind(m) for _, m in published_twins(twins)] == ["default", "default", "dp"]


def test_a_twin_that_is_not_published_is_refused_in_one_line_listing_those_that_are(twins: Workspace) -> None:
    with pytest.raises(MissingData) as refused:
        rk.load("patients", twin="demo@mst")
    message = str(refused.value)
    assert "\n" not in message
    assert "'demo@mst'" in message
    assert "e1 (default), demo (default), demo@dp (DP: AIM, epsilon 4)" in message


def test_with_dp_twins_only_the_default_choice_says_how_to_pick_one(workspace: Workspace) -> None:
    publish(workspace, "demo@dp", 5, "2026-03-01T00:00:00+00:00", kind="dp", dp={"mechanism": "mst", "rho": 0.5})
    with pytest.raises(MissingData, match=r"only DP ones \(demo@dp \(DP: MST, rho 0.5\)\).*twin='dp'.*--twin dp"):
        twin_source(workspace)
    assert twin_source(workspace, "dp").name == "twin:demo@dp"
    (workspace.synthetic_dir / "demo@dp" / TWIN_MANIFEST).unlink()
    publish(workspace, "demo", 3, "2026-02-01T00:00:00+00:00")
    with pytest.raises(MissingData, match=r"no DP twin published \(published: demo \(default\);"):
        twin_source(workspace, "dp")


def test_the_lab_choice_sets_what_rk_load_and_rk_dp_read_but_not_twin_true(
    twins: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(TWIN_ENV, "dp")
    assert len(rk.load("patients")) == 5
    assert source_for(twins, "sandbox").name == "twin:demo@dp"  # rk.dp's source in the sandbox tier
    assert len(rk.load("patients", twin=True)) == 3  # twin=True is the default twin wherever it runs
    monkeypatch.setenv(TWIN_ENV, "e1")
    assert len(rk.load("patients")) == 2
    monkeypatch.setenv(TWIN_ENV, "nope")
    with pytest.raises(MissingData, match="no published twin 'nope'"):
        rk.load("patients")


def stage(ws: Workspace, twin_id: str, patients: int, content_hash: str, *, details_twin: bool = True) -> Path:
    """A twin whose publication committed (its synth.publish entry) but a kill left under synthetic/.staging."""
    folder = ws.synthetic_dir / STAGING / f"{twin_id}-0000"
    write_tables(folder, patients)
    extract = twin_id.removesuffix("@dp")
    manifest = {"extract": extract, "content_hash": content_hash, "reference_year": 2026,
                "published_at": "2026-04-01T00:00:00+00:00", "twin": twin_id,
                "kind": "dp" if twin_id.endswith("@dp") else "default"}  # fmt: skip
    (folder / TWIN_MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    details = {"extract": extract, "twin_content_hash": content_hash} | ({"twin": twin_id} if details_twin else {})
    with ws.catalog() as conn, transaction(conn):
        audit.append(conn, ws.audit_path, "synth.publish", details)
    return folder


def test_a_staged_dp_twin_is_finished_beside_the_default_twin_never_over_it(twins: Workspace) -> None:
    default = (twins.synthetic_dir / "demo" / TWIN_MANIFEST).read_text(encoding="utf-8")
    (twins.synthetic_dir / "demo@dp").rename(twins.synthetic_dir.parent / "older-dp")  # DP twin not yet in place
    stage(twins, "demo@dp", 7, "hash-new-dp")
    assert finish_publications(twins) == ["demo@dp"]
    assert (twins.synthetic_dir / "demo" / TWIN_MANIFEST).read_text(encoding="utf-8") == default
    assert len(rk.load("patients", twin=True)) == 3
    assert len(rk.load("patients", twin="dp")) == 7
    # An older synth.publish entry names no twin: its extract's id is the twin's (the default twin).
    stage(twins, "demo", 4, "hash-new-default", details_twin=False)
    assert finish_publications(twins) == ["demo"]
    assert len(rk.load("patients", twin=True)) == 4
    assert len(rk.load("patients", twin="dp")) == 7


def test_an_actions_view_holds_the_default_twin_and_the_dp_twin(
    twins: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    extract = tmp_path / "extract"
    write_tables(extract, 11)
    source = twin_source(twins, "e1")  # stands for the extract: a sandbox-tier source needs no study pseudonyms
    source = type(source)("sandbox", "e9", extract, "hash-e9", 2026)
    policy = tmp_path / "research-kit.toml"
    policy.write_text("")
    view = build_view(
        tmp_path / "view", source=source, policy_file=policy, twin=twin_source(twins),
        dp_twin=twin_source(twins, "dp"), pseudonyms=StudyPseudonyms(b"s" * 32, tmp_path / "cache"),
    )  # fmt: skip
    manifest = json.loads((view.folder / "view.json").read_text(encoding="utf-8"))
    assert manifest["twin"]["name"] == manifest["twins"]["default"]["name"] == "twin:demo"  # older readers: "twin"
    assert manifest["twins"]["dp"]["name"] == "twin:demo@dp"
    assert (view.folder / "twins" / "dp" / TWIN_MANIFEST).is_file()
    monkeypatch.setenv("RESEARCH_KIT_VIEW", str(view.folder))
    monkeypatch.setenv(TWIN_ENV, "dp")  # the lab's choice does not reach a view: rk.load() reads its extract
    assert len(rk.load("patients")) == 11
    assert len(rk.load("patients", twin=True)) == 3
    assert len(rk.load("patients", twin="dp")) == 5
    assert len(rk.load("patients", twin="demo@dp")) == 5
    with pytest.raises(MissingData, match=r"holds no such twin \(its twins: demo \(default\), demo@dp \(dp\)\)"):
        rk.load("patients", twin="e1")
    # A view written before DP twins (only "twin") still gives its twin, and no DP one.
    manifest.pop("twins")
    manifest["twin"].pop("folder")
    (view.folder / "view.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert len(rk.load("patients", twin=True)) == 3
    with pytest.raises(MissingData, match=r"rk.load\(twin='dp'\): this action's view holds no such twin"):
        rk.load("patients", twin="dp")


def test_the_lab_holds_every_twin_lists_their_kinds_and_passes_the_choice(
    twins: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lab = prepare_lab_home(twins, tmp_path / "lab", "test-steward")
    assert sorted(p.name for p in lab.synthetic_dir.iterdir()) == ["demo", "demo@dp", "e1"]
    line = startup_line(lab, twin_source(lab, "dp").name)
    assert line == (
        "JupyterLab on the synthetic twins e1 (default), demo (default), demo@dp (DP: AIM, epsilon 4); "
        "rk.load() reads demo@dp"
    )
    assert lab_environment("/lab/home", "/lab/cache/codes.sqlite", "rita", "dp")[TWIN_ENV] == "dp"
    assert TWIN_ENV not in lab_environment("/lab/home", "/lab/cache/codes.sqlite", "rita", None)
    monkeypatch.setenv("RESEARCH_KIT_HOME", str(lab.root))  # a kernel of the lab, started with --twin dp
    monkeypatch.setenv(TWIN_ENV, "dp")
    assert len(rk.load("patients")) == 5


def test_a_lab_on_a_twin_that_is_not_published_is_refused_before_its_start_is_audited(
    twins: Workspace, tmp_path: Path
) -> None:
    from research_kit.actions import confinement

    people(twins, rita="researcher")
    with pytest.raises(MissingData, match="no published twin 'demo@mst'"):
        confinement.lab(
            twins, actor="rita", home=tmp_path / "lab", port=1, notebooks=tmp_path, console=Console(), twin="demo@mst"
        )  # fmt: skip
    assert not [e for e in audit.read_entries(twins.audit_path) if e["action"] == "lab.start"]
    assert not (tmp_path / "lab").exists()
