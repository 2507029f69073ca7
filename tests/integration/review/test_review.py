"""The review workflow end to end: a run's outputs checked into a request, submitted, voted on, released."""

from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import pandas as pd
import pytest
from tests.conftest import Project, permit

from research_kit.actions import runs
from research_kit.core import audit, users
from research_kit.core.errors import BadInput, PolicyRefusal
from research_kit.review import decisions
from research_kit.review import requests as review
from research_kit.review.release import release
from research_kit.studies.spec import load_pipeline

OUTPUTS = """
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
import research_kit as rk

patients = rk.load("patients")
big = pd.DataFrame({"group": ["a", "b"], "n": [40 + shift, 55]})
rk.outputs.table(big, "big", counts=["n"], population="everyone")
small = pd.DataFrame({"group": ["x", "y", "z"], "n": [40, 3, 25]})
rk.outputs.table(small, "small", counts=["n"], population="everyone")
fig, ax = plt.subplots()
ax.bar(small["group"], small["n"])
rk.outputs.figure(fig, "small_figure", source="small")
rk.outputs.table(pd.DataFrame({"patient_id": ["x"], "n": [50]}), "ids", counts=["n"])
patients.head(3).to_parquet("rows.parquet")
"""


def as_user(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    monkeypatch.setenv(audit.ACTOR_ENV, name)


@pytest.fixture
def people(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    as_user(monkeypatch, "sam")
    users.add(project.ws, "sam", "steward")
    for name, role in (("rita", "researcher"), ("carla", "committee"), ("chen", "committee"), ("cora", "committee")):
        users.add(project.ws, name, role)


def run_study(project: Project, monkeypatch: pytest.MonkeyPatch, *, shift: int = 0, actor: str = "rita") -> int:
    permit(project.ws, "s1", actor)
    notebook = project.notebook("outputs", f"shift = {shift}", OUTPUTS)
    path = project.pipeline(
        "s1",
        {
            "make": {
                "notebook": notebook,
                "parameters": {"shift": shift},
                "outputs": {
                    "moderately_sensitive": {
                        "big": "big.csv", "small": "small.csv", "figure": "small_figure.png", "ids": "ids.csv",
                    },
                    "highly_sensitive": {"rows": "rows.parquet"},
                },
            }
        },
    )  # fmt: skip
    as_user(monkeypatch, actor)
    report = runs.run(project.ws, actor=actor, pipeline=load_pipeline(path), extract="e1")
    assert report.outcome == "succeeded", report.actions
    assert report.request is not None
    return report.request


def test_a_run_opens_a_checked_request(project: Project, people: None, monkeypatch: pytest.MonkeyPatch) -> None:
    request = review.get(project.ws, run_study(project, monkeypatch))
    assert request.state == "pending"
    assert request.author == "rita"
    assert request.study == "s1"
    status = {o.name: o.status for o in request.outputs}
    assert status == {"big": "pass", "small": "fail", "figure": "fail", "ids": "gated"}
    small = review.output(request, "small")
    assert small.checks.sdc is not None
    flagged = [f for f in small.checks.sdc.flags if f.severity == "fail"]
    assert [(f.row, f.column, f.rule) for f in flagged] == [(1, "n", "threshold")]
    assert "10" in flagged[0].reason  # names the limit
    figure = review.output(request, "figure").checks.sdc
    assert figure is not None
    assert "in its table 'small'" in figure.flags[0].reason
    assert any("identifier" in r for r in review.output(request, "ids").checks.gate.reasons)
    assert "rows" not in status  # highly sensitive: never queued


def test_two_committee_members_other_than_the_author_approve_then_release(
    project: Project, people: None, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    rid = run_study(project, monkeypatch)
    ws = project.ws
    as_user(monkeypatch, "carla")
    with pytest.raises(PolicyRefusal, match="only the request's author"):
        decisions.submit(ws, rid)
    as_user(monkeypatch, "rita")
    assert decisions.submit(ws, rid).state == "submitted"
    with pytest.raises(PolicyRefusal, match="'rita' is a researcher; reviewing outputs needs the committee role"):
        decisions.vote(ws, rid, "approve")
    as_user(monkeypatch, "carla")
    with pytest.raises(BadInput, match="make/figure fails the SDC checks"):
        decisions.vote(ws, rid, "approve")
    with pytest.raises(PolicyRefusal, match="gated"):
        decisions.vote(ws, rid, "approve", outputs=("ids",))
    after_one = decisions.vote(ws, rid, "approve", comment="3 is a published figure of the national report")
    assert after_one.state == "submitted"
    with pytest.raises(PolicyRefusal, match="only an approved request is released"):
        release(ws, rid)
    decisions.comment(ws, rid, "we know this group from the 2024 report", private=True)
    as_user(monkeypatch, "chen")
    approved = decisions.vote(ws, rid, "approve", comment="agreed")
    assert approved.state == "approved"
    assert all(sorted(o.approvals) == ["carla", "chen"] for o in approved.reviewable)
    # The researcher reads public comments only.
    as_user(monkeypatch, "rita")
    seen = [c.body for c in review.get(ws, rid, viewer="rita").comments]
    assert "agreed" in seen
    assert "we know this group from the 2024 report" not in seen
    as_user(monkeypatch, "chen")
    bundle = release(ws, rid)
    names = zipfile.ZipFile(bundle).namelist()
    assert sorted(names) == sorted([
        "outputs/make/big.csv", "outputs/make/small.csv", "outputs/make/small_figure.png",
        "SUMMARY.md", "results.json", "checksums.sha256",
    ])  # fmt: skip
    with zipfile.ZipFile(bundle) as z:
        for line in z.read("checksums.sha256").decode().splitlines():
            digest, name = line.split("  ")
            assert hashlib.sha256(z.read(name)).hexdigest() == digest
        summary = z.read("SUMMARY.md").decode()
        results = json.loads(z.read("results.json"))
        assert z.read("outputs/make/small.csv") == review.output(approved, "small").path.read_bytes()
    assert "approved by: carla, chen" in summary
    assert "we know this group" not in summary
    assert "threshold" in summary
    assert len(results["results"]) == 3
    done = review.get(ws, rid)
    assert done.state == "released"
    assert done.bundle == str(bundle)
    with ws.catalog() as conn:
        states = {r["name"]: r["state"] for r in conn.execute("SELECT name, state FROM review_queue")}
        verdict = audit.verify(conn, ws.audit_path)
    assert states == {"big": "released", "small": "released", "figure": "released", "ids": "pending"}
    assert verdict.ok
    actions = [json.loads(line) for line in ws.audit_path.read_text().splitlines()]
    trail = [(e["actor"], e["action"]) for e in actions if e["action"].startswith(("review.", "request.", "release."))]
    assert ("rita", "request.submit") in trail
    assert ("chen", "release.create") in trail
    assert sum(1 for a in trail if a == ("carla", "review.approve")) == 3
    assert ("carla", "review.comment") in trail


def test_an_author_never_votes_on_their_own_outputs(
    project: Project, people: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    users.add(project.ws, "cora", "researcher")  # a committee member who also runs a study (a permit names her)
    rid = run_study(project, monkeypatch, actor="cora")
    as_user(monkeypatch, "cora")
    decisions.submit(project.ws, rid)
    with pytest.raises(PolicyRefusal, match=r"cora is the author of request \d+: an author never reviews"):
        decisions.vote(project.ws, rid, "approve", outputs=("big",))


def test_a_changed_output_loses_its_votes(project: Project, people: None, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = run_study(project, monkeypatch)
    ws = project.ws
    as_user(monkeypatch, "rita")
    decisions.submit(ws, rid)
    for member in ("carla", "chen"):
        as_user(monkeypatch, member)
        decisions.vote(ws, rid, "approve", outputs=("big",))
    assert len(review.output(review.get(ws, rid), "big").approvals) == 2
    again = run_study(project, monkeypatch, shift=5)  # a new version of 'big' lands in the same request
    assert again == rid
    request = review.get(ws, rid)
    assert review.output(request, "big").approvals == []
    assert request.state == "submitted"
    assert pd.read_csv(review.output(request, "big").path)["n"].tolist() == [45, 55]


def test_mitigation_makes_a_new_checked_version(
    project: Project, people: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid = run_study(project, monkeypatch)
    ws = project.ws
    as_user(monkeypatch, "carla")
    with pytest.raises(PolicyRefusal, match="only the request's author"):
        decisions.mitigate(ws, rid, "small", "suppress")
    as_user(monkeypatch, "rita")
    done = decisions.mitigate(ws, rid, "small", "suppress")
    frame = pd.read_csv(done.path)
    assert frame["n"].isna().sum() >= 1
    assert done.status != "fail"
    original = pd.read_csv(review.get(ws, rid).outputs[0].path)  # the stored result itself is untouched
    assert original is not None
    assert json.loads(done.path.with_name(done.path.name + ".rk.json").read_text())["mitigations"][0]["method"]


def test_a_figure_fails_once_its_table_is_mitigated(
    project: Project, people: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The PNG was drawn from the table's counts before the mitigation, and would leave as it is."""
    rid = run_study(project, monkeypatch)
    ws = project.ws
    as_user(monkeypatch, "rita")
    assert decisions.mitigate(ws, rid, "small", "suppress").status != "fail"
    figure = review.output(review.get(ws, rid), "figure")
    assert figure.status == "fail"
    assert figure.checks.sdc is not None
    drawn = [f for f in figure.checks.sdc.flags if f.rule == "mitigated_source"]
    assert [(f.severity, f.reason) for f in drawn] == [
        (
            "fail",
            "its table 'small' was mitigated after the figure was drawn: redraw the figure from the mitigated table "
            "or leave it out",
        )
    ]
    decisions.submit(ws, rid)
    as_user(monkeypatch, "carla")
    with pytest.raises(BadInput, match="make/figure fails the SDC checks: approving it needs a --comment"):
        decisions.vote(ws, rid, "approve")
    assert decisions.vote(ws, rid, "approve", comment="the figure shows no counts").state == "submitted"


def test_an_unknown_mitigation_names_those_registered(
    project: Project, people: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    rid = run_study(project, monkeypatch)
    as_user(monkeypatch, "rita")
    with pytest.raises(BadInput, match=r"^mitigation 'shuffle': use suppress, round, midpoint6 or roll-up$"):
        decisions.mitigate(project.ws, rid, "small", "shuffle")
    with pytest.raises(BadInput, match=r"^make/figure: only tables declared with rk.outputs.table can be mitigated$"):
        decisions.mitigate(project.ws, rid, "figure", "suppress")


def test_return_and_reject_need_a_reason(project: Project, people: None, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = run_study(project, monkeypatch)
    ws = project.ws
    as_user(monkeypatch, "rita")
    decisions.submit(ws, rid)
    as_user(monkeypatch, "carla")
    with pytest.raises(BadInput, match="say why"):
        decisions.vote(ws, rid, "return")
    assert decisions.vote(ws, rid, "return", comment="round the counts to 5").state == "returned"
    as_user(monkeypatch, "rita")
    assert "round the counts to 5" in [c.body for c in review.get(ws, rid, viewer="rita").comments]
    assert decisions.submit(ws, rid).state == "submitted"
    as_user(monkeypatch, "chen")
    assert decisions.vote(ws, rid, "reject", comment="not in the approved protocol").state == "rejected"
    with pytest.raises(PolicyRefusal, match="rejected"):
        decisions.vote(ws, rid, "approve", comment="x")


def test_users_only_a_steward_manages_them(workspace: object, monkeypatch: pytest.MonkeyPatch) -> None:
    from research_kit.core.workspace import Workspace

    assert isinstance(workspace, Workspace)
    as_user(monkeypatch, "anyone")
    with pytest.raises(PolicyRefusal, match="add a steward first"):
        users.add(workspace, "rita", "researcher")
    users.add(workspace, "sam", "steward")
    with pytest.raises(PolicyRefusal, match="'anyone' is not a user"):
        users.add(workspace, "rita", "researcher")
    as_user(monkeypatch, "sam")
    users.add(workspace, "rita", "researcher")
    with pytest.raises(BadInput, match="--role 'boss'"):
        users.add(workspace, "bob", "boss")
    with pytest.raises(PolicyRefusal, match="'rita' is a researcher already"):
        users.add(workspace, "rita", "researcher")
    users.disable(workspace, "rita")
    assert [(u.name, u.active) for u in users.all_users(workspace)] == [("rita", False), ("sam", True)]


def test_one_person_may_hold_several_roles_but_never_reviews_their_own_request(
    project: Project, people: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A small registry's steward sits on the committee: one account, both roles, still two-person review."""
    ws = project.ws
    as_user(monkeypatch, "sam")
    both = users.add(ws, "sam", "committee")
    assert both.roles == {"steward", "committee"}
    assert both.role == "committee, steward"
    users.add(ws, "sam", "researcher")  # and runs a study under a permit
    rid = run_study(project, monkeypatch, actor="sam")  # sam ran the study: the request is his
    as_user(monkeypatch, "sam")
    decisions.submit(ws, rid)
    with pytest.raises(PolicyRefusal, match=r"sam is the author of request \d+: an author never reviews"):
        decisions.vote(ws, rid, "approve", comment="mine, and fine")
    with pytest.raises(PolicyRefusal, match=r"sam is the author of request \d+: an author never reviews"):
        decisions.comment(ws, rid, "a private note on my own request", private=True)
    as_user(monkeypatch, "carla")
    decisions.vote(ws, rid, "approve", comment="checked")
    decisions.comment(ws, rid, "between us: the author is also a steward", private=True)
    assert [c.body for c in review.get(ws, rid, viewer="sam").comments] == ["checked"]  # his roles don't unhide it
    assert "between us: the author is also a steward" in [c.body for c in review.get(ws, rid, viewer="chen").comments]
    as_user(monkeypatch, "chen")
    assert decisions.vote(ws, rid, "approve", comment="checked").state == "approved"
    as_user(monkeypatch, "sam")
    with pytest.raises(PolicyRefusal, match=r"sam is the author of request \d+"):
        release(ws, rid)
    with ws.catalog() as conn:  # two approvals from two people; none from the author
        voters = {r[0] for r in conn.execute("SELECT member FROM votes WHERE request = ?", (rid,))}
    assert voters == {"carla", "chen"}


def test_a_new_version_close_to_a_released_one_is_flagged(
    project: Project, people: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = project.ws
    rid = run_study(project, monkeypatch)
    as_user(monkeypatch, "rita")
    decisions.submit(ws, rid)
    for member in ("carla", "chen"):
        as_user(monkeypatch, member)
        decisions.vote(ws, rid, "approve", comment="ok")
    release(ws, rid)
    later = run_study(project, monkeypatch, shift=4)  # 'big' now says 44 where the release said 40
    assert later != rid
    big = review.output(review.get(ws, later), "big")
    assert big.status == "fail"
    [pair] = big.checks.differencing
    assert pair.difference == 4
    assert pair.group == {"group": "a"}
    assert pair.other == f"request {rid}: make/big"


def test_a_comment_longer_than_the_policy_allows_is_refused(project: Project, monkeypatch: pytest.MonkeyPatch) -> None:
    rid = run_study(project, monkeypatch)
    as_user(monkeypatch, "rita")
    limit = project.ws.policy().review.max_comment_chars
    with pytest.raises(BadInput, match=f"the comment is 1,000,000 characters long; at most {limit:,} are kept"):
        decisions.comment(project.ws, rid, "x" * 1_000_000)
    decisions.comment(project.ws, rid, "y" * limit)  # exactly the limit is kept
    assert review.get(project.ws, rid).comments[-1].body == "y" * limit
