"""The registry's DP-twin budget in the privacy ledger: granted by the committee alone, capped, audited with the
grant, refused in one line before anything is spent, charged exactly once per twin, never taken for a study."""

from __future__ import annotations

import sqlite3
from typing import Any

import pytest
from tests.conftest import MEMBER, STEWARD, grant, people

from research_kit.actions import budget
from research_kit.actions import permits as permit_actions
from research_kit.core import audit, permits
from research_kit.core.errors import BadInput, MissingData, PolicyRefusal
from research_kit.core.workspace import Workspace
from research_kit.dp import ledger
from research_kit.dp.accounting import PICO, epsilon_of, to_picorho

TWIN = "e1@dp"


def _entries(ws: Workspace, action: str) -> list[dict[str, Any]]:
    return [e for e in audit.read_entries(ws.audit_path) if e["action"] == action]


def _rows(ws: Workspace, table: str) -> int:
    with ws.catalog() as conn:
        return int(conn.execute(f"SELECT COUNT(*) FROM {table} WHERE study = ?", (ledger.TWIN_BUDGET,)).fetchone()[0])


def _grant_twin(ws: Workspace, rho: float | str, note: str = "") -> ledger.Balance:
    people(ws)
    with audit.acting(MEMBER):
        return ledger.grant_twin(ws, rho, note=note, owners=(STEWARD,))


def _reserve(ws: Workspace, rho: str, mechanism: str = "aim") -> int:
    """A steward the twin's permit names reserves ``rho``."""
    with audit.acting(STEWARD):
        return ledger.reserve_twin(
            ws,
            cost=to_picorho(rho, round_up=True),
            extract="e1",
            twin=TWIN,
            mechanism=mechanism,
            details={"extract_hash": "ab" * 32, "epsilon": 1.0},
        )


@pytest.fixture
def ws(workspace: Workspace) -> Workspace:
    people(workspace, rita="researcher")
    return workspace


@pytest.mark.parametrize("who", ["rita", STEWARD, "nobody-here"])
def test_only_the_committee_grants_the_twin_budget(ws: Workspace, who: str) -> None:
    with audit.acting(who), pytest.raises(PolicyRefusal) as refused:
        ledger.grant_twin(ws, 1.0)
    assert "\n" not in str(refused.value)
    assert "committee" in str(refused.value)
    assert ledger.twin_balance(ws).granted == 0
    assert _rows(ws, "dp_grants") == 0
    assert _entries(ws, "dp.twin_grant") == []
    with pytest.raises(PolicyRefusal, match="committee"):
        budget.grant_twin(ws, actor=who, rho="1")


def test_each_grant_adds_up_and_is_audited_once_with_it(ws: Workspace) -> None:
    _grant_twin(ws, "1.5", note="DAC 2026-12 #3")
    balance = budget.grant_twin(ws, actor=MEMBER, epsilon="1")  # converted at the policy's delta
    grants = _entries(ws, "dp.twin_grant")
    assert [g["actor"] for g in grants] == [MEMBER, MEMBER]
    assert grants[0]["details"] == {"rho": 1.5, "total_rho": 1.5, "note": "DAC 2026-12 #3"}
    eps_rho = balance.granted / PICO - 1.5
    assert epsilon_of(eps_rho, ws.policy().dp.delta) == pytest.approx(1.0, rel=1e-6)
    assert grants[1]["details"]["rho"] == pytest.approx(eps_rho)
    assert (balance.study, balance.tier, balance.spent, balance.reserved) == (ledger.TWIN_BUDGET, "real", 0, 0)
    assert _rows(ws, "dp_grants") == 2
    assert _entries(ws, "dp.grant") == []  # not a study's grant


def test_a_grant_whose_audit_line_fails_is_not_kept(ws: Workspace, monkeypatch: pytest.MonkeyPatch) -> None:
    people(ws)

    def broken(*args: object, **kwargs: object) -> object:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(audit, "append", broken)
    with audit.acting(MEMBER), pytest.raises(sqlite3.OperationalError):
        ledger.grant_twin(ws, 1.0, owners=(STEWARD,))
    assert _rows(ws, "dp_grants") == 0


