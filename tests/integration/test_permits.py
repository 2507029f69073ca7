"""Data permits as a health data access body runs them, driven from the command line (in process) and the
notebook API: apply, grant, refuse, amend, revoke; and each rule of the one check refusing in one line."""

from __future__ import annotations

import json
import sqlite3
from datetime import date, timedelta
from pathlib import Path

import pytest
from tests.conftest import MEMBER, STEWARD, Project, people, sign_in
from tests.functional.test_one_line_errors import one_line
from tests.generative.test_fuzz_cli import run

from research_kit.actions import runs
from research_kit.core import audit, catalog, permits
from research_kit.core.errors import PolicyRefusal
from research_kit.dp import ledger
from research_kit.dp.accounting import to_picorho
from research_kit.studies.spec import load_pipeline

NEXT_YEAR = str(date.today() + timedelta(days=365))
NOTEBOOK = "open('n.txt', 'w').write('1')"


@pytest.fixture
def signed(project: Project) -> Project:
    sign_in(
        project.ws, ana="researcher", rob="researcher", carla="committee", **{MEMBER: "committee", STEWARD: "steward"}
    )
    return project


def ok(*argv: str) -> str:
    code, out, err = run(*argv)
    assert code == 0, err
    return out


def refused(argv: tuple[str, ...], says: str, exit_code: int = 5) -> None:
    code, _, err = run(*argv)
    one_line(code, err, exit_code, says)


def apply(study: str, *extra: str, who: str = "ana") -> int:
    out = ok("--as", who, "permit", "apply", study, "--purpose", "Natural history of a rare myopathy",
             "--tier", "real", "--tables", "patients,diagnoses", "--until", NEXT_YEAR,
             "--holder", "Luxembourg Institute of Health", "--rho", "0.5", "--json", *extra)  # fmt: skip
    return int(json.loads(out)["id"])


def _pipeline(project: Project, study: str) -> object:
    project.notebook("n", "unused = 0", NOTEBOOK)
    action = {"notebook": "notebooks/n.ipynb", "outputs": {"highly_sensitive": {"n": "n.txt"}}}
    return load_pipeline(project.pipeline(study, {"a": action}, permitted=False))


def _dp_count(ws_root: Path, study: str, table: str = "patients") -> float:
    import research_kit as rk

    return float(rk.dp.count(table, study=study, tier="real", rho=0.01, workspace=ws_root).rho)


def test_a_permit_is_applied_for_granted_with_its_budget_amended_and_revoked(signed: Project) -> None:
    permit_id = apply("myo", "--users", "rob")
    shown = json.loads(ok("--as", MEMBER, "permit", "show", str(permit_id), "--json"))
    assert (shown["status"], shown["users"], shown["tier"]) == ("applied", ["ana", "rob"], "real")
    assert shown["data"] == {"diagnoses": None, "patients": None}
    with pytest.raises(PolicyRefusal, match=r"study myo has no data permit \(its application waits"):
        runs.run(signed.ws, actor="ana", pipeline=_pipeline(signed, "myo"), extract="e1")

    refused(("--as", "ana", "permit", "grant", str(permit_id), "--legal-basis", "mine"), "needs the committee role")
    granted = json.loads(ok("--as", MEMBER, "permit", "grant", str(permit_id), "--legal-basis",
                            "Art. 68 EHDS; DAC decision 2026-14", "--rho", "0.5", "--json"))  # fmt: skip
    assert (granted["status"], granted["decided_by"]) == ("granted", MEMBER)
    assert ledger.balance(signed.ws, "myo").granted == to_picorho(0.5, round_up=False)  # its budget came with it
    assert runs.run(signed.ws, actor="rob", pipeline=_pipeline(signed, "myo"), extract="e1").outcome == "succeeded"

    ok("--as", MEMBER, "permit", "amend", str(permit_id), "--users", "ana", "--note", "rob left the project")
    ok("--as", MEMBER, "permit", "amend", str(permit_id), "--holder", "Centre Hospitalier", "--note", "moved")
    assert json.loads(ok("--as", MEMBER, "permit", "show", str(permit_id), "--json"))["holder"] == "Centre Hospitalier"
    with pytest.raises(PolicyRefusal, match=rf"permit {permit_id} \(study myo\) does not name rob"):
        runs.run(signed.ws, actor="rob", pipeline=_pipeline(signed, "myo"), extract="e1")
    ok("--as", MEMBER, "permit", "revoke", str(permit_id), "--note", "purpose changed without notice")
    with pytest.raises(PolicyRefusal, match=rf"permit {permit_id} \(study myo\) was revoked on .*: running"):
        runs.run(signed.ws, actor="ana", pipeline=_pipeline(signed, "myo"), extract="e1")
    with audit.acting("ana"), pytest.raises(PolicyRefusal, match=rf"permit {permit_id} \(study myo\) was revoked"):
        _dp_count(signed.ws.root, "myo")

    entries = [json.loads(line) for line in signed.ws.audit_path.read_text().splitlines()]
    trail = [(e["actor"], e["action"]) for e in entries if e["action"].startswith("permit.")]
    assert trail == [("ana", "permit.apply"), (MEMBER, "permit.grant"), (MEMBER, "permit.amend"),
                     (MEMBER, "permit.amend"), (MEMBER, "permit.revoke")]  # fmt: skip
    amended = next(e for e in entries if e["action"] == "permit.amend")["details"]
    assert amended["changed"]["users"] == {"from": ["ana", "rob"], "to": ["ana"]}


