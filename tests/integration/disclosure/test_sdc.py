"""SDC rules at their edges: at a limit passes, one step past it fails; every reason names figure and limit."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
import pytest

from research_kit.core.config import SdcPolicy
from research_kit.core.errors import BadInput
from research_kit.disclosure import sdc
from research_kit.disclosure.sdc import CheckResult, Flag, check, check_model, check_table
from research_kit.outputs.sidecar import Contribution, DpFacts, ModelFacts, Sidecar

POLICY = SdcPolicy()


def table(roles: dict[str, str], **fields: Any) -> Sidecar:
    return Sidecar(name="t", file="t.csv", type="table", kind=fields.pop("kind", "frequency"), roles=roles, **fields)


def counts(values: list[float]) -> tuple[pd.DataFrame, Sidecar]:
    frame = pd.DataFrame({"group": [f"g{i}" for i in range(len(values))], "n": values})
    return frame, table({"group": "label", "n": "count"})


def flags_at(result: CheckResult, row: int, column: str) -> list[Flag]:
    return result.cells().get((row, column), [])


def rules_at(result: CheckResult, row: int, column: str) -> set[str]:
    return {f.rule for f in flags_at(result, row, column)}


def magnitude(cells: list[Contribution | None], values: list[float] | None = None) -> tuple[pd.DataFrame, Sidecar]:
    values = values if values is not None else [c.total if c else 1.0 for c in cells]
    frame = pd.DataFrame({"group": [f"g{i}" for i in range(len(cells))], "total": values})
    sidecar = table({"group": "label", "total": "sum"}, kind="magnitude", contributions={"total": cells})
    return frame, sidecar


def cell(total: float, *top: float, n: int = 20) -> Contribution:
    return Contribution(n=n, total=total, top=tuple(top))


# --- threshold and zeros -------------------------------------------------------------------------------------


def test_a_count_at_the_minimum_passes_one_below_fails_zero_is_for_review_and_missing_is_ignored() -> None:
    frame, sidecar = counts([10, 9, 0, np.nan, 250])
    result = check_table(frame, sidecar, POLICY)
    assert flags_at(result, 0, "n") == []
    [small] = flags_at(result, 1, "n")
    assert (small.rule, small.severity, small.reason) == ("threshold", "fail", "9 patients, fewer than the minimum 10")
    [zero] = flags_at(result, 2, "n")
    assert (zero.rule, zero.severity) == ("zero", "review")
    assert flags_at(result, 3, "n") == []
    assert flags_at(result, 4, "n") == []
    assert result.status == "fail"
    assert set(result.rules) >= {"threshold", "zero"}


def test_every_limit_comes_from_the_policy() -> None:
    frame, sidecar = counts([9, 3, 2, 0])
    result = check_table(frame, sidecar, SdcPolicy(min_cell_count=3, flag_zeros=False))
    assert [rules_at(result, i, "n") for i in range(4)] == [set(), set(), {"threshold"}, set()]
    assert "fewer than the minimum 3" in flags_at(result, 2, "n")[0].reason


def test_a_table_with_only_zeros_to_look_at_is_for_review() -> None:
    frame, sidecar = counts([12, 0, 40])
    assert check_table(frame, sidecar, POLICY).status == "review"
    assert check_table(frame, sidecar, replace(POLICY, flag_zeros=False)).status == "pass"


def test_a_negative_count_is_for_review() -> None:
    frame, sidecar = counts([-2, 30])
    result = check_table(frame, sidecar, POLICY)
    assert rules_at(result, 0, "n") == {"negative"}
    assert result.status == "review"


def test_the_n_column_is_held_to_the_threshold_like_a_count() -> None:
    frame = pd.DataFrame({"group": ["a", "b"], "n": [4, 40], "mean_age": [50.0, 51.0]})
    sidecar = table({"group": "label", "n": "other", "mean_age": "mean"}, kind="magnitude", n_column="n")
    result = check_table(frame, sidecar, POLICY)
    assert rules_at(result, 0, "n") == {"threshold"}
    assert flags_at(result, 0, "mean_age")[0].reason == "mean of 4 patients, fewer than the minimum 10"
    assert rules_at(result, 1, "mean_age") == set()


def test_a_magnitude_cell_takes_its_n_from_its_contribution_when_there_is_no_n_column() -> None:
    frame, sidecar = magnitude([cell(100.0, 12, 11, n=9), cell(100.0, 12, 11, n=10)])
    result = check_table(frame, sidecar, POLICY)
    assert "threshold" in rules_at(result, 0, "total")
    assert "threshold" not in rules_at(result, 1, "total")


def test_a_magnitude_column_without_any_n_says_its_threshold_was_not_checked() -> None:
    frame = pd.DataFrame({"group": ["a", "b"], "median_age": [50.0, 51.0]})
    result = check_table(frame, table({"group": "label", "median_age": "median"}), POLICY)
    [flag] = result.flags
    assert (flag.rule, flag.row, flag.column, flag.severity) == ("unchecked", None, "median_age", "review")
    assert "2 of 2 cells" in flag.reason


def test_a_share_fails_on_its_n_and_on_the_count_it_stands_for() -> None:
    frame = pd.DataFrame({"group": list("abcde"), "n": [40, 40, 8, 40, 40], "share": [0.05, 0.5, 0.5, 0.0, 0.25]})
    sidecar = table({"group": "label", "n": "count", "share": "proportion"}, n_column="n")
    result = check_table(frame, sidecar, POLICY)
    assert flags_at(result, 0, "share")[0].reason == (
        "a share of 40 patients standing for 2 patients, fewer than the minimum 10"
    )
    assert rules_at(result, 1, "share") == set()
    assert rules_at(result, 2, "share") == {"threshold"}
    assert rules_at(result, 3, "share") == {"zero"}
    assert rules_at(result, 4, "share") == set()  # 10 patients
    percent = frame.assign(share=frame["share"] * 100)
    assert check_table(percent, sidecar, POLICY).cells().keys() == result.cells().keys()


# --- dominance, p% and their edges ----------------------------------------------------------------------------


def test_dominance_at_exactly_k_percent_passes_and_just_above_fails_naming_the_share_not_the_values() -> None:
    frame, sidecar = magnitude([cell(100.0, 50.0, 40.0, 5.0), cell(100.0, 50.0, 40.5, 5.0)])
    result = check_table(frame, sidecar, replace(POLICY, p_percent=1.0))
    assert rules_at(result, 0, "total") == set()
    [flag] = flags_at(result, 1, "total")
    assert flag.reason == "the 2 largest contributors hold 90.5% of the total, more than 90%"
    assert flag.severity == "fail"
    assert "50" not in flag.reason
    assert "40.5 " not in flag.reason


def test_the_p_percent_rule_passes_at_p_and_fails_just_below_naming_how_close_the_estimate_comes() -> None:
    policy = replace(POLICY, dominance_k=100.0)
    at_p = cell(100.0, 80.0, 12.0, 4.0)  # the rest is 8, 10% of the largest
    below = cell(100.0, 80.0, 13.0, 4.0)  # the rest is 7, 8.75% of it
    frame, sidecar = magnitude([at_p, below])
    result = check_table(frame, sidecar, policy)
    assert rules_at(result, 0, "total") == set()
    [flag] = flags_at(result, 1, "total")
    assert flag.reason == "the second largest contributor could estimate the largest to within 8.8%, closer than 10%"


def test_a_single_contributor_fails_dominance_and_p_percent() -> None:
    frame, sidecar = magnitude([cell(42.0, 42.0, n=1)])
    result = check_table(frame, sidecar, replace(POLICY, min_cell_count=1))
    assert rules_at(result, 0, "total") == {"dominance", "p_percent"}
    assert "single contributor" in next(f.reason for f in result.flags if f.rule == "p_percent")


def test_negative_contributions_make_dominance_undefined_for_review() -> None:
    shown = cell(100.0, 80.0, -30.0, 25.0)
    hidden = cell(10.0, *([5.0] * 10), n=30)  # the ten largest add up to 50: the other twenty sum to -40
    frame, sidecar = magnitude([shown, hidden])
    result = check_table(frame, sidecar, POLICY)
    for row in (0, 1):
        [flag] = flags_at(result, row, "total")
        assert (flag.rule, flag.severity) == ("negative", "review")


def test_a_cell_whose_contributors_are_all_zero_is_for_review() -> None:
    frame, sidecar = magnitude([cell(0.0, 0.0, 0.0, 0.0)])
    assert rules_at(check_table(frame, sidecar, POLICY), 0, "total") == {"zero"}
    assert check_table(frame, sidecar, replace(POLICY, flag_zeros=False)).status == "pass"


def test_dominance_uses_the_policy_n() -> None:
    frame, sidecar = magnitude([cell(100.0, 40.0, 30.0, 25.0, 1.0)])
    assert "dominance" not in rules_at(check_table(frame, sidecar, POLICY), 0, "total")
    three = check_table(frame, sidecar, replace(POLICY, dominance_n=3))
    assert flags_at(three, 0, "total")[0].reason.startswith("the 3 largest contributors hold 95.0%")


def test_sums_and_means_without_contributions_get_one_unchecked_flag_per_column() -> None:
    frame = pd.DataFrame({"group": ["a", "b", "c"], "n": [20, 30, 40], "total": [1.0, 2.0, np.nan], "mean": [1, 2, 3]})
    sidecar = table({"group": "label", "n": "count", "total": "sum", "mean": "mean"}, kind="magnitude", n_column="n")
    result = check_table(frame, sidecar, POLICY)
    unchecked = [f for f in result.flags if f.rule == "unchecked"]
    assert [(f.column, f.row, f.severity) for f in unchecked] == [("total", None, "review"), ("mean", None, "review")]
    assert "2 of 2 cells of total" in unchecked[0].reason
    assert "source=" in unchecked[0].reason


def test_medians_get_no_dominance_rule() -> None:
    frame, sidecar = magnitude([cell(100.0, 99.0, 1.0)])
    median = replace(sidecar, roles={"group": "label", "total": "median"})
    assert check_table(frame, median, POLICY).status == "pass"


def test_a_missing_magnitude_cell_is_not_checked() -> None:
    frame, sidecar = magnitude([cell(100.0, 99.0, 1.0, n=3)], values=[np.nan])
    assert check_table(frame, sidecar, POLICY).flags == ()


def test_each_flagged_cell_carries_all_its_reasons() -> None:
    frame, sidecar = magnitude([cell(100.0, 95.0, 4.0, 1.0, n=3)])
    reasons = flags_at(check_table(frame, sidecar, POLICY), 0, "total")
    assert {f.rule for f in reasons} == {"threshold", "dominance", "p_percent"}
    assert all(f.severity == "fail" for f in reasons)


# --- minima and maxima, DP --------------------------------------------------------------------------------------


def test_every_minimum_and_maximum_fails() -> None:
    frame = pd.DataFrame({"group": ["a", "b"], "n": [50, 60], "youngest": [3, np.nan], "oldest": [90, 95]})
    sidecar = table({"group": "label", "n": "count", "youngest": "min", "oldest": "max"})
    result = check_table(frame, sidecar, POLICY)
    failed = {k for k, v in result.cells().items() if any(f.rule == "min_max" for f in v)}
    assert failed == {(0, "youngest"), (0, "oldest"), (1, "oldest")}
    assert flags_at(result, 0, "youngest")[0].reason == "a minimum is an individual's value"


def test_dp_answers_waive_the_threshold_with_a_note_naming_the_guarantee() -> None:
    frame, sidecar = counts([3, 0, -1, 120])
    dp = DpFacts(mechanism="gaussian", rho=0.05, epsilon=1.2, delta=1e-6, scale=4.0)
    result = check_table(frame, replace(sidecar, dp=dp), POLICY)
    assert result.status == "pass"
    assert result.flags == ()
    [note] = result.notes
    assert "gaussian" in note
    assert "rho=0.05" in note
    assert "epsilon=1.2 at delta=1e-06" in note
    assert "threshold" in note
    assert "waived" in note


def test_dp_answers_still_fail_minima_and_maxima() -> None:
    frame = pd.DataFrame({"group": ["a"], "n": [3], "oldest": [99]})
    sidecar = table({"group": "label", "n": "count", "oldest": "max"})
    dp = DpFacts(mechanism="laplace", rho=0.1, epsilon=1.0, delta=0.0, scale=1.0)
    result = check_table(frame, replace(sidecar, dp=dp), POLICY)
    assert result.status == "fail"
    assert {f.rule for f in result.flags} == {"min_max"}


# --- survival tables and models ---------------------------------------------------------------------------------


def test_survival_steps_need_enough_events_and_censoring_only_steps_are_not_held_to_it() -> None:
    frame = pd.DataFrame(
        {
            "time": [1, 2, 3, 4, 5],
            "at_risk": [100, 60, 30, 9, 5],
            "events": [12, 10, 9, 0, 3],
            "censored": [0, 2, 15, 0, 0],
            "estimate": [0.88, 0.73, 0.51, 0.51, 0.2],
        }
    )
    roles = {
        "time": "survival_time",
        "at_risk": "survival_at_risk",
        "events": "survival_events",
        "censored": "survival_censored",
        "estimate": "survival_estimate",
    }
    result = check_table(frame, table(roles, kind="survival"), POLICY)
    events = {row for (row, col) in result.cells() if col == "events"}
    assert events == {2, 4}
    assert flags_at(result, 2, "events")[0].reason == "9 events at this step, fewer than the minimum 10"
    assert {row for (row, col) in result.cells() if col == "at_risk"} == {3, 4}
    assert {row for (row, col) in result.cells() if col == "censored"} == {1}
    assert not any(f.rule == "zero" for f in result.flags)
    assert any("censoring-only" in note for note in result.notes)


def model(**facts: Any) -> Sidecar:
    defaults: dict[str, Any] = {"library": "statsmodels", "estimator": "OLS", "n_obs": 30, "df_model": 3.0}
    return Sidecar(name="m", file="m.pkl", type="model", kind="model", model=ModelFacts(**{**defaults, **facts}))


def test_residual_degrees_of_freedom_at_the_minimum_pass_and_one_fewer_fails() -> None:
    assert check_model(model(df_resid=10.0), POLICY).status == "pass"
    failed = check_model(model(df_resid=9.0), POLICY)
    assert failed.status == "fail"
    assert failed.flags[0].reason == "9 residual degrees of freedom, fewer than the minimum 10"
    assert check_model(model(df_resid=9.0), replace(POLICY, min_residual_df=9)).status == "pass"


def test_residual_degrees_of_freedom_are_derived_when_the_library_gave_none() -> None:
    derived = check_model(model(df_resid=None, n_obs=13, df_model=3.0), POLICY)  # 13 - 3 - 1 = 9
    assert derived.status == "fail"
    assert "derived" in derived.notes[0]
    unknown = check_model(model(df_resid=None, df_model=None), POLICY)
    assert unknown.status == "review"
    assert unknown.flags[0].rule == "unchecked"


def test_a_survival_model_needs_enough_events() -> None:
    cox = {"library": "lifelines", "estimator": "CoxPHFitter", "df_resid": None, "n_obs": 200, "df_model": 2.0}
    assert check_model(model(**cox, n_events=10), POLICY).status == "pass"
    few = check_model(model(**cox, n_events=9), POLICY)
    assert few.status == "fail"
    assert few.flags[0].reason == "9 events, fewer than the minimum 10"
    assert check_model(model(**cox, n_events=None), POLICY).status == "review"


def test_check_dispatches_on_the_output_type() -> None:
    frame, sidecar = counts([4])
    assert check(frame, sidecar, POLICY).status == "fail"
    assert check(None, model(df_resid=20.0), POLICY).status == "pass"
    figure = Sidecar(name="f", file="f.png", type="figure", kind="frequency", source="t.csv")
    assert check(None, figure, POLICY).status == "review"
    text = Sidecar(name="x", file="x.txt", type="text", kind="descriptive")
    assert check(None, text, POLICY).status == "review"
    with pytest.raises(BadInput, match=r"t\.csv"):
        check(None, sidecar, POLICY)


# --- malformed sidecars ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "column"),
    [
        ({"roles": {"group": "label", "n": "count", "ghost": "count"}}, "ghost"),
        ({"roles": {"group": "label", "n": "tally"}}, "n"),
        ({"roles": {"group": "label"}}, "n"),
        ({"roles": {"group": "count", "n": "count"}}, "group"),
        ({"n_column": "size"}, "size"),
        ({"contributions": {"n": [None]}}, "n"),
    ],
)
def test_a_malformed_sidecar_is_one_line_naming_the_file_and_column(change: dict[str, Any], column: str) -> None:
    frame, sidecar = counts([12, 14])
    with pytest.raises(BadInput) as err:
        check_table(frame, replace(sidecar, **change), POLICY)
    message = str(err.value)
    assert "\n" not in message
    assert message.startswith("t.csv:")
    assert repr(column) in message


def test_contributions_must_match_the_rows() -> None:
    frame, sidecar = magnitude([cell(1.0, 1.0), cell(2.0, 2.0)])
    short = replace(sidecar, contributions={"total": [cell(1.0, 1.0)]})
    with pytest.raises(BadInput, match="'total' has 1 contributions for 2 rows"):
        check_table(frame, short, POLICY)


def test_a_model_without_its_facts_is_bad_input() -> None:
    with pytest.raises(BadInput, match=r"m\.pkl"):
        check_model(replace(model(df_resid=20.0), model=None), POLICY)


def test_rule_names_are_the_documented_ones() -> None:
    frame, sidecar = magnitude([cell(100.0, 95.0, 4.0, 1.0, n=3)])
    assert {f.rule for f in check_table(frame, sidecar, POLICY).flags} <= set(sdc.RULES)
