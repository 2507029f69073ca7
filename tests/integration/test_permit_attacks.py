"""Attacks on the permit checks of columns, extract versions and the registry's DP-twin permit.

Each test is a way a researcher, a steward or a committee member could get around a rule of
:func:`research_kit.core.permits.check` (or a guarantee the checks pin): a failing one is a defect.
"""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from tests.conftest import MEMBER, STEWARD, Project, people, sign_in
from tests.functional.test_one_line_errors import one_line
from tests.generative.test_fuzz_cli import run
from tests.integration.test_permits import NEXT_YEAR, apply, ok, refused
from tests.integration.test_permits import signed as signed  # the fixture: the same people as the permit tests'

from research_kit.core import audit, permits, users
from research_kit.core.errors import BadInput, PolicyRefusal
from research_kit.core.extracts import get_extract
from research_kit.dp import ledger
from research_kit.dp.accounting import to_picorho

# About 75 s in all (runs in the sandbox, fresh workspaces): with the slow tests, which CI runs too.
pytestmark = pytest.mark.slow


def _permits_of(project: Project, study: str) -> list[permits.Permit]:
    with project.ws.catalog() as conn:
        return permits.of_study(conn, study)


def _twin_permit(project: Project) -> permits.Permit:
    (found,) = [p for p in _permits_of(project, permits.REGISTRY_TWIN) if p.in_force()]
    return found


def _also(project: Project, name: str, role: str) -> None:
    """``name`` gets one more role (as a steward gives it) and signs in again."""
    with audit.acting(STEWARD):
        users.add(project.ws, name, role)
    sign_in(project.ws, **{name: role})


# -- the two-person rule of a budget grant -----------------------------------------------------------------------------


def test_a_committee_member_never_grants_herself_a_study_by_padding_her_name(signed: Project) -> None:
    """``budget grant STUDY --owner NAME`` refuses a granter who names herself; the permit it makes strips the names
    it is given, so the refusal must compare stripped names too (else: a real-tier permit over every table and a
    budget, decided by its only user)."""
    _also(signed, "carla", "researcher")  # carla sits on the committee and researches
    refused(("--as", "carla", "budget", "grant", "selfie", "--rho", "0.3", "--owner", "carla"),
            "carla owns study selfie: an owner never grants their own study a budget")  # fmt: skip
    for i, padded in enumerate((" carla", "carla ", "\tcarla")):
        study = f"selfie{i}"
        code, _, err = run("--as", "carla", "budget", "grant", study, "--rho", "0.3", "--owner", padded)
        assert code == 5, f"carla granted herself study {study}'s permit and budget: {err or 'accepted'}"
        assert not [p for p in _permits_of(signed, study) if "carla" in p.users]
        assert ledger.balance(signed.ws, study).granted == 0


def test_a_committee_member_never_joins_a_permit_in_force_by_padding_her_name(signed: Project) -> None:
    _also(signed, "carla", "researcher")
    permit_id = apply("joined")
    ok("--as", MEMBER, "permit", "grant", str(permit_id), "--legal-basis", "DAC 1")
    code, _, err = run("--as", "carla", "budget", "grant", "joined", "--rho", "0.3", "--owner", " carla")
    assert code == 5, f"carla named herself a user of permit {permit_id} and granted its budget: {err or 'accepted'}"
    with signed.ws.catalog() as conn:
        assert "carla" not in permits.get(conn, permit_id).users


# -- the registry's DP-twin permit -------------------------------------------------------------------------------------


def _twin_granted(project: Project, owner: str = STEWARD) -> permits.Permit:
    ok("--as", MEMBER, "budget", "grant", "--twin", "--rho", "2", "--owner", owner, "--note", "DAC #4")
    return _twin_permit(project)


def _reserve(project: Project, extract: str) -> int:
    return ledger.reserve_twin(
        project.ws, cost=to_picorho("0.01", round_up=True), extract=extract, twin=f"{extract}@dp", mechanism="mst",
        details={},
    )  # fmt: skip