def test_each_rule_of_the_check_refuses_in_one_line_naming_the_permit(signed: Project) -> None:
    # A twin-tier permit: no DP query, no run on the real extract.
    ok("--as", MEMBER, "permit", "grant", "twinonly", "--users", "ana", "--purpose", "Teaching", "--category",
       "education", "--tier", "twin", "--tables", "all", "--until", NEXT_YEAR, "--holder", "Uni.lu",
       "--legal-basis", "DAC 2026-15")  # fmt: skip
    with audit.acting("ana"), pytest.raises(PolicyRefusal, match=r"grants the twin tier, not dp"):
        _dp_count(signed.ws.root, "twinonly")
    with pytest.raises(PolicyRefusal, match=r"grants the twin tier, not real: running its pipeline"):
        runs.run(signed.ws, actor="ana", pipeline=_pipeline(signed, "twinonly"), extract="e1")
    # A dp-tier permit over patients only: a DP count of patients, never of encounters, and no pipeline.
    ok("--as", MEMBER, "permit", "grant", "counts", "--users", "ana", "--purpose", "Prevalence", "--category",
       "statistics", "--tier", "dp", "--tables", "patients", "--until", NEXT_YEAR, "--holder", "STATEC",
       "--legal-basis", "DAC 2026-16", "--rho", "0.2")  # fmt: skip
    with audit.acting("ana"):
        assert _dp_count(signed.ws.root, "counts") > 0
    with audit.acting("ana"), pytest.raises(PolicyRefusal, match=r"\(study counts\) does not cover table encounters"):
        _dp_count(signed.ws.root, "counts", "encounters")
    with pytest.raises(PolicyRefusal, match=r"grants the dp tier, not real"):
        runs.run(signed.ws, actor="ana", pipeline=_pipeline(signed, "counts"), extract="e1")
    # An ended permit: its end date has passed (as time would make it).
    with signed.ws.catalog() as conn:
        conn.execute("UPDATE permits SET until = ? WHERE study = 'counts'", (str(date.today() - timedelta(days=1)),))
    with audit.acting("ana"), pytest.raises(PolicyRefusal, match=r"\(study counts\) ended on .*: asking the real"):
        _dp_count(signed.ws.root, "counts")
    listed = json.loads(ok("--as", MEMBER, "permit", "list", "--json"))
    assert {p["study"]: p["status"] for p in listed} == {"counts": "expired", "twinonly": "granted"}
    # A disabled user is refused whatever the permit says.
    with audit.acting(STEWARD):
        from research_kit.core import users

        users.disable(signed.ws, "ana")
    with pytest.raises(PolicyRefusal, match="user 'ana' is disabled"):
        runs.run(signed.ws, actor="ana", pipeline=_pipeline(signed, "twinonly"), extract="e1")


