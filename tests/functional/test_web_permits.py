"""Data permits in the web app: a researcher applies, the committee grants, refuses and revokes, each through the
action ``research-kit permit`` calls; and each rule of the permit check refusing what the web app drives (its
service API's commands and runs, the review pages' submit and release), in one line naming the permit.

The workspace is the review one (tests/functional/webapp.py): permit 1 (study s1, rita's, real tier, every
table, a budget of rho 0.5), permit 2 (s2, rob's), permit 3 (s3, cora's, a committee member who also
researches); committee members carla, chen and cora; steward sam.
"""

from __future__ import annotations

import base64
import html
import re
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient
from tests.conftest import Project, permit
from tests.functional.webapp import OTHER_NOTEBOOK, PASSWORD, S1, S2, browser

from research_kit.actions import permits
from research_kit.core import audit
from research_kit.core.workspace import Workspace
from research_kit.dp import ledger
from research_kit.dp.accounting import to_picorho
from research_kit.review import decisions
from research_kit.review import requests as review
from research_kit.web.app import create_app

NEXT_YEAR = str(date.today() + timedelta(days=365))
APPLICATION: dict[str, str | list[str]] = {
    "study": "myo",
    "purpose": "Natural history of a rare myopathy",
    "category": "scientific-research",
    "tier": "real",
    "tables": ["patients", "diagnoses"],
    "until": NEXT_YEAR,
    "holder": "Luxembourg Institute of Health",
    "users": "rob",
    "rho": "0.3",
}


def refusal(page: str) -> str:
    """The page's one error line, as a person reads it (there is exactly one)."""
    found = re.findall(r'<p class="alert error" role="alert">(.*?)</p>', page, re.DOTALL)
    assert len(found) == 1, found
    assert "\n" not in found[0], found[0]
    return html.unescape(found[0])


def permit_actions(ws: Workspace) -> list[tuple[str, str, int]]:
    """The audit log's permit lines: (actor, action, permit)."""
    return [
        (e["actor"], e["action"], e["details"]["permit"])
        for e in audit.read_entries(ws.audit_path)
        if e["action"].startswith("permit.")
    ]


def applied(ws: Workspace, **changes: str | list[str]) -> int:
    """rita applies through the page's form; the new permit's number."""
    before = {p.id for p in permits.listed(ws, actor="carla")}
    done = browser(ws, "rita").post("/permits/apply", {**APPLICATION, **changes})
    assert done.status_code == 303, done.text
    (new,) = {p.id for p in permits.listed(ws, actor="carla")} - before
    assert done.headers["location"] == f"/permits?done=apply#permit-{new}"
    return new


# -- applying and deciding --------------------------------------------------------------------------------------