def test_grants_above_the_policys_ceiling_are_refused(ws: Workspace) -> None:
    _grant_twin(ws, 4.0)
    with pytest.raises(PolicyRefusal, match=r"above \[dp\]\.max_twin_rho = 5$") as refused:
        _grant_twin(ws, 1.5)
    assert "\n" not in str(refused.value)
    assert ledger.twin_balance(ws).granted == 4 * PICO
    assert len(_entries(ws, "dp.twin_grant")) == 1
    _grant_twin(ws, 1.0)  # up to the ceiling itself
    ws.policy_path.write_text(
        ws.policy_path.read_text(encoding="utf-8").replace("max_twin_rho = 5.0", "max_twin_rho = 8.0"),
        encoding="utf-8",
    )
    assert _grant_twin(ws, 3.0).granted == 8 * PICO  # the committee's policy, not a literal
    with pytest.raises(PolicyRefusal, match="max_twin_rho = 8"):
        _grant_twin(ws, "0.000001")


def test_a_twin_is_refused_before_anything_is_spent_without_a_grant(ws: Workspace) -> None:
    grant(ws, "a-study", 1.0, owner="rita")  # a study's budget never pays for a twin
    message = (
        "the registry has no DP-twin budget: a committee member grants one with "
        "'research-kit budget grant --twin --rho R --owner STEWARD'"
    )
    with pytest.raises(PolicyRefusal) as refused:
        ledger.check_twin_budget(ws, to_picorho("0.1", round_up=True))
    assert str(refused.value) == message
    with pytest.raises(PolicyRefusal, match="no DP-twin budget"):
        _reserve(ws, "0.1")
    assert ledger.twin_history(ws) == []
    assert _entries(ws, "dp.twin_spend") == []


def test_a_twin_the_budget_cannot_pay_is_refused_naming_cost_and_remainder(ws: Workspace) -> None:
    _grant_twin(ws, "0.5")
    spend = _reserve(ws, "0.3")
    ledger.commit(ws, spend, {"published": False})
    ledger.check_twin_budget(ws, to_picorho("0.2", round_up=True))  # exactly what remains: allowed
    for check in (
        lambda: ledger.check_twin_budget(ws, to_picorho("0.25", round_up=True)),
        lambda: _reserve(ws, "0.25"),
    ):
        with pytest.raises(PolicyRefusal) as refused:
            check()
        said = str(refused.value)
        assert said.startswith("this DP twin costs rho 0.25 (epsilon ")
        assert "but only rho 0.2 (epsilon " in said
        assert said.endswith("of the registry's DP-twin budget remains")
        assert "\n" not in said
    assert len(ledger.twin_history(ws)) == 1
    assert ledger.twin_balance(ws).spent == to_picorho("0.3", round_up=True)


def test_a_twin_is_charged_once_when_committed_and_shown_in_its_history(ws: Workspace) -> None:
    _grant_twin(ws, "2")
    cost = to_picorho("0.75", round_up=True)
    with audit.acting(STEWARD):
        spend = _reserve(ws, "0.75", mechanism="mst")
    held = ledger.twin_balance(ws)
    assert (held.spent, held.reserved, held.remaining) == (0, cost, 2 * PICO - cost)
    ledger.commit(ws, spend, {"published": True})
    with pytest.raises(MissingData):
        ledger.commit(ws, spend, {"published": True})  # a second commit charges nothing more
    after = ledger.twin_balance(ws)
    assert (after.spent, after.reserved, after.remaining) == (cost, 0, 2 * PICO - cost)
    (seen,) = ledger.twin_history(ws)
    assert (seen.id, seen.state, seen.who, seen.source, seen.mechanism) == (spend, "spent", STEWARD, TWIN, "mst")
    assert (seen.query["extract"], seen.query["kind"], seen.rho) == ("e1", ledger.TWIN_SPEND, 0.75)
    (line,) = _entries(ws, "dp.twin_spend")
    delta = ws.policy().dp.delta
    assert line["details"] == {
        "spend": spend, "extract": "e1", "twin": TWIN, "mechanism": "mst", "rho": 0.75,
        "epsilon": pytest.approx(epsilon_of(0.75, delta)), "delta": delta,
    }  # fmt: skip
    assert _entries(ws, "dp.query") == []
    assert budget.twin_history(ws, actor=MEMBER) == [seen]


def test_a_cancelled_reservation_gives_its_budget_back(ws: Workspace) -> None:
    _grant_twin(ws, "1")
    spend = _reserve(ws, "0.6")
    with pytest.raises(PolicyRefusal):
        _reserve(ws, "0.6")  # held, so not there for a second twin
    ledger.cancel(ws, spend)
    balance = ledger.twin_balance(ws)
    assert (balance.spent, balance.reserved, balance.remaining) == (0, 0, PICO)
    assert ledger.twin_history(ws) == []


