"""The sandbox's parts that need no kernel: input views, the broker's refusals, limits and cgroups."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from research_kit.core.config import RunnerPolicy
from research_kit.core.errors import BadInput
from research_kit.sandbox import limits
from research_kit.sandbox.broker import Grant, handle
from research_kit.sandbox.views import Projection, build_view
from research_kit.tiers import Source, view_source


def source(tmp_path: Path) -> Source:
    folder = tmp_path / "extract"
    folder.mkdir()
    for table in ("patients", "diagnoses", "phenotypes", "encounters"):
        pl.DataFrame({"pseudonym": ["a", "b"], "value": [1, 2]}).write_parquet(folder / f"{table}.parquet")
    return Source("sandbox", "twin:e1", folder, "hash", 2026)  # a twin (a view of the real extract: test_study_views)


def test_a_view_links_the_stored_tables_and_projects_what_it_is_told(tmp_path: Path) -> None:
    src = source(tmp_path)
    policy = tmp_path / "research-kit.toml"
    policy.write_text("")
    upstream = tmp_path / "cohort.csv"
    upstream.write_text("n\n1\n")
    view = build_view(
        tmp_path / "view",
        source=src,
        policy_file=policy,
        pseudonyms=None,
        upstream=[("out/cohort.csv", str(upstream))],
        projection=Projection({"patients": ("pseudonym",), "diagnoses": None}),
    )
    assert view.bound == ()
    linked = view.folder / "extract" / "diagnoses.parquet"
    assert linked.stat().st_ino == (src.folder / "diagnoses.parquet").stat().st_ino  # a hard link, not a copy
    assert pl.read_parquet(view.folder / "extract" / "patients.parquet").columns == ["pseudonym"]
    assert not (view.folder / "extract" / "phenotypes.parquet").exists()
    assert (view.folder / "upstream" / "out" / "cohort.csv").read_text() == "n\n1\n"
    seen, tables = view_source(view.folder)
    assert (seen.name, seen.tier, tables) == ("twin:e1", "sandbox", {"patients": ["pseudonym"], "diagnoses": None})


def test_a_view_refuses_paths_out_of_it_and_unknown_tables(tmp_path: Path) -> None:
    src = source(tmp_path)
    policy = tmp_path / "research-kit.toml"
    policy.write_text("")
    with pytest.raises(BadInput, match="outside the action's folder"):
        build_view(
            tmp_path / "v", source=src, policy_file=policy, pseudonyms=None, upstream=[("../../escape", str(policy))]
        )
    with pytest.raises(BadInput, match="no such table 'notes'"):
        Projection({"notes": None})


@pytest.mark.parametrize(
    ("request_", "message"),
    [
        ({"op": "grant", "study": "s"}, "answers DP queries only"),
        ({"op": "dp", "kind": "count", "table": "patients", "vote": 1}, "unknown field in the query: 'vote'"),
        ({"op": "dp", "kind": "count", "table": "patients", "tier": "sandbox"}, "its own extract"),
        ({"op": "dp", "kind": "count", "table": "patients", "extract": "e2"}, "extract 'e2'"),
        ("not an object", "answers DP queries only"),
    ],
)
def test_the_broker_refuses_what_is_not_a_query_on_its_own_extract(request_: object, message: str) -> None:
    reply = handle(Grant("/nowhere", "s1", "e1", "runner:x"), request_)
    assert reply["ok"] is False
    assert message in reply["message"]


def test_limits_come_from_the_policy_and_set_the_launchers_rlimits() -> None:
    got = limits.Limits.from_policy(RunnerPolicy(memory_mb=100, cpu_seconds=10, work_mb=3))
    assert got.memory_bytes == 100 * limits.MIB
    assert got.rlimits() == {
        "cpu": (12, 15),
        "fsize": (3 * limits.MIB, 3 * limits.MIB),
        "core": (0, 0),
        "nofile": (limits.OPEN_FILES, limits.OPEN_FILES),
    }


def test_a_delegated_cgroup_v2_is_found_and_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(limits, "CGROUP_ROOT", tmp_path)
    assert "cgroup v2 is not mounted" in limits.cgroup_v2_parent()[1]
    own = next(line for line in Path("/proc/self/cgroup").read_text().splitlines() if line.startswith("0::"))
    parent = tmp_path / own.split("::", 1)[1].strip().lstrip("/")
    parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / "cgroup.controllers").write_text("cpu memory pids")
    (parent / "cgroup.subtree_control").write_text("cpu memory")
    assert "the pids controller is not delegated" in limits.cgroup_v2_parent()[1]
    (parent / "cgroup.subtree_control").write_text("cpu memory pids")
    assert limits.cgroup_v2_parent() == (parent, "")
    group = limits.Cgroup(parent, "rk-test", limits.Limits(64 * limits.MIB, 1, 1, 1, 8))
    assert (group.path / "memory.max").read_text() == str(64 * limits.MIB)
    assert (group.path / "pids.max").read_text() == "8"
    assert not group.oom_killed()
    (group.path / "memory.events").write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    assert group.oom_killed()


def test_the_work_folder_is_measured_by_what_it_holds_on_disk_and_its_entries(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "one.bin").write_bytes(b"x" * 1_000_000)
    with open(tmp_path / "sparse.bin", "wb") as fh:  # claims 1 GB, holds almost nothing
        fh.truncate(1_000_000_000)
    for i in range(20):
        (tmp_path / "a" / f"empty-{i}").touch()  # no block, but an inode each
    used, entries = limits.folder_usage(tmp_path)
    assert 1_000_000 <= used < 2_000_000
    assert entries == 23
    watcher = limits.Watcher(limits.Limits(limits.MIB * 1024, 60, 60, limits.MIB * 1024, 8, max_files=22), tmp_path)
    try:
        assert watcher.check_work_folder() == "its limit of 22 files in its work folder"
    finally:
        watcher.stop()


def test_the_private_tmp_is_mounted_before_what_may_live_under_the_hosts_tmp(tmp_path: Path) -> None:
    from research_kit.sandbox.confine import Sandbox, python_folders

    box = Sandbox(mode="bwrap", limits=limits.Limits(limits.MIB, 1, 1, limits.MIB, 8), bwrap="/usr/bin/bwrap")
    box.add("work", tmp_path, "/rk/work", writable=True)
    args = box.bwrap_args()
    tmpfs = {args[i + 1]: i for i, a in enumerate(args) if a == "--tmpfs"}
    assert set(tmpfs) == {"/tmp", "/dev/shm"}
    assert all(args[i - 2 : i] == ["--size", str(limits.MIB)] for i in tmpfs.values())  # both capped
    binds = [i for i, a in enumerate(args) if a in ("--bind", "--ro-bind")]
    assert max(tmpfs.values()) < min(binds)  # a clone under /tmp keeps its environment visible inside
    assert {str(p) for p in python_folders()} <= {args[i + 2] for i in binds}
    assert args[args.index("--bind") + 1 : args.index("--bind") + 3] == [str(tmp_path), "/rk/work"]
