"""``budget grant --twin`` and ``budget show --twin [--json]`` as the committee, a steward and a researcher type them.

The command line runs in process (its real entry point, as tests/functional/test_one_line_errors.py does it).
"""

from __future__ import annotations

import json

import pytest
from tests.conftest import MEMBER, STEWARD, sign_in
from tests.functional.test_one_line_errors import one_line
from tests.generative.test_fuzz_cli import run

from research_kit.core import audit
from research_kit.core.errors import BadInput, PolicyRefusal
from research_kit.core.workspace import Workspace
from research_kit.dp import ledger
from research_kit.dp.accounting import to_picorho

BALANCE_KEYS = {"study", "ledger", "delta"} | {
    f"{amount}_{unit}" for amount in ("granted", "spent", "reserved", "remaining") for unit in ("rho", "epsilon")
}
SPEND_KEYS = {"id", "reserved_at", "spent_at", "who", "extract", "twin", "mechanism", "rho", "epsilon", "state"}


def refused(argv: tuple[str, ...], exit_code: int, says: str) -> None:
    code, _, err = run(*argv)
    one_line(code, err, exit_code, says)


@pytest.fixture
def signed(workspace: Workspace) -> Workspace:
    sign_in(workspace, ana="researcher", **{MEMBER: "committee", STEWARD: "steward"})
    return workspace


def test_the_committee_grants_the_twin_budget_and_a_steward_reads_it_as_json(signed: Workspace) -> None:
    code, out, err = run(
        "--as", MEMBER, "budget", "grant", "--twin", "--rho", "2", "--note", "DAC #7", "--owner", STEWARD
    )
    assert code == 0, err
    assert "DP-twin budget" in out
    with audit.acting(STEWARD):
        spend = ledger.reserve_twin(
            signed, cost=to_picorho("0.5", round_up=True), extract="e1", twin="e1@dp", mechanism="mst", details={}
        )
        ledger.commit(signed, spend, {"published": False})
    code, out, err = run("--as", STEWARD, "budget", "show", "--twin", "--json")
    assert code == 0, err
    shown = json.loads(out)
    assert set(shown) == BALANCE_KEYS | {"spends"}
    assert (shown["study"], shown["ledger"], shown["delta"]) == ("@twin", "real", signed.policy().dp.delta)
    assert (shown["granted_rho"], shown["spent_rho"], shown["reserved_rho"], shown["remaining_rho"]) == (
        2.0, 0.5, 0.0, 1.5
    )  # fmt: skip
    assert shown["granted_epsilon"] > shown["granted_rho"]
    (seen,) = shown["spends"]
    assert set(seen) == SPEND_KEYS
    assert (seen["id"], seen["who"], seen["extract"], seen["twin"], seen["mechanism"], seen["state"]) == (
        spend, STEWARD, "e1", "e1@dp", "mst", "spent"
    )  # fmt: skip
    assert seen["rho"] == 0.5
    code, out, err = run("--as", MEMBER, "budget", "show", "--twin")
    assert code == 0, err
    assert "e1@dp" in out
    assert "mst" in out
    code, out, err = run("--as", MEMBER, "budget", "show", "--json")
    assert (code, json.loads(out)) == (0, [])  # no study's budget among them


def test_twin_budget_mistakes_are_one_line(signed: Workspace) -> None:
    grant = ("--as", MEMBER, "budget", "grant")
    refused((*grant, "--rho", "1"), BadInput.exit_code, "give a STUDY, or --twin")
    refused((*grant, "s", "--twin", "--rho", "1"), BadInput.exit_code, "give a STUDY, or --twin")
    refused((*grant, "--twin", "--rho", "1", "--owner", "ana"), BadInput.exit_code, "user is a steward, not a")
    refused((*grant, "--twin", "--rho", "1"), BadInput.exit_code, "name the steward(s) who build it with --owner")
    refused((*grant, "--twin"), BadInput.exit_code, "give the grant as --rho R")
    refused((*grant, "@twin", "--rho", "1", "--owner", "ana"), BadInput.exit_code, "study '@twin': use letters")
    refused((*grant, "--twin", "--rho", "6", "--owner", STEWARD), PolicyRefusal.exit_code, "max_twin_rho = 5")
    refused(("--as", "ana", "budget", "grant", "--twin", "--rho", "1"), PolicyRefusal.exit_code, "committee role")
    refused(("--as", STEWARD, "budget", "grant", "--twin", "--rho", "1"), PolicyRefusal.exit_code, "committee role")
    assert ledger.twin_balance(signed).granted == 0
    refused(("--as", "ana", "budget", "show", "--twin"), PolicyRefusal.exit_code, "committee and stewards")
    refused(("--as", MEMBER, "budget", "show", "s", "--twin"), BadInput.exit_code, "--twin shows")
    refused(("--as", MEMBER, "budget", "show", "--twin", "--sandbox"), BadInput.exit_code, "--twin shows")
    code, out, _ = run("--as", MEMBER, "budget", "show", "--twin")
    assert (code, out.strip()) == (
        0,
        "no DP-twin budget granted yet ('budget grant --twin --rho R --owner STEWARD')",
    )
