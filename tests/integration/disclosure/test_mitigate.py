"""Mitigations: suppression that no margin undoes (checked by linear programming), rounding, ICD-10 roll-up."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linprog

from research_kit.core.config import SdcPolicy
from research_kit.core.errors import BadInput
from research_kit.disclosure.mitigate import midpoint6, roll_up, round_counts, suppress
from research_kit.disclosure.sdc import check_table
from research_kit.outputs.sidecar import Sidecar

POLICY = SdcPolicy()
TOTAL = "All"


def cube_table(cube: np.ndarray, totals: bool) -> tuple[pd.DataFrame, Sidecar]:
    """A long table of the array's cells (labels d0, d1, ...), with every margin as ``All`` rows when asked."""
    dims = [f"d{i}" for i in range(cube.ndim)]
    ranges = [[*range(k), TOTAL] if totals else list(range(k)) for k in cube.shape]
    rows = []
    for index in itertools.product(*ranges):
        picked = cube[tuple(slice(None) if i == TOTAL else i for i in index)]
        rows.append(
            {**{d: (i if i == TOTAL else f"c{i}") for d, i in zip(dims, index, strict=True)}, "n": picked.sum()}
        )
    frame = pd.DataFrame(rows)
    sidecar = Sidecar(
        name="t", file="t.csv", type="table", kind="frequency", roles={**dict.fromkeys(dims, "label"), "n": "count"}
    )
    return frame, sidecar


def margin_system(cube: np.ndarray, totals: bool) -> list[tuple[list[tuple[Any, ...]], tuple[Any, ...] | None]]:
    """Every line of the cube, written independently of the code under test: (cells, their published total)."""
    lines = []
    for d in range(cube.ndim):
        others = [[*range(k), TOTAL] if totals else list(range(k)) for j, k in enumerate(cube.shape) if j != d]
        for fixed in itertools.product(*others):

            def at(i: Any, fixed: tuple[Any, ...] = fixed, d: int = d) -> tuple[Any, ...]:
                return (*fixed[:d], i, *fixed[d:])

            lines.append(([at(i) for i in range(cube.shape[d])], at(TOTAL) if totals else None))
    return lines


def key_of(frame: pd.DataFrame, row: int, ndim: int) -> tuple[Any, ...]:
    return tuple(v if v == TOTAL else int(v[1:]) for v in frame.loc[row, [f"d{i}" for i in range(ndim)]])


def value_at(cube: np.ndarray, key: tuple[Any, ...]) -> float:
    return float(cube[tuple(slice(None) if i == TOTAL else i for i in key)].sum())


def determined_cells(
    cube: np.ndarray, totals: bool, suppressed: set[tuple[Any, ...]], width: float = 1e-6
) -> set[tuple[Any, ...]]:
    """Suppressed cells whose maximum and minimum, under every margin and non-negativity, differ by less than ``width``.

    With the default width: the cells the margins determine; with the protection width: those left too narrow.
    """
    unknowns = sorted(suppressed, key=str)
    index = {k: i for i, k in enumerate(unknowns)}
    a_eq, b_eq = [], []
    for cells, total in margin_system(cube, totals):
        # sum(cells) - total = 0, or sum(cells) = their true sum when no total is published; published cells move right
        row = np.zeros(len(unknowns))
        rhs = 0.0 if total is not None else sum(value_at(cube, c) for c in cells)
        for c in cells:
            if c in index:
                row[index[c]] += 1
            else:
                rhs -= value_at(cube, c)
        if total is not None:
            if total in index:
                row[index[total]] -= 1
            else:
                rhs += value_at(cube, total)
        if row.any():
            a_eq.append(row)
            b_eq.append(rhs)
    determined = set()
    for key, i in index.items():
        objective = np.zeros(len(unknowns))
        objective[i] = 1.0
        low = linprog(objective, A_eq=np.array(a_eq), b_eq=b_eq, bounds=(0, None), method="highs")
        high = linprog(-objective, A_eq=np.array(a_eq), b_eq=b_eq, bounds=(0, None), method="highs")
        assert low.status == 0, key  # the true table is a solution
        if high.status == 0 and -high.fun - low.fun < width - 1e-6:
            determined.add(key)
    return determined


