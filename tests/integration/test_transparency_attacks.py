"""Attacks on what the transparency layer publishes and writes: the public register, a person's letter, the
HealthDCAT-AP catalogue and the languages a registry supplies.

Each test is a way someone could learn about a person from what research-kit publishes (two publications set side
by side, a count derived from others), a text that could break out of its page or its file, or a file the
commands could damage; a failing one is a defect. The scenario is tests/integration/test_transparency.py's small
registry (80 patients, e1; P1 opted out today, then e2; twelve opt-outs recorded in 2025-Q2).
"""

from __future__ import annotations

import hashlib
import json
import re
import stat
import tomllib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from rdflib import Graph
from starlette.testclient import TestClient
from tests.conftest import MEMBER, STEWARD, people
from tests.integration.test_optouts import run
from tests.integration.test_transparency import Registry
from tests.integration.test_transparency import registry as registry  # the fixture, and the template it copies
from tests.integration.test_transparency import template as template
from tests.unit.test_extra_languages import _lb_catalog, _supply

from research_kit.actions import catalogue as catalogue_actions
from research_kit.actions import optouts
from research_kit.actions import transparency as actions
from research_kit.core.config import POLICY_FILE, policy_from_dict, render_policy
from research_kit.core.errors import BadInput, UserError
from research_kit.core.extracts import get_extract
from research_kit.core.workspace import Workspace
from research_kit.ingest.pipeline import ingest
from research_kit.model.tables import TABLE_NAMES
from research_kit.pseudonymise.keys import load_key
from research_kit.pseudonymise.optouts import Entry, person_hash
from research_kit.pseudonymise.pseudonyms import pseudonym
from research_kit.transparency import catalogue, catalogue_facts, person, register
from research_kit.transparency.catalogue_publisher import publisher
from research_kit.transparency.catalogue_vocabulary import DQV
from research_kit.web.app import create_app

# With the slow tests (CI runs them too), so that make test stays under six minutes on two cores.
pytestmark = pytest.mark.slow

CATALOGUE_SETTINGS = {
    "catalogue_publisher": "Registre national des maladies rares",
    "catalogue_contact": "registry@example.lu",
    "catalogue_landing_page": "https://registry.example.lu/rare-diseases",
    "catalogue_hdab": "Health data access body",
    "catalogue_hdab_contact": "hdab@example.lu",
}
INJECTED = '<img src=x onerror="alert(1)"></script><script>alert(2)</script>'


def _opt_out_figures(ws: Workspace) -> dict[str, Any]:
    """The opt-out figures a publication made now would show (register.json's ``optouts``)."""
    return register.gather(ws)["optouts"]


def _recorded_now(ws: Workspace, count: int, *, at: str | None = None) -> None:
    """``count`` opt-outs recorded at ``at`` (default: now), as the register's dates and counts see them."""
    when = at or datetime.now(UTC).isoformat(timespec="seconds")
    with ws.catalog() as conn:
        for number in range(count):
            conn.execute(
                "INSERT INTO optouts (person, effective, recorded_by, recorded_at) VALUES (?, ?, ?, ?)",
                (hashlib.sha256(f"{when}/{number}".encode()).hexdigest(), when[:10], STEWARD, when),
            )


def _written_or_refused(ws: Workspace, out: Path) -> str | None:
    """``catalogue OUT`` as the steward: None when written, else its refusal (a :class:`UserError`'s line)."""
    try:
        catalogue_actions.write(ws, actor=STEWARD, out=out)
    except UserError as refused:
        return str(refused)
    return None


def _set_policy(ws: Workspace, **keys: object) -> None:
    path = ws.root / POLICY_FILE
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    data.setdefault("transparency", {}).update(keys)
    path.write_text(render_policy(policy_from_dict(data)), encoding="utf-8")


# -- the public register's opt-out counts ---------------------------------------------------------------------------