def test_the_committee_decides_but_never_on_its_own_study_and_one_permit_is_in_force(signed: Project) -> None:
    with audit.acting(STEWARD):
        from research_kit.core import users

        users.add(signed.ws, "carla", "researcher")  # carla sits on the committee and researches
    sign_in(signed.ws, carla="committee")  # a new role: she signs in again
    mine = apply("own", "--users", "carla")
    refused(("--as", "carla", "permit", "grant", str(mine), "--legal-basis", "x"),
            "carla is a user of study own: a user never decides on their own permit")  # fmt: skip
    refused(("--as", MEMBER, "permit", "refuse", str(mine), "--note", " "), "--note: say it in words", 3)
    ok("--as", MEMBER, "permit", "refuse", str(mine), "--note", "the purpose is not one the law allows")
    refused(("--as", MEMBER, "permit", "grant", str(mine), "--legal-basis", "x"),
            f"permit {mine} is refused: only an application is granted or refused")  # fmt: skip
    first, second = apply("dup"), apply("dup")
    ok("--as", MEMBER, "permit", "grant", str(first), "--legal-basis", "DAC 1")
    refused(("--as", MEMBER, "permit", "grant", str(second), "--legal-basis", "DAC 2"),
            f"study dup already has permit {first} in force until")  # fmt: skip
    # A researcher sees only their own permits; the committee all.
    assert {p["id"] for p in json.loads(ok("--as", "rob", "permit", "list", "--json"))} == set()
    assert len(json.loads(ok("--as", MEMBER, "permit", "list", "--json"))) == 3
    refused(("--as", "rob", "permit", "show", str(first)), f"permit {first} does not name rob")


@pytest.mark.parametrize(
    ("argv", "says", "code"),
    [
        (("permit", "apply", "s", "--purpose", "p", "--tier", "gold", "--tables", "all", "--until", NEXT_YEAR,
          "--holder", "h"), "--tier 'gold': one of twin, dp, real", 3),
        (("permit", "apply", "s", "--purpose", "p", "--tier", "dp", "--tables", "patients,secrets", "--until",
          NEXT_YEAR, "--holder", "h"), "--tables 'secrets': not a table of the data model", 3),
        (("permit", "apply", "s", "--purpose", "p", "--tier", "dp", "--tables", "all", "--until", "2020-01-01",
          "--holder", "h"), "--until 2020-01-01: a permit ends after today", 3),
        (("permit", "apply", "s", "--purpose", "p", "--tier", "dp", "--tables", "all", "--until", "soon",
          "--holder", "h"), "--until 'soon': a date as YYYY-MM-DD", 3),
        (("permit", "apply", "s", "--purpose", "p", "--tier", "dp", "--tables", "all", "--until", NEXT_YEAR,
          "--holder", "h", "--category", "marketing"), "--category 'marketing': one of public-health", 3),
        (("permit", "show", "99"), "there is no permit 99", 4),
        (("permit", "show", "x1"), "permit 'x1': a permit is named by its number", 3),
    ],
)  # fmt: skip
def test_a_mistyped_application_is_one_line(signed: Project, argv: tuple[str, ...], says: str, code: int) -> None:
    refused(("--as", "ana", *argv), says, code)


def test_a_budget_grant_is_the_shorthand_for_a_real_permit_over_every_table(signed: Project) -> None:
    ok("--as", MEMBER, "budget", "grant", "short", "--rho", "0.3", "--owner", "ana")
    (shown,) = json.loads(ok("--as", MEMBER, "permit", "list", "--study", "short", "--json"))
    assert (shown["status"], shown["tier"], shown["data"], shown["users"]) == ("granted", "real", None, ["ana"])
    assert shown["until"] == str(permits._add_months(date.today(), 36))
    ok("--as", MEMBER, "budget", "grant", "short", "--rho", "0.1", "--owner", "rob")  # joins the permit in force
    (again,) = json.loads(ok("--as", MEMBER, "permit", "list", "--study", "short", "--json"))
    assert again["users"] == ["ana", "rob"]


def test_a_revoked_permit_stops_its_studys_reruns(signed: Project) -> None:
    permit_id = apply("rr")
    ok("--as", MEMBER, "permit", "grant", str(permit_id), "--legal-basis", "DAC 3")
    assert runs.run(signed.ws, actor="ana", pipeline=_pipeline(signed, "rr"), extract="e1").outcome == "succeeded"
    ok("--as", MEMBER, "permit", "revoke", str(permit_id), "--note", "ended by the holder")
    report = runs.rerun(signed.ws, actor=STEWARD, extract="e2")
    assert not report.runs
    assert f"permit {permit_id} (study rr) was revoked" in report.problems["rr"]


