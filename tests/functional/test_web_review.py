"""The review web app as its users drive it over HTTP: what each sees, what each may do, how sessions end."""

from __future__ import annotations

import hashlib
import io
import json
import re
import urllib.request
import zipfile
from datetime import UTC, datetime, timedelta
from math import inf

import pytest
from tests.functional.conftest import Run
from tests.functional.webapp import (
    PASSWORD,
    PRIVATE_NOTE,
    PUBLIC_NOTE,
    S1,
    SCRIPT,
    Browser,
    browser,
    cli_sign_in,
    field,
    running_server,
)

from research_kit.core import audit, sessions
from research_kit.core.workspace import Workspace
from research_kit.review import requests as review


def test_a_flagged_cell_is_marked_with_its_reason(review_ws: Workspace) -> None:
    page = browser(review_ws, "carla").get(f"/requests/{S1}").text
    small = review.output(review.get(review_ws, S1), "small")
    cell = re.search(
        rf'<td id="o{small.id}-r1-c1" class="flagged sev-fail num"[^>]*>3<span class="why"[^>]*>([^<]*)', page
    )
    assert cell is not None, "the count of 3 in row 2 of 'small' is not marked as failing"
    assert "threshold" in cell.group(1)
    assert "fewer than the minimum 10" in cell.group(1)
    assert f'aria-describedby="o{small.id}-r1-c1-why"' in page  # read out on keyboard focus
    assert page.count('class="flagged') == 1  # only that cell
    flagged_only = browser(review_ws, "carla").get(f"/requests/{S1}?flagged=1").text
    assert "3 rows, 1 with flagged cells" in flagged_only
    assert f'id="o{small.id}-r0-c1"' not in flagged_only  # the unflagged row is hidden


def test_output_text_is_shown_as_text_never_as_markup(review_ws: Workspace) -> None:
    page = browser(review_ws, "carla").get(f"/requests/{S1}").text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in page
    assert SCRIPT not in page
    assert "<script" not in page.lower()
    labels = review.output(review.get(review_ws, S1), "labels")
    carla = browser(review_ws, "carla")
    assert carla.get(f"/requests/{S1}/outputs/{labels.id}/file").status_code == 404  # shown on the page, never a file


def test_unreleased_outputs_are_viewed_in_the_page_never_downloaded(review_ws: Workspace) -> None:
    request = review.get(review_ws, S1)
    carla, rita = browser(review_ws, "carla"), browser(review_ws, "rita")
    for output in request.outputs:
        for who in (carla, rita):
            got = who.get(f"/requests/{S1}/outputs/{output.id}/file")
            if output.name == "figure":  # the page's <img>: inline, under a sandboxing CSP
                assert got.status_code == 200
                assert got.headers["content-disposition"].startswith("inline")
                assert "sandbox" in got.headers["content-security-policy"]
            else:
                assert got.status_code == 404, output.key
    page = carla.get(f"/requests/{S1}").text
    ids = review.output(request, "ids")  # gated: its reasons show, never its content
    assert ids.status == "gated"
    assert "Gated: " in page
    assert "/file" not in page.replace(f"/requests/{S1}/outputs/{review.output(request, 'figure').id}/file", "")
    entries = [e for e in audit.read_entries(review_ws.audit_path) if e.get("action") == "request.view"]
    assert {e["actor"] for e in entries} >= {"carla", "rita"}
    assert any(e["details"].get("output") == "make/figure" for e in entries)


def test_every_page_forbids_scripts_and_framing(review_ws: Workspace) -> None:
    for path in ("/signin", "/requests", f"/requests/{S1}", "/budget", "/audit"):
        got = browser(review_ws, "carla").get(path)
        assert got.status_code == 200
        assert "script-src" not in got.headers["content-security-policy"]  # default-src 'none': no script
        assert "default-src 'none'" in got.headers["content-security-policy"]
        assert got.headers["x-frame-options"] == "DENY"
        assert got.headers["cache-control"] == "no-store"
    cookie = browser(review_ws).client.get("/signin").headers["set-cookie"].lower()
    assert "httponly" in cookie
    assert "samesite=strict" in cookie