def test_a_researcher_applies_on_the_page_and_a_committee_member_grants_it(review_ws: Workspace) -> None:
    rita = browser(review_ws, "rita")
    assert 'action="/permits/apply"' in rita.get("/permits").text
    assert 'action="/permits/apply"' not in browser(review_ws, "carla").get("/permits").text  # no researcher
    number = applied(review_ws)
    shown = permits.shown(review_ws, actor="carla", permit_id=number).to_dict()
    assert (shown["study"], shown["status"], shown["users"], shown["tier"]) == ("myo", "applied", ["rita", "rob"],
                                                                                "real")  # fmt: skip
    assert (shown["data"], shown["until"], shown["rho_asked"]) == ({"diagnoses": None, "patients": None}, NEXT_YEAR,
                                                                   "0.3")  # fmt: skip
    assert (shown["applied_by"], shown["holder"]) == ("rita", "Luxembourg Institute of Health")
    page = rita.get(f"/permits?done=apply#permit-{number}").text
    assert "Your application is filed: it waits for the committee." in page
    assert f'id="permit-{number}"' in page
    assert "none yet: the committee has not decided" in page
    assert f'action="/permits/{number}/grant"' not in page  # a researcher is shown no decision

    # A researcher (its applicant) and a steward POSTing the form are refused by the action: nothing changes.
    for who, role in (("rita", "researcher"), ("sam", "steward")):
        refused = browser(review_ws, who).post(f"/permits/{number}/grant", {"legal_basis": "mine"})
        assert refused.status_code == 403
        assert refusal(refused.text) == (
            f"'{who}' is a {role}; granting a study budget or a data permit needs the committee role"
        )
    assert permits.shown(review_ws, actor="carla", permit_id=number).status() == "applied"

    carla = browser(review_ws, "carla")
    page = carla.get("/permits").text
    assert f'action="/permits/{number}/grant"' in page
    assert f'action="/permits/{number}/refuse"' in page
    assert f'action="/permits/{number}/revoke"' not in page  # not granted yet
    done = carla.post(f"/permits/{number}/grant", {
        "legal_basis": "Art. 68 EHDS; DAC 2026-14", "note": "DAC meeting of 3 March",
        "optout_exception": "Rare Disease Act art. 4", "rho": "0.3", "continues": "",
    })  # fmt: skip
    assert done.headers["location"] == f"/permits?done=grant#permit-{number}"
    granted = permits.shown(review_ws, actor="carla", permit_id=number)
    assert (granted.status(), granted.decided_by, granted.legal_basis, granted.optout_exception) == (
        "granted", "carla", "Art. 68 EHDS; DAC 2026-14", "Rare Disease Act art. 4",
    )  # fmt: skip
    assert ledger.balance(review_ws, "myo").granted == to_picorho(0.3, round_up=False)  # its budget came with it
    assert permit_actions(review_ws)[-2:] == [("rita", "permit.apply", number), ("carla", "permit.grant", number)]
    for who in ("rita", "rob", "chen"):  # its users and the committee read its legal basis and opt-out exception
        page = browser(review_ws, who).get("/permits").text
        section = page[page.index(f'<section id="permit-{number}"') :]
        assert "<dt>Legal basis</dt><dd>Art. 68 EHDS; DAC 2026-14</dd>" in section
        assert "<dd><strong>Rare Disease Act art. 4</strong></dd>" in section
    assert f'action="/permits/{number}/revoke"' in carla.get("/permits").text
    assert f'action="/permits/{number}/grant"' not in carla.get("/permits").text


def test_a_researcher_sees_only_the_permits_naming_them_or_that_they_applied_for(review_ws: Workspace) -> None:
    mine = applied(review_ws, users="")  # rita's, naming nobody else
    robs = browser(review_ws, "rob").post("/permits/apply", {**APPLICATION, "study": "robs", "users": ""})
    assert robs.status_code == 303
    rita = browser(review_ws, "rita").get("/permits").text
    assert f'id="permit-{mine}"' in rita
    assert "study robs" not in rita
    assert "study s2" not in rita  # rob's study's permit
    rob = browser(review_ws, "rob").get("/permits").text
    assert "study robs" in rob
    assert f'id="permit-{mine}"' not in rob
    committee = browser(review_ws, "chen").get("/permits").text
    assert all(f"study {s}" in committee for s in ("s1", "s2", "s3", "myo", "robs"))


def test_a_committee_member_never_decides_on_a_permit_naming_them(review_ws: Workspace) -> None:
    number = applied(review_ws, users="cora")  # cora sits on the committee and is one of its users
    cora = browser(review_ws, "cora")
    page = cora.get("/permits").text
    assert f'action="/permits/{number}/grant"' not in page
    assert 'action="/permits/3/revoke"' not in page  # permit 3 is her own study's
    assert 'action="/permits/2/revoke"' in page  # rob's study: hers to decide on
    refused = cora.post(f"/permits/{number}/grant", {"legal_basis": "DAC 2026-20"})
    assert refused.status_code == 403
    assert refusal(refused.text) == "cora is a user of study myo: a user never decides on their own permit"
    refused = cora.post("/permits/3/revoke", {"note": "my own study"})
    assert refused.status_code == 403
    assert refusal(refused.text) == "cora is a user of study s3: a user never decides on their own permit"
    assert permits.shown(review_ws, actor="carla", permit_id=number).status() == "applied"
    assert permits.shown(review_ws, actor="carla", permit_id=3).status() == "granted"
    assert not [a for a in permit_actions(review_ws) if a[0] == "cora"]