def test_permits_ending_within_the_notice_are_listed(signed: Project) -> None:
    soon = str(date.today() + timedelta(days=10))
    ok("--as", MEMBER, "permit", "grant", "soon", "--users", "ana", "--purpose", "p", "--tier", "dp", "--tables",
       "all", "--until", soon, "--holder", "h", "--legal-basis", "DAC 4")  # fmt: skip
    ok("--as", MEMBER, "permit", "grant", "later", "--users", "ana", "--purpose", "p", "--tier", "dp", "--tables",
       "all", "--until", NEXT_YEAR, "--holder", "h", "--legal-basis", "DAC 5")  # fmt: skip
    ending = json.loads(ok("--as", MEMBER, "permit", "list", "--ending", "--json"))
    assert [p["study"] for p in ending] == ["soon"]
    assert f"(study soon) ends on {soon}" in ok("--as", MEMBER, "permit", "list")


def test_the_migration_gives_each_study_with_a_budget_one_real_permit_its_owners_its_users(tmp_path: Path) -> None:
    """A catalog as version 13 left it: three studies with grants (two with owners), and the DP-twin budget."""
    path = tmp_path / "catalog.sqlite"
    conn = catalog.connect(path, migrations=catalog.MIGRATIONS[:13])
    people_rows = [("ana", "researcher"), ("rob", "researcher"), ("dac", "committee")]
    for name, role in people_rows:
        conn.execute("INSERT INTO users (name, role, added_at, added_by) VALUES (?, ?, '2026-01-01', 'stew')",
                     (name, role))  # fmt: skip
    for study, owner, at in (("s1", "ana", "2026-02-01T10:00:00"), ("s1", "rob", "2026-02-01T10:00:00"),
                             ("s2", "rob", "2026-03-05T10:00:00")):  # fmt: skip
        conn.execute("INSERT OR IGNORE INTO study_owners (study, owner, added_by, added_at) VALUES (?, ?, 'dac', ?)",
                     (study, owner, at))  # fmt: skip
    for study, at in (("s1", "2026-02-01T10:00:00"), ("s1", "2026-04-01T10:00:00"), ("s2", "2026-03-05T10:00:00"),
                      ("@twin", "2026-03-06T10:00:00"), ("s3", "2026-03-07T10:00:00")):  # fmt: skip
        conn.execute("INSERT INTO dp_grants (study, tier, picorho, granted_by, granted_at, note)"
                     " VALUES (?, 'real', 1000, 'dac', ?, '')", (study, at))  # fmt: skip
    # s3: granted before owners were named (no owner rows); ana registered its pipeline
    conn.execute("INSERT INTO pipelines (study, path, title, registered_at, registered_by, sha256)"
                 " VALUES ('s3', '/p/s3.yaml', 'S3', '2026-03-07', 'ana', 'x')")  # fmt: skip
    conn.execute("INSERT INTO study_secrets (study, secret, created_at) VALUES ('s1', ?, '2026-02-02')", (b"k" * 32,))
    # Two stewards; sue also sits on the committee and granted some of the DP-twin budget: she never builds it.
    for name, role in (("stew", "steward"), ("sue", "steward"), ("sue", "committee")):
        conn.execute("INSERT OR IGNORE INTO users (name, role, added_at, added_by) VALUES (?, ?, '2026-01-01', 'stew')",
                     (name, role))  # fmt: skip
        conn.execute("INSERT INTO user_roles (user, role, added_by, added_at) VALUES (?, ?, 'stew', '2026-01-01')",
                     (name, role))  # fmt: skip
    conn.execute("INSERT INTO dp_grants (study, tier, picorho, granted_by, granted_at, note)"
                 " VALUES ('@twin', 'real', 1000, 'sue', '2026-05-01T10:00:00', '')")  # fmt: skip
    conn.close()
    conn = catalog.connect(path)
    conn.row_factory = sqlite3.Row
    found = {p.study: p for p in permits.listed(conn)}
    # s1's runs keep the pseudonyms its secret gave them: the secret is now its migrated permit's.
    line = permits.pseudonym_line(conn, "s1", date(2026, 12, 1))
    assert conn.execute("SELECT secret FROM study_secrets WHERE study = ?", (line,)).fetchone()[0] == b"k" * 32
    assert set(found) == {"s1", "s2", "s3", permits.REGISTRY_TWIN}
    twin = found[permits.REGISTRY_TWIN]  # the DP-twin budget's permit names the stewards who granted none of it
    assert (twin.users, twin.tier, twin.data, twin.until) == (("stew",), "real", None, date(2029, 3, 6))
    assert (found["s1"].users, found["s1"].tier, found["s1"].data) == (("ana", "rob"), "real", None)
    assert found["s1"].category in permits.CATEGORIES  # so that the committee can amend it
    assert found["s3"].users == ("ana",)  # its pipeline's registrant
    assert found["s1"].until == date(2029, 2, 1)  # three years from its first grant
    assert found["s2"].in_force(date(2026, 12, 1))
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'study_owners'").fetchone() is None
    conn.close()


