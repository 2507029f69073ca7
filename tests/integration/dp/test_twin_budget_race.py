"""Processes racing for the last of the registry's DP-twin budget: only the twins it can pay get a reservation."""

from __future__ import annotations

import multiprocessing
from multiprocessing.synchronize import Event
from pathlib import Path

from tests.conftest import MEMBER, STEWARD, people

from research_kit.core import audit
from research_kit.core.errors import PolicyRefusal
from research_kit.core.workspace import Workspace, init_workspace
from research_kit.dp import ledger
from research_kit.dp.accounting import to_picorho

RACERS = 8
COST = "0.01"


def _build_twin(root: str, i: int, start: Event, results: multiprocessing.Queue[tuple[int, str]]) -> None:
    """One steward's DP twin: reserve its cost at the starting signal, then spend it (the mechanism ran)."""
    ws = Workspace(Path(root))
    start.wait(60)
    try:
        with audit.acting("stew"):
            spend = ledger.reserve_twin(
                ws, cost=to_picorho(COST, round_up=True), extract=f"e{i}", twin=f"e{i}@dp", mechanism="aim",
                details={"extract_hash": f"{i:064x}"},
            )  # fmt: skip
            ledger.commit(ws, spend, {"published": False})
    except PolicyRefusal as refused:
        results.put((1, str(refused)))
        return
    results.put((0, ""))


def test_eight_processes_racing_for_the_last_of_the_twin_budget(tmp_path: Path) -> None:
    ws, _ = init_workspace(tmp_path / "ws")
    people(ws)
    with audit.acting(MEMBER):
        ledger.grant_twin(ws, "0.035", owners=(STEWARD,))  # room for exactly three twins of rho 0.01
    context = multiprocessing.get_context("fork")  # the workers start at once, with this process's imports
    start, results = context.Event(), context.Queue()
    racers = [context.Process(target=_build_twin, args=(str(ws.root), i, start, results)) for i in range(RACERS)]
    for racer in racers:
        racer.start()
    start.set()
    outcomes = [results.get(timeout=120) for _ in racers]
    for racer in racers:
        racer.join(60)
        assert racer.exitcode == 0
    refused = [message for code, message in outcomes if code]
    assert len(outcomes) - len(refused) == 3
    assert len(refused) == RACERS - 3
    for message in refused:
        assert message.startswith("this DP twin costs rho 0.01 (epsilon ")
        assert "\n" not in message
    balance = ledger.twin_balance(ws)
    assert balance.remaining == to_picorho("0.005", round_up=False)
    assert balance.reserved == 0
    history = ledger.twin_history(ws)
    assert [s.state for s in history] == ["spent"] * 3
    assert len([e for e in audit.read_entries(ws.audit_path) if e["action"] == "dp.twin_spend"]) == 3
