"""The public transparency register and a person's "where was my data used?" letter, on a small registry whose
data were used: permits of every kind, a pipeline run and a DP query under a permit, a release, opt-outs, and a
second extract built after one patient opted out.

The register is scanned against the raw export (every national ID and name) and the extracts' pseudonyms; the
letter is checked to hold exactly the extract versions that hold its person, and nothing of anyone else. The
command line runs in process (its real entry point), standard input given as a pipe would give it.
"""

from __future__ import annotations

import json
import re
import shutil
import stat
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import polars as pl
import pytest
from tests.conftest import MEMBER, PASSWORD, STEWARD, Project, people
from tests.integration.test_optouts import Terminal, one_line, run

from research_kit.actions import optouts, runs
from research_kit.actions import permits as permit_actions
from research_kit.core import audit, errors, identity, users
from research_kit.core.extracts import get_extract
from research_kit.core.workspace import Workspace, init_workspace
from research_kit.dp import ledger
from research_kit.dp.accounting import rho_text
from research_kit.ingest.pipeline import ingest
from research_kit.model.national_id import make
from research_kit.pseudonymise.keys import load_key, new_key
from research_kit.pseudonymise.optouts import Entry
from research_kit.pseudonymise.pseudonyms import pseudonym
from research_kit.simulator.export import SimulationSpec, simulate_export
from research_kit.studies.spec import load_pipeline
from research_kit.transparency import person, register

PATIENTS = 80
NEXT_YEAR = str(date.today() + timedelta(days=365))
OPTED_OUT_ON = "2025-01-31"  # the day P1's opt-out took effect (recorded today)
EARLIER_OPTOUTS = 12  # recorded in 2025-Q2: the register shows them rounded to 10
OUTPUT = """
import pandas as pd
import research_kit as rk

rk.outputs.table(pd.DataFrame({"group": ["a", "b"], "n": [40, 55]}), "big", counts=["n"], population="everyone")
"""
USERS = {"rita": "researcher", "ana": "researcher", "carla": "committee", MEMBER: "committee", STEWARD: "steward"}


@dataclass
class Registry:
    ws: Workspace
    key_file: Path
    raw: Path
    patients: pl.DataFrame  # the raw export's patients (identifiable)
    ids: dict[str, str]  # "P1" (in e1, opted out, not in e2), "P2" (in e1 and e2): their national IDs
    out: Path  # a folder outside the workspace, for registers and letters


def _dp_count(ws: Workspace, study: str, who: str) -> None:
    import research_kit as rk

    with audit.acting(who):
        rk.dp.count("patients", study=study, tier="real", rho=0.01, workspace=ws.root)