def test_the_twin_permit_names_stewards_only_and_a_named_one_builds(signed: Project) -> None:
    """Pinned: the twin permit never names a researcher (by a grant or an amendment), is never applied for or
    granted as a study, and its steward spends its budget; a revoked one stops the steward."""
    refused(("--as", MEMBER, "budget", "grant", "--twin", "--rho", "1", "--owner", "ana"),
            "--users 'ana': this permit's user is a steward, not a researcher", 3)  # fmt: skip
    twin = _twin_granted(signed)
    assert (twin.users, twin.tier, twin.data, twin.versions) == ((STEWARD,), "real", None, permits.NEW_VERSIONS)
    refused(("--as", "carla", "permit", "amend", str(twin.id), "--users", f"{STEWARD},ana", "--note", "help"),
            "--users 'ana': this permit's user is a steward, not a researcher", 3)  # fmt: skip
    for argv in (("--as", "ana", "permit", "apply", "@twin", "--purpose", "p", "--tier", "real", "--tables", "all",
                  "--until", NEXT_YEAR, "--holder", "h"),
                 ("--as", "carla", "permit", "grant", "@twin", "--users", "ana", "--purpose", "p", "--tier", "real",
                  "--tables", "all", "--until", NEXT_YEAR, "--holder", "h", "--legal-basis", "x")):  # fmt: skip
        refused(argv, "study '@twin': use letters, digits", 3)
    refused(("--as", "carla", "permit", "grant", str(twin.id), "--legal-basis", "x"),
            f"permit {twin.id} is granted: only an application is granted or refused")  # fmt: skip
    with audit.acting("ana"), pytest.raises(PolicyRefusal, match="does not name ana"):
        _reserve(signed, "e1")
    with audit.acting(STEWARD):
        ledger.cancel(signed.ws, _reserve(signed, "e1"))
    ok("--as", "carla", "permit", "revoke", str(twin.id), "--note", "the build is paused")
    with audit.acting(STEWARD), pytest.raises(PolicyRefusal, match=rf"permit {twin.id} \(the registry's DP twin\) "
                                              "was revoked"):  # fmt: skip
        _reserve(signed, "e1")


@pytest.mark.parametrize(
    ("amendment", "extract", "says"),
    [
        (("--versions", "e1"), "e2", "covers extract versions e1, not e2"),
        (("--tables", "patients"), "e1", "does not cover table"),
        (("--tables", "all", "--columns", "patients.sex"), "e1", "does not cover column"),
    ],
)
def test_a_dp_twin_is_built_only_on_what_the_twin_permit_covers(
    signed: Project, amendment: tuple[str, ...], extract: str, says: str
) -> None:
    """The committee narrows the twin permit (to one extract version, to some tables or columns): a DP twin, which
    reads every column of every table of its extract, is then refused on anything else, as a study's run is."""
    twin = _twin_granted(signed)
    code, _, err = run("--as", "carla", "permit", "amend", str(twin.id), *amendment, "--note", "data minimisation")
    if code != 0:  # mended the other way: the twin permit's data and versions are not the committee's to narrow
        one_line(code, err, code, "twin")
        return
    with audit.acting(STEWARD):
        try:
            spend = _reserve(signed, extract)
        except PolicyRefusal as refusal:
            said = str(refusal)
        else:
            ledger.cancel(signed.ws, spend)
            said = "reserved"
    assert says in said, f"a DP twin of {extract} under a twin permit amended with {amendment}: {said}"