def assert_no_suppressed_cell_is_determined(cube: np.ndarray, totals: bool, suppressed: set[tuple[Any, ...]]) -> None:
    """Every suppressed cell keeps an interval at least the protection width (the small-cell threshold) wide."""
    assert determined_cells(cube, totals, suppressed, width=POLICY.min_cell_count) == set()


def suppressed_keys(frame: pd.DataFrame, mitigated: pd.DataFrame, ndim: int) -> set[tuple[Any, ...]]:
    return {key_of(frame, r, ndim) for r in range(len(frame)) if pd.isna(mitigated.loc[r, "n"])}


def run_suppression(cube: np.ndarray, totals: bool) -> tuple[set[tuple[Any, ...]], dict[str, Any]]:
    frame, sidecar = cube_table(cube, totals)
    result = check_table(frame, sidecar, POLICY)
    mitigated = suppress(frame, sidecar, result, POLICY)
    for row, column in result.failed_cells():
        assert pd.isna(mitigated.frame.loc[row, column])
    assert mitigated.record["cells_changed"] == len(mitigated.record["primary"]) + len(mitigated.record["secondary"])
    record = {
        **mitigated.record,
        "unprotected": {key_of(frame, r, cube.ndim) for r, _ in mitigated.record["unprotected"]},
    }
    return suppressed_keys(frame, mitigated.frame, cube.ndim), record


# --- suppression ------------------------------------------------------------------------------------------------


def test_one_small_cell_takes_three_partners_in_a_two_way_table() -> None:
    cube = np.array([[30, 40, 50], [20, 3, 60], [25, 35, 45]])
    suppressed, record = run_suppression(cube, totals=False)
    assert len(record["primary"]) == 1
    assert suppressed == {(1, 1), (1, 0), (2, 1), (2, 0)}  # 20 and 35 on its lines, then 25 on theirs
    assert_no_suppressed_cell_is_determined(cube, False, suppressed)


def test_published_totals_are_margins_and_totals_themselves_get_protected() -> None:
    cube = np.array([[30, 40, 50], [20, 3, 60], [25, 35, 45]])
    suppressed, _ = run_suppression(cube, totals=True)
    assert (1, 1) in suppressed
    assert_no_suppressed_cell_is_determined(cube, True, suppressed)


def test_a_cell_bridging_two_protected_blocks_is_protected_too() -> None:
    """Every line holds two suppressed cells, yet the bridge (0, 2) equals a sum of margins: it must be covered."""
    cube = np.full((4, 4), 50)
    for cell in [(0, 0), (0, 1), (1, 0), (1, 1), (2, 2), (2, 3), (3, 2), (3, 3), (0, 2)]:
        cube[cell] = 5
    suppressed, record = run_suppression(cube, totals=False)
    assert len(record["primary"]) == 9
    assert record["secondary"]
    assert_no_suppressed_cell_is_determined(cube, False, suppressed)


def test_zeros_are_not_chosen_as_partners_while_others_remain() -> None:
    cube = np.array([[0, 4, 30], [0, 40, 35], [12, 50, 45]])
    suppressed, _ = run_suppression(cube, totals=False)
    assert (0, 0) not in suppressed
    assert (1, 0) not in suppressed
    assert_no_suppressed_cell_is_determined(cube, False, suppressed)


positive = st.one_of(st.integers(1, 9), st.integers(10, 80))
with_zeros = st.one_of(positive, st.just(0))


def check_suppression(cube: np.ndarray, totals: bool, zeros: bool) -> None:
    """The cells an independent LP finds narrower than the protection width are exactly those reported unprotected.

    A table can be too small or too sparse to protect (every margin below the width, or zeros pinning it); the
    suppression then says so, and the mitigation is refused.
    """
    suppressed, record = run_suppression(cube, totals)
    narrow = determined_cells(cube, totals, suppressed, width=POLICY.min_cell_count)
    assert narrow == record["unprotected"]
    if not zeros and min(cube.sum(axis=d).min() for d in range(cube.ndim)) >= 2 * POLICY.min_cell_count:
        assert narrow == set()