def test_the_committee_refuses_and_revokes_on_the_page_each_with_a_note_and_audited(review_ws: Workspace) -> None:
    number = applied(review_ws)
    carla = browser(review_ws, "carla")
    empty = carla.post(f"/permits/{number}/refuse", {"note": "  "})
    assert empty.status_code == 400
    assert refusal(empty.text) == "--note: say it in words"
    assert browser(review_ws, "rob").post(f"/permits/{number}/refuse", {"note": "no"}).status_code == 403
    assert permits.shown(review_ws, actor="carla", permit_id=number).status() == "applied"
    done = carla.post(f"/permits/{number}/refuse", {"note": "the purpose is not one the law allows"})
    assert done.headers["location"] == f"/permits?done=refuse#permit-{number}"
    refused = permits.shown(review_ws, actor="carla", permit_id=number)
    assert (refused.status(), refused.decided_by, refused.decision_note) == (
        "refused", "carla", "the purpose is not one the law allows",
    )  # fmt: skip
    again = carla.post(f"/permits/{number}/grant", {"legal_basis": "DAC 2026-21"})
    assert again.status_code == 403
    assert refusal(again.text) == f"permit {number} is refused: only an application is granted or refused"
    # The applicant reads why.
    assert "refused by carla" in browser(review_ws, "rita").get("/permits").text

    # Revoking rob's permit: a note is needed; rob (its user, no committee member) and a steward cannot.
    assert carla.post("/permits/2/revoke", {"note": ""}).status_code == 400
    for who in ("rob", "sam", "rita"):
        assert browser(review_ws, who).post("/permits/2/revoke", {"note": "stop"}).status_code == 403
    assert permits.shown(review_ws, actor="carla", permit_id=2).status() == "granted"
    done = carla.post("/permits/2/revoke", {"note": "the holder broke its terms"})
    assert done.headers["location"] == "/permits?done=revoke#permit-2"
    assert "The permit is revoked" in carla.get(done.headers["location"]).text
    assert permits.shown(review_ws, actor="carla", permit_id=2).status() == "revoked"
    page = browser(review_ws, "rob").get("/permits").text
    assert re.search(r"<dt>Revoked</dt><dd>by carla, [0-9: -]+: the holder broke its terms</dd>", page)
    twice = carla.post("/permits/2/revoke", {"note": "again"})
    assert twice.status_code == 403
    assert refusal(twice.text) == "permit 2 is revoked: only a granted permit is revoked"

    entries = [e for e in audit.read_entries(review_ws.audit_path) if e["action"].startswith("permit.")]
    ours = [(e["actor"], e["action"], e["details"]["permit"], e["details"].get("note")) for e in entries][-3:]
    assert ours == [
        ("rita", "permit.apply", number, None),
        ("carla", "permit.refuse", number, "the purpose is not one the law allows"),
        ("carla", "permit.revoke", 2, "the holder broke its terms"),
    ]


@pytest.mark.parametrize(
    ("changes", "says"),
    [
        ({"tables": ["patients", "secrets"]}, "--tables 'secrets': not a table of the data model"),
        ({"tables": []}, "--tables: name tables"),
        ({"tables": ["all", "patients"]}, "tables: tick every table, or some tables, not both"),
        ({"until": "2020-01-01"}, "--until 2020-01-01: a permit ends after today"),
        ({"until": ""}, "--until '': a date as YYYY-MM-DD"),
        ({"purpose": "   "}, "--purpose: say it in words"),
        ({"category": "marketing"}, "--category 'marketing': one of public-health"),
        ({"tier": "gold"}, "--tier 'gold': one of twin, dp, real"),
        ({"users": "nobody"}, "--users 'nobody': not an active user of this workspace"),
        ({"study": "../etc"}, "study"),
        ({"rho": "lots"}, "rho"),
    ],
)
def test_a_mistyped_application_is_one_line_and_files_nothing(
    review_ws: Workspace, changes: dict[str, Any], says: str
) -> None:
    before = permit_actions(review_ws)
    got = browser(review_ws, "rita").post("/permits/apply", {**APPLICATION, **changes})
    assert got.status_code == 400
    assert says in refusal(got.text)
    assert '<details class="apply" id="apply" open>' in got.text  # the form, open, with what was typed
    assert 'value="Luxembourg Institute of Health"' in got.text
    assert [p.study for p in permits.listed(review_ws, actor="carla")] == ["s3", "s2", "s1"]
    assert permit_actions(review_ws) == before


# -- the permit check, driven from the web app ------------------------------------------------------------------


