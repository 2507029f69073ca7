"""A DP output is verified at intake against the ledger, never taken on the sidecar's word.

One pipeline run (module scope: one sandboxed run for every case) declares honest DP tables from real
``rk.dp`` answers and forged ones: a raw-count table with a hand-written sidecar, a look-alike ``Answer``
class, another study's real answer, a reservation that released nothing, and an answer with one number
altered. The run's outputs go through the runner and intake as a user's would; the tests read the request.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from tests.conftest import Project, grant

from research_kit import dp
from research_kit.actions import runs
from research_kit.core import audit
from research_kit.core.workspace import Workspace
from research_kit.dp import ledger
from research_kit.dp.accounting import epsilon_of, to_picorho
from research_kit.outputs import dp_match
from research_kit.outputs import sidecar as sc
from research_kit.review import intake
from research_kit.review import requests as review
from research_kit.review.dp_outputs import RULE
from research_kit.studies.spec import load_pipeline

PARAMETERS = "other_id = 0\nother_rows = '[]'\nreserved_id = 0"

NOTEBOOK = """
import dataclasses
import json
from pathlib import Path

import pandas as pd
import research_kit as rk
from research_kit.outputs import sidecar as sc

STATS = {"lower": "statistic", "upper": "statistic"}


def forge(name, answers, note=None):
    path = Path(name + ".csv")
    car = sc.read(path)
    facts = sc.DpFacts("Gaussian mechanism (discrete)", 0.001, 0.1, 1e-6, 1.0, ("patients by sex",), tuple(answers))
    sc.write(path, dataclasses.replace(car, dp=facts, intake_notes=[note] if note else []))


# Honest: an answer as it is, and an answer's columns renamed and chosen (floats through the CSV file).
honest = rk.dp.count("patients", by=["sex"], rho=0.02)
rk.outputs.table(honest, "honest")
mean = rk.dp.mean("patients", "encounters", bounds=(0, 50), by=["sex"], rho=0.02)
frame = mean.to_pandas().rename(columns={"value": "mean_encounters"})[["n", "mean_encounters", "sex"]]
rk.outputs.table(frame.iloc[::-1], "honest_mean", means=["mean_encounters"], n="n", dp=mean)

# A raw-count table (tiny cells), its sidecar forged: DP facts and answer ids made up, a note of its own.
patients = rk.load("patients")
raw = patients.head(3).groupby("sex").size().reset_index(name="n")
rk.outputs.table(raw, "forged", counts=["n"])
forge("forged", [987654321], note="verified as DP by the platform")

# A look-alike Answer built in the notebook, claiming the honest answer's ledger id, holding raw counts.
class Answer:
    query = {"kind": "count"}
    description = "patients by sex"
    mechanism = "Gaussian mechanism (discrete)"
    rho, epsilon, delta, scale, preview = 0.001, 0.1, 1e-6, 1.0, False

    def __init__(self, frame, id):
        self.frame, self.id, self.table = frame, id, frame

    def to_pandas(self):
        return self.frame

Answer.__module__ = "research_kit.dp.answer"
counts = patients.groupby("sex").size().reset_index(name="value")
counts["lower"], counts["upper"] = counts["value"] - 0.5, counts["value"] + 0.5
rk.outputs.table(Answer(counts, honest.id), "lookalike")

# Another study's real answer, figures and id as the ledger holds them.
rk.outputs.table(pd.DataFrame(json.loads(other_rows)), "other_study", counts=["value"], roles=STATS)
forge("other_study", [other_id])

# A reservation of this study that never released anything.
rk.outputs.table(honest.to_pandas(), "reserved", counts=["value"], roles=STATS)
forge("reserved", [reserved_id])