def test_the_notebook_api_is_refused_like_the_cli(signed: Project) -> None:
    people(signed.ws, bob="researcher")
    permit_id = apply("nb")
    ok("--as", MEMBER, "permit", "grant", str(permit_id), "--legal-basis", "DAC 6", "--rho", "0.2")
    with audit.acting("bob"), pytest.raises(PolicyRefusal, match=rf"permit {permit_id} \(study nb\) does not name bob"):
        _dp_count(signed.ws.root, "nb")
    with audit.acting("ana"):
        assert _dp_count(signed.ws.root, "nb") > 0
    with audit.acting("ana"), pytest.raises(PolicyRefusal, match=r"does not cover table phenotypes"):
        _dp_count(signed.ws.root, "nb", "phenotypes")


TABLES_SEEN = """
import json
import research_kit as rk

seen = {"tables": sorted(rk.load())}
try:
    rk.load("encounters")
except Exception as exc:
    seen["encounters"] = str(exc)
json.dump(seen, open("seen.json", "w"))
"""


def test_a_run_sees_only_the_tables_its_permit_covers(signed: Project) -> None:
    permit_id = apply("narrow")  # patients and diagnoses
    ok("--as", MEMBER, "permit", "grant", str(permit_id), "--legal-basis", "DAC 7")
    signed.notebook("seen", "unused = 0", TABLES_SEEN)
    action = {"notebook": "notebooks/seen.ipynb", "outputs": {"highly_sensitive": {"seen": "seen.json"}}}
    pipeline = load_pipeline(signed.pipeline("narrow", {"a": action}, permitted=False))
    report = runs.run(signed.ws, actor="ana", pipeline=pipeline, extract="e1")
    assert report.outcome == "succeeded", report.actions
    (outcome,) = report.actions.values()
    assert outcome.folder is not None
    seen = json.loads((outcome.folder / "outputs" / "seen.json").read_text())
    assert seen["tables"] == ["diagnoses", "patients"]
    assert "does not hold that table (its study's data permit does not cover it)" in seen["encounters"]
    # The committee widens the permit: the next run sees every table (the action runs again: what it may read
    # changed, so its cached result is not reused).
    ok("--as", MEMBER, "permit", "amend", str(permit_id), "--tables", "all", "--note", "encounters needed")
    again = runs.run(signed.ws, actor="ana", pipeline=pipeline, extract="e1")
    (outcome,) = again.actions.values()
    assert outcome.folder is not None
    assert json.loads((outcome.folder / "outputs" / "seen.json").read_text())["tables"] == [
        "diagnoses", "encounters", "patients", "phenotypes",
    ]  # fmt: skip


OUTPUT = """
import pandas as pd
import research_kit as rk

rk.outputs.table(pd.DataFrame({"group": ["a", "b"], "n": [40, 55]}), "big", counts=["n"], population="everyone")
"""


