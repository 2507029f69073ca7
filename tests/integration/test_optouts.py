"""The opt-out register honoured: no later extract holds an opted-out patient, and research refuses older extracts.

The command line runs in process (its real entry point), its standard input given as a pipe would give it.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest
from tests.conftest import MEMBER, STEWARD, people, sign_in

from research_kit.actions import extracts as extract_actions
from research_kit.actions import optouts as actions
from research_kit.cli import common, main
from research_kit.core import errors
from research_kit.core.errors import PolicyRefusal
from research_kit.core.extracts import RECONCILIATION, Extract, get_extract
from research_kit.core.workspace import Workspace, init_workspace
from research_kit.ingest.pipeline import WITHHELD_EXPORT, WITHHELD_REGISTER, ingest
from research_kit.model.tables import TABLE_NAMES
from research_kit.pseudonymise.keys import load_key, new_key
from research_kit.pseudonymise.pseudonyms import pseudonym
from research_kit.simulator.export import SimulationSpec, simulate_export
from research_kit.tiers import real_source

PATIENTS = 150


@dataclass
class Registry:
    ws: Workspace
    key_file: Path
    raw: Path
    patients: pl.DataFrame  # the raw export's patients (identifiable)


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with extract e1 of a small simulated registry, its raw export and its key (built once)."""
    base = tmp_path_factory.mktemp("optouts")
    ws, _ = init_workspace(base / "ws")
    key_file, _ = new_key(base / "secrets" / "k.key")
    simulate_export(SimulationSpec(patients=PATIENTS, seed=25, format="parquet"), base / "raw")
    ingest(ws, [base / "raw"], "e1", load_key(key_file))
    return base


