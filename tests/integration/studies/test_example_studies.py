"""The four example studies (notebooks/ and pipelines/) run end to end on a small registry and its twin.

One 2,000-patient registry, ingested and given a real synthetic twin (a lenient policy: at this size the
default one refuses it), is shared by the module. Each pipeline runs through the runner on the real extract,
with the committee's grant where it asks DP queries; its outputs are checked into a review request, where
none may be gated and, as the notebooks make their tables safe before declaring them, none may fail.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from tests.conftest import grant
from tests.integration.synth.conftest import LENIENT, fast, set_policy

from research_kit.actions import runs
from research_kit.core import audit
from research_kit.core.workspace import Workspace, init_workspace
from research_kit.dp import ledger
from research_kit.ingest.pipeline import ingest
from research_kit.pseudonymise.keys import load_key, new_key
from research_kit.review import requests as review
from research_kit.simulator.export import SimulationSpec, simulate_export
from research_kit.studies.spec import load_pipeline
from research_kit.synth import build_twin

PROJECT = Path(__file__).resolve().parents[3]
PIPELINES = ["registry_overview", "diagnostic_delay", "survival", "phenotype_prediction"]


@pytest.fixture(scope="module")
def studies_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("examples")
    ws, _ = init_workspace(base / "ws")
    set_policy(ws, LENIENT)
    raw = base / "raw"
    simulate_export(SimulationSpec(patients=2_000, seed=21, format="parquet"), raw)
    key, _ = new_key(base / "secrets" / "k.key")
    ingest(ws, [raw], "e1", load_key(key))
    with pytest.MonkeyPatch.context() as mp:
        fast(mp)
        build_twin(ws, "e1", seed=0)
    return ws.root


@pytest.fixture
def studies_ws(studies_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Workspace:
    root = tmp_path / "ws"
    shutil.copytree(studies_template, root)
    monkeypatch.setenv("RESEARCH_KIT_HOME", str(root))
    for name in ("RESEARCH_KIT_TIER", "RESEARCH_KIT_EXTRACT", "RESEARCH_KIT_STUDY"):
        monkeypatch.delenv(name, raising=False)
    return Workspace(root)


@pytest.mark.slow
@pytest.mark.parametrize("name", PIPELINES)
def test_an_example_study_runs_on_the_extract_and_its_outputs_pass_the_checks(
    name: str, studies_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline = load_pipeline(PROJECT / "pipelines" / f"{name}.yaml")
    grant(studies_ws, pipeline.study, pipeline.budget["rho"], owner="rita", note="requested in the pipeline")
    monkeypatch.setenv(audit.ACTOR_ENV, "rita")
    report = runs.run(studies_ws, actor="rita", pipeline=pipeline, extract="e1")
    assert report.outcome == "succeeded", report.actions
    assert report.request is not None
    request = review.get(studies_ws, report.request)
    declared = {o.name for a in pipeline.actions.values() for o in a.outputs if o.sensitivity == "moderately_sensitive"}
    assert {o.name for o in request.outputs} == declared
    status = {o.key: o.status for o in request.outputs}
    assert set(status.values()) == {"pass"}, {k: review.output(request, k).checks for k, s in status.items()
                                              if s != "pass"}  # fmt: skip
    spent = ledger.balance(studies_ws, pipeline.study).spent
    assert (spent > 0) == (name in ("registry_overview", "diagnostic_delay"))  # only those ask DP queries
    outputs = {o.name: o.path for o in request.outputs}
    _check_content(name, outputs)


def _check_content(name: str, outputs: dict[str, Path]) -> None:
    """What each study's tables say, beyond passing the checks."""
    if name == "registry_overview":
        chapters = pd.read_csv(outputs["by_chapter"])
        blocks = pd.read_csv(outputs["by_block"])
        assert chapters["n"].min() >= 10
        assert blocks["n"].min() >= 10
        assert blocks["n"].sum() == chapters["n"].sum()  # nothing lost in the roll-up, nothing to subtract
        prevalence = pd.read_csv(outputs["prevalence"])
        overall = prevalence[prevalence["dimension"] == "all"].iloc[0]
        assert overall["lower"] < overall["prevalence"] < overall["upper"]
    elif name == "diagnostic_delay":
        table = pd.read_csv(outputs["by_decade"])
        assert table["n"].min() >= 10
        assert (table["q1_years"] <= table["median_years"]).all()
        assert (table["median_years"] <= table["q3_years"]).all()
    elif name == "survival":
        km = pd.read_csv(outputs["km_by_disease_group"])
        steps = km[km["events"] > 0]
        assert len(steps) > 0
        assert steps["events"].min() >= 10
        assert ((km["censored"] == 0) | (km["censored"] >= 10)).all()
        for _, curve in km.groupby("group"):
            assert curve["survival"].is_monotonic_decreasing
        cox = json.loads(outputs["cox"].with_name(outputs["cox"].name + ".rk.json").read_text())
        assert cox["model"]["n_events"] >= 10
    else:
        gap = pd.read_csv(outputs["gap"]).set_index("metric")
        metrics = pd.read_csv(outputs["metrics"]).set_index("setting")
        assert list(metrics.index) == ["TSTR", "TRTR"]
        assert metrics.loc["TSTR", "trained_on"] == "synthetic twin"
        assert gap.loc["accuracy", "gap"] == pytest.approx(gap.loc["accuracy", "trtr"] - gap.loc["accuracy", "tstr"],
                                                           abs=1e-3)  # fmt: skip
        assert 0 <= gap.loc["accuracy", "tstr"] <= 1