class Api:
    """The web app's JSON API (``research-kit serve``'s, in process) with a user's command-line token."""

    def __init__(self, ws: Workspace, name: str) -> None:
        self.client = TestClient(create_app(ws))
        signed = self.client.post("/api/v1/login", json={"name": name, "password": PASSWORD})
        assert signed.status_code == 200, signed.text
        self.headers = {"authorization": f"Bearer {signed.json()['token']}"}

    def command(self, *argv: str) -> dict[str, Any]:
        done = self.client.post("/api/v1/command", json={"argv": list(argv)}, headers=self.headers)
        assert done.status_code == 200, done.text
        answer: dict[str, Any] = done.json()
        return answer

    def run(self, project: Project, pipeline: Path) -> dict[str, Any]:
        """``research-kit run PIPELINE --extract e1`` as a client sends it: the pipeline and its notebook."""
        names = [pipeline.relative_to(project.root), Path("notebooks/n.ipynb")]
        files = {n.as_posix(): base64.b64encode((project.root / n).read_bytes()).decode() for n in names}
        body = {"pipeline": names[0].as_posix(), "files": files, "options": ["--extract", "e1"]}
        done = self.client.post("/api/v1/run", json=body, headers=self.headers)
        assert done.status_code == 200, done.text
        answer: dict[str, Any] = done.json()
        return answer


def refused_in_one_line(answer: dict[str, Any], *says: str) -> None:
    """A command the server ran for a client, refused by a rule (exit 5) in one line saying each of ``says``."""
    assert answer["exit_code"] == 5, answer
    assert answer["stderr"].count("\n") == 1, answer["stderr"]
    for text in says:
        assert text in answer["stderr"], answer["stderr"]


def query(api: Api, study: str, table: str = "patients") -> dict[str, Any]:
    return api.command("query", "count", table, "--study", study, "--rho", "0.01")


def spent(ws: Workspace, study: str) -> int:
    return ledger.balance(ws, study).spent


def runs_of(ws: Workspace, study: str) -> int:
    with ws.catalog() as conn:
        return int(conn.execute("SELECT COUNT(*) FROM runs WHERE study = ?", (study,)).fetchone()[0])


def pipeline(project: Project, study: str) -> Path:
    project.notebook("n", "shift = 0", OTHER_NOTEBOOK)
    action = {"notebook": "notebooks/n.ipynb", "outputs": {"moderately_sensitive": {"other": "other.csv"}}}
    return project.pipeline(study, {"make": action}, permitted=False)


@pytest.mark.slow  # each command the API runs is a process of its own: about a minute in all
def test_each_rule_of_the_permit_check_refuses_what_the_service_api_runs(review_ws: Workspace, tmp_path: Path) -> None:
    project = Project(tmp_path / "project", review_ws)
    rita, rob = Api(review_ws, "rita"), Api(review_ws, "rob")
    before = spent(review_ws, "s1")

    # A user the permit does not name: rob's DP query and run on rita's study s1.
    refused_in_one_line(query(rob, "s1"), "permit 1 (study s1) does not name rob: asking the real extract on its "
                                          "budget is for its users only")  # fmt: skip
    refused_in_one_line(
        rob.run(project, pipeline(project, "s1")),
        "permit 1 (study s1) does not name rob: running its pipeline is for its users only",
    )
    assert (spent(review_ws, "s1"), runs_of(review_ws, "s1")) == (before, 1)

    # A table the permit does not cover: a dp-tier permit over patients, applied for and granted on the page.
    counts = applied(review_ws, study="counts", tier="dp", tables=["patients"], users="", rho="0.2")
    done = browser(review_ws, "carla").post(f"/permits/{counts}/grant", {"legal_basis": "DAC 2026-16", "rho": "0.2"})
    assert done.status_code == 303
    refused_in_one_line(query(rita, "counts", "encounters"), f"permit {counts} (study counts) does not cover table "
                                                             "encounters")  # fmt: skip
    assert spent(review_ws, "counts") == 0
    asked = query(rita, "counts")  # the table it covers: answered, and paid for
    assert asked["exit_code"] == 0, asked["stderr"]
    paid = spent(review_ws, "counts")
    assert paid > 0

    # A tier the permit does not grant: a twin-tier permit asking the real extract, by a query and by a run.
    twin = permit(review_ws, "twinonly", "rita", tier="twin")
    refused_in_one_line(query(rita, "twinonly"), f"permit {twin} (study twinonly) grants the twin tier, not dp: "
                                                 "asking the real extract on its budget is not covered")  # fmt: skip
    refused_in_one_line(rita.run(project, pipeline(project, "twinonly")),
                        f"permit {twin} (study twinonly) grants the twin tier, not real: running its pipeline is "
                        "not covered")  # fmt: skip
    assert runs_of(review_ws, "twinonly") == 0

    # An expired permit. 'permit amend --until' takes only a future date, so the test makes one the way time
    # would: it moves the catalog row's last day into the past.
    yesterday = date.today() - timedelta(days=1)
    with review_ws.catalog() as conn:
        conn.execute("UPDATE permits SET until = ? WHERE id = ?", (str(yesterday), counts))
    refused_in_one_line(query(rita, "counts"), f"permit {counts} (study counts) ended on {yesterday}: asking the "
                                               "real extract on its budget is over")  # fmt: skip
    assert spent(review_ws, "counts") == paid
    assert "state-expired" in browser(review_ws, "rita").get("/permits").text

    # A revoked permit: revoked on the page, then rita's query and run on her study are refused.
    assert browser(review_ws, "carla").post("/permits/1/revoke", {"note": "misuse"}).status_code == 303
    refused_in_one_line(query(rita, "s1"), "permit 1 (study s1) was revoked on ", ": asking the real extract on its "
                                           "budget is over")  # fmt: skip
    refused_in_one_line(rita.run(project, pipeline(project, "s1")), "permit 1 (study s1) was revoked on ",
                        ": running its pipeline is over")  # fmt: skip
    assert (spent(review_ws, "s1"), runs_of(review_ws, "s1")) == (before, 1)