@pytest.fixture
def registry(template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Registry:
    shutil.copytree(template, tmp_path / "base")
    base = tmp_path / "base"
    (base / "secrets").chmod(0o700)
    monkeypatch.setenv("RESEARCH_KIT_HOME", str(base / "ws"))
    monkeypatch.setenv("RESEARCH_KIT_KEY_FILE", str(base / "secrets" / "k.key"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.delenv("RESEARCH_KIT_EXTRACT", raising=False)
    ws = Workspace(base / "ws")
    people(ws, rita="researcher")
    return Registry(ws, base / "secrets" / "k.key", base / "raw", pl.read_parquet(base / "raw" / "patients.parquet"))


def in_extract(registry: Registry, extract: str) -> pl.DataFrame:
    """The raw patients whose pseudonym is in ``extract``'s patients table."""
    key = load_key(registry.key_file)
    found = set(pl.read_parquet(get_extract(registry.ws, extract).table_path("patients"))["pseudonym"])
    return registry.patients.filter(
        pl.col("national_id").map_elements(lambda n: pseudonym(key, n) in found, return_dtype=pl.Boolean)
    )


def test_an_opted_out_patient_is_in_no_later_extract_and_the_reconciliation_counts_them(registry: Registry) -> None:
    ws, key = registry.ws, load_key(registry.key_file)
    before = in_extract(registry, "e1")
    chosen = before.head(3)["national_id"].to_list()
    assert len(chosen) == 3
    done = actions.add(ws, actor=STEWARD, lines=chosen)
    assert (done.recorded, done.register.version) == (3, 3)

    result = ingest(ws, [registry.raw], "e2", key)
    gone = {pseudonym(key, n) for n in chosen}
    e2 = get_extract(ws, "e2")
    for table in TABLE_NAMES:  # not a row of theirs, in any table
        assert not set(pl.read_parquet(e2.table_path(table))["pseudonym"]) & gone, table
    e1 = get_extract(ws, "e1")
    kept = set(pl.read_parquet(e1.table_path("patients"))["pseudonym"]) - gone
    assert set(pl.read_parquet(e2.table_path("patients"))["pseudonym"]) == kept  # nobody else left out
    for table in TABLE_NAMES:  # each of their rows is counted withheld
        theirs = pl.read_parquet(e1.table_path(table)).filter(pl.col("pseudonym").is_in(list(gone))).height
        assert result.counts[table].withheld - get_withheld(e1, table) == theirs, table
        assert result.counts[table].balanced

    reconciliation = json.loads((e2.path / RECONCILIATION).read_text(encoding="utf-8"))
    why = reconciliation["patients"]["withheld_reasons"]
    assert why[WITHHELD_REGISTER] == 3
    # The export marks some patients opted out (the simulator does): withheld the same, and told to the steward.
    accepted_opted_out = int((registry.patients["vital_status"] == "opted out").sum())
    assert 0 < why[WITHHELD_EXPORT] <= accepted_opted_out
    assert reconciliation["optout_register"]["export_opted_out_not_in_register"] == why[WITHHELD_EXPORT]
    assert sum(why.values()) == result.counts["patients"].withheld
    assert "opted out" not in set(pl.read_parquet(e2.table_path("patients"))["vital_status"])
    assert e2.manifest["optout_register"] == {"version": 3, "count": 3, "newest": done.register.newest}
    assert reconciliation["optout_register"]["version"] == 3
    text = (e2.path / RECONCILIATION).read_text(encoding="utf-8") + (e2.path / "manifest.json").read_text()
    assert not any(n in text for n in chosen)


def get_withheld(extract: Extract, table: str) -> int:
    """Rows of ``table`` that ``extract``'s ingest withheld."""
    reconciliation = json.loads((extract.path / RECONCILIATION).read_text(encoding="utf-8"))
    return int(reconciliation[table]["withheld"])


def test_an_extract_built_before_the_latest_opt_out_is_refused_for_research_but_not_the_steward(
    registry: Registry,
) -> None:
    ws = registry.ws
    assert real_source(ws, "e1").name == "e1"  # nobody has opted out yet: e1 is current
    actions.add(ws, actor=STEWARD, lines=in_extract(registry, "e1").head(1)["national_id"].to_list())
    for named in ("e1", None):  # named, or the newest
        with pytest.raises(PolicyRefusal) as refused:
            real_source(ws, named)
        assert str(refused.value) == (
            "extract 'e1' was built before the latest opt-out (register version 1): ingest a new one; older "
            "extracts serve only to reproduce past releases, for the steward"
        )
    # The steward's own commands still read it, but no new twin is made from it: a twin made now would hold
    # the person who has opted out since.
    assert extract_actions.risk(ws, actor=STEWARD, extract="e1").extract_id == "e1"
    from research_kit.synth import build_twin

    with pytest.raises(PolicyRefusal, match="'e1' was built before the latest opt-out"):
        build_twin(ws, "e1")
    assert pl.read_parquet(get_extract(ws, "e1").table_path("patients")).height > 0
    ingest(ws, [registry.raw], "e2", load_key(registry.key_file))
    assert real_source(ws, None).name == "e2"
    with pytest.raises(PolicyRefusal, match="'e1' was built before the latest opt-out"):
        real_source(ws, "e1")
    actions.add(ws, actor=STEWARD, lines=in_extract(registry, "e1").tail(1)["national_id"].to_list())
    with pytest.raises(PolicyRefusal, match=r"'e2' was built before the latest opt-out \(register version 2\)"):
        real_source(ws, "e2")


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def run(*argv: str, stdin: str | io.StringIO = "") -> tuple[int, str, str]:
    """``research-kit ARGV`` in this process, with ``stdin`` piped in: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    common._acting.clear()
    code = 0
    with (
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        pytest.MonkeyPatch.context() as patch,
    ):
        patch.setattr("sys.stdin", io.StringIO(stdin) if isinstance(stdin, str) else stdin)
        try:
            contextvars.copy_context().run(main, list(argv))
        except SystemExit as stop:
            code = stop.code if isinstance(stop.code, int) else 1
    return code, out.getvalue(), err.getvalue()


def one_line(code: int, err: str, expected: int, says: str) -> None:
    assert code == expected, err
    assert "Traceback" not in err
    assert err.count("\n") == 1, err
    assert says in err, err


def test_the_command_line_reads_ids_on_standard_input_only_and_never_shows_one(registry: Registry) -> None:
    ws = registry.ws
    sign_in(ws, **{STEWARD: "steward", MEMBER: "committee", "rita": "researcher"})
    ids = in_extract(registry, "e1").head(3)["national_id"].to_list()
    # Never as an argument: the shell's history would keep it.
    code, _, err = run("--as", STEWARD, "optout", "add", ids[0])
    one_line(code, err, errors.BadInput.exit_code, "read on standard input only, never as arguments")
    assert ids[0] not in err
    code, _, err = run("--as", STEWARD, "optout", "add", stdin=Terminal(ids[0] + "\n"))  # typed, it would show
    one_line(code, err, errors.BadInput.exit_code, "never typed at a terminal")
    # A bad line refuses all of them, naming its line, never its value.
    code, out, err = run("--as", STEWARD, "optout", "add", stdin=f"{ids[0]}\n\n{ids[1][:-1]}\n{ids[2]}\n")
    one_line(code, err, errors.BadInput.exit_code, "standard input: line 3: not a national ID")
    assert not any(n[:11] in err + out for n in ids)
    code, out, err = run("--as", STEWARD, "optout", "add", "--date", "2025-01-31", stdin=f" {ids[0]} \n{ids[1]}\n")
    assert code == 0, err
    assert "2 recorded, 0 already in the register" in out
    code, out, err = run("--as", STEWARD, "optout", "add", stdin="\n".join(ids) + "\n")
    assert "1 recorded, 2 already in the register" in out
    assert not any(n[:11] in err + out for n in ids)
    code, out, err = run("--as", MEMBER, "optout", "count", "--json")
    assert code == 0, err
    assert json.loads(out) == {"count": 3, "version": 3, "newest": json.loads(out)["newest"]}
    one_line(*run("--as", "rita", "optout", "count")[::2], errors.PolicyRefusal.exit_code, "steward or committee")
    refused = run("--as", MEMBER, "optout", "add", stdin=ids[0] + "\n")
    one_line(refused[0], refused[2], errors.PolicyRefusal.exit_code, "needs the steward role")
    bad = registry.raw.parent / "bad.csv"
    bad.write_text(f"national_id\n{ids[0]}\n{ids[1]},2025-01-01,extra\n", encoding="utf-8")
    code, _, err = run("--as", STEWARD, "optout", "import", str(bad))
    one_line(code, err, errors.BadInput.exit_code, f"{bad}: row 3: 3 columns")
    assert not any(n[:11] in err for n in ids)
    assert "\n".join(ids) not in ws.audit_path.read_text(encoding="utf-8")
    code, _, err = run("--as", "rita", "query", "count", "patients", "--study", "s", "--extract", "e1")
    one_line(code, err, errors.PolicyRefusal.exit_code, "'e1' was built before the latest opt-out")


PSEUDONYMS_SEEN = """
import json
import research_kit as rk

json.dump(sorted(rk.load("patients")["pseudonym"]), open("seen.json", "w"))
"""


@pytest.mark.slow  # with the slow tests: make test stays under six minutes
def test_an_opted_out_patient_is_in_no_later_run_dp_answer_or_web_page(registry: Registry, tmp_path: Path) -> None:
    """End to end: after an opt-out and the next extract, a study's run, a DP query and every web page a
    committee member or steward opens leave the person out, by national ID, extract pseudonym or study pseudonym."""
    from tests.conftest import PASSWORD, Project, grant
    from tests.functional.webapp import browser

    import research_kit as rk
    from research_kit.actions import runs
    from research_kit.core import audit, permits
    from research_kit.core.catalog import transaction
    from research_kit.pseudonymise.pseudonyms import study_pseudonyms
    from research_kit.pseudonymise.study_secrets import study_secret
    from research_kit.studies.spec import load_pipeline

    ws, key = registry.ws, load_key(registry.key_file)
    sign_in(ws, rita="researcher", carla="committee", **{STEWARD: "steward"})
    grant(ws, "oo", 1.0, owner="rita")  # the shorthand: a real-tier permit naming rita, with a budget
    chosen = in_extract(registry, "e1").head(2)["national_id"].to_list()
    actions.add(ws, actor=STEWARD, lines=chosen)
    ingest(ws, [registry.raw], "e2", key)
    gone = [pseudonym(key, n) for n in chosen]

    project = Project(tmp_path / "project", ws)
    project.notebook("seen", "unused = 0", PSEUDONYMS_SEEN)
    action = {"notebook": "notebooks/seen.ipynb", "outputs": {"highly_sensitive": {"seen": "seen.json"}}}
    pipeline = load_pipeline(project.pipeline("oo", {"a": action}, permitted=False))
    with pytest.raises(PolicyRefusal, match="'e1' was built before the latest opt-out"):
        runs.run(ws, actor="rita", pipeline=pipeline, extract="e1")
    report = runs.run(ws, actor="rita", pipeline=pipeline)  # the newest extract: e2
    (outcome,) = report.actions.values()
    assert report.outcome == "succeeded", report.actions
    assert outcome.folder is not None
    seen = set(json.loads((outcome.folder / "outputs" / "seen.json").read_text()))
    with ws.catalog() as conn, transaction(conn):
        secret = study_secret(conn, ws.audit_path, permits.pseudonym_line(conn, "oo"))
    theirs = set(study_pseudonyms(secret, pl.Series(gone)).to_list())
    e2 = set(pl.read_parquet(get_extract(ws, "e2").table_path("patients"))["pseudonym"])
    assert len(seen) == len(e2)  # every patient of e2, under the study's pseudonyms
    assert set(study_pseudonyms(secret, pl.Series(sorted(e2))).to_list()) == seen
    assert not seen & theirs

    with audit.acting("rita"):
        with pytest.raises(PolicyRefusal, match="'e1' was built before the latest opt-out"):
            rk.dp.count("patients", study="oo", tier="real", rho=0.01, extract="e1", workspace=ws.root)
        assert rk.dp.count("patients", study="oo", tier="real", rho=0.01, workspace=ws.root).source == "e2"

    for name in ("carla", STEWARD, "rita"):  # every page each of them opens
        pages = browser(ws).sign_in(name, PASSWORD)
        for path in ("/permits", "/budget", "/audit", "/requests"):
            page = pages.get(path)
            assert page.status_code in (200, 403), (name, path)
            for shown in (*chosen, *gone, *theirs):
                assert shown not in page.text, (name, path)