def test_a_revoked_permits_outputs_are_neither_submitted_nor_released_an_ended_ones_are(signed: Project) -> None:
    from research_kit.review import decisions, release

    signed.notebook("out", "unused = 0", OUTPUT)
    action = {"notebook": "notebooks/out.ipynb", "outputs": {"moderately_sensitive": {"big": "big.csv"}}}
    pipeline = load_pipeline(signed.pipeline("outs", {"a": action}, permitted=False))
    permit_id = apply("outs")
    ok("--as", MEMBER, "permit", "grant", str(permit_id), "--legal-basis", "DAC 8")
    request = runs.run(signed.ws, actor="ana", pipeline=pipeline, extract="e1").request
    assert request is not None
    with signed.ws.catalog() as conn:  # its last day passed: its results are still due, and may leave
        conn.execute("UPDATE permits SET until = ? WHERE id = ?", (str(date.today() - timedelta(days=1)), permit_id))
    with audit.acting("ana"):
        decisions.submit(signed.ws, request)
    for member in (MEMBER, "carla"):
        with audit.acting(member):
            decisions.vote(signed.ws, request, "approve", comment="fine")
    with signed.ws.catalog() as conn:  # ... but the committee revokes it before the release
        conn.execute("UPDATE permits SET until = ? WHERE id = ?", (NEXT_YEAR, permit_id))
    ok("--as", MEMBER, "permit", "revoke", str(permit_id), "--note", "the holder broke its terms")
    with audit.acting(MEMBER), pytest.raises(PolicyRefusal, match=rf"permit {permit_id} \(study outs\) was revoked"):
        release.release(signed.ws, request)


def test_results_are_recorded_and_named_overdue_18_months_after_the_end(signed: Project) -> None:
    permit_id = apply("pub")
    ok("--as", MEMBER, "permit", "grant", str(permit_id), "--legal-basis", "DAC 9")
    long_ago = date.today() - timedelta(days=600)  # ended more than 18 months ago
    with signed.ws.catalog() as conn:
        conn.execute("UPDATE permits SET until = ? WHERE id = ?", (str(long_ago), permit_id))
    listing = ok("--as", MEMBER, "permit", "list")
    assert f"permit {permit_id} (study pub): results overdue since" in listing
    refused(("--as", "rob", "permit", "results", str(permit_id), "--status", "published", "--reference", "doi"),
            f"rob: only permit {permit_id}'s users and the committee record its results")  # fmt: skip
    refused(("--as", "ana", "permit", "results", str(permit_id), "--status", "published"),
            "--reference: a published result names where", 3)  # fmt: skip
    ok("--as", "ana", "permit", "results", str(permit_id), "--status", "published", "--reference",
       "doi:10.1186/s13023-026-0001")  # fmt: skip
    assert "results overdue" not in ok("--as", MEMBER, "permit", "list")
    shown = json.loads(ok("--as", MEMBER, "permit", "show", str(permit_id), "--json"))
    assert shown["publication"] == "published: doi:10.1186/s13023-026-0001"


@pytest.mark.parametrize("on_end", ["archive", pytest.param("delete", marks=pytest.mark.slow)])
def test_closing_an_ended_permit_takes_its_studys_work_out_of_reach(signed: Project, on_end: str) -> None:
    from research_kit.review import decisions

    text = signed.ws.policy_path.read_text(encoding="utf-8")
    signed.ws.policy_path.write_text(text.replace('on_end = "archive"', f'on_end = "{on_end}"'), encoding="utf-8")
    signed.notebook("out", "unused = 0", OUTPUT)
    action = {"notebook": "notebooks/out.ipynb", "outputs": {"moderately_sensitive": {"big": "big.csv"}}}
    pipeline = load_pipeline(signed.pipeline("done", {"a": action}, permitted=False))
    permit_id = apply("done")
    ok("--as", MEMBER, "permit", "grant", str(permit_id), "--legal-basis", "DAC 10")
    request = runs.run(signed.ws, actor="ana", pipeline=pipeline, extract="e1").request
    assert request is not None
    refused(("--as", "ana", "permit", "close"), "needs the steward role")
    assert "no ended permit to close" in ok("--as", STEWARD, "permit", "close")  # still in force
    with signed.ws.catalog() as conn:
        conn.execute("UPDATE permits SET until = ? WHERE id = ?", (str(date.today() - timedelta(days=1)), permit_id))
    work = signed.ws.root / "studies" / "done"
    assert any(work.rglob("big.csv"))
    said = ok("--as", STEWARD, "permit", "close")
    assert f"permit {permit_id} (study done): {'archived to' if on_end == 'archive' else 'deleted'}" in said
    assert not any(work.rglob("big.csv"))
    archived = signed.ws.root / "archive" / "permits" / f"done-permit-{permit_id}"
    assert any(archived.rglob("big.csv")) == (on_end == "archive")
    assert not list((signed.ws.root / "archive" / "permits").glob(".trash-*"))
    with (
        audit.acting("ana"),
        pytest.raises(PolicyRefusal, match=rf"permit {permit_id} \(study done\) ended on .* and was closed"),
    ):
        decisions.submit(signed.ws, request)
    closed = [e for e in audit.read_entries(signed.ws.audit_path) if e["action"] == "permit.close"]
    assert [(e["details"]["permit"], e["details"]["unreleased_requests"]) for e in closed] == [(permit_id, 1)]
    assert "no ended permit to close" in ok("--as", STEWARD, "permit", "close")  # once


