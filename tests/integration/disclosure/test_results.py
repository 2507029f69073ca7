"""Check results as the catalog keeps them (disclosure/results.py), and the registries of checks and mitigations."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
import pytest

matplotlib.use("Agg")
import matplotlib.pyplot as plt

import research_kit as rk
from research_kit.core.config import Policy, SdcPolicy
from research_kit.core.errors import BadInput
from research_kit.disclosure import mitigate
from research_kit.disclosure.checks import CHECKS, Item, check_items
from research_kit.disclosure.results import (
    UNCHECKED,
    CheckResult,
    DifferencingPair,
    Flag,
    GateResult,
    OutputChecks,
)
from research_kit.disclosure.sdc import MODEL_RULES, TABLE_RULES
from research_kit.outputs import sidecar as sc


@pytest.fixture(autouse=True)
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("RESEARCH_KIT_TIER", raising=False)
    monkeypatch.setenv("RESEARCH_KIT_STUDY", "s9")


def _stored(checks: OutputChecks) -> dict[str, Any]:
    """What the catalog holds and gives back: the JSON text, parsed."""
    loaded: dict[str, Any] = json.loads(json.dumps(checks.to_json(), sort_keys=True))
    return loaded


def _request() -> list[Item]:
    rk.outputs.table(pd.DataFrame({"sex": ["female", "male"], "n": [100, 3]}), "by_sex", counts=["n"])
    rk.outputs.table(pd.DataFrame({"sex": ["female", "male"], "n": [104, 3]}), "by_sex_again", counts=["n"])
    rk.outputs.table(pd.DataFrame({"patient_id": ["x"], "n": [50]}), "ids", counts=["n"])
    fig, ax = plt.subplots()
    ax.bar(["female", "male"], [100, 3])
    rk.outputs.figure(fig, "by_sex_figure", source="by_sex")
    plt.close(fig)
    names = {"by_sex": "csv", "by_sex_again": "csv", "ids": "csv", "by_sex_figure": "png"}
    return [Item(f"a/{n}", Path(f"{n}.{ext}"), "moderately_sensitive") for n, ext in names.items()]


def test_every_kind_of_result_reads_back_as_it_was_checked() -> None:
    results = check_items(_request(), [], Policy())
    assert [r.status for r in results] == ["fail", "fail", "gated", "fail"]
    for checks in results:
        assert OutputChecks.from_json(_stored(checks)) == checks
    by_sex, _, ids, figure = results
    assert isinstance(by_sex.differencing[0], DifferencingPair)
    assert ids.sdc is None
    assert not ids.gate.passed
    assert figure.sdc is not None
    assert figure.sdc.notes[0] == "checked as its table 'by_sex'"


def test_the_stored_json_keeps_its_shape() -> None:
    stored = _stored(check_items(_request(), [], Policy())[0])
    assert sorted(stored) == ["checked_at", "differencing", "gate", "policy", "protection", "sdc", "status"]
    assert stored["gate"] == {"passed": True, "reasons": []}
    assert sorted(stored["sdc"]) == ["flags", "notes", "status"]
    flag = stored["sdc"]["flags"][0]
    assert flag == {"rule": "threshold", "row": 1, "column": "n", "reason": flag["reason"], "severity": "fail"}
    assert sorted(stored["differencing"][0]) == ["column", "difference", "group", "other", "reason"]
    assert sorted(stored["policy"]) == ["outputs", "sdc"]


def test_a_result_built_by_hand_round_trips() -> None:
    checks = OutputChecks(
        status="fail",
        gate=GateResult(()),
        sdc=CheckResult("review", (Flag("zero", 0, "n", "0 patients: ...", "review"),), ("a note",)),
        differencing=(DifferencingPair("a/other", {"sex": "male"}, "n", 3, "a reason"),),
        policy={"sdc": {"min_cell_count": 10}},
        checked_at="2026-01-01T00:00:00+00:00",
    )
    assert OutputChecks.from_json(_stored(checks)) == checks
    assert GateResult.from_json(GateResult(("declared highly_sensitive",)).to_json()).reasons == (
        "declared highly_sensitive",
    )


def test_an_unchecked_output_reads_as_one_for_review() -> None:
    """``{}`` is what intake writes before the checks run: nothing stops it, nothing is flagged, a reviewer looks."""
    assert OutputChecks.from_json({}) is UNCHECKED
    assert (UNCHECKED.status, UNCHECKED.gate.reasons, UNCHECKED.sdc, UNCHECKED.differencing) == ("review", (), None, ())
    assert not UNCHECKED.checked
    assert UNCHECKED.to_json() == {}


def test_a_status_must_be_known() -> None:
    with pytest.raises(ValueError, match="check status 'fine'"):
        OutputChecks(status="fine", gate=GateResult(()), sdc=None)


def test_a_figure_fails_when_its_table_was_mitigated_after_it() -> None:
    items = _request()
    table = sc.read(Path("by_sex.csv"))
    assert table is not None
    record = {"method": "rounding", "parameters": {"method": "base", "base": 5}, "cells_changed": 1}
    sc.write(Path("by_sex.csv"), sc.Sidecar(**{**table.__dict__, "mitigations": [record]}))
    figure = check_items(items, [], Policy())[3]
    assert figure.status == "fail"
    assert figure.sdc is not None
    assert figure.sdc.flags[0] == Flag(
        "mitigated_source",
        None,
        None,
        "its table 'by_sex' was mitigated after the figure was drawn: redraw the figure from the mitigated table or "
        "leave it out",
        "fail",
    )
    # A figure that carries the same mitigations (drawn from the mitigated table) is checked as its table alone.
    car = sc.read(Path("by_sex_figure.png"))
    assert car is not None
    sc.write(Path("by_sex_figure.png"), sc.Sidecar(**{**car.__dict__, "mitigations": [record]}))
    again = check_items(items, [], Policy())[3]
    assert again.sdc is not None
    assert [f.rule for f in again.sdc.flags if f.rule == "mitigated_source"] == []


def test_the_registries_run_in_their_order() -> None:
    assert list(CHECKS) == ["gate", "sdc", "figure", "protection", "differencing"]
    assert list(TABLE_RULES) == ["min_max", "counts", "proportions", "magnitudes", "survival"]
    assert list(MODEL_RULES) == ["residual_df", "survival_events"]
    assert list(mitigate.MITIGATIONS) == ["suppress", "round", "midpoint6", "roll-up"]


def test_an_unknown_mitigation_is_refused_naming_every_registered_one() -> None:
    with pytest.raises(BadInput, match=r"^mitigation 'shuffle': use suppress, round, midpoint6 or roll-up$"):
        mitigate.get_mitigation("shuffle")
    assert mitigate.get_mitigation("midpoint6") is mitigate.MITIGATIONS["midpoint6"]


def test_each_mitigation_takes_the_same_arguments() -> None:
    frame = pd.DataFrame({"group": ["a", "b", "c"], "n": [12, 3, 40]})
    sidecar = sc.Sidecar(name="t", file="t.csv", type="table", kind="frequency", roles={"group": "label", "n": "count"})
    policy = SdcPolicy()
    rounded = mitigate.MITIGATIONS["round"](frame, sidecar, policy, column=None)
    assert rounded.frame["n"].tolist() == [10, 5, 40]
    assert mitigate.MITIGATIONS["midpoint6"](frame, sidecar, policy, column=None).frame["n"].tolist() == [9, 3, 39]
    suppressed = mitigate.MITIGATIONS["suppress"](frame, sidecar, policy, column=None)
    assert suppressed.record["method"] == "suppression"
    assert suppressed.rows_kept
    with pytest.raises(BadInput, match=r"^roll-up needs the ICD-10 column to roll up \(--column\)$"):
        mitigate.MITIGATIONS["roll-up"](frame, sidecar, policy, column=None)