@settings(max_examples=40, deadline=None, derandomize=True)
@given(shape=st.tuples(st.integers(2, 5), st.integers(2, 5)), totals=st.booleans(), zeros=st.booleans(), data=st.data())
def test_no_suppressed_cell_of_a_two_way_table_can_be_recovered(
    shape: tuple[int, int], totals: bool, zeros: bool, data: st.DataObject
) -> None:
    size = math.prod(shape)
    values = data.draw(st.lists(with_zeros if zeros else positive, min_size=size, max_size=size))
    check_suppression(np.array(values).reshape(shape), totals, zeros)


@settings(max_examples=25, deadline=None, derandomize=True)
@given(
    shape=st.tuples(st.integers(2, 3), st.integers(2, 3), st.integers(2, 4)),
    totals=st.booleans(),
    zeros=st.booleans(),
    data=st.data(),
)
def test_no_suppressed_cell_of_a_three_way_table_can_be_recovered(
    shape: tuple[int, int, int], totals: bool, zeros: bool, data: st.DataObject
) -> None:
    size = math.prod(shape)
    values = data.draw(st.lists(with_zeros if zeros else positive, min_size=size, max_size=size))
    check_suppression(np.array(values).reshape(shape), totals, zeros)


def test_zeros_that_pin_a_table_down_are_reported() -> None:
    """With every margin known, the zeros leave this table no freedom: nothing hidden protects its three 1s."""
    cube = np.array([[[1, 1], [1, 0]], [[0, 0], [0, 0]]])
    suppressed, record = run_suppression(cube, totals=False)
    assert {(0, 0, 0), (0, 0, 1), (0, 1, 0)} <= record["unprotected"]
    assert determined_cells(cube, False, suppressed) <= record["unprotected"]


def test_a_row_hides_its_n_sum_and_mean_together() -> None:
    frame = pd.DataFrame(
        {
            "group": ["a", "b", "c"],
            "n": [4, 30, 45],
            "total": [40.0, 300.0, 460.0],
            "mean": [10.0, 10.0, 10.2],
            "median": [9.0, 10.0, 10.0],
        }
    )
    roles = {"group": "label", "n": "count", "total": "sum", "mean": "mean", "median": "median"}
    sidecar = Sidecar(name="t", file="t.csv", type="table", kind="magnitude", roles=roles, n_column="n")
    mitigated = suppress(frame, sidecar, check_table(frame, sidecar, POLICY), POLICY)
    out = mitigated.frame
    assert out.loc[0, ["n", "total", "mean", "median"]].isna().all()
    assert out.loc[1, ["n", "total", "mean", "median"]].isna().all()  # the smallest partner, then its row
    assert out.loc[2].notna().all()
    assert out["n"].dtype == "Int64"
    assert [1, "n"] in mitigated.record["secondary"]


def test_a_wide_table_with_a_total_column_is_protected_across_its_columns() -> None:
    frame = pd.DataFrame({"sex": ["F", "M", TOTAL], "p": [30, 20, 50], "q": [3, 40, 43], "All": [33, 60, 93]})
    roles = {"sex": "label", "p": "count", "q": "count", "All": "count"}
    sidecar = Sidecar(name="t", file="t.csv", type="table", kind="frequency", roles=roles)
    out = suppress(frame, sidecar, check_table(frame, sidecar, POLICY), POLICY).frame
    hidden = {(r, c) for r in range(3) for c in ("p", "q", "All") if pd.isna(out.loc[r, c])}
    assert (0, "q") in hidden
    for r in range(3):  # no row holds a single hidden cell: each row's total would give it
        assert sum((r, c) in hidden for c in ("p", "q", "All")) != 1
    for c in ("p", "q", "All"):
        assert sum((r, c) in hidden for r in range(3)) != 1