def test_a_twin_builder_on_the_committee_never_names_more_builders_of_her_own_permit(signed: Project) -> None:
    """A committee member never decides on a permit naming her (permit grant/amend/revoke refuse it, and a study's
    budget grant refuses its owners): the twin's budget grant must not let a named steward add other builders."""
    people(signed.ws, sam="steward", sue="steward")
    _also(signed, "sue", "committee")  # a steward who sits on the committee too
    twin = _twin_granted(signed, owner="sue")
    refused(("--as", "sue", "permit", "amend", str(twin.id), "--users", "sue,sam", "--note", "more hands"),
            "sue is a user of study @twin: a user never decides on their own permit")  # fmt: skip
    code, _, err = run("--as", "sue", "budget", "grant", "--twin", "--rho", "0.1", "--owner", "sam")
    assert code == 5, f"sue, who builds the twin, named sam a builder of her own permit: {err or 'accepted'}"
    assert _twin_permit(signed).users == ("sue",)


# -- extract versions --------------------------------------------------------------------------------------------------


def test_an_extract_named_new_never_turns_a_pinned_permit_into_one_over_every_version(
    signed: Project, tmp_path: Path
) -> None:
    """``--versions new`` means every version built until the permit ends. An extract may be registered under the id
    ``new``: a permit naming it must cover it alone (or the id is refused), never e1 and every later extract."""
    from research_kit.ingest.pipeline import ingest
    from research_kit.pseudonymise.keys import load_key, new_key
    from research_kit.simulator.export import SimulationSpec, simulate_export

    raw = tmp_path / "raw-new"
    simulate_export(SimulationSpec(patients=60, seed=5, format="parquet"), raw)
    key_path, _ = new_key(tmp_path / "secrets" / "k.key")
    with audit.acting(STEWARD):
        with pytest.raises(BadInput, match="extract id 'e3,e1'"):  # pinned: no comma hides in a list of versions
            ingest(signed.ws, [raw], "e3,e1", load_key(key_path))
        try:
            ingest(signed.ws, [raw], "new", load_key(key_path))
        except BadInput:
            return  # mended: "new" is no extract id
    code, out, err = run("--as", "ana", "permit", "apply", "pinned", "--purpose", "p", "--tier", "real", "--tables",
                         "all", "--until", NEXT_YEAR, "--holder", "h", "--versions", "new", "--json")  # fmt: skip
    if code != 0:  # mended: the application is refused as ambiguous
        one_line(code, err, 3, "new")
        return
    permit_id = int(json.loads(out)["id"])
    ok("--as", MEMBER, "permit", "grant", str(permit_id), "--legal-basis", "DAC 2")
    with signed.ws.catalog() as conn:
        permits.check(conn, "pinned", "ana", tier="dp", extract="new", doing="asking")
        with pytest.raises(PolicyRefusal, match="covers extract versions"):
            permits.check(conn, "pinned", "ana", tier="dp", extract="e1", doing="asking")


# -- the order of a patient's rows -------------------------------------------------------------------------------------

ENCOUNTERS = ("centre_code", "pseudonym")  # a permit over encounters.centre_code: never the encounter's date


def _in_date_order(ordered: pl.DataFrame, dated: pl.DataFrame) -> float:
    """Of the patients with encounters at two centres or more, the share whose rows in ``ordered`` list their
    centres in the order of their encounter dates (``dated``: the same rows, with the dates)."""
    seen = ordered.group_by("pseudonym", maintain_order=True).agg(pl.col("centre_code").alias("seq"))
    by_date = (
        dated.with_row_index("_r")
        .sort("pseudonym", "encounter_date", "_r")
        .group_by("pseudonym", maintain_order=True)
        .agg(pl.col("centre_code").alias("dated"), pl.col("centre_code").n_unique().alias("centres"))
    )
    both = seen.join(by_date, on="pseudonym").filter(pl.col("centres") > 1)
    assert both.height > 100
    return float((both["seq"] == both["dated"]).mean())


