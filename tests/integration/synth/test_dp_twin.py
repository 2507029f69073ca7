"""The differentially private twin: charged once to the registry's budget, public domain only, nothing drawn from
a model fitted on real rows, deterministic for a release and a seed, published beside the default twin through
the same gates (a refused one publishes nothing and its spend stays recorded)."""

from __future__ import annotations

import json
import sys
from typing import Any

import numpy as np
import pandas as pd
import pytest
from tests.conftest import MEMBER, STEWARD, people

from research_kit.core import audit
from research_kit.core.errors import BadInput, MissingData, PolicyRefusal
from research_kit.core.extracts import get_extract
from research_kit.dp import ledger
from research_kit.synth import build_twin, dp_domain, dp_twin
from research_kit.synth.tables import Granularity, Tables, read_tables, to_days

from .conftest import Registry, fast, set_policy

TWIN = "e1@dp"


def _grant(registry: Registry, rho: float) -> None:
    people(registry.ws)
    with audit.acting(MEMBER):
        ledger.grant_twin(registry.ws, rho, owners=(STEWARD,))


def _entries(registry: Registry, action: str) -> list[dict[str, Any]]:
    return [e for e in audit.read_entries(registry.ws.audit_path) if e["action"] == action]


@pytest.mark.slow  # the module's registry and twin, ~13 s
def test_a_dp_twin_is_refused_in_one_line_without_a_budget_or_with_a_default_model(registry: Registry) -> None:
    spends = len(ledger.twin_history(registry.ws))
    with audit.acting(STEWARD), pytest.raises(PolicyRefusal, match="no DP-twin budget") as refused:
        build_twin(registry.ws, "e1", model="mst", rho="0.5")
    assert "\n" not in str(refused.value)
    with pytest.raises(BadInput, match="--rho and --epsilon go with a DP twin"):
        build_twin(registry.ws, "e1", rho="0.5")
    with pytest.raises(BadInput, match="--rho R or --epsilon E"):
        build_twin(registry.ws, "e1", model="aim")
    assert len(ledger.twin_history(registry.ws)) == spends
    assert not (registry.ws.synthetic_dir / TWIN).exists()


def test_without_the_extra_the_user_is_told_which_install_to_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mbi", None)  # import mbi fails as if not installed
    with pytest.raises(MissingData, match=r"pip install 'research-kit\[dp-twin\]'"):
        dp_twin.require_mbi()


@pytest.fixture(scope="module")
def published(registry: Registry) -> dict[str, Any]:
    """One DP twin (MST, rho 1) published beside the default twin; the release kept for the determinism test."""
    _grant(registry, 5.0)
    default_hash = json.loads((registry.ws.synthetic_dir / "e1" / "twin.json").read_text())["content_hash"]
    kept: dict[str, Any] = {}
    measure = dp_twin.measure

    def keep(*args: Any, **kwargs: Any) -> dp_twin.Release:
        kept["release"] = measure(*args, **kwargs)
        return kept["release"]

    with pytest.MonkeyPatch.context() as mp, audit.acting(STEWARD):
        fast(mp)
        mp.setattr(dp_twin, "measure", keep)
        result = build_twin(registry.ws, "e1", model="mst", rho="1", seed=3)
    return {"result": result, "release": kept["release"], "default_hash": default_hash}


@pytest.mark.slow
def test_the_dp_twin_is_published_beside_the_default_one_and_states_its_guarantee(
    registry: Registry, published: dict[str, Any]
) -> None:
    result = published["result"]
    assert result.path == registry.ws.synthetic_dir / TWIN
    manifest = json.loads((result.path / "twin.json").read_text())
    assert manifest["twin"] == TWIN
    assert manifest["kind"] == "dp"
    assert manifest["extract"] == "e1"
    assert manifest["dp"]["mechanism"] == "MST"
    assert manifest["dp"]["rho"] == pytest.approx(1.0)
    assert manifest["dp"]["epsilon"] > 0
    assert manifest["dp"]["delta"] == registry.ws.policy().dp.delta
    assert "public lists" in manifest["dp"]["domain"]
    assert set(manifest["fidelity"]) == {"quality_raw", "quality_coarsened", "tstr_accuracy", "trtr_accuracy"}
    default = json.loads((registry.ws.synthetic_dir / "e1" / "twin.json").read_text())
    assert default["content_hash"] == published["default_hash"]  # the default twin is untouched
    report = json.loads((result.path / "report.json").read_text())
    assert report["beside"]["e1"]["quality_coarsened"] > 0  # the default twin's figures beside the DP twin's
    assert "Differential privacy" in (result.path / "report.html").read_text()