def test_a_researcher_never_reads_committee_private_comments(review_ws: Workspace) -> None:
    committee = browser(review_ws, "carla").get(f"/requests/{S1}").text
    assert PRIVATE_NOTE in committee
    assert PUBLIC_NOTE in committee
    rita = browser(review_ws, "rita")
    assert PUBLIC_NOTE in rita.get(f"/requests/{S1}").text
    assert PRIVATE_NOTE not in rita.get(f"/requests/{S1}").text
    refused = rita.post(f"/requests/{S1}/comment", {"comment": "psst", "private": "on"})
    assert refused.status_code == 403
    assert "only committee members who do not review their own work write private comments" in refused.text


def test_the_request_page_shows_gates_provenance_budget_and_model(review_ws: Workspace) -> None:
    page = browser(review_ws, "chen").get(f"/requests/{S1}").text
    assert "Gated: column &#39;patient_id&#39; is named like an identifier" in page
    assert "A gated output cannot be reviewed or released." in page
    for fact in (
        "<dt>Pipeline</dt>",
        "<dt>Notebook</dt><dd>notebooks/s1.ipynb</dd>",
        "<dt>Extract</dt><dd>e1</dd>",
        '<code>{"shift": 0}</code>',
        "<dt>Commit</dt>",
    ):
        assert fact in page
    assert "No earlier version of this output was released or queued" in page
    assert "of rho 0.5 granted" in page
    assert "<dt>Estimator</dt><dd>statsmodels OLS</dd>" in page
    assert "<dt>Residual df</dt><dd>58" in page
    assert '<img src="/requests/1/outputs/' in page


def test_two_committee_members_approve_then_release_and_the_author_downloads(review_ws: Workspace) -> None:
    carla = browser(review_ws, "carla")
    keys = [o.key for o in review.get(review_ws, S1).reviewable]
    missing = carla.post(f"/requests/{S1}/vote", {"decision": "approve", "output": keys})
    assert missing.status_code == 400
    assert "make/figure fails the SDC checks: approving it needs a --comment" in missing.text
    done = carla.post(f"/requests/{S1}/vote", {"decision": "approve", "output": keys, "comment": "3 is published"})
    assert done.headers["location"] == f"/requests/{S1}?done=vote"
    assert "Your vote is recorded." in carla.get(done.headers["location"]).text
    chen = browser(review_ws, "chen")
    chen.post(f"/requests/{S1}/vote", {"decision": "approve", "output": keys, "comment": "agreed"})
    assert review.get(review_ws, S1).state == "approved"
    assert browser(review_ws, "rita").post(f"/requests/{S1}/release").status_code == 403
    assert chen.post(f"/requests/{S1}/release").headers["location"] == f"/requests/{S1}?done=release"
    assert browser(review_ws, "rob").get(f"/requests/{S1}/bundle").status_code == 404
    bundle = browser(review_ws, "rita").get(f"/requests/{S1}/bundle")
    assert bundle.status_code == 200
    assert bundle.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(bundle.content)) as z:
        names = set(z.namelist())
        assert {f"outputs/make/{n}" for n in ("big.csv", "small.csv", "labels.csv", "figure.png", "ols.csv")} < names
        assert "outputs/make/ids.csv" not in names
        for line in z.read("checksums.sha256").decode().splitlines():
            digest, name = line.split("  ")
            assert hashlib.sha256(z.read(name)).hexdigest() == digest
    actions = [json.loads(line) for line in review_ws.audit_path.read_text().splitlines()]
    trail = [(e["actor"], e["action"]) for e in actions]
    assert ("carla", "review.approve") in trail
    assert ("chen", "release.create") in trail
    assert ("carla", "web.signin") in trail