def _build(base: Path) -> None:
    """The scenario, in the order time would make it (runs and queries on e1 before anyone opts out)."""
    ws, _ = init_workspace(base / "ws")
    key_file, _ = new_key(base / "secrets" / "k.key")
    simulate_export(SimulationSpec(patients=PATIENTS, seed=26, format="parquet"), base / "raw")
    key = load_key(key_file)
    ingest(ws, [base / "raw"], "e1", key)
    people(ws, **USERS)
    for name in USERS:
        with audit.acting(STEWARD):
            users.set_password(ws, name, PASSWORD)
    grant = permit_actions.grant_directly
    grant(ws, actor=MEMBER, study="alpha", users_named="rita", holder="Luxembourg Institute of Health",
          purpose="Natural history of a rare myopathy", category="scientific-research", tier="real", tables="all",
          until=NEXT_YEAR, legal_basis="Art. 68 EHDS; DAC 2026-14", rho="0.5")  # fmt: skip
    grant(ws, actor="carla", study="counts", users_named="ana", holder="STATEC <b>&</b> partners",
          purpose="Prevalence by sex <script>alert(1)</script>", category="statistics", tier="dp",
          tables="patients", columns="patients.sex", until=NEXT_YEAR, legal_basis="DAC 2026-16", rho="0.2",
          optout_exception="none asked")  # fmt: skip
    old = grant(ws, actor=MEMBER, study="old", users_named="ana", holder="Uni.lu", purpose="An ended study",
                category="education", tier="twin", tables="all", until=NEXT_YEAR,
                legal_basis="DAC 2023-01")  # fmt: skip
    with ws.catalog() as conn:  # it ended two years ago, its results never published: overdue
        conn.execute("UPDATE permits SET until = ? WHERE id = ?", (str(date.today() - timedelta(days=730)), old.id))
    refused = permit_actions.apply(ws, actor="rita", study="gamma", holder="A company", purpose="Marketing",
                                   category="scientific-research", tier="real", tables="all",
                                   until=NEXT_YEAR)  # fmt: skip
    permit_actions.refuse(ws, actor=MEMBER, permit_id=refused.id, note="not a purpose the law allows")
    with audit.acting(MEMBER):
        ledger.grant_twin(ws, 1.0, owners=[STEWARD], note="DAC 2026-12 #4")

    # alpha runs its pipeline on e1, its output is released; it asks a DP query of e1.
    project = Project(base / "project", ws)
    project.notebook("out", "unused = 0", OUTPUT)
    action = {"notebook": "notebooks/out.ipynb", "outputs": {"moderately_sensitive": {"big": "big.csv"}}}
    pipeline = load_pipeline(project.pipeline("alpha", {"a": action}, permitted=False))
    request = runs.run(ws, actor="rita", pipeline=pipeline, extract="e1").request
    assert request is not None
    from research_kit.review import decisions, release

    with audit.acting("rita"):
        decisions.submit(ws, request)
    for member in (MEMBER, "carla"):
        with audit.acting(member):
            decisions.vote(ws, request, "approve", comment="fine")
    with audit.acting(MEMBER):
        release.release(ws, request)
    _dp_count(ws, "alpha", "rita")

    # Opt-outs: twelve recorded in 2025-Q2 (as if then), and P1's today, effective on OPTED_OUT_ON; then e2.
    raw = pl.read_parquet(base / "raw" / "patients.parquet")
    in_e1 = set(pl.read_parquet(get_extract(ws, "e1").table_path("patients"))["pseudonym"])
    ids = [n for n in raw["national_id"].to_list() if pseudonym(key, n) in in_e1]
    with ws.catalog() as conn:
        for number in range(EARLIER_OPTOUTS):
            conn.execute(
                "INSERT INTO optouts (person, effective, recorded_by, recorded_at) VALUES (?, ?, ?, ?)",
                (f"{number:064x}", "2025-05-15", STEWARD, f"2025-05-{15 + number:02d}T10:00:00+00:00"),
            )
    optouts.add(ws, actor=STEWARD, lines=[ids[0]], effective=date.fromisoformat(OPTED_OUT_ON), key_file=key_file)
    ingest(ws, [base / "raw"], "e2", key)
    _dp_count(ws, "counts", "ana")  # counts asks e2 (the newest)
    (base / "ids.json").write_text(json.dumps({"P1": ids[0], "P2": ids[1], "P3": ids[2]}))


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("transparency")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("RESEARCH_KIT_HOME", str(base / "ws"))
        patch.setenv("RESEARCH_KIT_USER", "test-runner")
        patch.setenv("XDG_RUNTIME_DIR", str(base / "run"))
        for name in ("RESEARCH_KIT_TIER", "RESEARCH_KIT_EXTRACT", "RESEARCH_KIT_STUDY"):
            patch.delenv(name, raising=False)
        _build(base)
    return base


