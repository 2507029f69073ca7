"""A study belongs to the researchers its data permit names: nobody else runs, registers or spends it."""

from __future__ import annotations

import pytest
from tests.conftest import MEMBER, STEWARD, Project, grant, people, permit

from research_kit.actions import permits as permit_actions
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
    with pytest.raises(
        PolicyRefusal, match=r"permit \d+ \(study owned\) does not name rob: running its pipeline is for"
    ):
        runs.run(project.ws, actor="rob", pipeline=theirs, extract="e1")
    with pytest.raises(
        PolicyRefusal, match=r"does not name rob: asking the real extract on its budget is for its users"
    ):
        query.query(project.ws, actor="rob", kind="count", table="patients", study="owned", preview=True)
    with project.ws.catalog() as conn:  # the register still names ana's pipeline
        registered = conn.execute("SELECT path, registered_by FROM pipelines WHERE study = 'owned'").fetchone()
    assert (registered["registered_by"], registered["path"]) == ("ana", str(mine.path.resolve()))


def test_a_study_without_a_data_permit_runs_nothing(project: Project) -> None:
    people(project.ws, ana="researcher")
    loose = load_pipeline(project.pipeline("free", {"a": {"notebook": project.notebook("n", "unused = 0", NOTEBOOK),
                                                          "outputs": {"highly_sensitive": {"n": "n.txt"}}}},
                                           permitted=False))  # fmt: skip
    with pytest.raises(PolicyRefusal, match="study free has no data permit: running its pipeline needs one"):
        runs.run(project.ws, actor="ana", pipeline=loose, extract="e1")
    with project.ws.catalog() as conn:
        assert conn.execute("SELECT COUNT(*) FROM runs WHERE study = 'free'").fetchone()[0] == 0


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


def test_a_user_taken_off_the_permit_has_their_registration_rerun_no_more(project: Project) -> None:
    people(project.ws, mal="researcher", ana="researcher")
    permit_id = permit(project.ws, "sq", "mal")
    squat = _pipeline(project, "sq", "squat")
    assert runs.run(project.ws, actor="mal", pipeline=squat, extract="e1").outcome == "succeeded"
    with audit.acting(MEMBER):  # the committee gives the study to ana alone
        permit_actions.amend(project.ws, actor=MEMBER, permit_id=permit_id, note="mal left", users_named="ana")
    report = runs.rerun(project.ws, actor=STEWARD, extract="e2")
    assert "sq" not in {r.study for r in report.runs}
    assert f"permit {permit_id} (study sq) does not name mal" in report.problems["sq"]
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
    with audit.acting("bob"), pytest.raises(PolicyRefusal, match=r"permit \d+ \(study guarded\) does not name bob"):
        rk.dp.count("patients", study="guarded", tier="real", rho=0.01, workspace=project.ws.root)
    with audit.acting("ana"):
        assert rk.dp.count("patients", study="guarded", tier="real", rho=0.01, workspace=project.ws.root).rho > 0
