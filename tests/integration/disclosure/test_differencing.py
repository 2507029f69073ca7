"""Differencing between the tables of a request and those already released (research_kit.disclosure.differencing)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from research_kit.core.config import SdcPolicy
from research_kit.core.errors import BadInput
from research_kit.disclosure.differencing import DifferencingFlag, TableRef, find_differencing
from research_kit.outputs.sidecar import Sidecar

THRESHOLD = SdcPolicy().differencing_threshold
NAN = float("nan")


def table(
    output_id: str,
    data: dict[Any, Any],
    labels: tuple[str, ...] = (),
    *,
    counts: tuple[str, ...] = ("n",),
    population: str = "all patients",
    unit: str = "patients",
    n_column: str | None = None,
    extra_roles: dict[str, str] | None = None,
) -> TableRef:
    roles = {c: "label" for c in labels} | {c: "count" for c in counts} | (extra_roles or {})
    sidecar = Sidecar(
        name=output_id,
        file=f"{output_id}.csv",
        type="table",
        kind="frequency",
        roles=roles,
        n_column=n_column,
        population=population,
        unit=unit,
        rows=len(next(iter(data.values()))),
    )
    return TableRef(output_id, pd.DataFrame(data), sidecar)


def by_group(output_id: str, q80: float, q90: float, **kw: Any) -> TableRef:
    return table(output_id, {"disease_group": ["Q80-Q89", "Q90-Q99"], "n": [q80, q90]}, ("disease_group",), **kw)


def pairs(flags: list[DifferencingFlag]) -> set[tuple[str, str, tuple[tuple[str, str], ...], str, int]]:
    return {(f.first, f.second, tuple(sorted(f.group.items())), f.column, f.difference) for f in flags}


# -- rule 1: same labels ---------------------------------------------------------------------------------


def test_same_labels_different_population_flags_the_cell() -> None:
    a = by_group("s/a/all", 40, 120, population="all patients")
    b = by_group("s/a/since2010", 37, 60, population="diagnosed since 2010")
    [flag] = find_differencing([a, b], [], THRESHOLD)
    assert (flag.first, flag.second) == ("s/a/all", "s/a/since2010")
    assert flag.group == {"disease_group": "Q80-Q89"}
    assert flag.column == "n"
    assert flag.difference == 3
    assert "s/a/all" in flag.reason
    assert "s/a/since2010" in flag.reason
    assert "a group of 3 patients" in flag.reason
    assert "diagnosed since 2010" in flag.reason


def test_same_population_against_released_version_flags_the_change() -> None:
    old = by_group("release-1/counts", 40, 120)
    new = by_group("review/17", 42, 120)
    [flag] = find_differencing([new], [old], THRESHOLD)
    assert (flag.first, flag.second, flag.difference) == ("review/17", "release-1/counts", 2)
    assert flag.group == {"disease_group": "Q80-Q89"}
    assert "same population" in flag.reason


@pytest.mark.parametrize(
    ("other", "flagged"),
    [(40, False), (40 + THRESHOLD, False), (40 - THRESHOLD, False), (40 + THRESHOLD - 1, True), (41, True)],
)
def test_only_differences_strictly_between_zero_and_the_threshold(other: int, flagged: bool) -> None:
    a = by_group("a", 40, 500)
    b = by_group("b", other, 900, population="since 2010")
    flags = find_differencing([a], [b], THRESHOLD)
    assert bool(flags) is flagged
    if flagged:
        assert flags[0].difference == abs(other - 40)


def test_threshold_comes_from_the_policy() -> None:
    policy = SdcPolicy(differencing_threshold=3)
    a, b = by_group("a", 40, 500), by_group("b", 43, 502, population="other")
    assert pairs(find_differencing([a, b], [], policy.differencing_threshold)) == {
        ("a", "b", (("disease_group", "Q90-Q99"),), "n", 2)
    }


def test_released_against_released_is_not_flagged() -> None:
    a, b = by_group("r1", 40, 120), by_group("r2", 37, 121)
    assert find_differencing([], [a, b], THRESHOLD) == []
    c = by_group("c", 500, 500)  # a candidate unrelated to both
    assert find_differencing([c], [a, b], THRESHOLD) == []


def test_two_candidates_are_flagged_once() -> None:
    a, b = by_group("a", 40, 120), by_group("b", 37, 121, population="since 2010")
    assert pairs(find_differencing([b, a], [], THRESHOLD)) == {
        ("b", "a", (("disease_group", "Q80-Q89"),), "n", 3),
        ("b", "a", (("disease_group", "Q90-Q99"),), "n", 1),
    }


def test_different_units_are_never_compared() -> None:
    a = by_group("patients", 40, 120)
    b = by_group("events", 37, 121, unit="events")
    assert find_differencing([a, b], [], THRESHOLD) == []


def test_label_values_are_compared_as_strings() -> None:
    a = table("a", {"year": [2010, 2011], "n": [40, 50]}, ("year",))
    b = table("b", {"year": ["2010", " 2011 "], "n": [45, 90]}, ("year",), population="other")
    c = table("c", {"year": [2010.0, NAN], "n": [400, 48]}, ("year",), population="other")
    assert pairs(find_differencing([a], [b, c], THRESHOLD)) == {("a", "b", (("year", "2010"),), "n", 5)}


def test_only_counted_columns_are_compared() -> None:
    roles = {"mean_age": "mean"}
    a = table("a", {"g": ["x"], "n": [40], "mean_age": [30.0]}, ("g",), extra_roles=roles)
    b = table("b", {"g": ["x"], "n": [400], "mean_age": [31.0]}, ("g",), extra_roles=roles)
    assert find_differencing([a, b], [], THRESHOLD) == []


def test_single_counted_columns_are_compared_whatever_their_names() -> None:
    a = table("a", {"g": ["x"], "patients": [40]}, ("g",), counts=("patients",))
    b = table("b", {"g": ["x"], "n": [36]}, ("g",), population="other")
    assert pairs(find_differencing([a], [b], THRESHOLD)) == {("a", "b", (("g", "x"),), "patients vs n", 4)}


def test_n_column_of_a_magnitude_table_is_compared() -> None:
    a = table("a", {"g": ["x"], "n": [40]}, ("g",))
    roles = {"mean_cost": "mean", "n_patients": "other"}
    data = {"g": ["x"], "mean_cost": [10.0], "n_patients": [38]}
    b = table("b", data, ("g",), counts=(), n_column="n_patients", extra_roles=roles)
    assert pairs(find_differencing([b], [a], THRESHOLD)) == {("b", "a", (("g", "x"),), "n_patients vs n", 2)}


def test_multiple_counted_columns_match_by_name() -> None:
    data = {"g": ["x"], "deaths": [20], "n": [100]}
    a = table("a", data, ("g",), counts=("deaths", "n"))
    b = table("b", {"g": ["x"], "deaths": [100], "n": [25]}, ("g",), counts=("deaths", "n"), population="o")
    assert find_differencing([a], [b], THRESHOLD) == []
    c = table("c", {"g": ["x"], "deaths": [23], "n": [25]}, ("g",), counts=("deaths", "n"), population="o")
    assert pairs(find_differencing([a], [c], THRESHOLD)) == {("a", "c", (("g", "x"),), "deaths", 3)}


# -- rule 2: nested and overlapping labels ---------------------------------------------------------------


def test_nested_labels_reveal_patients_missing_from_the_finer_table() -> None:
    a = by_group("by_group", 40, 120)
    # by group and sex: 3 patients of unknown sex in Q80-Q89 were dropped
    b = table(
        "by_group_sex",
        {
            "disease_group": ["Q80-Q89", "Q80-Q89", "Q90-Q99", "Q90-Q99"],
            "sex": ["F", "M", "F", "M"],
            "n": [20, 17, 60, 60],
        },
        ("disease_group", "sex"),
    )
    [flag] = find_differencing([b], [a], THRESHOLD)
    assert (flag.first, flag.second, flag.difference) == ("by_group_sex", "by_group", 3)
    assert flag.group == {"disease_group": "Q80-Q89"}
    assert "summed over sex" in flag.reason


def test_nested_labels_with_a_suppressed_cell_are_not_summed() -> None:
    a = by_group("by_group", 40, 120, population="p1")
    b = table(
        "by_group_sex",
        {"disease_group": ["Q80-Q89", "Q80-Q89"], "sex": ["F", "M"], "n": [NAN, 37]},
        ("disease_group", "sex"),
        population="p2",
    )
    assert find_differencing([b], [a], THRESHOLD) == []


def test_tables_sharing_some_labels_are_compared_on_what_they_share() -> None:
    a = table("by_sex_age", {"sex": ["F", "F", "M"], "age": ["0-17", "18+", "18+"], "n": [10, 30, 50]}, ("sex", "age"))
    b = table(
        "by_sex_region", {"sex": ["F", "M", "M"], "region": ["N", "N", "S"], "n": [44, 25, 25]}, ("sex", "region")
    )
    assert pairs(find_differencing([a], [b], THRESHOLD)) == {("by_sex_age", "by_sex_region", (("sex", "F"),), "n", 4)}


def test_a_table_without_labels_is_an_overall_total() -> None:
    total = table("total", {"n": [95]})
    a = by_group("by_group", 40, 50)
    [flag] = find_differencing([total], [a], THRESHOLD)
    assert (flag.first, flag.second, flag.group, flag.difference) == ("total", "by_group", {}, 5)
    assert "overall total" in flag.reason
    # two overall totals of the same unit: 0 < 95 - 91 < threshold
    assert pairs(find_differencing([total], [table("other", {"n": [91]}, population="x")], THRESHOLD)) == {
        ("total", "other", (), "n", 4)
    }


# -- rule 3: margins inside one table --------------------------------------------------------------------


def test_total_row_against_the_sum_of_its_cells() -> None:
    t = table("t", {"sex": ["F", "M", "Total"], "n": [40, 50, 96]}, ("sex",))
    [flag] = find_differencing([t], [], THRESHOLD)
    assert (flag.first, flag.second, flag.group, flag.difference) == ("t", "t", {}, 6)
    assert "margin row" in flag.reason


def test_margins_of_a_two_way_table() -> None:
    t = table(
        "t",
        {
            "sex": ["F", "F", "M", "M", "All", "All", "F", "M", "All"],
            "age": ["0-17", "18+", "0-17", "18+", "0-17", "18+", "all", "all", "all"],
            "n": [20, 30, 25, 35, 45, 68, 50, 60, 110],
        },
        ("sex", "age"),
    )
    assert pairs(find_differencing([t], [], THRESHOLD)) == {
        ("t", "t", (("age", "18+"),), "n", 3),  # the All/18+ row (68) against 30 + 35
        ("t", "t", (("sex", "Total"),), "n", 3),  # the All/all row (110) against 45 + 68
    }


def test_consistent_margins_and_released_margins_are_not_flagged() -> None:
    good = table("good", {"sex": ["F", "M", "Total"], "n": [40, 50, 90]}, ("sex",))
    old = table("old", {"sex": ["F", "M", "Total"], "n": [400, 500, 903]}, ("sex",), population="x")
    assert find_differencing([good], [old], THRESHOLD) == []


def test_margin_rows_are_compared_across_tables() -> None:
    a = table("a", {"sex": ["F", "M", "Total"], "n": [40, 50, 90]}, ("sex",))
    b = table("b", {"n": [95]}, population="other")
    assert pairs(find_differencing([a], [b], THRESHOLD)) == {("a", "b", (), "n", 5)}


# -- input errors -----------------------------------------------------------------------------------------


def test_sidecar_naming_a_missing_column_is_bad_input() -> None:
    bad = TableRef("bad", pd.DataFrame({"n": [1]}), by_group("x", 1, 2).sidecar)
    with pytest.raises(BadInput, match="bad"):
        find_differencing([bad], [], THRESHOLD)


@pytest.mark.parametrize("threshold", [0, -1, 2.5, True])
def test_threshold_must_be_a_whole_number_of_at_least_one(threshold: Any) -> None:
    with pytest.raises(BadInput, match="threshold"):
        find_differencing([by_group("a", 1, 2)], [], threshold)


def test_nothing_to_compare() -> None:
    assert find_differencing([], [], THRESHOLD) == []
    empty = table("empty", {"g": [], "n": []}, ("g",))
    assert find_differencing([empty], [by_group("a", 1, 2)], THRESHOLD) == []


# -- properties -----------------------------------------------------------------------------------------

groups_st = st.lists(st.sampled_from(["Q80", "Q81", "Q82", "Q87", "Q90", "E75", "G71"]), min_size=1, unique=True)


@settings(max_examples=60, deadline=None)
@given(
    groups=groups_st,
    data=st.data(),
    same_population=st.booleans(),
    b_released=st.booleans(),
)
def test_k_extra_patients_in_one_cell_are_found(
    groups: list[str], data: st.DataObject, same_population: bool, b_released: bool
) -> None:
    cells = [(g, s) for g in groups for s in ("F", "M")]
    counts = data.draw(st.lists(st.integers(0, 500), min_size=len(cells), max_size=len(cells)))
    where = data.draw(st.integers(0, len(cells) - 1))
    k = data.draw(st.integers(1, THRESHOLD - 1))
    frame = {"group": [g for g, _ in cells], "sex": [s for _, s in cells], "n": counts}
    more = dict(frame, n=[c + k * (i == where) for i, c in enumerate(counts)])
    a = table("A", frame, ("group", "sex"), population="all")
    b = table("B", more, ("group", "sex"), population="all" if same_population else "all + new extract")
    flags = find_differencing([a], [b], THRESHOLD) if b_released else find_differencing([a, b], [], THRESHOLD)
    assert pairs(flags) == {("A", "B", (("group", cells[where][0]), ("sex", cells[where][1])), "n", k)}


@settings(max_examples=40, deadline=None)
@given(groups=groups_st, data=st.data())
def test_k_patients_dropped_from_a_finer_table_are_found(groups: list[str], data: st.DataObject) -> None:
    cells = [(g, s) for g in groups for s in ("F", "M")]
    counts = data.draw(st.lists(st.integers(0, 500), min_size=len(cells), max_size=len(cells)))
    where = data.draw(st.sampled_from(groups))
    k = data.draw(st.integers(1, THRESHOLD - 1))
    fine = table("fine", {"group": [g for g, _ in cells], "sex": [s for _, s in cells], "n": counts}, ("group", "sex"))
    sums = {g: sum(c for (h, _), c in zip(cells, counts, strict=True) if h == g) for g in groups}
    coarse = table("coarse", {"group": groups, "n": [sums[g] + k * (g == where) for g in groups]}, ("group",))
    flags = find_differencing([fine], [coarse], THRESHOLD)
    assert pairs(flags) == {("fine", "coarse", (("group", where),), "n", k)}


# -- size -------------------------------------------------------------------------------------------------


def test_a_large_request_against_many_released_tables() -> None:
    """50 candidates x 300 released tables of 500 rows, of three shapes whose labels meet in one label or none.

    Every count is a multiple of 1000, so only what is planted can differ by fewer than the threshold.
    """
    rng = np.random.default_rng(7)
    regions = [f"R{i:02d}" for i in range(25)]
    years = [str(2000 + i) for i in range(20)]
    bands = [f"B{i}" for i in range(10)]
    shapes: list[tuple[tuple[str, ...], dict[str, list[str]]]] = [
        (("region", "year"), {"region": [r for r in regions for _ in years], "year": years * 25}),
        (
            ("region", "sex", "band"),
            {
                "region": [r for r in regions for _ in range(20)],
                "sex": (["F"] * 10 + ["M"] * 10) * 25,
                "band": bands * 50,
            },
        ),
        (("year", "age"), {"year": [y for y in years for _ in range(25)], "age": [f"A{i}" for i in range(25)] * 20}),
    ]

    def make(oid: str, shape: int, population: str) -> TableRef:
        labels, columns = shapes[shape]
        counts = list(rng.integers(1, 10**6, size=500) * 1000)
        return table(oid, {**columns, "n": counts}, labels, population=population)

    candidates = [make(f"cand/{i}", i % 3, f"pop-c{i}") for i in range(50)]
    released = [make(f"rel/{i}", i % 3, f"pop-r{i}") for i in range(300)]
    # plant: released 6 is candidate 3 (shape 0) with 4 more patients in one cell, another population
    planted = candidates[3].frame.copy()
    planted.loc[123, "n"] = int(planted["n"].iloc[123]) + 4
    released[6] = table("rel/6", planted.to_dict("list"), shapes[0][0], population="pop-r6")
    flags = find_differencing(candidates, released, THRESHOLD)
    cell_123 = {"region": str(planted.loc[123, "region"]), "year": str(planted.loc[123, "year"])}
    assert pairs(flags) == {("cand/3", "rel/6", tuple(sorted(cell_123.items())), "n", 4)}