def test_return_and_reject_need_a_comment_that_the_researcher_reads(review_ws: Workspace) -> None:
    carla = browser(review_ws, "carla")
    assert carla.post(f"/requests/{S1}/vote", {"decision": "return"}).status_code == 400
    carla.post(f"/requests/{S1}/vote", {"decision": "return", "comment": "suppress row 2 first"})
    assert review.get(review_ws, S1).state == "returned"
    page = browser(review_ws, "rita").get(f"/requests/{S1}").text
    assert "suppress row 2 first" in page
    assert "Submit for review" in page


def test_signing_out_ends_the_session(review_ws: Workspace) -> None:
    carla = browser(review_ws, "carla")
    cookie = carla.client.cookies.get("rk_session")
    assert carla.post("/signout").headers["location"] == "/signin?signed_out=1"
    replay = Browser(review_ws)
    replay.client.cookies.set("rk_session", cookie)  # the old cookie, kept by an attacker
    assert replay.get("/requests").status_code == 303


def test_an_idle_or_old_session_expires(review_ws: Workspace) -> None:
    carla = browser(review_ws, "carla")
    assert carla.get("/requests").status_code == 200
    idle = (datetime.now(UTC) - timedelta(minutes=31)).isoformat()
    with review_ws.catalog() as conn:
        conn.execute("UPDATE sessions SET seen_at = ?", (idle,))
    assert carla.get("/requests").headers["location"] == "/signin?next=/requests"
    chen = browser(review_ws, "chen")
    old = (datetime.now(UTC) - timedelta(hours=9)).isoformat()
    with review_ws.catalog() as conn:
        conn.execute("UPDATE sessions SET created_at = ?", (old,))
    assert chen.get("/requests").status_code == 303


def test_a_look_at_unreleased_outputs_is_audited_once_not_per_reload(review_ws: Workspace) -> None:
    def views() -> list[dict[str, object]]:
        entries = audit.read_entries(review_ws.audit_path)
        return [e for e in entries if e.get("action") == "request.view" and e.get("actor") == "chen"]

    chen = browser(review_ws, "chen")
    for _ in range(5):
        assert chen.get(f"/requests/{S1}").status_code == 200
    assert len(views()) == 1  # five reloads, one look
    with review_ws.catalog() as conn:  # an hour later
        conn.execute(
            "UPDATE request_views SET at = ? WHERE user = 'chen'",
            ((datetime.now(UTC) - timedelta(hours=2)).isoformat(),),
        )
    chen.get(f"/requests/{S1}")
    assert len(views()) == 2


