"""The budget ledger: grants, composition, reservations, and processes racing for the last of a budget."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.conftest import grant, sign_in
from tests.integration.dp.conftest import Registry

from research_kit.core import audit
from research_kit.core.errors import PolicyRefusal
from research_kit.core.workspace import init_workspace
from research_kit.dp import engine, ledger
from research_kit.dp.accounting import PICO, epsilon_of, rho_of, to_picorho
from research_kit.dp.query import make_query


def test_epsilon_and_rho_convert_both_ways() -> None:
    for rho in (1e-4, 0.01, 0.5, 2.0):
        for delta in (1e-5, 1e-7, 1e-9):
            assert rho_of(epsilon_of(rho, delta), delta) == pytest.approx(rho, rel=1e-9)
    # Bun and Steinke, proposition 1.3, by hand: rho 0.5, delta 1e-6.
    assert epsilon_of(0.5, 1e-6) == pytest.approx(0.5 + 2 * (0.5 * 13.815510557964274) ** 0.5)


def test_spends_compose_by_adding_rho_not_epsilon(registry: Registry) -> None:
    ws, study = registry.ws, "compose"
    grant(ws, study, 1.0)
    costs = [0.01, 0.02, 0.03]
    for i, rho in enumerate(costs):
        query = make_query("count", "patients", rho=rho, where=f"birth_year >= {1900 + i}")
        engine.run(ws, query, study=study, source=registry.source)
    balance = ledger.balance(ws, study)
    # OpenDP's own privacy map is what is charged: at most the cost asked.
    assert balance.spent <= sum(to_picorho(r, round_up=True) for r in costs)
    assert balance.remaining == balance.granted - balance.spent
    spent_rho = balance.spent / PICO
    assert spent_rho == pytest.approx(sum(costs), rel=1e-9)
    delta = ws.policy().dp.delta
    assert epsilon_of(spent_rho, delta) < sum(epsilon_of(r, delta) for r in costs)
    history = ledger.history(ws, study)
    assert [h.state for h in history] == ["spent"] * 3
    assert all(h.answer and h.mechanism and h.scale > 0 and h.who for h in history)


def test_grants_are_capped_by_policy_and_audited(tmp_path: Path) -> None:
    ws, _ = init_workspace(tmp_path / "ws")
    grant(ws, "capped", 4.0, note="DAC 2026-11")
    with pytest.raises(PolicyRefusal, match=r"max_study_rho"):
        grant(ws, "capped", 1.5)
    assert ledger.balance(ws, "capped").granted == 4 * PICO
    grants = [e for e in audit.read_entries(ws.audit_path) if e["action"] == "dp.grant"]
    assert [g["details"]["rho"] for g in grants] == [4.0]


def test_a_query_without_budget_is_refused_and_spends_nothing(registry: Registry) -> None:
    query = make_query("count", "patients", rho=0.01)
    with pytest.raises(PolicyRefusal, match="no privacy budget"):
        engine.run(registry.ws, query, study="ungranted", source=registry.source)
    assert ledger.history(registry.ws, "ungranted") == []


def test_a_failed_release_gives_its_reservation_back(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    ws, study = registry.ws, "failing"
    grant(ws, study, 0.5)

    def broken(*args: object, **kwargs: object) -> object:
        raise RuntimeError("disk gone")

    monkeypatch.setattr(engine, "assemble", broken)
    with pytest.raises(RuntimeError, match="disk gone"):
        engine.run(ws, make_query("count", "patients", rho=0.1), study=study, source=registry.source)
    balance = ledger.balance(ws, study)
    assert (balance.spent, balance.reserved) == (0, 0)
    assert ledger.history(ws, study) == []


@pytest.mark.slow  # eight processes, ~13 s
def test_eight_processes_racing_for_the_last_of_a_budget(
    registry: Registry, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws, study = registry.ws, "race"
    grant(ws, study, 0.035, owner="racer")  # room for exactly three queries of rho 0.01
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    sign_in(ws, racer="researcher")  # eight shells of racer's, signed in once
    # Calibrate first, so that every process reaches the ledger at about the same time.
    engine.run(ws, make_query("count", "patients", rho=0.01), study=study, source=registry.source, preview=True)
    env = {**os.environ, "RESEARCH_KIT_HOME": str(ws.root)}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "research_kit",
                "query",
                "count",
                "patients",
                "--study",
                study,
                "--rho",
                "0.01",
                "--where",
                f"birth_year >= {1900 + i}",
                "--extract",
                "e1",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(8)
    ]
    results = []
    for p in procs:
        _, err = p.communicate(timeout=300)
        results.append((p.returncode, err.strip()))
    ok = [r for r in results if r[0] == 0]
    refused = [r for r in results if r[0] != 0]
    assert len(ok) == 3
    assert len(refused) == 5
    for code, message in refused:
        assert code == 5
        assert message.startswith("research-kit: refused: study race: this query costs")
        assert "\n" not in message
    balance = ledger.balance(ws, study)
    assert balance.remaining >= 0
    assert balance.reserved == 0
    assert len(ledger.history(ws, study)) == 3