def test_a_table_cut_to_some_columns_does_not_list_a_patients_rows_in_the_order_of_a_column_left_out(
    signed: Project, tmp_path: Path
) -> None:
    """A permit over encounters.centre_code, not encounter_date: its view's encounters keep each patient's rows in
    the extract's order, which is the order of their dates: the sequence of centres a patient went to (first
    centre, last centre, referrals) is read off a column the permit leaves out."""
    from research_kit.sandbox.views import Projection, StudyPseudonyms, build_view
    from research_kit.tiers import real_source

    source = real_source(signed.ws, "e1")
    secret = StudyPseudonyms(b"s" * 32, tmp_path / "study-views")
    kept = build_view(tmp_path / "cut", source=source, policy_file=signed.ws.policy_path, pseudonyms=secret,
                      projection=Projection({"encounters": ENCOUNTERS}))  # fmt: skip
    whole = build_view(tmp_path / "whole", source=source, policy_file=signed.ws.policy_path, pseudonyms=secret,
                       projection=Projection({"encounters": None}))  # fmt: skip
    cut = pl.read_parquet(kept.folder / "extract" / "encounters.parquet")
    assert sorted(cut.columns) == sorted(ENCOUNTERS)  # pinned: the columns are cut
    dated = pl.read_parquet(whole.folder / "extract" / "encounters.parquet")
    assert sorted(cut["pseudonym"].unique()) == sorted(dated["pseudonym"].unique())
    share = _in_date_order(cut, dated)
    assert share < 0.5, f"{share:.0%} of patients' rows in the cut table are in the order of their encounter dates"


def _dp_counts(ws_root: Path, folder: Path, name: str) -> dict[str, float]:
    from research_kit.core.workspace import Workspace
    from research_kit.dp import engine
    from research_kit.dp.query import make_query
    from research_kit.tiers import Source

    query = make_query("count", "encounters", rho=40, by=["centre_code"])
    answer = engine.run(Workspace(ws_root), query, study="order", source=Source("sandbox", name, folder, name * 8,
                                                                                  2026))  # fmt: skip
    table = answer.table
    assert table is not None
    return dict(zip(table["centre_code"].to_list(), table["value"].to_list(), strict=True))


def test_a_dp_count_does_not_depend_on_the_order_of_a_patients_rows(signed: Project, tmp_path: Path) -> None:
    """``count("encounters", by="centre_code")`` reads encounters.centre_code only (so a permit over that column
    allows it), and keeps one row per patient (per_group 1, max_groups 1). Which row must not be the extract's
    first: that is the patient's earliest encounter, so the answer would be "patients by the centre of their first
    encounter", read off encounter_date, which the permit leaves out. The same rows in another order within each
    patient must give the same answer (noise aside: rho 40)."""
    text = signed.ws.policy_path.read_text(encoding="utf-8")
    signed.ws.policy_path.write_text(text.replace("default_study_rho = 1.0", "default_study_rho = 100.0"),
                                     encoding="utf-8")  # fmt: skip
    stored = get_extract(signed.ws, "e1").path
    counts = {}
    for name, descending in (("asis", False), ("back", True)):
        folder = tmp_path / name
        folder.mkdir()
        for table in ("patients", "diagnoses", "phenotypes", "encounters"):
            frame = pl.read_parquet(stored / f"{table}.parquet")
            if table == "encounters":  # each patient's rows reversed (the patients' order kept)
                frame = (
                    frame.with_row_index("_r")
                    .with_columns(pl.col("_r").min().over("pseudonym").alias("_p"))
                    .sort("_p", "_r", descending=[False, descending])
                    .drop("_r", "_p")
                )
            frame.write_parquet(folder / f"{table}.parquet")
        counts[name] = _dp_counts(signed.ws.root, folder, name)
    moved = {c: (counts["asis"][c], counts["back"][c]) for c in counts["asis"]
             if abs(counts["asis"][c] - counts["back"][c]) > 5}  # fmt: skip
    assert not moved, f"the answer moved with the order of each patient's rows (as is, reversed): {moved}"