@pytest.mark.slow
def test_the_ledger_is_charged_exactly_once_per_dp_twin(registry: Registry, published: dict[str, Any]) -> None:
    spends = [s for s in ledger.twin_history(registry.ws) if s.source == TWIN and s.state == "spent"]
    assert len(spends) == 1
    assert spends[0].rho == pytest.approx(1.0)
    audited = [e for e in _entries(registry, "dp.twin_spend") if e["details"]["twin"] == TWIN]
    assert len(audited) == 1
    assert ledger.twin_balance(registry.ws).reserved == 0


@pytest.mark.slow
def test_every_value_of_the_dp_twin_is_in_the_public_domain(published: dict[str, Any]) -> None:
    twin, _ = read_tables(published["result"].path)
    for key, allowed in dp_domain.public_values().items():
        table, column = key.split(".")
        values = set(twin.as_dict()[table][column].dropna().astype(str))
        assert values <= allowed, key


@pytest.mark.slow
def test_the_same_release_and_seed_give_the_same_twin(published: dict[str, Any]) -> None:
    release = published["release"]
    a = dp_twin.generate(release, 300, seed=11, taken=set())
    b = dp_twin.generate(release, 300, seed=11, taken=set())
    c = dp_twin.generate(release, 300, seed=12, taken=set())
    for name, frame in a.as_dict().items():
        pd.testing.assert_frame_equal(frame, b.as_dict()[name])
    assert not a.patients.equals(c.patients)


@pytest.mark.slow
def test_a_dp_twin_refused_by_a_gate_publishes_nothing_but_its_spend_is_recorded(
    registry: Registry, published: dict[str, Any]
) -> None:
    before = len([s for s in ledger.twin_history(registry.ws) if s.state == "spent"])
    folder = registry.ws.synthetic_dir / TWIN
    manifest = (folder / "twin.json").read_text()
    text = registry.ws.policy_path.read_text()
    set_policy(registry.ws, {"min_quality = 0.5": "min_quality = 0.999"})
    try:
        with pytest.MonkeyPatch.context() as mp, audit.acting(STEWARD):
            fast(mp)
            with pytest.raises(PolicyRefusal) as refused:
                build_twin(registry.ws, "e1", model="mst", rho="2", seed=4, replace=True)
    finally:
        registry.ws.policy_path.write_text(text)
    assert "not published" in str(refused.value)
    assert "\n" not in str(refused.value)
    assert (folder / "twin.json").read_text() == manifest  # the published DP twin stays as it was
    after = [s for s in ledger.twin_history(registry.ws) if s.state == "spent"]
    assert len(after) == before + 1
    assert after[-1].rho == pytest.approx(2.0)
    report = json.loads((registry.ws.root / "reports" / "synth" / TWIN / "report.json").read_text())
    assert report["published"] is False
    assert report["refusals_before"] >= 0


@pytest.mark.slow
def test_nothing_in_the_dp_twin_comes_from_a_model_fitted_on_real_rows(registry: Registry) -> None:
    """Canaries only the real rows hold: a value outside every public list held by many patients, and one exact
    number most diagnosed patients share. A model fitted on the rows would copy both; the DP twin draws neither."""
    real = registry.real
    p = real.patients.copy()
    many = np.arange(len(p)) % 3 == 0
    p.loc[many, "canton"] = "Atlantis"
    ph = real.phenotypes.copy()
    ph.loc[ph.index % 4 == 0, "hpo_code"] = "HP:9999999"
    en = real.encounters.copy()
    en.loc[en.index % 3 == 0, "centre_code"] = "XX-CANARY"
    d = real.diagnoses.copy()
    d["diagnostic_delay_days"] = 4321
    d["diagnosis_date"] = pd.to_datetime(d["onset_date"]) + pd.Timedelta(days=4321)
    canaried = Tables(patients=p, diagnoses=d, phenotypes=ph, encounters=en)
    extract = get_extract(registry.ws, "e1")
    release = dp_twin.measure(
        canaried,
        mechanism="mst",
        rho=2.0,
        k=10,
        reference_date=float(np.nanmax(to_days(d["diagnosis_date"]))) + 31,
        granularity=Granularity.of(extract.manifest),
        step=lambda _m: None,
    )
    twin = dp_twin.generate(release, len(p), seed=0, taken=set())
    assert "Atlantis" not in set(twin.patients["canton"].dropna())
    assert "HP:9999999" not in set(twin.phenotypes["hpo_code"])
    assert "XX-CANARY" not in set(twin.encounters["centre_code"])
    delays = twin.diagnoses["diagnostic_delay_days"].to_numpy()
    assert len(delays) > 0
    assert np.mean(np.abs(delays - 4321) <= 31) < 0.05