def test_rows_not_identified_by_their_labels_are_bad_input() -> None:
    frame = pd.DataFrame({"group": ["a", "a"], "n": [3, 40]})
    sidecar = Sidecar(name="t", file="t.csv", type="table", kind="frequency", roles={"group": "label", "n": "count"})
    with pytest.raises(BadInput, match="do not identify rows uniquely"):
        suppress(frame, sidecar, check_table(frame, sidecar, POLICY), POLICY)


# --- rounding ---------------------------------------------------------------------------------------------------


def rounding_table() -> tuple[pd.DataFrame, Sidecar]:
    frame = pd.DataFrame(
        {"group": list("abcdefg"), "n": [0, 2, 3, 7, 12, 13, 15], "total": [0.0, 2.2, 3.3, 7.7, 12.1, 13.1, 15.5]}
    )
    roles = {"group": "label", "n": "count", "total": "sum"}
    return frame, Sidecar(name="t", file="t.csv", type="table", kind="magnitude", roles=roles, n_column="n")


def test_rounding_to_a_base_touches_counts_only_and_records_it() -> None:
    frame, sidecar = rounding_table()
    mitigated = round_counts(frame, sidecar, base=5)
    assert mitigated.frame["n"].tolist() == [0, 0, 5, 5, 10, 15, 15]
    assert mitigated.frame["n"].dtype == frame["n"].dtype
    assert mitigated.frame["total"].equals(frame["total"])
    assert mitigated.record == {
        "method": "rounding",
        "parameters": {"method": "base", "columns": ["n"], "base": 5},
        "cells_changed": 5,
    }


def test_halves_round_up() -> None:
    frame, sidecar = rounding_table()
    assert round_counts(frame.assign(n=[5, 15, 25, 4, 14, 16, 0]), sidecar, base=10).frame["n"].tolist() == [
        10,
        20,
        30,
        0,
        10,
        20,
        0,
    ]


def test_midpoint6_rounding_is_opensafelys() -> None:
    assert [midpoint6(v) for v in [0, 1, 6, 7, 12, 13, 18, 19]] == [0, 3, 3, 9, 9, 15, 15, 21]
    frame, sidecar = rounding_table()
    mitigated = round_counts(frame.assign(n=[0, 1, 6, 7, 12, np.nan, 19]), sidecar, method="midpoint6")
    assert mitigated.frame["n"].tolist()[:5] == [0, 3, 3, 9, 9]
    assert math.isnan(mitigated.frame["n"][5])
    assert mitigated.record["parameters"] == {"method": "midpoint6", "columns": ["n"], "to": 6}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"method": "ceiling"}, "rounding method 'ceiling'"), ({"base": 0}, "base must be at least 1")],
)
def test_bad_rounding_requests_are_bad_input(kwargs: dict[str, Any], message: str) -> None:
    frame, sidecar = rounding_table()
    with pytest.raises(BadInput, match=message):
        round_counts(frame, sidecar, **kwargs)


def test_midpoint6_refuses_negative_counts() -> None:
    frame, sidecar = rounding_table()
    with pytest.raises(BadInput, match="negative counts"):
        round_counts(frame.assign(n=[-1, 2, 3, 4, 5, 6, 7]), sidecar, method="midpoint6")


# --- ICD-10 roll-up -----------------------------------------------------------------------------------------------


def coded(codes: list[str], n: list[int], **extra: list[Any]) -> tuple[pd.DataFrame, Sidecar]:
    frame = pd.DataFrame({"icd10": codes, **extra, "n": n})
    roles = {"icd10": "label", **dict.fromkeys(extra, "label"), "n": "count"}
    return frame, Sidecar(name="t", file="t.csv", type="table", kind="frequency", roles=roles, n_column="n")