def test_a_revoked_newer_permit_is_never_bypassed_through_an_older_ended_one(signed: Project) -> None:
    """The review's findings: an ended permit's grace never outlives a newer permit's revocation; a budget top-up
    never brings back a revoked permit; a permit's own user never revokes it."""
    first = apply("twice")
    ok("--as", MEMBER, "permit", "grant", str(first), "--legal-basis", "DAC 11")
    with signed.ws.catalog() as conn:
        conn.execute("UPDATE permits SET until = ? WHERE id = ?", (str(date.today() - timedelta(days=1)), first))
    second = apply("twice")
    ok("--as", MEMBER, "permit", "grant", str(second), "--legal-basis", "DAC 12", "--continues", str(first))
    ok("--as", MEMBER, "permit", "revoke", str(second), "--note", "misuse")
    with (
        signed.ws.catalog() as conn,
        pytest.raises(PolicyRefusal, match=rf"permit {second} \(study twice\) was revoked"),
    ):
        permits.check(conn, "twice", "ana", tier="twin", doing="submitting its outputs", after_end=True)
    refused(("--as", MEMBER, "budget", "grant", "twice", "--rho", "0.1", "--owner", "ana"),
            f"study twice: permit {second} was revoked; the committee grants a new one with 'research-kit permit "
            "grant', not with a budget grant")  # fmt: skip
    refused(("--as", MEMBER, "permit", "grant", str(apply("twice")), "--legal-basis", "x", "--continues",
             str(second)), f"--continues {second}: not an earlier granted (and not revoked) permit", 3)  # fmt: skip
    refused(("--as", MEMBER, "permit", "grant", "1", "--legal-basis", "x", "--continues", "9" * 30),
            "a permit is named by its number", 3)  # fmt: skip
    with audit.acting(STEWARD):
        from research_kit.core import users

        users.add(signed.ws, "carla", "researcher")
    sign_in(signed.ws, carla="committee")
    own = apply("self", "--users", "carla")
    ok("--as", MEMBER, "permit", "grant", str(own), "--legal-basis", "DAC 13")
    refused(("--as", "carla", "permit", "revoke", str(own), "--note", "mine"),
            "carla is a user of study self: a user never decides on their own permit")  # fmt: skip
    granted = next(e for e in audit.read_entries(signed.ws.audit_path) if e["action"] == "permit.grant")["details"]
    assert (granted["holder"], granted["category"], granted["data"]) == (
        "Luxembourg Institute of Health", "scientific-research", {"diagnoses": None, "patients": None},
    )  # fmt: skip


COLUMNS_SEEN = """
import json
import research_kit as rk

json.dump({t: sorted(rk.load(t).columns) for t in sorted(rk.load())}, open("seen.json", "w"))
"""