@pytest.fixture
def registry(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    base = tmp_path / "base"
    shutil.copytree(template, base, ignore=shutil.ignore_patterns("project", "run"))
    (base / "secrets").chmod(0o700)
    monkeypatch.setenv("RESEARCH_KIT_HOME", str(base / "ws"))
    monkeypatch.setenv("RESEARCH_KIT_KEY_FILE", str(base / "secrets" / "k.key"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("RESEARCH_KIT_EXTRACT", raising=False)
    ws = Workspace(base / "ws")
    for name in USERS:
        identity.login(ws, name, PASSWORD)
    out = tmp_path / "public"
    out.mkdir()
    return Registry(ws, base / "secrets" / "k.key", base / "raw", pl.read_parquet(base / "raw" / "patients.parquet"),
                    json.loads((base / "ids.json").read_text()), out)  # fmt: skip


def published(registry: Registry, *extra: str) -> Path:
    target = registry.out / "register"
    code, out, err = run("--as", MEMBER, "transparency", "publish", str(target), *extra)
    assert code == 0, err
    assert f"the transparency register is in {target}" in out
    return target


def files(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): p.read_text(encoding="utf-8") for p in sorted(folder.rglob("*")) if p.is_file()}


def identifiers(registry: Registry) -> list[str]:
    """Every direct identifier of every patient: national IDs, full names, and extract pseudonyms."""
    raw = registry.patients
    found = [*raw["national_id"].to_list()]
    found += [f"{f} {last}" for f, last in zip(raw["first_name"].to_list(), raw["last_name"].to_list(), strict=True)]
    for extract in ("e1", "e2"):
        found += pl.read_parquet(get_extract(registry.ws, extract).table_path("patients"))["pseudonym"].to_list()
    return found


# -- the register ---------------------------------------------------------------------------------------------------


def test_the_register_lists_every_permit_with_its_budget_results_and_releases_and_no_user(registry: Registry) -> None:
    target = published(registry)
    data = json.loads((target / "register.json").read_text(encoding="utf-8"))
    by_study = {p["study"]: p for p in data["permits"]}
    assert set(by_study) == {"alpha", "counts", "old", "gamma", "@twin"}
    alpha = by_study["alpha"]
    assert (alpha["status"], alpha["purpose"], alpha["category"], alpha["holder"], alpha["tier"]) == (
        "granted", "Natural history of a rare myopathy", "scientific-research", "Luxembourg Institute of Health",
        "real",
    )  # fmt: skip
    assert (alpha["data"], alpha["versions"], alpha["until"]) == (None, "new", NEXT_YEAR)
    assert alpha["granted_on"] == str(date.today())
    counts = by_study["counts"]
    assert counts["data"] == [{"table": "patients", "columns": ["pseudonym", "sex"]}]
    assert (counts["tier"], counts["optout_exception"]) == ("dp", "none asked")
    assert by_study["gamma"]["status"] == "refused"
    assert by_study["gamma"]["budget"] is None
    twin = by_study["@twin"]
    assert (twin["for"], twin["holder"]) == ("registry-twin", "the registry")
    assert all("users" not in p for p in data["permits"])

    # The privacy budget spent per permit is the ledger's (spent and reserved), its epsilon at the policy's delta.
    for study in ("alpha", "counts"):
        balance = ledger.balance(registry.ws, study)
        assert by_study[study]["budget"]["rho_spent"] == rho_text(balance.spent + balance.reserved), study
        assert by_study[study]["budget"]["rho_granted"] == rho_text(balance.granted), study
        assert by_study[study]["budget"]["queries"] == 1
    assert by_study["alpha"]["budget"]["epsilon_spent"] > 0
    assert data["policy"]["delta"] == registry.ws.policy().dp.delta

    # The release, with its checksums: the bundle's, as the catalog recorded it, and each output's.
    with registry.ws.catalog() as conn:
        bundle = conn.execute("SELECT bundle_sha256 FROM requests WHERE state = 'released'").fetchone()[0]
        output = conn.execute("SELECT sha256 FROM request_outputs WHERE status != 'gated'").fetchone()[0]
    (released,) = data["releases"]
    assert (released["study"], released["permit"], released["bundle_sha256"]) == ("alpha", alpha["id"], bundle)
    assert released["outputs"] == [{"name": "a/big", "sha256": output, "extract": "e1"}]
    assert alpha["releases"] == [released["request"]]
    pages = files(target)
    for lang in ("en", "fr", "de"):
        assert bundle in pages[f"{lang}/index.html"]
        assert output in pages[f"{lang}/permits/{alpha['id']}.html"]

    # Publication against the 18-month duty: the ended permit's results are overdue.
    old = by_study["old"]
    assert (old["status"], old["results"]["status"], old["results"]["overdue"]) == ("expired", "not yet", True)
    assert alpha["results"]["overdue"] is False
    assert "overdue since" in pages[f"en/permits/{old['id']}.html"]
    assert "en retard depuis le" in pages[f"fr/permits/{old['id']}.html"]
    assert "überfällig seit dem" in pages["de/index.html"]

    # Nobody is named: no user of the workspace, by default.
    for name in USERS:
        assert not any(re.search(rf"\b{re.escape(name)}\b", text) for text in pages.values()), name


def test_opt_outs_are_counted_per_quarter_small_counts_hidden_and_rounded(registry: Registry) -> None:
    data = json.loads((published(registry) / "register.json").read_text(encoding="utf-8"))
    quarters = {q["quarter"]: q for q in data["optouts"]["by_quarter"]}
    assert quarters["2025-Q2"] == {"quarter": "2025-Q2", "count": 10, "fewer_than": None}  # 12, rounded to 5
    today = date.today()
    this = f"{today.year}-Q{(today.month - 1) // 3 + 1}"
    assert this not in quarters  # P1's, this quarter: shown once the quarter has ended, when it can no longer change
    assert max(quarters) < this
    assert quarters["2025-Q3"] == {"quarter": "2025-Q3", "count": None, "fewer_than": 10}  # none: not shown as 0
    assert "total" not in data["optouts"]  # one rounded from exact counts would tell a hidden quarter from zero
    later = register.gather(registry.ws, today=date(today.year + 1, 1, 1))["optouts"]["by_quarter"]
    assert {"quarter": this, "count": None, "fewer_than": 10} in later  # P1's opt-out alone: never shown as 1
    assert all(q["count"] is None or q["count"] % 5 == 0 for q in quarters.values())
    assert register.shown_count(0, 10, 5) == {"count": None, "fewer_than": 10}  # a zero tells nothing either
    assert register.shown_count(12, 10, 1) == {"count": 12, "fewer_than": None}


def test_the_register_holds_no_identifier_needs_no_script_and_escapes_every_text(registry: Registry) -> None:
    pages = files(published(registry))
    everything = "\n".join(pages.values())
    leaked = [value for value in identifiers(registry) if value in everything]
    assert not leaked, f"{len(leaked)} identifiers in the register"
    html = {name: text for name, text in pages.items() if name.endswith(".html")}
    assert len(html) == 1 + 3 * (1 + 5)  # the landing page; per language, the register and each permit's page
    for name, text in html.items():
        assert "<script" not in text.lower(), name
        assert not re.search(r"(src|href)=\"(https?:)?//", text), name  # nothing loaded from elsewhere
        assert "default-src 'none'" in text, name
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in pages["en/index.html"]
    assert "STATEC &lt;b&gt;&amp;&lt;/b&gt; partners" in pages["de/index.html"]
    # The language switch: each page links the same page in the other languages.
    assert 'href="../fr/index.html"' in pages["en/index.html"]
    assert 'href="../../de/permits/1.html"' in pages["fr/permits/1.html"]
    assert "Registre de transparence" in pages["fr/index.html"]
    assert "Transparenzregister" in pages["de/index.html"]
    assert "The registry's differentially private synthetic twin" in pages["en/index.html"]
    assert (published(registry) / register.MARKER).is_file()


def test_publishing_replaces_a_previous_register_only_is_audited_and_names_users_when_the_policy_says(
    registry: Registry,
) -> None:
    target = published(registry)
    (target / "stale.html").write_text("an old page")
    policy = registry.ws.policy_path
    policy.write_text(policy.read_text().replace("publish_user_names = false", "publish_user_names = true"))
    again = published(registry)
    assert not (again / "stale.html").exists()  # replaced whole
    data = json.loads((again / "register.json").read_text(encoding="utf-8"))
    alpha = next(p for p in data["permits"] if p["study"] == "alpha")
    assert alpha["users"] == ["rita"]
    assert "<dd>rita</dd>" in (again / "en" / "permits" / f"{alpha['id']}.html").read_text(encoding="utf-8")
    assert not list(registry.out.glob(".register.staging-*"))  # no staging folder left

    other = registry.out / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    code, _, err = run("--as", MEMBER, "transparency", "publish", str(other))
    one_line(code, err, errors.PolicyRefusal.exit_code, "exists and is not a transparency register")
    assert (other / "notes.txt").read_text() == "keep me"
    code, _, err = run("--as", "rita", "transparency", "publish", str(registry.out / "r2"))
    one_line(code, err, errors.PolicyRefusal.exit_code, "publishing the transparency register needs the steward")
    assert not (registry.out / "r2").exists()
    entries = [e for e in audit.read_entries(registry.ws.audit_path) if e["action"] == "transparency.publish"]
    assert [e["actor"] for e in entries] == [MEMBER, MEMBER]
    assert entries[-1]["details"]["permits"] == 5


# -- a person's letter ----------------------------------------------------------------------------------------------


def letter(registry: Registry, national_id: str, *extra: str, who: str = STEWARD) -> tuple[int, str, str, Path]:
    target = registry.out / "letter.html"
    code, out, err = run("--as", who, "transparency", "person", "--out", str(target), *extra, stdin=national_id + "\n")
    return code, out, err, target


def test_the_letter_of_a_patient_who_opted_out_part_way_names_e1_only_and_the_opt_out(registry: Registry) -> None:
    ws, key = registry.ws, load_key(registry.key_file)
    found = person.find(ws, key, Entry(registry.ids["P1"]))
    assert [e.id for e in found.extracts] == ["e1"]
    assert found.optout_since == OPTED_OUT_ON
    with ws.catalog() as conn:
        alpha = conn.execute("SELECT id FROM permits WHERE study = 'alpha'").fetchone()[0]
    assert [(p.id, p.extracts) for p in found.used] == [(alpha, ("e1",))]  # its run and its query on e1
    assert found.may_use == ()  # e1 may no longer be used for research, and e2 does not hold them
    assert [(r.study, r.extracts) for r in found.releases] == [("alpha", ("e1",))]

    code, out, err, target = letter(registry, registry.ids["P1"], "--lang", "en")
    assert code == 0, err
    assert "1 extract version hold" in out
    page = target.read_text(encoding="utf-8")
    assert "extract version e1, made on" in page
    assert "extract version e2" not in page
    opted = date.fromisoformat(OPTED_OUT_ON)
    assert f"has been in force since {opted.day} {opted:%B} {opted.year}" in page
    assert "Natural history of a rare myopathy" in page
    assert found.releases[0].bundle_sha256 in page
    assert stat.S_IMODE(target.stat().st_mode) == 0o600


def test_the_letter_of_a_patient_who_did_not_opt_out_names_e1_and_e2_in_their_language(registry: Registry) -> None:
    ws, key = registry.ws, load_key(registry.key_file)
    found = person.find(ws, key, Entry(registry.ids["P2"]))
    assert [e.id for e in found.extracts] == ["e1", "e2"]
    assert found.optout_since is None
    with ws.catalog() as conn:
        permit_ids = dict(conn.execute("SELECT study, id FROM permits").fetchall())
    assert [(p.id, p.extracts) for p in found.used] == [(permit_ids["alpha"], ("e1",)), (permit_ids["counts"], ("e2",))]
    # In force and covering e2: the two studies' permits, and the registry twin's (a DP twin may read e2).
    assert [(p.id, p.extracts) for p in found.may_use] == [
        (permit_ids["alpha"], ("e2",)), (permit_ids["counts"], ("e2",)), (permit_ids["@twin"], ("e2",)),
    ]  # fmt: skip
    assert found.may_use[-1].registry_twin

    code, _, err, target = letter(registry, registry.ids["P2"])  # the policy's default language: French
    assert code == 0, err
    page = target.read_text(encoding="utf-8")
    assert '<html lang="fr">' in page
    assert "version d'extrait e1" in page
    assert "version d'extrait e2" in page
    assert "Aucune opposition de votre part n'est enregistrée." in page
    code, _, err, target = letter(registry, registry.ids["P2"], "--lang", "de")
    assert code == 0, err
    assert "Extraktversion e2, erstellt am" in target.read_text(encoding="utf-8")


def test_the_letter_says_nothing_of_anyone_else_and_never_holds_the_id(registry: Registry) -> None:
    ws, chosen = registry.ws, registry.ids["P2"]
    code, out, err, target = letter(registry, chosen, "--lang", "en")
    assert code == 0, err
    page = target.read_text(encoding="utf-8")
    key = load_key(registry.key_file)
    theirs = {chosen, pseudonym(key, chosen)}
    others = [value for value in identifiers(registry) if value not in theirs]
    assert not [value for value in others if value in page]
    row = registry.patients.filter(pl.col("national_id") == chosen).row(0, named=True)
    for value in (chosen, pseudonym(key, chosen), f"{row['first_name']} {row['last_name']}", row["last_name"]):
        assert value not in page
        assert value not in out + err
    log = ws.audit_path.read_text(encoding="utf-8")
    assert chosen not in log
    assert pseudonym(key, chosen) not in log
    (entry,) = [e for e in audit.read_entries(ws.audit_path) if e["action"] == "transparency.person"]
    assert (entry["actor"], entry["details"]) == (STEWARD, {"lang": "en", "extracts_found": 2})

    # The same letter whoever else the registry holds: every other patient taken out of both extracts.
    mine = pseudonym(key, chosen)
    for extract in ("e1", "e2"):
        path = get_extract(ws, extract).table_path("patients")
        pl.read_parquet(path).filter(pl.col("pseudonym") == mine).write_parquet(path)
    code, _, err, again = letter(registry, chosen, "--lang", "en")
    assert code == 0, err
    assert again.read_text(encoding="utf-8") == page


def test_an_unknown_person_gets_a_letter_a_malformed_id_one_line_and_only_a_steward_may_ask(
    registry: Registry,
) -> None:
    stranger = make(date(1990, 6, 15), 999)  # a valid national ID the registry does not hold
    assert stranger not in set(registry.patients["national_id"])
    code, out, err, target = letter(registry, stranger, "--lang", "en")
    assert code == 0, err
    assert "None of the registry's extract versions includes your data." in target.read_text(encoding="utf-8")
    assert stranger not in out + err + target.read_text(encoding="utf-8")
    target.unlink()

    chosen = registry.ids["P2"]
    code, out, err, target = letter(registry, chosen[:-1] + str((int(chosen[-1]) + 1) % 10))
    one_line(code, err, errors.BadInput.exit_code, "standard input: line 1: not a national ID")
    assert "no letter was written" in err
    assert chosen[:11] not in out + err
    assert not target.exists()
    code, _, err, _ = letter(registry, f"{chosen}\n{registry.ids['P1']}")
    one_line(code, err, errors.BadInput.exit_code, "a letter answers one person")
    for who in ("rita", "carla"):
        code, _, err, _ = letter(registry, chosen, who=who)
        one_line(code, err, errors.PolicyRefusal.exit_code, "needs the steward role")
    assert not target.exists()
    code, out, err = run("--as", STEWARD, "transparency", "person", "--out", str(target), chosen)
    one_line(code, err, errors.BadInput.exit_code, "read on standard input only, never as an argument")
    assert chosen[:11] not in out + err
    code, _, err, _ = letter(registry, chosen, "--lang", "lb")
    one_line(code, err, errors.BadInput.exit_code, "--lang 'lb': one of en, fr, de")
    assert not target.exists()
    audited = [e for e in audit.read_entries(registry.ws.audit_path) if e["action"] == "transparency.person"]
    assert len(audited) == 1  # the stranger's letter: nothing refused was audited as written

    # An extract made with another key cannot be searched: the letter says so rather than that it holds nobody.
    with registry.ws.catalog() as conn:
        conn.execute("UPDATE extracts SET key_fingerprint = ? WHERE id = 'e1'", ("0" * 16,))
    found = person.find(registry.ws, load_key(registry.key_file), Entry(chosen))
    assert ([e.id for e in found.extracts], found.unchecked) == (["e2"], ("e1",))
    code, _, err, target = letter(registry, chosen, "--lang", "en")
    assert code == 0, err
    assert "1 older extract version was made with an earlier key and could not be searched: e1." in target.read_text()


def test_at_a_terminal_the_id_is_asked_without_showing_it(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[str] = []

    def hidden(prompt: str, stream: object = None) -> str:
        asked.append(prompt)
        return registry.ids["P1"]

    monkeypatch.setattr("getpass.getpass", hidden)
    target = registry.out / "typed.html"
    code, out, err = run("--as", STEWARD, "transparency", "person", "--out", str(target), stdin=Terminal(""))
    assert code == 0, err
    assert asked == ["national ID (not shown): "]
    assert registry.ids["P1"] not in out + err + target.read_text(encoding="utf-8")
    code, _, err = run("--as", "rita", "transparency", "person", "--out", str(target), stdin=Terminal(""))
    one_line(code, err, errors.PolicyRefusal.exit_code, "needs the steward role")
    assert len(asked) == 1  # a researcher is refused before anything is asked
