"""A study belongs to the researchers the committee names: nobody else runs, registers or spends it."""

from __future__ import annotations

import pytest
from tests.conftest import STEWARD, Project, grant, people

from research_kit.actions import query, runs
from research_kit.core import audit, users
from research_kit.core.errors import PolicyRefusal
from research_kit.dp import ledger
from research_kit.studies.spec import Pipeline, load_pipeline

NOTEBOOK = "open('n.txt', 'w').write('1')"


def _pipeline(project: Project, study: str, name: str) -> Pipeline:
    project.notebook("n", "unused = 0", NOTEBOOK)
    action = {"notebook": "notebooks/n.ipynb", "outputs": {"highly_sensitive": {"n": "n.txt"}}}
    return load_pipeline(project.pipeline(study, {"a": action}, name=name))


def test_another_researchers_pipeline_for_an_owned_study_is_refused(project: Project) -> None:
    grant(project.ws, "owned", 0.5, owner="ana")
    people(project.ws, rob="researcher")
    mine = _pipeline(project, "owned", "mine")
    assert runs.run(project.ws, actor="ana", pipeline=mine, extract="e1").outcome == "succeeded"
    theirs = _pipeline(project, "owned", "theirs")
    with pytest.raises(PolicyRefusal, match="study owned belongs to ana: running its pipeline is for its owners only"):
        runs.run(project.ws, actor="rob", pipeline=theirs, extract="e1")
    with pytest.raises(PolicyRefusal, match="study owned belongs to ana: asking the real extract"):
        query.query(project.ws, actor="rob", kind="count", table="patients", study="owned", preview=True)
    with project.ws.catalog() as conn:  # the register still names ana's pipeline
        registered = conn.execute("SELECT path, registered_by FROM pipelines WHERE study = 'owned'").fetchone()
    assert (registered["registered_by"], registered["path"]) == ("ana", str(mine.path.resolve()))


def test_a_study_nobody_owns_yet_is_registered_to_its_first_researcher(project: Project) -> None:
    people(project.ws, ana="researcher", rob="researcher")
    first = runs.run(project.ws, actor="ana", pipeline=_pipeline(project, "free", "a1"), extract="e1")
    assert first.outcome == "succeeded"
    with pytest.raises(PolicyRefusal, match="study free is registered to ana's pipeline"):
        runs.run(project.ws, actor="rob", pipeline=_pipeline(project, "free", "b1"), extract="e1")


def test_a_rerun_runs_only_the_registered_pipeline_and_notebooks_unchanged(project: Project) -> None:
    grant(project.ws, "kept", 0.5, owner="ana")
    people(project.ws, rob="researcher")
    pipeline = _pipeline(project, "kept", "kept")
    assert runs.run(project.ws, actor="ana", pipeline=pipeline, extract="e1").outcome == "succeeded"
    with pytest.raises(PolicyRefusal, match="rerunning every study needs the steward role"):
        runs.rerun(project.ws, actor="rob", extract="e2")
    notebook = project.root / "notebooks" / "n.ipynb"
    notebook.write_text(notebook.read_text().replace("write('1')", "write('changed by someone else')"))
    report = runs.rerun(project.ws, actor=STEWARD, extract="e2")
    assert not report.runs
    assert "or one of its notebooks is not what its owner last ran" in report.problems["kept"]


def test_a_rerun_acts_as_the_service_identity_on_the_owners_behalf(project: Project) -> None:
    import json

    from research_kit.core.identity import RERUN_SERVICE

    grant(project.ws, "svc", 0.5, owner="ana")
    first = runs.run(project.ws, actor="ana", pipeline=_pipeline(project, "svc", "svc"), extract="e1")
    assert first.outcome == "succeeded"
    report = runs.rerun(project.ws, actor=STEWARD, extract="e2")
    (rerun,) = report.runs
    assert rerun.outcome == "succeeded"
    with project.ws.catalog() as conn:
        run_by = conn.execute("SELECT actor FROM runs WHERE id = ?", (rerun.run_id,)).fetchone()[0]
    assert run_by == RERUN_SERVICE
    (outcome,) = rerun.actions.values()
    assert outcome.folder is not None
    provenance = json.loads((outcome.folder / "provenance.json").read_text())
    assert (provenance["run_by"], provenance["on_behalf_of"]) == (RERUN_SERVICE, "ana")
    entries = [json.loads(line) for line in project.ws.audit_path.read_text().splitlines()]
    start = next(e for e in entries if e["action"] == "study.rerun.start")
    assert (start["actor"], start["details"]["requested_by"]) == (RERUN_SERVICE, STEWARD)
    # The service identity is no user: it signs in nowhere and holds no role for anything else.
    with audit.acting(RERUN_SERVICE), pytest.raises(PolicyRefusal, match="not a user of this workspace"):
        ledger.grant(project.ws, "svc", 0.5, owners=["ana"])


def test_a_grant_evicts_a_pipeline_registered_by_someone_else_first(project: Project) -> None:
    people(project.ws, mal="researcher", ana="researcher")
    squat = _pipeline(project, "sq", "squat")
    assert runs.run(project.ws, actor="mal", pipeline=squat, extract="e1").outcome == "succeeded"
    grant(project.ws, "sq", 0.5, owner="ana")  # the committee gives the study to ana: mal's registration goes
    report = runs.rerun(project.ws, actor=STEWARD, extract="e2")
    assert "sq" not in {r.study for r in report.runs}
    with project.ws.catalog() as conn:
        assert conn.execute("SELECT COUNT(*) FROM pipelines WHERE study = 'sq'").fetchone()[0] == 0
    mine = _pipeline(project, "sq", "ana-sq")
    assert runs.run(project.ws, actor="ana", pipeline=mine, extract="e1").outcome == "succeeded"


def test_nobody_grants_a_study_they_own_and_a_disabled_owner_does_nothing(project: Project) -> None:
    people(project.ws, ana="researcher", rob="researcher")
    with audit.acting(STEWARD):
        users.add(project.ws, "ana", "committee")  # ana also sits on the committee
    with audit.acting("ana"), pytest.raises(PolicyRefusal, match="ana owns study mine: an owner never grants"):
        ledger.grant(project.ws, "mine", 0.5, owners=["ana"])
    grant(project.ws, "robs", 0.5, owner="rob")
    with audit.acting(STEWARD):
        users.disable(project.ws, "rob")
    with pytest.raises(PolicyRefusal, match="user 'rob' is disabled"):
        runs.run(project.ws, actor="rob", pipeline=_pipeline(project, "robs", "robs"), extract="e1")


def test_the_python_api_refuses_a_non_owner_on_the_real_extract(project: Project) -> None:
    import research_kit as rk

    grant(project.ws, "guarded", 0.5, owner="ana")
    people(project.ws, bob="researcher")
    with audit.acting("bob"), pytest.raises(PolicyRefusal, match="study guarded belongs to ana"):
        rk.dp.count("patients", study="guarded", tier="real", rho=0.01, workspace=project.ws.root)
    with audit.acting("ana"):
        assert rk.dp.count("patients", study="guarded", tier="real", rho=0.01, workspace=project.ws.root).rho > 0