def test_small_subcategories_roll_up_with_their_whole_category() -> None:
    frame, sidecar = coded(["E75.0", "E75.2", "E75.5", "E70.0", "E70.1", "Q87.1", "Q87.4"], [3, 4, 20, 12, 15, 2, 30])
    mitigated = roll_up(frame, sidecar, "icd10", POLICY)
    assert dict(zip(mitigated.frame["icd10"], mitigated.frame["n"], strict=True)) == {
        "E75": 27,
        "E70.0": 12,
        "E70.1": 15,
        "Q87": 32,
    }
    record = mitigated.record
    assert record["merges"] == {"category": 2}
    assert record["cells_changed"] == 5
    assert record["unresolved"] == 0
    assert (record["rows_before"], record["rows_after"]) == (7, 4)
    assert check_table(mitigated.frame, sidecar, POLICY).status == "pass"


def test_a_category_still_too_small_rolls_up_to_its_block_and_then_its_chapter() -> None:
    frame, sidecar = coded(["E75.0", "E75.2", "E70.0", "E70.1", "E10.1", "Q87.4"], [1, 2, 12, 15, 3, 30])
    mitigated = roll_up(frame, sidecar, "icd10", POLICY)
    rolled = dict(zip(mitigated.frame["icd10"], mitigated.frame["n"], strict=True))
    # E75 (3) and E10 (3) after one level, E70-E90 (30) and E10-E14 (3) after two, then chapter IV
    assert rolled == {"IV": 33, "Q87.4": 30}
    assert mitigated.record["merges"] == {"category": 2, "block": 2, "chapter": 1}
    assert mitigated.record["unresolved"] == 0


def test_a_chapter_still_too_small_is_reported_unresolved() -> None:
    frame, sidecar = coded(["E75.0", "Q87.4"], [3, 30])
    mitigated = roll_up(frame, sidecar, "icd10", POLICY)
    assert mitigated.frame["icd10"].tolist() == ["IV", "Q87.4"]
    assert mitigated.record["unresolved"] == 1


def test_other_labels_are_kept_and_the_code_family_merges_across_them() -> None:
    frame, sidecar = coded(["E75.0", "E75.2", "E75.0", "E75.2"], [3, 12, 14, 12], sex=["F", "F", "M", "M"])
    out = roll_up(frame, sidecar, "icd10", POLICY).frame
    assert out.to_dict("records") == [{"icd10": "E75", "sex": "F", "n": 15}, {"icd10": "E75", "sex": "M", "n": 26}]


def test_means_are_reweighted_and_totals_rows_kept() -> None:
    frame = pd.DataFrame({"icd10": ["E75.0", "E75.2", "All"], "n": [2, 18, 20], "mean_age": [10.0, 20.0, 19.0]})
    roles = {"icd10": "label", "n": "count", "mean_age": "mean"}
    sidecar = Sidecar(name="t", file="t.csv", type="table", kind="magnitude", roles=roles, n_column="n")
    out = roll_up(frame, sidecar, "icd10", POLICY).frame
    assert out["icd10"].tolist() == ["E75", "All"]
    assert out["mean_age"].tolist() == pytest.approx([19.0, 19.0])


@pytest.mark.parametrize(
    ("frame", "roles", "message"),
    [
        (pd.DataFrame({"icd10": ["E75.0", "nope"], "n": [1, 2]}), {}, "row 1: not an ICD-10 code"),
        (
            pd.DataFrame({"icd10": ["E75.0"], "n": [1], "m": [3.0]}),
            {"m": "median"},
            "'m' \\(median\\) cannot be re-summed",
        ),
    ],
)
def test_a_roll_up_it_cannot_do_is_bad_input(frame: pd.DataFrame, roles: dict[str, str], message: str) -> None:
    sidecar = Sidecar(
        name="t", file="t.csv", type="table", kind="frequency", roles={"icd10": "label", "n": "count", **roles}
    )
    with pytest.raises(BadInput, match=message):
        roll_up(frame, sidecar, "icd10", POLICY)
    with pytest.raises(BadInput, match="not a label column"):
        roll_up(frame, sidecar, "n", POLICY)