# -- pinned: what a column-limited permit lets a DP query and a notebook read ------------------------------------------

LIMITED = "patients.sex,patients.birth_year,diagnoses.orpha_code"


# Queries a permit over patients.sex, patients.birth_year and diagnoses.orpha_code refuses, and the extract column
# each refusal names (the first one the answer depends on that the permit leaves out).
TRACED: list[tuple[str, str, dict[str, object], str]] = [
    ("count", "patients", {"where": {"dead": "true"}}, "patients.vital_status"),
    ("count", "patients", {"where": ["sex = female", "canton = abroad"]}, "patients.canton"),
    ("count", "patients", {"where": {"cross_border_insured": ["true"]}}, "patients.cross_border_insured"),
    ("count", "patients", {"where": "diagnoses >= 1"}, "diagnoses.excluded"),
    ("count", "patients", {"where": "encounters >= 1"}, "encounters.pseudonym"),
    ("count", "patients", {"by": "primary_orpha"}, "diagnoses.excluded"),
    ("count", "patients", {"where": "age >= 18"}, "patients.age_at_last_record_years"),
    ("mean", "patients", {"column": "first_contact_year"}, "patients.first_contact_date"),
    ("sum", "patients", {"column": "phenotypes"}, "phenotypes.pseudonym"),
    ("histogram", "diagnoses", {"column": "diagnosis_age_years", "bins": [0, 10, 20]},
     "diagnoses.diagnosis_age_years"),
    ("quantile", "diagnoses", {"column": "onset_age_years", "q": 0.5}, "diagnoses.onset_age_years"),
    ("count", "diagnoses", {"where": "genetic = true"}, "diagnoses.gene_symbol"),
    ("count", "diagnoses", {"by": ["orpha_code", "age_band"]}, "patients.age_at_last_record_years"),
    ("count", "diagnoses", {"where": {"status": ["confirmed", "suspected"]}}, "diagnoses.status"),
    ("count", "diagnoses", {"by": "disease_group"}, "diagnoses.excluded"),
    ("count", "diagnoses", {"by": "orpha_code", "per_group": 3, "max_groups": 2, "where": "excluded = false"},
     "diagnoses.excluded"),
    ("count", "diagnoses", {"where": "diagnosis_decade = 1990s"}, "diagnoses.diagnosis_date"),
]  # fmt: skip


def test_every_view_column_a_query_reads_is_traced_to_the_extract_columns_it_is_made_from(signed: Project) -> None:
    """Pinned: groups, filters (text, list or mapping) and the value of every kind of query, each traced to the
    extract's columns, refused naming the first one the permit leaves out; what it covers is answered."""
    import research_kit as rk

    permit_id = apply("limited", "--columns", LIMITED)
    ok("--as", MEMBER, "permit", "grant", str(permit_id), "--legal-basis", "DAC 3", "--rho", "0.5")
    base: dict[str, object] = {"study": "limited", "tier": "real", "rho": 0.01, "preview": True,
                               "workspace": signed.ws.root}  # fmt: skip
    wrong = []
    with audit.acting("ana"):
        rk.dp.count("diagnoses", by="orpha_code", where={"sex": ["female"], "birth_decade": "1990s"}, **base)  # type: ignore[arg-type]
        rk.dp.histogram("patients", "birth_year", [1900, 1950, 2000, 2030], by="sex", **base)  # type: ignore[arg-type]
        for kind, table, spec, column in TRACED:
            given = {**base, **spec}
            value, q = given.pop("column", None), given.pop("q", None)
            ask = {
                "count": lambda: rk.dp.count(table, **given),  # type: ignore[arg-type]  # noqa: B023
                "mean": lambda: rk.dp.mean(table, str(value), **given),  # type: ignore[arg-type]  # noqa: B023
                "sum": lambda: rk.dp.sum(table, str(value), **given),  # type: ignore[arg-type]  # noqa: B023
                "histogram": lambda: rk.dp.histogram(table, str(value), **given),  # type: ignore[arg-type]  # noqa: B023
                "quantile": lambda: rk.dp.quantile(table, str(value), float(str(q)), **given),  # type: ignore[arg-type]  # noqa: B023
            }[kind]
            try:
                ask()
            except PolicyRefusal as refusal:
                if str(refusal) != f"permit {permit_id} (study limited) does not cover column {column}":
                    wrong.append((kind, table, spec, str(refusal)))
            else:
                wrong.append((kind, table, spec, "answered"))
    assert not wrong, wrong


