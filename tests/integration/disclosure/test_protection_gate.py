"""The protection check: a suppressed cell that a solver can narrow down fails, with its interval, across outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import research_kit as rk
from research_kit.core.config import Policy, SdcPolicy
from research_kit.disclosure import attack
from research_kit.disclosure.checks import Item, check_items
from research_kit.disclosure.mitigate import get_mitigation
from research_kit.disclosure.results import OutputChecks
from research_kit.disclosure.sdc import check_table
from research_kit.outputs import sidecar as sc


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RESEARCH_KIT_TIER", raising=False)
    monkeypatch.setenv("RESEARCH_KIT_STUDY", "s9")


def two_way(cells: list[list[float]]) -> pd.DataFrame:
    """A long table of a two-way array with every margin (``Total`` rows)."""
    arr = np.array(cells, dtype=float)
    rows = []
    for i in [*range(arr.shape[0]), None]:
        for j in [*range(arr.shape[1]), None]:
            value = arr[slice(None) if i is None else i, slice(None) if j is None else j].sum()
            rows.append({"a": "Total" if i is None else f"a{i}", "b": "Total" if j is None else f"b{j}", "n": value})
    return pd.DataFrame(rows)


def declare(frame: pd.DataFrame, name: str) -> Item:
    rk.outputs.table(frame, name, counts=["n"])
    return Item(f"act/{name}", Path(f"{name}.csv"), "moderately_sensitive")


def hide(frame: pd.DataFrame, cells: list[tuple[str, str]]) -> pd.DataFrame:
    out = frame.copy()
    for a, b in cells:
        out.loc[(out.a == a) & (out.b == b), "n"] = np.nan
    return out


def test_the_pattern_that_only_stops_exact_recovery_fails_with_its_intervals() -> None:
    """[[20, 2, 3], [30, 40, 50]]: hiding 2, 3, 40 and 50 leaves each of the small ones in [0, 5]."""
    table = hide(two_way([[20, 2, 3], [30, 40, 50]]), [("a0", "b1"), ("a0", "b2"), ("a1", "b1"), ("a1", "b2")])
    [checks] = check_items([declare(table, "t")], [], Policy())
    assert checks.status == "fail"
    assert checks.sdc is not None
    failed = {(f.row, f.column): f.reason for f in checks.sdc.flags if f.rule == "protection"}
    assert set(failed) == {(1, "n"), (2, "n"), (5, "n"), (6, "n")}
    assert "[0, 5]" in failed[(1, "n")]
    intervals = {(i.row, i.column): (i.lower, i.upper) for i in checks.protection}
    assert intervals == {(1, "n"): (0, 5), (2, "n"): (0, 5), (5, "n"): (37, 42), (6, "n"): (48, 53)}
    assert OutputChecks.from_json(json.loads(json.dumps(checks.to_json()))) == checks


def test_the_suppress_mitigation_leaves_every_interval_wide_enough() -> None:
    frame = two_way([[20, 2, 3], [30, 40, 50]])
    side = sc.read(declare(frame, "t").path)
    assert side is not None
    policy = SdcPolicy()
    done = get_mitigation("suppress")(frame, side, policy, column=None)
    done.frame.to_csv("t.csv", index=False)
    [checks] = check_items([Item("act/t", Path("t.csv"), "moderately_sensitive")], [], Policy())
    assert not [f for f in checks.sdc.flags if f.rule == "protection"] if checks.sdc else True
    assert checks.protection
    assert all(i.width >= policy.min_cell_count for i in checks.protection)
    assert check_table(done.frame, side, policy).status != "fail"


def test_a_released_table_of_the_same_population_narrows_a_suppressed_cell() -> None:
    """Each table is fine alone; together, the released one-way margin pins the new table's hidden cells."""
    released = pd.DataFrame({"a": ["a0", "a1"], "n": [25.0, 120.0]})
    released_item = declare(released, "by_a")
    # The new table hides a0's two small cells and two partners, but prints no row margin for a0: alone, a0's
    # cells are only bounded by the column margins; the released table gives a0's total (25).
    table = hide(two_way([[20, 2, 3], [30, 40, 50]]), [("a0", "b1"), ("a0", "b2"), ("a1", "b1"), ("a1", "b2")])
    table = table[table.b != "Total"].reset_index(drop=True)
    [alone] = check_items([declare(table, "t")], [], Policy())
    assert not [f for f in alone.sdc.flags if f.rule == "protection"] if alone.sdc else True
    [linked] = check_items([declare(table, "t")], [released_item], Policy())
    flags = [f for f in linked.sdc.flags if f.rule == "protection"] if linked.sdc else []
    assert flags
    assert all("act/by_a" in f.reason for f in flags)
    assert {i.linked for i in linked.protection} == {("act/by_a",)}