@pytest.mark.parametrize("crossing", ["the total's rounding", "the current quarter's threshold"])
def test_two_publications_around_one_opt_out_show_the_same_opt_out_figures(registry: Registry, crossing: str) -> None:
    """A count below 10 is hidden and the others rounded so that one opt-out cannot be seen. But the running total
    and the quarter under way are published afresh each time: two publications a day apart, one opt-out recorded
    between them, differ (13 opt-outs are "15", 12 are "10"; 9 this quarter are "fewer than 10", 10 are "10"), and
    tell that someone opted out that day. A quarter is only safe to publish once it has ended (its count can no
    longer change), and the total only from such quarters."""
    ws = registry.ws
    key = load_key(registry.key_file)
    if crossing == "the total's rounding":  # as the register stood before P1 opted out: 12 in 2025-Q2, total 12
        with ws.catalog() as conn:
            conn.execute("DELETE FROM optouts WHERE person = ?", (person_hash(key, registry.ids["P1"]),))
        newcomer = registry.ids["P1"]
    else:  # nine recorded this quarter (P1's and eight more), then one more
        _recorded_now(ws, 8)
        newcomer = registry.ids["P2"]
    before = _opt_out_figures(ws)
    optouts.add(ws, actor=STEWARD, lines=[newcomer], key_file=registry.key_file)
    after = _opt_out_figures(ws)
    assert after == before, (
        f"one opt-out recorded between two publications changes what the register shows ({crossing}): "
        f"{json.dumps(before)} then {json.dumps(after)}"
    )


def test_a_quarter_shown_as_fewer_than_the_threshold_cannot_be_told_from_zero_by_the_total(registry: Registry) -> None:
    """ "Fewer than 10, zero included, so a zero tells nothing either" (docs/transparency.md): but the total is
    rounded from the exact counts, so set against the quarters it says whether the hidden ones hold anyone. One
    opt-out recorded in 2025-Q3 beside 2025-Q2's twelve: 2025-Q2 shows "10" (10 to 12), the total "15" (13 to
    17), so the hidden quarters hold 1 to 7 opt-outs, never none. The total must be one the shown quarters
    explain with every hidden quarter at zero (the sum of the shown counts, say), or not be published."""
    ws = registry.ws
    with ws.catalog() as conn:  # P1's opt-out (this quarter) aside, so that only 2025-Q3's one is hidden
        conn.execute("DELETE FROM optouts WHERE recorded_at NOT LIKE '2025-05-%'")
    _recorded_now(ws, 1, at="2025-08-04T09:00:00+00:00")
    shown = _opt_out_figures(ws)
    quarters = {q["quarter"]: q for q in shown["by_quarter"]}
    assert quarters["2025-Q3"]["count"] is None  # hidden, as it should be
    total = shown.get("total") or {}
    if total.get("count") is None:
        return  # no total, or one itself hidden: nothing to set against the quarters
    min_count, rounding = shown["min_count"], shown["rounding"]
    low = high = 0
    for quarter in shown["by_quarter"]:  # the exact counts each shown quarter may stand for; hidden ones: zero
        if quarter["count"] is None:
            continue
        possible = [n for n in range(min_count, quarter["count"] + rounding + 1)
                    if register.shown_count(n, min_count, rounding)["count"] == quarter["count"]]  # fmt: skip
        low, high = low + min(possible), high + max(possible)
    shown_counts = sum(q["count"] or 0 for q in shown["by_quarter"])
    explained = total["count"] == shown_counts or any(
        register.shown_count(n, min_count, rounding)["count"] == total["count"] for n in range(low, high + 1)
    )
    assert explained, (
        f"the total ({total['count']}) is more than the shown quarters can make ({low} to {high} opt-outs): a "
        "quarter shown as 'fewer than 10' is known not to be zero"
    )


# -- the catalogue, published after each ingest ---------------------------------------------------------------------


def _one_person_leaves(registry: Registry) -> tuple[catalogue_facts.Facts, catalogue_facts.Facts, int]:
    """The catalogue's facts of e2, then of e3: the same export ingested again after its patient with the most rows
    opted out (the docs: run the catalogue again after each ingest). Also that patient's number of rows."""
    ws, key = registry.ws, load_key(registry.key_file)
    e2 = get_extract(ws, "e2")
    rows: dict[str, int] = {}
    for table in TABLE_NAMES:
        counted = pl.read_parquet(e2.table_path(table), columns=["pseudonym"]).group_by("pseudonym").len()
        for who, n in counted.iter_rows():
            rows[who] = rows.get(who, 0) + n
    most = max(rows, key=lambda who: rows[who])
    national_id = next(n for n in registry.patients["national_id"].to_list() if pseudonym(key, n) == most)
    before = catalogue_facts.gather(ws, ws.policy())
    optouts.add(ws, actor=STEWARD, lines=[national_id], key_file=registry.key_file)
    ingest(ws, [registry.raw], "e3", key)
    after = catalogue_facts.gather(ws, ws.policy())
    assert (before.newest.id, after.newest.id) == ("e2", "e3")
    return before, after, rows[most]


