"""What the DP twin's accounting promises beyond the ledger: the control set moves by one patient when one patient
does, the budget is spent once a mechanism read the data (a later failure included) and given back only before,
whoever granted the budget does not spend it, and the names of twin kinds are no extract's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.conftest import MEMBER, STEWARD, people

from research_kit.core import audit, users
from research_kit.core.errors import BadInput, PolicyRefusal
from research_kit.core.extracts import Extract
from research_kit.core.workspace import Workspace
from research_kit.dp import ledger
from research_kit.dp.accounting import to_picorho
from research_kit.ingest.pipeline import ingest
from research_kit.synth import dp_twin, publish
from research_kit.synth.tables import Tables


def test_one_patient_more_changes_the_training_patients_by_that_patient_alone() -> None:
    ids = np.array([f"{i:032x}" for i in range(2_000)], dtype=object)
    held = publish.held_out_patients(ids, seed=0)
    more = publish.held_out_patients(np.append(ids, "f" * 32), seed=0)
    assert np.array_equal(held, more[:-1])
    assert 0.17 < held.mean() < 0.23  # about the control share
    assert not np.array_equal(held, publish.held_out_patients(ids, seed=1))  # the seed picks another set


def _extract(tmp_path: Path) -> Extract:
    return Extract("e1", tmp_path, "2026-11-30T10:00:00+00:00", "ab" * 32, "k", 0, {})


def _tables() -> Tables:
    import pandas as pd

    return Tables(*(pd.DataFrame({"pseudonym": []}) for _ in range(4)))


@pytest.mark.parametrize("touched", [True, False])
def test_a_run_that_fails_after_a_mechanism_read_the_data_is_charged(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, touched: bool
) -> None:
    people(workspace)
    with audit.acting(MEMBER):
        ledger.grant_twin(workspace, 1.0, owners=(STEWARD,))

    def failing(*_args: Any, touching: Any, **_kwargs: Any) -> dp_twin.Release:
        if touched:
            touching()
        raise RuntimeError("the estimation ran out of memory")

    monkeypatch.setattr(dp_twin, "measure", failing)
    cost = to_picorho("0.5", round_up=True)
    with audit.acting(STEWARD), pytest.raises(RuntimeError):
        publish._measure_dp(workspace, _extract(tmp_path), "e1@dp", "mst", 0.5, cost, _tables(), 10, print)
    balance = ledger.twin_balance(workspace)
    assert balance.reserved == 0
    assert balance.spent == (cost if touched else 0)
    spent = [e for e in audit.read_entries(workspace.audit_path) if e["action"] == "dp.twin_spend"]
    assert len(spent) == (1 if touched else 0)


def test_whoever_granted_the_twin_budget_does_not_spend_it(workspace: Workspace) -> None:
    people(workspace, both="committee")
    with audit.acting(STEWARD):
        users.add(workspace, "both", "steward")  # a small registry's steward who sits on the committee
    with audit.acting(MEMBER):
        ledger.grant_twin(workspace, 1.0, owners=(STEWARD,))
    with audit.acting("both"), pytest.raises(PolicyRefusal, match="a builder never grants its budget"):
        ledger.grant_twin(workspace, 1.0, owners=("both",))  # she would name herself a builder
    with audit.acting("both"):
        ledger.grant_twin(workspace, 1.0)  # a top-up by a member who builds nothing
    with audit.acting(MEMBER):
        ledger.grant_twin(workspace, 0.5, owners=("both",))  # later named a builder by another member
    with audit.acting("both"), pytest.raises(PolicyRefusal, match="a builder never grants its budget"):
        ledger.grant_twin(workspace, 1.0)  # a builder tops up nothing
    with audit.acting("both"), pytest.raises(PolicyRefusal, match="granted the registry's DP-twin budget"):
        ledger.check_twin_budget(workspace, 10, spender="both")
    with audit.acting("both"), pytest.raises(PolicyRefusal, match="another steward builds the DP twin"):
        ledger.reserve_twin(workspace, cost=10, extract="e1", twin="e1@dp", mechanism="mst", details={})
    with audit.acting(STEWARD):
        ledger.check_twin_budget(workspace, 10, spender=STEWARD)  # another steward may


@pytest.mark.parametrize("name", ["dp", "default"])
def test_the_names_of_twin_kinds_are_no_extract_ids(workspace: Workspace, tmp_path: Path, name: str) -> None:
    with pytest.raises(BadInput, match="reserved"):
        ingest(workspace, [tmp_path], name, None)  # type: ignore[arg-type]
