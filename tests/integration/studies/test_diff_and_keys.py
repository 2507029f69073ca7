"""Diffs between versions of an output, content keys, and the run lock (no kernels)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from research_kit.core.locks import Busy, hold
from research_kit.studies.cache import action_key, environment
from research_kit.studies.diff import diff_outputs


def csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_a_table_diff_counts_rows_added_removed_and_cells_changed_by_how_much(tmp_path: Path) -> None:
    old = csv(tmp_path / "old.csv", "group,sex,n,mean\nA,f,12,3.5\nA,m,20,4.0\nB,f,15,2.0\n")
    new = csv(tmp_path / "new.csv", "group,sex,n,mean\nA,f,14,3.5\nA,m,20,4.5\nC,m,11,1.0\n")
    diff = diff_outputs(old, new, "the released version")
    assert diff["against"] == "the released version"
    assert diff["kind"] == "table"
    assert diff["keys"] == ["group", "sex"]
    assert diff["values"] == ["n", "mean"]
    assert (diff["rows_added"], diff["rows_removed"]) == (1, 1)  # C/m appeared, B/f went
    assert (diff["cells_added"], diff["cells_removed"], diff["cells_changed"]) == (2, 2, 2)
    changes = {(c["row"]["group"], c["row"]["sex"], c["column"]): c for c in diff["changed"]}
    assert changes[("A", "f", "n")]["change"] == 2
    assert changes[("A", "f", "n")]["relative"] == pytest.approx(2 / 12, 1e-3)
    assert changes[("A", "m", "mean")]["change"] == pytest.approx(0.5)
    assert diff["largest_change"] == 2


def test_unchanged_tables_and_other_files(tmp_path: Path) -> None:
    table = csv(tmp_path / "a.csv", "k,n\nx,1\n")
    same = csv(tmp_path / "b.csv", "k,n\nx,1\n")
    assert diff_outputs(table, same, "v1")["cells_changed"] == 0
    png1 = tmp_path / "a.png"
    png1.write_bytes(b"\x89PNG one")
    png2 = tmp_path / "b.png"
    png2.write_bytes(b"\x89PNG two")
    assert diff_outputs(png1, png2, "v1") == {"against": "v1", "kind": "file", "changed": True}
    # Labels that do not identify rows: compared as files, with the reason.
    dup = csv(tmp_path / "dup.csv", "k,n\nx,1\nx,2\n")
    assert diff_outputs(table, dup, "v1")["note"].startswith("not comparable as tables")


BASE: dict[str, Any] = {
    "study": "s", "outputs": [("t", "t.csv", "moderately_sensitive")], "notebook_hash": "n",
    "parameters": {"a": 1}, "extract": "e1", "extract_hash": "h", "upstream": {"x/y.csv": "u"},
    "environment_hash": "env", "pseudonyms": "f", "tables": "every table",
}  # fmt: skip


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("study", "s2"),
        ("outputs", []),
        ("notebook_hash", "n2"),
        ("parameters", {"a": 2}),
        ("extract", "e2"),
        ("extract_hash", "h2"),
        ("upstream", {"x/y.csv": "v"}),
        ("environment_hash", "env2"),
        ("pseudonyms", "f2"),
        ("tables", "patients, diagnoses"),
    ],
)
def test_every_input_of_an_action_changes_its_key(field: str, value: Any) -> None:
    assert action_key(**BASE) == action_key(**dict(BASE))
    assert action_key(**(BASE | {field: value})) != action_key(**BASE)


def test_the_key_ignores_the_order_of_parameters() -> None:
    assert action_key(**(BASE | {"parameters": {"a": 1, "b": 2}})) == action_key(
        **(BASE | {"parameters": {"b": 2, "a": 1}})
    )


def test_the_environment_names_installed_versions() -> None:
    import pandas

    env = environment()
    assert env.packages["pandas"] == pandas.__version__
    assert env.packages["papermill"]
    assert len(env.hash) == 64


def test_a_lock_is_held_by_one_process_at_a_time(tmp_path: Path) -> None:
    lock = tmp_path / "x.lock"
    with (
        hold(lock, "a run of study 'x'"),
        pytest.raises(Busy, match=r"a run of study 'x' is already running \(pid \d+\)"),
        hold(lock, "a run of study 'x'"),
    ):
        pass
    with hold(lock, "a run of study 'x'"):  # released
        pass