def test_two_catalogues_around_one_opt_out_do_not_tell_how_many_records_that_person_had(registry: Registry) -> None:
    """numberOfRecords is rounded to 10, but one person holds tens of rows: the catalogue before and after one
    opt-out (1210, then 1180 records) tell that the person who left had 25 to 35 rows (38: diagnoses, signs,
    care encounters), what the register withholds an extract's patient count for. A person's departure may move
    a published figure by one rounding step at most (a coarser base for the records, or none published)."""
    before, after, rows = _one_person_leaves(registry)
    if before.records is None or after.records is None:
        return
    moved = before.records - after.records
    assert abs(moved) <= before.rounding, (
        f"the records went from {before.records} to {after.records} when one person with {rows} rows left"
    )


def test_two_catalogues_around_one_opt_out_do_not_tell_the_years_of_that_persons_events(registry: Registry) -> None:
    """The temporal coverage keeps the years in which at least 10 people have an event: when one person leaves, a
    year they made the tenth of drops out, and the catalogue's start moves from 2003 to 2005: the person who opted
    out was seen in 2003 and 2004. A departure must never narrow the published coverage or typical ages (say, a
    year or an age band, once published, stays: the series of extracts still holds it)."""
    before, after, _ = _one_person_leaves(registry)
    if before.coverage is not None:
        assert after.coverage is not None, "the coverage vanished when one person left"
        narrowed = f"the coverage narrowed from {before.coverage} to {after.coverage} when one person left"
        assert after.coverage[0] <= before.coverage[0], narrowed
        assert after.coverage[1] >= before.coverage[1], narrowed
    if before.typical_ages is not None:
        assert after.typical_ages is not None, "the typical ages vanished when one person left"
        assert after.typical_ages[0] <= before.typical_ages[0]
        assert after.typical_ages[1] >= before.typical_ages[1]


def test_two_catalogues_around_one_opt_out_do_not_tell_whether_that_person_had_a_genetic_diagnosis(
    registry: Registry,
) -> None:
    """The common data set's completeness and validity are published to two decimals, finer than one person in a
    registry of under 100 (1/76 = 0.013): when one person leaves, the genetic diagnosis's completeness goes from
    0.26 (20 of 76) to 0.27 (20 of 75), so the person who opted out had no gene or variant recorded. A share must
    be published no finer than one person can move it (one decimal, or steps of min_count / denominator)."""
    _set_policy(registry.ws, **CATALOGUE_SETTINGS)
    who = publisher(registry.ws.policy())
    before, after, _ = _one_person_leaves(registry)

    def measured(facts: catalogue_facts.Facts) -> dict[str, str]:
        graph = catalogue.build(facts, who)
        return {str(node): str(value) for node, value in graph.subject_objects(DQV.value)}

    shown, again = measured(before), measured(after)
    moved = {node: (shown[node], again[node]) for node in shown.keys() & again.keys() if shown[node] != again[node]}
    assert not moved, f"one person's departure moved these published shares: {moved}"


