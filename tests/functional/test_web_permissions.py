"""Every route of the review web app, for every role, by direct URL: who gets what.

A route that is not in :data:`CASES` fails :func:`test_every_route_is_in_the_table`: a new page cannot
ship without saying who may use it.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest
from tests.functional.webapp import S1, S2, browser

from research_kit.actions import permits
from research_kit.core.workspace import Workspace
from research_kit.model.national_id import make
from research_kit.review import requests as review
from research_kit.web.app import create_app

ANYONE = ("rita", "rob", "carla", "sam")  # researcher (author of S1), another researcher, committee, steward
GET, POST = "GET", "POST"
VOTE = {"decision": "approve", "output": ["make/big"], "comment": "fine"}
APPLY = {"study": "s9", "purpose": "a study", "category": "statistics", "tier": "dp", "tables": ["patients"],
         "until": str(date.today() + timedelta(days=30)), "holder": "an institute"}  # fmt: skip
LETTER = {"national_id": make(date(1990, 6, 15), 999), "lang": "en"}  # a valid ID the registry does not hold

# (method, path template, form, {user: expected status}); None as a user means signed out.
CASES: list[tuple[str, str, dict[str, object], dict[str | None, int]]] = [
    (GET, "/", {}, {None: 303, "rita": 303, "carla": 303, "sam": 303}),
    (GET, "/requests", {}, {None: 303, "rita": 200, "rob": 200, "carla": 200, "sam": 200}),
    (GET, "/requests/{s1}", {}, {None: 303, "rita": 200, "rob": 404, "carla": 200, "sam": 200}),
    (GET, "/requests/{s2}", {}, {"rita": 404, "rob": 200, "carla": 200}),
    (GET, "/requests/{s1}/outputs/{o1}/file", {}, {None: 303, "rita": 200, "rob": 404, "carla": 200, "sam": 200}),
    (GET, "/requests/{s1}/bundle", {}, {None: 303, "rita": 404, "rob": 404, "carla": 404}),  # not released yet
    (POST, "/requests/{s1}/vote", VOTE, {None: 401, "rita": 403, "rob": 403, "sam": 403, "carla": 303}),
    (
        POST,
        "/requests/{s1}/comment",
        {"comment": "a note"},
        {None: 401, "rita": 303, "rob": 404, "sam": 403, "carla": 303},
    ),
    (POST, "/requests/{s2}/submit", {}, {None: 401, "rita": 404, "rob": 303, "carla": 403, "sam": 403}),
    (POST, "/requests/{s1}/release", {}, {None: 401, "rita": 403, "rob": 403, "sam": 403, "carla": 403}),
    (GET, "/budget", {}, {None: 303, "rita": 200, "rob": 200, "carla": 200, "sam": 200}),
    (GET, "/permits", {}, {None: 303, "rita": 200, "rob": 200, "carla": 200, "sam": 200}),
    # Every signed-in role reaches a permit's form; its action refuses those who may not (a role, a permit's
    # own user, a permit in the wrong state): see test_web_permits.py.
    (POST, "/permits/apply", APPLY, {None: 401, "carla": 403, "sam": 403, "rita": 303, "rob": 303}),
    (
        POST,
        "/permits/{applied}/grant",
        {"legal_basis": "DAC 1"},
        {None: 401, "rita": 403, "rob": 403, "sam": 403, "carla": 303},
    ),
    (POST, "/permits/{applied}/refuse", {"note": "no"}, {None: 401, "rita": 403, "rob": 403, "sam": 403, "carla": 303}),
    (POST, "/permits/{p2}/revoke", {"note": "misuse"}, {None: 401, "rita": 403, "rob": 403, "sam": 403, "carla": 303}),
    (GET, "/audit", {}, {None: 303, "rita": 403, "rob": 403, "carla": 200, "sam": 200}),
    (GET, "/transparency", {}, {None: 303, "rita": 200, "rob": 200, "carla": 200, "sam": 200}),
    # A person's letter: a steward's (the action refuses every other role); see test_web_i18n.py.
    (POST, "/transparency/person", LETTER, {None: 401, "rita": 403, "rob": 403, "carla": 403, "sam": 200}),
    (GET, "/language", {}, {None: 303, "rita": 303}),  # the language switch, signed in or out
    (POST, "/audit/verify", {}, {None: 401, "rita": 403, "rob": 403, "carla": 200, "sam": 200}),
    (POST, "/signout", {}, {None: 401, "rita": 303, "carla": 303}),
    (GET, "/signin", {}, {None: 200}),
    (POST, "/signin", {}, {None: 403}),  # no sign-in token: refused
    (GET, "/static/style.css", {}, {None: 200}),
    # The JSON API takes a command-line token (Authorization: Bearer), never the web app's cookie session; its
    # own cases, with tokens, are in test_service_mode.py.
    (POST, "/api/v1/login", {}, {None: 400, "rita": 400}),  # not a JSON body with a name and a password
    (POST, "/api/v1/logout", {}, {None: 401, "rita": 401}),
    (GET, "/api/v1/whoami", {}, {None: 401, "rita": 401, "carla": 401}),
    (GET, "/api/v1/requests", {}, {None: 401, "rita": 401}),
    (GET, "/api/v1/requests/{s1}", {}, {None: 401, "rita": 401}),
    (GET, "/api/v1/budgets", {}, {None: 401, "rita": 401}),
    (POST, "/api/v1/command", {}, {None: 401, "rita": 401, "sam": 401}),
    (POST, "/api/v1/run", {}, {None: 401, "rita": 401}),
]


def _ids(case: tuple[str, str, dict[str, object], dict[str | None, int]]) -> str:
    return f"{case[0]} {case[1]}"


def _path(ws: Workspace, template: str) -> str:
    figure = review.output(review.get(ws, S1), "figure").id
    applied = 0
    if "{applied}" in template:  # rita's application, for the committee to decide on
        applied = permits.apply(
            ws, actor="rita", study="s9", holder="an institute", purpose="a study", category="statistics",
            tier="dp", tables="patients", until=str(APPLY["until"]),
        ).id  # fmt: skip
    return template.format(s1=S1, s2=S2, o1=figure, p2=2, applied=applied)


@pytest.mark.parametrize("case", CASES, ids=_ids)
def test_route_by_role(case: tuple[str, str, dict[str, object], dict[str | None, int]], review_ws: Workspace) -> None:
    method, template, data, expected = case
    path = _path(review_ws, template)
    for who, status in expected.items():
        b = browser(review_ws, who)
        if method == GET:
            got = b.get(path)
        elif who is None:
            got = b.client.post(path, data=data)  # type: ignore[arg-type]
        else:
            got = b.post(path, data)  # type: ignore[arg-type]
        assert got.status_code == status, f"{who or 'signed out'}: {method} {path} -> {got.status_code}"
        if who is None and status == 303 and path != "/language":  # the switch goes back to the page asked
            assert got.headers["location"].startswith("/signin?next=")


def test_every_route_is_in_the_table(review_ws: Workspace) -> None:
    tested = {
        (
            m,
            t.replace("{s1}", "{request_id:int}")
            .replace("{s2}", "{request_id:int}")
            .replace("{o1}", "{output_id:int}")
            .replace("{p2}", "{permit_id:int}")
            .replace("{applied}", "{permit_id:int}"),
        )
        for m, t, _, _ in CASES
    }
    app = create_app(review_ws)
    for route in app.routes:
        path = getattr(route, "path", "")
        if path == "/static":
            continue
        for method in sorted(getattr(route, "methods", None) or {GET}):
            if method == "HEAD":
                continue
            assert (method, path) in tested, f"{method} {path} has no permission case"


def test_an_author_cannot_vote_by_a_crafted_post(review_ws: Workspace) -> None:
    cora = browser(review_ws, "cora")  # a committee member whose own study is request 3
    page = cora.get("/requests/3")
    assert "Record my vote" not in page.text
    assert "an author never votes on their own outputs" in page.text
    got = cora.post("/requests/3/vote", {"decision": "approve", "output": ["make/other"], "comment": "mine"})
    assert got.status_code == 403
    assert "cora is the author of request 3: an author never reviews their own outputs" in got.text
    with review_ws.catalog() as conn:
        assert conn.execute("SELECT COUNT(*) FROM votes").fetchone()[0] == 0


def test_a_form_without_the_session_token_changes_nothing(review_ws: Workspace) -> None:
    carla = browser(review_ws, "carla")
    for token in ("", "forged"):
        got = carla.post(f"/requests/{S1}/vote", VOTE, csrf=token)
        assert got.status_code == 403
        assert "did not come from this app" in got.text
    other = browser(review_ws, "chen").csrf()  # another session's token is no better
    assert carla.post(f"/requests/{S1}/vote", VOTE, csrf=other).status_code == 403
    with review_ws.catalog() as conn:
        assert conn.execute("SELECT COUNT(*) FROM votes").fetchone()[0] == 0


def test_no_file_outside_the_request_is_served(review_ws: Workspace) -> None:
    rita = browser(review_ws, "rita")
    theirs = review.get(review_ws, S2).outputs[0].id
    assert rita.get(f"/requests/{S1}/outputs/{theirs}/file").status_code == 404  # rob's output under rita's request
    for crafted in ("..%2F..%2Fcatalog.sqlite", "%2e%2e/%2e%2e/catalog.sqlite", "-1"):
        assert rita.get(f"/requests/{S1}/outputs/{crafted}/file").status_code == 404
    assert rita.get(f"/requests/{S1}/../../catalog.sqlite").status_code == 404
    # An output whose catalog row points outside the workspace is refused too.
    mine = review.output(review.get(review_ws, S1), "figure").id
    outside = Path(review_ws.root).parent / "outside.png"
    outside.write_text("secret\n")
    with review_ws.catalog() as conn:
        conn.execute("UPDATE request_outputs SET path = ? WHERE id = ?", (str(outside), mine))
    got = rita.get(f"/requests/{S1}/outputs/{mine}/file")
    assert got.status_code == 404
    assert "secret" not in got.text
