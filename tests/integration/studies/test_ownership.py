"""A study belongs to the researchers the committee names: nobody else runs, registers or spends it."""

from __future__ import annotations

import pytest
from tests.conftest import Project, grant, people

from research_kit.actions import query, runs
from research_kit.core.errors import PolicyRefusal
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


def test_a_rerun_runs_only_the_registered_pipeline_unchanged(project: Project) -> None:
    grant(project.ws, "kept", 0.5, owner="ana")
    pipeline = _pipeline(project, "kept", "kept")
    assert runs.run(project.ws, actor="ana", pipeline=pipeline, extract="e1").outcome == "succeeded"
    path = pipeline.path
    path.write_text(path.read_text() + "\n# changed by someone after the owner's run\n")
    report = runs.rerun(project.ws, actor="cron", extract="e2")
    assert not report.runs
    assert "it changed since they last ran it" in report.problems["kept"]