def test_a_revoked_permits_outputs_are_neither_submitted_nor_released_on_the_review_pages(
    review_ws: Workspace,
) -> None:
    for member in ("carla", "chen"):  # request 1 (study s1) has its two approvals
        with audit.acting(member):
            decisions.vote(review_ws, S1, "approve", comment="the small counts are published elsewhere")
    assert review.get(review_ws, S1).state == "approved"
    carla = browser(review_ws, "carla")
    for number in (1, 2):
        assert carla.post(f"/permits/{number}/revoke", {"note": "the holder broke its terms"}).status_code == 303

    released = browser(review_ws, "chen").post(f"/requests/{S1}/release")
    assert released.status_code == 403
    said = refusal(released.text)
    assert said.startswith("permit 1 (study s1) was revoked on ")
    assert said.endswith(": releasing its outputs is over")
    after = review.get(review_ws, S1)
    assert (after.state, after.bundle) == ("approved", None)

    submitted = browser(review_ws, "rob").post(f"/requests/{S2}/submit")  # rob's request, pending
    assert submitted.status_code == 403
    said = refusal(submitted.text)
    assert said.startswith("permit 2 (study s2) was revoked on ")
    assert said.endswith(": submitting its outputs is over")
    assert review.get(review_ws, S2).state == "pending"
    entries = audit.read_entries(review_ws.audit_path)
    assert not [e for e in entries if e["action"] == "release.create"]
    assert not [e for e in entries if e["action"] == "request.submit" and e["details"]["request"] == S2]


def test_a_grant_on_the_page_continues_an_ended_permit_and_keeps_its_pseudonyms(review_ws: Workspace) -> None:
    from research_kit.core import permits as rules

    number = applied(review_ws, study="s1", users="")  # rita's study again: permit 1 is in force
    carla = browser(review_ws, "carla")
    page = carla.get("/permits").text
    form = page[page.index(f'action="/permits/{number}/grant"') :]
    assert '<option value="1">permit 1</option>' in form[: form.index("</form>")]
    blocked = carla.post(f"/permits/{number}/grant", {"legal_basis": "DAC 2026-30", "continues": "1"})
    assert blocked.status_code == 403
    assert refusal(blocked.text).startswith("study s1 already has permit 1 in force until")
    with review_ws.catalog() as conn:  # permit 1's last day passes (as time would make it)
        conn.execute("UPDATE permits SET until = ? WHERE id = 1", (str(date.today() - timedelta(days=1)),))
    mistyped = carla.post(f"/permits/{number}/grant", {"legal_basis": "DAC 2026-30", "continues": "one"})
    assert (mistyped.status_code, refusal(mistyped.text)) == (400, "continues 'one': a permit is named by its number")
    assert carla.post("/permits/99/grant", {"legal_basis": "DAC"}).status_code == 404
    done = carla.post(f"/permits/{number}/grant", {"legal_basis": "DAC 2026-30", "continues": "1"})
    assert done.status_code == 303, refusal(done.text)
    with review_ws.catalog() as conn:
        assert rules.get(conn, number).continuation_of == 1
        assert rules.pseudonym_line(conn, "s1") == "s1#permit-1"
    assert '<dt>Continues</dt><dd><a href="#permit-1">permit 1</a>' in carla.get("/permits").text