def test_the_reserved_name_is_no_study(ws: Workspace) -> None:
    name = ledger.TWIN_BUDGET
    people(ws)
    with audit.acting(MEMBER):
        for attempt in (
            lambda: ledger.grant(ws, name, 1.0, owners=["rita"]),
            lambda: budget.grant(ws, actor=MEMBER, study=name, rho="1", owners=["rita"]),
            lambda: ledger.balance(ws, name),
            lambda: ledger.history(ws, name),
            lambda: ledger.grants(ws, name),
            lambda: ledger.reset_sandbox(ws, name),
        ):
            with pytest.raises(BadInput, match="study '@twin': use letters"):
                attempt()
    assert _rows(ws, "dp_grants") == 0
    _grant_twin(ws, "1")
    grant(ws, "a-study", 0.5, owner="rita")
    with audit.acting(STEWARD):
        ledger.commit(ws, _reserve(ws, "0.1"), {})
    assert ledger.studies(ws) == ["a-study"]
    assert [b.study for b in budget.shown(ws, actor=MEMBER)] == ["a-study"]
    assert [b.study for b in budget.visible_budgets(ws, actor=STEWARD)] == ["a-study"]


def test_the_twin_budget_is_read_by_the_committee_and_stewards(ws: Workspace) -> None:
    _grant_twin(ws, "1")
    for reader in (MEMBER, STEWARD):
        assert budget.twin_shown(ws, actor=reader).granted == PICO
    for stranger in ("rita", "nobody-here"):
        with pytest.raises(
            PolicyRefusal, match=r"^the registry's DP-twin budget is read by the committee and stewards$"
        ):
            budget.twin_shown(ws, actor=stranger)
        with pytest.raises(PolicyRefusal):
            budget.twin_history(ws, actor=stranger)


def test_the_twin_budget_comes_with_a_permit_naming_the_stewards_who_build_it(ws: Workspace) -> None:
    people(ws, sue="steward")
    with audit.acting(MEMBER), pytest.raises(BadInput, match=r"name the steward\(s\) who build it with --owner"):
        ledger.grant_twin(ws, 1.0)  # the first grant names them
    with audit.acting(MEMBER), pytest.raises(BadInput, match="this permit's user is a steward, not a researcher"):
        ledger.grant_twin(ws, 1.0, owners=("rita",))
    assert ledger.twin_balance(ws).granted == 0  # a refused grant grants nothing
    _grant_twin(ws, 1.0)  # names STEWARD
    with ws.catalog() as conn:
        permit = permits.in_force(conn, permits.REGISTRY_TWIN)
    assert permit is not None
    assert (permit.users, permit.tier, permit.holder) == ((STEWARD,), "real", "the registry")
    with audit.acting(STEWARD):
        ledger.check_twin_budget(ws, 10, spender=STEWARD)
    rule = rf"permit {permit.id} \(the registry's DP twin\) does not name sue: building a DP twin is for its users"
    with audit.acting("sue"), pytest.raises(PolicyRefusal, match=rule):
        ledger.reserve_twin(ws, cost=10, extract="e1", twin=TWIN, mechanism="mst", details={})
    _grant_twin(ws, 0.5)  # a top-up
    with audit.acting(MEMBER):
        ledger.grant_twin(ws, 0.5, owners=("sue",))  # names another steward: she joins the permit
        permit_actions.revoke(ws, actor=MEMBER, permit_id=permit.id, note="the twin is rebuilt under a new DAC rule")
    with audit.acting("sue"), pytest.raises(PolicyRefusal, match=rf"permit {permit.id} \(the registry's DP twin\) "
                                            r"was revoked on .*: building a DP twin is over"):  # fmt: skip
        ledger.check_twin_budget(ws, 10, spender="sue")
    assert _rows(ws, "dp_spends") == 0  # nothing was ever spent
    with audit.acting(MEMBER), pytest.raises(BadInput, match=r"name the steward\(s\) who build it"):
        ledger.grant_twin(ws, 0.5)  # a top-up never brings a revoked permit back
    with audit.acting(MEMBER):
        ledger.grant_twin(ws, 0.5, owners=("sue",))  # a new permit, naming sue alone
    with audit.acting("sue"):
        ledger.check_twin_budget(ws, 10, spender="sue")
    with audit.acting(STEWARD), pytest.raises(PolicyRefusal, match="does not name stew"):
        ledger.check_twin_budget(ws, 10, spender=STEWARD)