# A real answer's table with one number altered.
mixed = honest.to_pandas()
mixed.loc[0, "value"] = mixed.loc[0, "value"] + 1
rk.outputs.table(mixed, "mixed", counts=["value"], roles=STATS, dp=honest)
"""

OUTPUTS = ("honest", "honest_mean", "forged", "lookalike", "other_study", "reserved", "mixed")
REFUSED = ("forged", "lookalike", "other_study", "reserved", "mixed")


@pytest.fixture(scope="module")
def dp_run(tmp_path_factory: pytest.TempPathFactory, registry_template: Path) -> Iterator[dict[str, Any]]:
    mp = pytest.MonkeyPatch()
    base = tmp_path_factory.mktemp("dp-outputs")
    root = base / "ws"
    shutil.copytree(registry_template, root)
    mp.setenv("RESEARCH_KIT_HOME", str(root))
    mp.setenv("RESEARCH_KIT_USER", "test-runner")
    mp.setenv("XDG_RUNTIME_DIR", str(base / "run"))
    for name in ("RESEARCH_KIT_TIER", "RESEARCH_KIT_EXTRACT", "RESEARCH_KIT_STUDY"):
        mp.delenv(name, raising=False)
    try:
        project = Project(base / "project", Workspace(root))
        ws = project.ws
        grant(ws, "s1", 0.5, owner="rita")
        grant(ws, "s2", 0.5, owner="rita")
        with audit.acting("rita"):
            other = dp.count("patients", by=["sex"], rho=0.02, study="s2", tier="real", extract="e1")
            reserved = ledger.reserve(
                ws, study="s1", tier="real", cost=to_picorho(0.01, round_up=True), query_key="k", source="e1",
                source_hash="h", query={"kind": "count"}, mechanism="Gaussian mechanism (discrete)", scale=1.0,
            )  # fmt: skip
        rows = other.to_pandas().to_json(orient="records")
        notebook = project.notebook("dp", PARAMETERS, NOTEBOOK)
        path = project.pipeline("s1", {"make": {
            "notebook": notebook,
            "parameters": {"other_id": other.id, "other_rows": rows, "reserved_id": reserved},
            "outputs": {"moderately_sensitive": {name: f"{name}.csv" for name in OUTPUTS}},
        }})  # fmt: skip
        mp.setenv(audit.ACTOR_ENV, "rita")
        report = runs.run(ws, actor="rita", pipeline=load_pipeline(path), extract="e1")
        assert report.outcome == "succeeded", report.actions
        assert report.request is not None
        yield {"ws": ws, "request": report.request, "other": other, "reserved": reserved}
    finally:
        mp.undo()


def _output(run: dict[str, Any], name: str) -> review.Output:
    return review.output(review.get(run["ws"], run["request"]), name)


def _dp_flags(output: review.Output) -> list[str]:
    assert output.checks.sdc is not None
    return [f.reason for f in output.checks.sdc.flags if f.rule == RULE]


@pytest.mark.parametrize("name", ["honest", "honest_mean"])
def test_an_honest_table_of_answers_passes_as_dp(dp_run: dict[str, Any], name: str) -> None:
    output = _output(dp_run, name)
    car = sc.read(output.path)
    assert car is not None
    assert car.dp is not None
    assert car.intake_notes == []
    (answer_id,) = car.dp.answers
    spend = next(s for s in ledger.history(dp_run["ws"], "s1") if s.id == answer_id)
    assert (spend.state, spend.source) == ("spent", "e1")
    delta = dp_run["ws"].policy().dp.delta
    assert car.dp.rho == spend.rho  # recomputed from the ledger, whatever the notebook said
    assert car.dp.epsilon == pytest.approx(epsilon_of(spend.rho, delta))
    assert output.status == "pass", output.checks
    assert output.checks.sdc is not None
    assert any(note.startswith("DP answers") for note in output.checks.sdc.notes)
    assert _dp_flags(output) == []


@pytest.mark.parametrize("name", REFUSED)
def test_a_forged_dp_table_is_checked_as_an_ordinary_table(dp_run: dict[str, Any], name: str) -> None:
    output = _output(dp_run, name)
    car = sc.read(output.path)
    assert car is not None
    assert car.dp is None  # the stored sidecar lost its claim
    assert len(car.intake_notes) == 1
    assert car.intake_notes[0].startswith("declared as DP but")
    assert "verified as DP by the platform" not in car.intake_notes  # the notebook's own note is discarded
    assert output.status in ("review", "fail")
    (reason,) = _dp_flags(output)
    assert reason.endswith("checked as an ordinary table")
    assert output.checks.sdc is not None
    assert not any(note.startswith("DP answers") for note in output.checks.sdc.notes)


def test_the_forged_raw_counts_fail_the_threshold(dp_run: dict[str, Any]) -> None:
    output = _output(dp_run, "forged")
    assert output.status == "fail"
    assert output.checks.sdc is not None
    assert {f.rule for f in output.checks.sdc.flags if f.severity == "fail"} == {"threshold"}
    assert "987654321 is not one the ledger recorded for study s1" in _dp_flags(output)[0]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("lookalike", "not a figure the answers gave for its row's labels"),
        ("other_study", "is not one the ledger recorded for study s1"),
        ("reserved", "was reserved but never released"),
        ("mixed", "row 0, column 'value': not a figure"),
    ],
)
def test_each_refusal_says_why(dp_run: dict[str, Any], name: str, why: str) -> None:
    assert why in _dp_flags(_output(dp_run, name))[0]


def test_a_recheck_keeps_the_verdict(dp_run: dict[str, Any]) -> None:
    intake.recheck(dp_run["ws"], dp_run["request"])
    assert _output(dp_run, "honest").status == "pass"
    assert len(_dp_flags(_output(dp_run, "forged"))) == 1


def test_an_older_sidecar_without_answer_ids_is_still_read(tmp_path: Path) -> None:
    data = json.loads(sc.Sidecar("t", "t.csv", "table", "frequency", {"n": "count"}).to_json())
    data["dp"] = {"mechanism": "m", "rho": 0.1, "epsilon": 1.0, "delta": 1e-6, "scale": 2.0, "queries": ["q"]}
    del data["intake_notes"]
    car = sc.Sidecar.from_dict(data)
    assert car.dp is not None
    assert car.dp.answers == ()
    assert car.intake_notes == []


# -- the comparison itself ------------------------------------------------------------------------------------------

ANSWER = pd.DataFrame(
    {"sex": ["female", "female", "male", "male"], "group": ["a", "b", "a", "b"], "value": [12, 30, 8, 41],
     "lower": [2.0, 20.0, -2.0, 31.0], "upper": [22.0, 40.0, 18.0, 51.0]}
)  # fmt: skip


def _unmatched(tmp_path: Path, frame: pd.DataFrame, roles: dict[str, str]) -> str | None:
    path = tmp_path / "t.csv"
    frame.to_csv(path, index=False)
    return dp_match.unmatched(path, roles, [ANSWER])


def test_a_pivoted_crosstab_is_checked_as_an_ordinary_table(tmp_path: Path) -> None:
    """Its keys become column names, which no check can tell from figures put beside the wrong group."""
    wide = ANSWER.pivot(index="group", columns="sex", values="value").reset_index()
    assert _unmatched(tmp_path, wide, {"group": "label", "female": "count", "male": "count"}) is not None


def test_raw_counts_written_as_labels_are_refused(tmp_path: Path) -> None:
    """A count in a label column must be a key of the answers in the key column of that name, not any key."""
    groups = ANSWER["group"].drop_duplicates().tolist()
    raw = pd.DataFrame({"group": groups, "patients": [str(v) for v in ANSWER["value"].head(len(groups))]})
    why = _unmatched(tmp_path, raw, {"group": "label", "patients": "label"})
    assert why is not None
    assert "'patients'" in why


def test_a_row_without_labels_takes_only_an_ungrouped_answers_figures(tmp_path: Path) -> None:
    frame = ANSWER.copy()
    frame.loc[0, ["sex", "group"]] = None
    why = _unmatched(tmp_path, frame, {"sex": "label", "group": "label"})
    assert why is not None
    assert why.startswith("row 0")


def test_a_figure_moved_beside_another_group_is_refused(tmp_path: Path) -> None:
    moved = ANSWER.copy()
    moved.loc[0, "value"], moved.loc[2, "value"] = 8, 12
    why = _unmatched(tmp_path, moved, {"sex": "label", "group": "label"})
    assert why is not None
    assert why.startswith("row 0, column 'value'")


def test_a_label_that_is_no_key_is_refused(tmp_path: Path) -> None:
    frame = ANSWER.assign(measure="patients")
    why = _unmatched(tmp_path, frame, {"sex": "label", "group": "label", "measure": "label"})
    assert why is not None
    assert "none of the answers' keys" in why


def test_a_computed_figure_is_refused(tmp_path: Path) -> None:
    frame = ANSWER.assign(share=ANSWER["value"] / 91)
    why = _unmatched(tmp_path, frame, {"sex": "label", "group": "label"})
    assert why is not None
    assert "'share'" in why