def test_dp_tables_and_tables_of_another_population_are_not_linked() -> None:
    released = pd.DataFrame({"a": ["a0", "a1"], "n": [25.0, 120.0]})
    rk.outputs.table(released, "by_a", counts=["n"], population="diagnosed since 2010")
    other = Item("act/by_a", Path("by_a.csv"), "moderately_sensitive")
    table = hide(two_way([[20, 2, 3], [30, 40, 50]]), [("a0", "b1"), ("a0", "b2"), ("a1", "b1"), ("a1", "b2")])
    table = table[table.b != "Total"].reset_index(drop=True)
    [checks] = check_items([declare(table, "t")], [other], Policy())
    assert not [f for f in checks.sdc.flags if f.rule == "protection"] if checks.sdc else True


# -- what differencing's one-step recovery used to find, now found by the solver ----------------------------------

NAN = float("nan")


def ref(key: str, data: dict[str, list[object]], labels: tuple[str, ...], population: str = "all") -> attack.Table:
    roles = {c: "label" for c in labels} | {"n": "count"}
    side = sc.Sidecar(name=key, file=f"{key}.csv", type="table", kind="frequency", roles=roles, population=population)
    return attack.Table(key, pd.DataFrame(data), side)


def intervals(tables: list[attack.Table], report: list[str]) -> dict[tuple[str, int], tuple[float, float]]:
    found, notes = attack.audit(tables, SdcPolicy(), report=report)
    assert notes == []
    return {(i.output, i.row): (i.lower, i.upper) for i in found}


def test_a_suppressed_cell_or_total_pinned_by_its_own_margin() -> None:
    t = ref("t", {"sex": ["F", "M", "Total"], "n": [NAN, 50, 53]}, ("sex",))
    u = ref("u", {"sex": ["F", "M", "Total"], "n": ["<10", 50, 60]}, ("sex",))
    v = ref("v", {"sex": ["F", "M", "Total"], "n": [3, 50, "*"]}, ("sex",), population="other")
    assert intervals([t], ["t"]) == {("t", 0): (3, 3)}
    assert intervals([u], ["u"]) == {("u", 0): (10, 10)}
    assert intervals([v], ["v"]) == {("v", 2): (53, 53)}


def test_two_suppressed_cells_sharing_a_margin_are_still_too_narrow() -> None:
    """Not recoverable exactly, but each lies in [0, 3]: the old check let this through."""
    t = ref("t", {"sex": ["F", "M", "X", "Total"], "n": [NAN, NAN, 50, 53]}, ("sex",))
    assert intervals([t], ["t"]) == {("t", 0): (0, 3), ("t", 1): (0, 3)}


def test_another_table_of_the_same_population_pins_a_cell_and_another_population_does_not() -> None:
    groups = ["Q80-Q89", "Q90-Q99"]
    released = ref("released", {"disease_group": groups, "n": [4, 120]}, ("disease_group",), "cohort A")
    cand = ref("cand", {"disease_group": groups, "n": [NAN, 120]}, ("disease_group",), "cohort A")
    other = ref("other", {"disease_group": groups, "n": [NAN, 120]}, ("disease_group",), "cohort B")
    assert intervals([cand, released], ["cand"]) == {("cand", 0): (4, 4)}
    lower, upper = intervals([other, released], ["other"])[("other", 0)]
    assert lower == 0
    assert upper == float("inf")


def test_a_coarser_table_pins_a_cell_of_a_finer_one() -> None:
    fine = ref(
        "fine",
        {"disease_group": ["Q80", "Q80", "Q90", "Q90"], "sex": ["F", "M", "F", "M"], "n": [NAN, 37, 60, 60]},
        ("disease_group", "sex"),
    )
    coarse = ref("coarse", {"disease_group": ["Q80", "Q90"], "n": [41, 120]}, ("disease_group",))
    assert intervals([fine, coarse], ["fine"]) == {("fine", 0): (4, 4)}