SNOOP = """
import json, os, sys
import pyarrow.parquet as pq
import research_kit as rk


seen = {"load": sorted(rk.load("patients").columns)}
for columns in (["pseudonym", "canton"], ["age_at_last_record_years"]):
    try:
        seen[",".join(columns)] = sorted(rk.load("patients", columns=columns).columns)
    except Exception as exc:
        seen[",".join(columns)] = type(exc).__name__
try:
    rk.dp.count("patients", where={"canton": "abroad"}, study="snoop", rho=0.01)
    seen["dp"] = "answered"
except Exception as exc:
    seen["dp"] = str(exc)
files = set()
for top in ("/rk", "/tmp", os.getcwd()):
    for root, _, names in os.walk(top):
        files |= {os.path.join(root, n) for n in names if n.endswith(".parquet")}
for line in open("/proc/self/mountinfo"):
    place = line.split()[4]
    if place.endswith(".parquet"):
        files.add(place)
held = {}
installed = tuple({sys.prefix, sys.base_prefix})  # libraries' own test files (pyarrow ships some): no registry data
for path in sorted(files):
    if "/twin/" in path or "/twins/" in path or path.startswith(installed) or "/site-packages/" in path:
        continue
    try:
        held[path] = sorted(pq.read_schema(path).names)
    except Exception as exc:
        held[path] = type(exc).__name__
seen["files"] = held
json.dump(seen, open("seen.json", "w"))
"""


def test_a_notebook_under_a_column_limited_permit_finds_no_left_out_column_anywhere(signed: Project) -> None:
    """Pinned: rk.load (with columns= too), the broker's DP queries (a mapping filter) and every Parquet file a
    notebook can find outside the twins (the view, /tmp, its work folder, files bound in) hold the permit's
    columns only."""
    from research_kit.actions import runs
    from research_kit.studies.spec import load_pipeline

    permit_id = apply("snoop", "--columns", LIMITED)
    ok("--as", MEMBER, "permit", "grant", str(permit_id), "--legal-basis", "DAC 4", "--rho", "0.5")
    signed.notebook("snoop", "unused = 0", SNOOP)
    action = {"notebook": "notebooks/snoop.ipynb", "outputs": {"highly_sensitive": {"seen": "seen.json"}}}
    report = runs.run(
        signed.ws,
        actor="ana",
        pipeline=load_pipeline(signed.pipeline("snoop", {"a": action}, permitted=False)),
        extract="e1",
    )
    assert report.outcome == "succeeded", report.actions
    (outcome,) = report.actions.values()
    assert outcome.folder is not None
    seen = json.loads((outcome.folder / "outputs" / "seen.json").read_text())
    assert seen["load"] == ["birth_year", "pseudonym", "sex"]
    assert seen["pseudonym,canton"] == "BadInput"
    assert seen["age_at_last_record_years"] == "BadInput"
    assert f"permit {permit_id} (study snoop) does not cover column patients.canton" in seen["dp"]
    allowed = {"birth_year", "pseudonym", "sex", "orpha_code"}
    assert seen["files"], "the notebook found no Parquet file: the snoop looked in the wrong places"
    leaked = {path: sorted(set(names) - allowed) for path, names in seen["files"].items()
              if isinstance(names, list) and set(names) - allowed}  # fmt: skip
    assert not leaked, leaked