def test_the_catalogue_never_removes_files_that_appear_in_its_folder_while_it_is_checked(
    registry: Registry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``catalogue OUT`` checks OUT (new, empty or an earlier catalogue), spends seconds on the shapes, then
    exchanges its scratch folder with OUT and removes what it swapped out. Files put in OUT meanwhile (the hub's
    sync agent, another program) are removed with it; the register checks its target again just before placing."""
    ws = registry.ws
    _set_policy(ws, **CATALOGUE_SETTINGS)
    out = registry.out / "hub"
    check = catalogue.catalogue_shapes.check

    def meanwhile(graph: Graph) -> None:
        check(graph)
        out.mkdir(exist_ok=True)
        (out / "notes.txt").write_text("someone else's", encoding="utf-8")

    monkeypatch.setattr(catalogue.catalogue_shapes, "check", meanwhile)
    refusal = _written_or_refused(ws, out)
    assert refusal is None or "\n" not in refusal
    assert (out / "notes.txt").is_file(), "the catalogue removed a file it did not write"
    assert (out / "notes.txt").read_text(encoding="utf-8") == "someone else's"


def test_a_contact_address_the_policy_accepts_gives_a_catalogue_or_one_line(registry: Registry) -> None:
    """``catalogue_contact`` takes any e-mail address without spaces, quotes or angle brackets. One with ``|`` or
    ``{`` (valid in an address) passes the check and the shapes, then rdflib cannot write ``mailto:`` with it:
    an internal error and a traceback, exit 70. The address must be refused in one line, or percent-encoded."""
    ws = registry.ws
    _set_policy(ws, **{**CATALOGUE_SETTINGS, "catalogue_contact": "rare|registry@example.lu"})
    out = registry.out / "hub"
    refusal = _written_or_refused(ws, out)
    if refusal is not None:
        assert "\n" not in refusal
        return
    Graph().parse(out / catalogue.TURTLE, format="turtle")
    json.loads((out / catalogue.JSONLD).read_text(encoding="utf-8"))


# -- a person's letter ----------------------------------------------------------------------------------------------


def test_another_persons_opt_out_does_not_change_a_persons_letter(registry: Registry) -> None:
    """ "Nothing in the letter depends on anyone else." Yet "permits that may still use your data" asks whether
    each extract was built against today's whole opt-out register: once anyone else opts out, P2's letter says no
    permit may use their data, and tells its reader that someone opted out since extract e2 was made. Whether
    research may still use a version for this person must depend on this person (their own opt-out) only."""
    ws, key = registry.ws, load_key(registry.key_file)
    before = person.find(ws, key, Entry(registry.ids["P2"]))
    assert before.may_use  # the permits in force over e2
    optouts.add(ws, actor=STEWARD, lines=[registry.ids["P3"]], key_file=registry.key_file)  # someone else
    after = person.find(ws, key, Entry(registry.ids["P2"]))
    assert after.may_use == before.may_use, "someone else's opt-out changed the permits that may use P2's data"
    assert after == before


def test_a_letter_replaces_a_link_named_as_its_file_never_what_it_points_to(registry: Registry) -> None:
    """The letter is written mode 0600 through a scratch file renamed over ``--out``: a link there is replaced,
    the file it points to is untouched, and no scratch file is left."""
    precious = registry.out / "precious.txt"
    precious.write_text("keep me", encoding="utf-8")
    target = registry.out / "letter.html"
    target.symlink_to(precious)
    code, _, err = run("--as", STEWARD, "transparency", "person", "--out", str(target), "--lang", "en",
                       stdin=registry.ids["P2"] + "\n")  # fmt: skip
    assert code == 0, err
    assert precious.read_text(encoding="utf-8") == "keep me"
    assert not target.is_symlink()
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert sorted(p.name for p in registry.out.iterdir()) == ["letter.html", "precious.txt"]


# -- the register's texts and files ---------------------------------------------------------------------------------


def test_every_text_a_researcher_writes_is_escaped_in_the_register_and_kept_whole_in_its_json(
    registry: Registry,
) -> None:
    """Purpose, holder, legal basis, opt-out exception, the results' reference and the names of released outputs:
    shown as text in every page, and as the same strings in register.json."""
    ws = registry.ws
    with ws.catalog() as conn:
        conn.execute(
            "UPDATE permits SET purpose = ?, holder = ?, legal_basis = ?, optout_exception = ?, publication = ?"
            " WHERE study = 'alpha'",
            (INJECTED, INJECTED, INJECTED, INJECTED, f"published: {INJECTED}"),
        )
        conn.execute("UPDATE request_outputs SET name = ?", (INJECTED,))
    target = registry.out / "register"
    code, _, err = run("--as", MEMBER, "transparency", "publish", str(target))
    assert code == 0, err
    written = sorted(p for p in target.rglob("*") if p.is_file())
    assert all(p.resolve().is_relative_to(target.resolve()) for p in written)
    for path in written:
        if path.suffix == ".html":
            text = path.read_text(encoding="utf-8")
            assert not re.search(r"<(img|script)\b", text), path
    data = json.loads((target / "register.json").read_text(encoding="utf-8"))
    alpha = next(p for p in data["permits"] if p["study"] == "alpha")
    assert (alpha["purpose"], alpha["holder"], alpha["legal_basis"], alpha["results"]["reference"]) == (
        INJECTED, INJECTED, INJECTED, INJECTED
    )  # fmt: skip
    assert data["releases"][0]["outputs"][0]["name"].endswith(INJECTED)


def test_publishing_through_a_link_to_a_register_is_refused_and_changes_nothing(registry: Registry) -> None:
    real = registry.out / "real"
    code, _, err = run("--as", MEMBER, "transparency", "publish", str(real))
    assert code == 0, err
    (real / "kept.txt").write_text("mine", encoding="utf-8")
    link = registry.out / "link"
    link.symlink_to(real)
    code, _, err = run("--as", MEMBER, "transparency", "publish", str(link))
    assert code != 0
    assert "Traceback" not in err
    assert link.is_symlink()
    assert (real / "kept.txt").read_text(encoding="utf-8") == "mine"
    assert not [p for p in registry.out.iterdir() if ".staging-" in p.name]


# -- the languages --------------------------------------------------------------------------------------------------


def _damage(po: Path, how: str) -> None:
    text = po.read_text(encoding="utf-8")
    if how == "a percent sign":  # "100 %", as French and Luxembourgish write it: Jinja formats every message
        damaged = text.replace('msgstr "[lb] Registre de transparence"', 'msgstr "[lb] Registre 100 % public"', 1)
    else:  # a plural rule gettext cannot compile
        damaged = re.sub(r'"Plural-Forms: [^"]*"', r'"Plural-Forms: nplurals=2; plural=(n != 1) + x;\\n"', text)
    assert damaged != text
    po.write_text(damaged, encoding="utf-8")


@pytest.mark.parametrize("how", ["a percent sign", "a plural rule"])
def test_a_supplied_catalog_that_cannot_be_used_is_refused_in_one_line_and_left_out_of_the_web_app(
    workspace: Workspace, tmp_path: Path, how: str
) -> None:
    """A supplied catalog counts as complete when every message is translated with its placeholders; one whose
    text Jinja cannot format (a lone ``%``) or whose plural rule gettext cannot compile passes that check, then
    publishing fails with a traceback (ValueError), and the web app, which offers it, answers 500 to every
    page in that language (the sign-in page too). It must be refused like an incomplete one: one line naming the
    file (publish, a letter in it), and left out of the web app."""
    people(workspace)
    po = _lb_catalog(workspace.root / "catalogs")
    _supply(workspace, "catalogs")
    _damage(po, how)
    with pytest.raises(BadInput) as refused:
        actions.publish(workspace, actor=STEWARD, out=tmp_path / "register")
    assert str(po) in str(refused.value)
    assert "\n" not in str(refused.value)
    assert not (tmp_path / "register").exists()
    with pytest.raises(BadInput) as letter:
        actions.person(workspace, actor=STEWARD, lines=[], out=tmp_path / "letter.html", lang="lb")  # before the ID
    assert str(po) in str(letter.value)
    client = TestClient(create_app(workspace), raise_server_exceptions=False)
    assert client.get("/signin", headers={"accept-language": "lb"}).status_code == 200


@pytest.mark.parametrize(
    "next_path",
    ["//evil.example", "/\\evil.example", "https://evil.example", "/\t/evil.example", "/\r\nSet-Cookie: a=b"],
)
def test_the_language_switch_goes_back_to_this_app_only_and_sets_no_other_header(
    workspace: Workspace, next_path: str
) -> None:
    client = TestClient(create_app(workspace), follow_redirects=False)
    got = client.get("/language", params={"lang": "fr", "next": next_path})
    assert got.status_code == 303
    location = got.headers["location"]
    assert location.startswith("/")
    assert not location.startswith("//")
    assert not re.search(r"[\s\\]", location)
    assert "a=b" not in got.headers.get("set-cookie", "")