def test_a_new_output_that_narrows_a_released_suppressed_cell_fails() -> None:
    rk.outputs.table(pd.DataFrame({"group": ["Q80", "Q90"], "n": [NAN, 120.0]}), "released", counts=["n"])
    released = Item("act/released", Path("released.csv"), "moderately_sensitive")
    rk.outputs.table(pd.DataFrame({"n": [127]}), "overall", counts=["n"])
    cand = Item("act/overall", Path("overall.csv"), "moderately_sensitive")
    [checks] = check_items([cand], [released], Policy())
    flags = [f for f in checks.sdc.flags if f.rule == "protection"] if checks.sdc else []
    assert len(flags) == 1
    assert "act/released" in flags[0].reason
    assert "[7, 7]" in flags[0].reason
    assert checks.status == "fail"
    # Released alone it stays unbounded: nothing is flagged without the new output.
    rk.outputs.table(pd.DataFrame({"group": ["Q80"], "n": [50]}), "unrelated", counts=["n"], population="other")
    [other] = check_items([Item("act/unrelated", Path("unrelated.csv"), "moderately_sensitive")], [released], Policy())
    assert not [f for f in other.sdc.flags if f.rule == "protection"] if other.sdc else True


def _suppressed_by_a_and_b() -> pd.DataFrame:
    table = hide(two_way([[20, 2, 3], [30, 40, 50]]), [("a0", "b1"), ("a0", "b2"), ("a1", "b1"), ("a1", "b2")])
    return table[table.b != "Total"].reset_index(drop=True)


@pytest.mark.parametrize(
    ("released", "new_counts"),
    [
        (pd.DataFrame({"a": ["a0", "a1"], "n": [25.0, 120.0]}), {"deaths": 12.0}),  # linked by the name n
        (pd.DataFrame({"A ": ["A0", "A1"], "n": [25.0, 120.0]}), {}),  # label name and values in another case
    ],
)
def test_links_survive_a_second_count_column_and_a_change_of_case(
    released: pd.DataFrame, new_counts: dict[str, float]
) -> None:
    released_item = declare(released, "by_a")
    table = _suppressed_by_a_and_b().assign(**new_counts)
    rk.outputs.table(table, "t", counts=["n", *new_counts])
    [checks] = check_items([Item("act/t", Path("t.csv"), "moderately_sensitive")], [released_item], Policy())
    intervals = {(i.row, i.lower, i.upper) for i in checks.protection if i.column == "n"}
    assert (1, 0, 5) in intervals
    assert checks.status == "fail"


def test_linked_tables_that_do_not_add_up_are_audited_alone_and_say_so() -> None:
    """A released count that includes patients the new table drops (a missing label): no joint table exists."""
    released = pd.DataFrame({"a": ["a0", "a1", None], "n": [25.0, 120.0, 5.0]})
    rk.outputs.table(released, "by_a", counts=["n"], labels=["a"])
    released_item = Item("act/by_a", Path("by_a.csv"), "moderately_sensitive")
    [checks] = check_items([declare(_suppressed_by_a_and_b(), "t")], [released_item], Policy())
    assert checks.sdc is not None
    said = [f.reason for f in checks.sdc.flags if f.rule == "unchecked" and "audited on this table alone" in f.reason]
    assert said
    assert "act/by_a" in said[0]
    assert checks.status in ("review", "fail")


def test_a_count_hidden_with_its_sum_and_mean_even_without_n_column() -> None:
    frame = pd.DataFrame({"a": ["a0", "a1", "a2"], "n": [3, 40, 50], "s": [30.0, 3900.0, 5000.0]})
    frame["m"] = frame["s"] / frame["n"]
    side = sc.Sidecar(
        name="t",
        file="t.csv",
        type="table",
        kind="magnitude",
        roles={"a": "label", "n": "count", "s": "sum", "m": "mean"},
    )
    done = get_mitigation("suppress")(frame, side, SdcPolicy(), column=None)
    assert done.frame.loc[0, ["n", "s", "m"]].isna().all()  # s / m would give n back