@pytest.mark.slow  # with the slow tests: make test stays under six minutes
def test_a_permit_over_some_columns_shows_only_them_and_refuses_a_query_reading_another(signed: Project) -> None:
    permit_id = apply("cols", "--columns", "patients.sex,patients.birth_year,diagnoses.orpha_code")
    ok("--as", MEMBER, "permit", "grant", str(permit_id), "--legal-basis", "DAC 9", "--rho", "0.5")
    shown = json.loads(ok("--as", "ana", "permit", "show", str(permit_id), "--json"))
    assert shown["data"] == {"diagnoses": ["orpha_code", "pseudonym"], "patients": ["birth_year", "pseudonym", "sex"]}

    import research_kit as rk

    def ask(table: str, **spec: object) -> object:
        return rk.dp.count(table, study="cols", tier="real", rho=0.01, workspace=signed.ws.root, **spec)  # type: ignore[arg-type]

    with audit.acting("ana"):
        ask("patients", by="sex")
        ask("diagnoses", by="orpha_code", where="sex = female")
        ask("patients", by="birth_decade")  # made from the birth year
    for spec, column in [
        ({"by": "canton"}, "patients.canton"),  # a column of a covered table, not covered
        ({"where": "vital_status = dead"}, "patients.vital_status"),  # a filter reads a column too
        ({"by": "disease_group"}, "diagnoses.excluded"),  # derived: the first diagnosis is chosen on these
        ({"by": "age_band"}, "patients.age_at_last_record_years"),  # the age of a source with ages only
    ]:
        with audit.acting("ana"), pytest.raises(PolicyRefusal, match=rf"permit {permit_id} \(study cols\) does not "
                                                rf"cover column {column}"):  # fmt: skip
            ask("patients", **spec)
    with audit.acting("ana"), pytest.raises(PolicyRefusal, match=r"does not cover column diagnoses.icd10_code"):
        ask("diagnoses", by="icd10_chapter")  # the chapter is the ICD-10 code's

    signed.notebook("cseen", "unused = 0", COLUMNS_SEEN)
    action = {"notebook": "notebooks/cseen.ipynb", "outputs": {"highly_sensitive": {"seen": "seen.json"}}}
    pipeline = load_pipeline(signed.pipeline("cols", {"a": action}, permitted=False))
    report = runs.run(signed.ws, actor="ana", pipeline=pipeline, extract="e1")
    (outcome,) = report.actions.values()
    assert report.outcome == "succeeded", report.actions
    assert outcome.folder is not None
    seen = json.loads((outcome.folder / "outputs" / "seen.json").read_text())
    assert seen == {"diagnoses": ["orpha_code", "pseudonym"], "patients": ["birth_year", "pseudonym", "sex"]}


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (("--columns", "patients.secret"), "--columns 'patients.secret': the extracts' patients table has no column"),
        (("--columns", "encounters.centre_code"), "--columns 'encounters.centre_code': table encounters is not among"),
        (("--columns", "sex"), "--columns 'sex': write table.column"),
        (("--versions", "e9"), "--versions 'e9': no such extract"),
    ],
)
def test_a_mistyped_column_or_version_is_one_line_and_applies_for_nothing(
    signed: Project, extra: tuple[str, ...], says: str
) -> None:
    refused(("--as", "ana", "permit", "apply", "typo", "--purpose", "p", "--tier", "real", "--tables",
             "patients,diagnoses", "--until", NEXT_YEAR, "--holder", "h", *extra), says, 3)  # fmt: skip
    with signed.ws.catalog() as conn:
        assert conn.execute("SELECT COUNT(*) FROM permits").fetchone()[0] == 0


@pytest.mark.slow  # with the slow tests: make test stays under six minutes
def test_a_permit_over_named_extract_versions_refuses_another(signed: Project) -> None:
    permit_id = apply("pinned", "--versions", "e1")
    ok("--as", MEMBER, "permit", "grant", str(permit_id), "--legal-basis", "DAC 10", "--rho", "0.5")
    assert runs.run(signed.ws, actor="ana", pipeline=_pipeline(signed, "pinned"), extract="e1").outcome == "succeeded"
    rule = rf"permit {permit_id} \(study pinned\) covers extract versions e1, not e2"
    with pytest.raises(PolicyRefusal, match=rule):
        runs.run(signed.ws, actor="ana", pipeline=_pipeline(signed, "pinned"), extract="e2")
    import research_kit as rk

    with audit.acting("ana"), pytest.raises(PolicyRefusal, match=rule):
        rk.dp.count("patients", study="pinned", tier="real", rho=0.01, extract="e2", workspace=signed.ws.root)
    with audit.acting("ana"):
        rk.dp.count("patients", study="pinned", tier="real", rho=0.01, extract="e1", workspace=signed.ws.root)
    report = runs.rerun(signed.ws, actor=STEWARD, extract="e2")  # a new extract: this study is not rerun on it
    assert not report.runs
    assert "covers extract versions e1, not e2" in report.problems["pinned"]
    ok("--as", MEMBER, "permit", "amend", str(permit_id), "--versions", "new", "--note", "follow-up extended")
    assert runs.run(signed.ws, actor="ana", pipeline=_pipeline(signed, "pinned"), extract="e2").outcome == "succeeded"