def test_failed_sign_ins_are_slowed_never_locked_out_and_audited_per_burst(
    review_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The clock stands still, so the first wait (a second) has not passed by the time it is read, however busy the
    # machine is; the test moves the failures back instead, as if the wait had passed.
    still = datetime.now(UTC)
    monkeypatch.setattr(sessions, "_now", lambda: still)
    b = Browser(review_ws)

    def attempt(name: str, password: str) -> tuple[int, str]:
        token = field(b.client.get("/signin").text, "signin_token")
        got = b.client.post("/signin", data={"name": name, "password": password, "signin_token": token})
        return got.status_code, got.text

    def forget_the_wait() -> None:  # as if the wait had passed: every failure moved a minute back
        with review_ws.catalog() as conn:
            for rowid, at in conn.execute("SELECT id, at FROM signin_failures").fetchall():
                earlier = (datetime.fromisoformat(at) - timedelta(seconds=61)).isoformat()
                conn.execute("UPDATE signin_failures SET at = ? WHERE id = ?", (earlier, rowid))

    assert sessions.signin_wait(review_ws, "carla", "testclient") == 0.0
    for _ in range(11):
        status, page = attempt("carla", "not the password")
        assert status == 401
        assert "Wrong user name, password or code." in page
        forget_the_wait()
    attempt("carla", "not the password either")  # the 12th: now every attempt must wait a while
    assert sessions.signin_wait(review_ws, "carla", "testclient") > 0
    assert sessions.signin_wait(review_ws, "anyone", "testclient") > 0  # the address waits for every name
    assert sessions.signin_wait(review_ws, "anyone", "10.0.0.9") == 0.0  # ... and only that address
    status, page = attempt("carla", PASSWORD)  # too soon: refused unread, and told to wait
    assert (status, "Too many failed sign-ins: try again in" in page) == (401, True)
    assert "Wrong user name" not in page
    forget_the_wait()
    assert attempt("carla", PASSWORD)[0] == 303  # slowed, never locked out
    status, _ = attempt("nobody" + "x" * 500, "a password typed into the name field")
    assert status == 401
    entries = [json.loads(line) for line in review_ws.audit_path.read_text().splitlines()]
    failed = [e["details"] for e in entries if e["action"] == "web.signin_failed"]
    assert [d["failures"] for d in failed if d["user"] == "carla"] == [1, 10]  # one line per burst, with the count
    assert all(d["user"] in ("carla", None) for d in failed)  # a name that is no user is never written down
    with review_ws.catalog() as conn:
        kept = {r[0] for r in conn.execute("SELECT user FROM signin_failures")}
    assert all(k.startswith("unknown:") and len(k) == 24 for k in kept if k != "carla")  # only its hash, bounded
    assert not any("lock" in e["action"] for e in entries)


def test_a_disabled_user_is_signed_out_at_once(review_ws: Workspace, cli: Run) -> None:
    chen = browser(review_ws, "chen")
    assert chen.get("/requests").status_code == 200
    cli_sign_in(review_ws, "sam")
    cli("--as", "sam", "users", "disable", "chen")
    assert chen.get("/requests").status_code == 303
    token = field(Browser(review_ws).client.get("/signin").text, "signin_token")
    refused = Browser(review_ws)
    refused.client.cookies.set("rk_signin", token)
    got = refused.client.post("/signin", data={"name": "chen", "password": PASSWORD, "signin_token": token})
    assert got.status_code == 401


def test_sign_in_goes_back_only_to_a_page_of_this_app(review_ws: Workspace) -> None:
    for target, landing in (
        ("/budget", "/budget"),
        ("//evil.example/x", "/requests"),
        ("https://evil.example", "/requests"),
        ("/\\evil.example", "/requests"),
    ):
        b = Browser(review_ws)
        token = field(b.client.get("/signin").text, "signin_token")
        got = b.client.post(
            "/signin", data={"name": "carla", "password": PASSWORD, "signin_token": token, "next": target}
        )
        assert got.headers["location"] == landing


def test_the_audit_page_verifies_the_chain_and_names_a_tampered_entry(review_ws: Workspace) -> None:
    sam = browser(review_ws, "sam")
    page = sam.get("/audit").text
    assert "web.signin" in page
    assert "The chain is intact" in sam.post("/audit/verify").text
    lines = review_ws.audit_path.read_text().splitlines()
    entry = json.loads(lines[2])
    entry["actor"] = "mallory"
    lines[2] = json.dumps(entry)
    review_ws.audit_path.write_text("\n".join(lines) + "\n")
    broken = sam.post("/audit/verify")
    assert broken.status_code == 409
    assert "The chain is broken: entry 3 (line 3): content does not match its hash (edited)" in broken.text


def test_a_researcher_sees_only_their_studies_budgets(review_ws: Workspace) -> None:
    from research_kit.core import audit
    from research_kit.dp import ledger

    with audit.acting("chen"):
        ledger.grant(review_ws, "s2", 0.2, note="rob's study", owners=["rob"])
    rita = browser(review_ws, "rita").get("/budget").text
    assert "granted at the March meeting" in rita
    assert "rob&#39;s study" not in rita
    committee = browser(review_ws, "carla").get("/budget").text
    assert "granted at the March meeting" in committee
    assert "rob&#39;s study" in committee


def test_the_permits_page_shows_each_permit_with_its_use_and_a_request_names_its_permit(
    review_ws: Workspace,
) -> None:
    from datetime import date, timedelta

    from research_kit.actions import permits

    with audit.acting("carla"):  # an opt-out exception, and a permit ending within the notice period
        soon = str(date.today() + timedelta(days=20))
        permits.amend(review_ws, actor="carla", permit_id=2, note="national law on rare diseases",
                      optout_exception="Rare Disease Act art. 4", until=soon)  # fmt: skip
    committee = browser(review_ws, "carla").get("/permits").text
    for study in ("s1", "s2", "s3"):
        assert f"study {study}" in committee
    assert "Ending within 60 days:" in committee
    assert "permit 2 (study s2) on" in committee
    assert "Exception to the opt-out register" in committee
    assert "Rare Disease Act art. 4" in committee
    assert "granted at the March meeting" not in committee  # a budget grant's note belongs to the budget page
    rita = browser(review_ws, "rita").get("/permits").text
    assert "study s1" in rita
    assert "study s2" not in rita  # only the permits that name her
    assert "Rare Disease Act" not in rita
    page = browser(review_ws, "rita").get(f"/requests/{S1}").text
    assert 'href="/permits#permit-1">permit 1</a>' in page
    assert "real tier, every table" in page
    rob = browser(review_ws, "rob").get("/requests/2").text  # s2's request
    assert "exception to the opt-out register: Rare Disease Act art. 4" in rob


def test_passwords_are_set_by_a_steward_and_stored_hashed(review_ws: Workspace, cli: Run) -> None:
    cli_sign_in(review_ws, "sam", "rob")
    done = cli("--as", "sam", "users", "password", "rita", "--password-stdin", input_text="a new long password\n")
    assert done.returncode == 0, done.stderr
    with review_ws.catalog() as conn:
        stored = conn.execute("SELECT password_hash FROM users WHERE name = 'rita'").fetchone()[0]
    assert stored.startswith("$argon2id$")
    assert "a new long password" not in stored
    Browser(review_ws).sign_in("rita", "a new long password")
    short = cli("--as", "sam", "users", "password", "rita", "--password-stdin", check=False, input_text="short\n")
    assert short.returncode != 0
    assert short.stderr.strip() == "research-kit: bad input: the password is 5 characters long; it needs at least 12"
    by_researcher = cli(
        "--as",
        "rob",
        "users",
        "password",
        "rita",
        "--password-stdin",
        check=False,
        input_text="another long password\n",
    )
    assert by_researcher.returncode != 0
    assert "needs the steward role" in by_researcher.stderr
    listed = cli("--as", "sam", "users", "list").stdout
    assert "set" in listed


def test_serve_refuses_to_start_when_nobody_can_sign_in(cli: Run, home: object) -> None:
    cli("init")
    done = cli("serve", "--port", "1", check=False)
    assert done.returncode != 0
    assert "nobody can sign in yet" in done.stderr
    assert "Traceback" not in done.stderr


def test_serve_answers_on_loopback(review_ws: Workspace) -> None:
    with running_server(review_ws) as base, urllib.request.urlopen(f"{base}/signin", timeout=10) as got:
        assert got.status == 200
        assert "Sign in" in got.read().decode()


def test_a_suppressed_table_shows_each_cells_interval_against_a_solver(review_ws: Workspace) -> None:
    from research_kit.actions import review as review_actions

    review_actions.mitigate(review_ws, actor="rita", request=S1, output="small", method="suppress")
    page = browser(review_ws, "carla").get(f"/requests/{S1}").text
    assert "Suppressed cells against a solver" in page
    rows = re.findall(r'<tr class="sev-(pass|fail)"><td>(\d+)</td><td>n</td><td>(\[[^\]]*\])</td>', page)
    # [40, 3, 25]: 3 and its partner 25 are hidden (were the total 68 published elsewhere, each would still lie
    # anywhere in [0, 28]); this table prints no total, so nothing published bounds them from above
    assert rows == [("pass", "2", "[0, no upper bound]"), ("pass", "3", "[0, no upper bound]")]
    listed = review.output(review.get(review_ws, S1), "small").checks.protection
    assert [(i.row, i.lower, i.upper, i.protected) for i in listed] == [(1, 0, inf, True), (2, 0, inf, True)]
