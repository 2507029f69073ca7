from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pandas as pd
import pytest

from research_kit import __version__
from research_kit.core import catalog

from .conftest import Run

VERBS = [
    [],
    ["init"],
    ["simulate"],
    ["demo"],
    ["audit"],
    ["audit", "verify"],
    ["audit", "show"],
    ["serve"],
    ["users", "password"],
    ["sandbox"],
    ["sandbox", "check"],
    ["sandbox", "waive"],
]


def assert_one_line_error(result, code: int, *fragments: str) -> None:  # type: ignore[no-untyped-def]
    assert result.returncode == code, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def test_version(cli: Run) -> None:
    assert cli("--version").stdout.strip() == f"research-kit {__version__}"


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v) or "root")
def test_every_verb_has_help(cli: Run, verb: list[str]) -> None:
    out = cli(*verb, "--help").stdout
    assert "Usage:" in out


def test_init_creates_a_private_workspace(cli: Run, home: Path) -> None:
    out = cli("init").stdout
    assert "workspace created" in out
    assert stat.S_IMODE(home.stat().st_mode) == 0o700
    assert (home / "research-kit.toml").is_file()
    assert (home / "catalog.sqlite").is_file()
    assert stat.S_IMODE((home / "audit.jsonl").stat().st_mode) == 0o600
    assert f"schema version {catalog.latest_version()}" in out


def test_init_at_a_path_and_again_keeps_an_edited_policy(cli: Run, tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    cli("init", str(target))
    policy = target / "research-kit.toml"
    policy.write_text(policy.read_text().replace("min_cell_count = 10", "min_cell_count = 12"))
    out = cli("init", str(target)).stdout
    assert "already initialised" in out
    assert "min_cell_count = 12" in policy.read_text()


def test_a_broken_policy_is_one_line_naming_the_key(cli: Run, home: Path) -> None:
    cli("init")
    policy = home / "research-kit.toml"
    policy.write_text(policy.read_text().replace("min_cell_count = 10", "min_cell_count = -3"))
    assert_one_line_error(cli("init", check=False), 3, "[sdc].min_cell_count must be >= 1")


def test_commands_without_a_workspace_say_how_to_make_one(cli: Run) -> None:
    assert_one_line_error(cli("simulate", "--patients", "10", check=False), 4, "run 'research-kit init'")
    assert_one_line_error(cli("audit", "verify", check=False), 4, "run 'research-kit init'")


def test_bad_arguments_are_refused_with_distinct_codes(cli: Run) -> None:
    cli("init")
    assert_one_line_error(cli("simulate", "--format", "xlsx", check=False), 3, "--format must be one of")
    assert_one_line_error(cli("simulate", "--patients", "0", check=False), 3, "--patients must be at least 1")
    assert cli("simulate", "--patients", "many", check=False).returncode == 2  # a usage error
    assert_one_line_error(cli("simulate", "--name", "../escape", check=False), 3, "export name")


def test_simulate_writes_registers_and_audits_an_export(cli: Run, home: Path) -> None:
    cli("init")
    out = cli("simulate", "--patients", "800", "--seed", "3", "--format", "csv").stdout
    folder = home / "raw" / "sim-n800-s3"
    patients = pd.read_csv(folder / "patients.csv", dtype=str)
    assert len(patients) == 800
    assert re.search(r"patients\s+│\s+800", out)
    assert "distinct diagnosed diseases" in out
    entries = [json.loads(line) for line in (home / "audit.jsonl").read_text().splitlines()]
    assert entries[-1]["action"] == "raw.simulate"
    assert entries[-1]["details"]["rows"]["patients"] == 800
    again = cli("simulate", "--patients", "800", "--seed", "3", "--format", "csv", check=False)
    assert_one_line_error(again, 3, "already exists")
    cli("simulate", "--patients", "800", "--seed", "3", "--format", "csv", "--replace")


def test_nothing_identifying_is_printed_or_audited(signed_in: Run, home: Path) -> None:
    cli = signed_in
    out = cli("simulate", "--patients", "500", "--seed", "8", "--faults", "--format", "csv")
    patients = pd.read_csv(home / "raw" / "sim-n500-s8-faults" / "patients.csv", dtype=str, encoding="latin-1")
    printed = out.stdout + out.stderr + cli("audit", "show", "--last", "50").stdout
    audited = (home / "audit.jsonl").read_text(encoding="utf-8") + (home / "catalog.sqlite").read_bytes().decode(
        "latin-1"
    )
    for value in pd.concat([patients["national_id"], patients["street"]]).dropna().unique():
        assert value.strip() not in printed
        assert value.strip() not in audited


def test_audit_verify_passes_then_names_the_tampered_entry(cli: Run, home: Path) -> None:
    cli("init")
    cli("simulate", "--patients", "50")
    cli("simulate", "--patients", "50", "--seed", "2")
    assert "audit log intact: 3 entries" in cli("audit", "verify").stdout
    log = home / "audit.jsonl"
    lines = log.read_text().splitlines(keepends=True)
    lines[1] = lines[1].replace('"patients": 50', '"patients": 5000')
    log.write_text("".join(lines))
    assert_one_line_error(cli("audit", "verify", check=False), 6, "entry 2", "edited")


def test_audit_show_lists_who_did_what(signed_in: Run) -> None:
    signed_in("simulate", "--patients", "20")
    out = signed_in("audit", "show").stdout
    assert "workspace.init" in out
    assert "stew" in out
    assert "user.add" in out
    assert "cli.signin" in out
    assert "raw.simulate" in out


@pytest.mark.slow
def test_demo_runs_the_flow_and_says_where_to_look(cli: Run, home: Path, tmp_path: Path) -> None:
    out = cli("demo", "--patients", "1500", "--seed", "4").stdout
    assert "workspace created" in out
    assert "demo mode: identities are not verified ([auth].mode = 'demo')" in out  # said out loud, brackets and all
    assert re.search(r"patients\s+│\s+1,500", out)
    assert (home / "raw" / "demo-faults" / "faults.json").is_file()
    assert "new key written" in out
    assert (tmp_path / ".secrets" / "pseudonymisation.key").is_file()
    assert "reconciliation of extract demo-1" in out
    assert "reconciliation of extract demo-faults-1" in out
    assert "re-identification risk of extract demo-1" in out
    assert "count of diagnoses by disease_group" in out
    # Three opt-outs recorded before the first ingest: the extract leaves them out, and says so.
    assert "sam (steward) recorded 3 opt-out(s) (0 already in the register)" in out
    assert "opted out (register) 3" in out
    assert re.search(r"rita applied for permit \d+ \(study registry-overview, real tier, every table", out)
    assert "replayed from the ledger, nothing spent" in out
    assert "run 1 of example on demo-1: succeeded (3 ran;" in out
    assert "run again with nothing changed: 3 of 3 actions reused" in out
    assert "queued for review: counts/table: first version" in out
    # At 1,500 patients the default policy (set for the 30,000-patient registry) refuses the twin, and says why.
    # 1,500 patients: the default twin now reaches the quality gate, so whether it is published rests on privacy
    # figures near their limits, which depend on the random key (it decides the pseudonyms, hence the held-out
    # patients). Either outcome is the policy's; the audit count below follows it.
    twin_published = "not published" not in out.split("7. the synthetic twin")[1].split("... and a differentially")[0]
    if not twin_published:
        assert "twin of extract 'demo-1' not published: " in out
    assert (home / "reports" / "synth" / "demo-1" / "report.html").is_file()
    assert (home / "synthetic" / "demo-1").exists() == twin_published
    # The example's outputs were checked into a request, and submitted by the demo's researcher.
    assert "counts/table  fail" in out
    assert "row 3, n: 1 patients, fewer than the minimum 10" in out
    # The researcher tried to suppress its small cells: too small a table to protect against a solver (1,500
    # patients), so it is rounded instead.
    assert "counts/table: suppression refused: counts_by_letter.csv: suppression cannot protect" in out
    assert "rita rounded counts/table instead: new version, checks" in out
    assert "rita (the researcher) submitted request 1" in out
    assert "research-kit --as carla review approve 1" in out
    # init, 2 exports, 2 extracts, risk, the twin refused, 1 grant, 4 DP answers; 4 users; the pipeline
    # registered, 3 actions, 3 outputs queued, a request opened and checked, 2 runs; the request submitted
    # (and checked again); the three studies that need no twin: 3 grants, 3 registrations, 19 DP queries, 3
    # actions, 23 outputs queued, 3 requests opened, checked, run, checked and submitted (66); web passwords
    # for the 4 demo users; each of the 4 studies' pseudonym secret, made by its first run; the rounding of the
    # example's table (its suppression refused) and its new version's checks
    assert "request 2 (registry-overview): submitted, 13 outputs: 13 pass" in out
    assert "request 3 (diagnostic-delay): submitted, 4 outputs: 4 pass" in out
    assert "request 4 (survival): submitted, 6 outputs: 6 pass" in out
    if not twin_published:
        assert "phenotype-prediction: skipped: it trains on the synthetic twin, and none is published" in out
    # Other sources: a third export simulated, ingested from its hospital CSV (mapped) with the same patients'
    # phenopackets, and the common data set reports of both extracts (4 more).
    assert "reconciliation of extract demo-sources-1" in out
    assert re.search(r"hospital-csv\s+│\s+csv\s+│", out)
    assert re.search(r"phenopackets\s+│\s+phenopackets\s+│", out)
    assert "EU common data set: coverage and quality of extract demo-sources-1" in out
    assert (home / "reports" / "quality" / "demo-1" / "quality.html").is_file()
    # The DP twin beside it: the committee's grant of the DP-twin budget, its spend, its publication or refusal.
    assert "granted the registry's DP-twin budget rho 1" in out
    first = int(re.search(r"audit log intact: (\d+) entries", out).group(1))  # type: ignore[union-attr]
    # ... and each of the 4 studies' owner, named at its first grant (the phenotype study's entries besides, when
    # the default twin was published and it ran)
    # ... and the opt-out register's recording; the example study's permit (applied for, granted with its
    # budget); each of the three other studies' permit applied for and granted (one more line than a bare grant);
    # the registry twin's permit, granted with the DP-twin budget to the steward who builds it; the transparency
    # register published, a resident's letter written, the dataset catalogue written
    assert first == 127 if not twin_published else first > 127
    assert (home / "public" / "register" / "register.json").is_file()
    assert (home / "public" / "catalogue" / "catalogue.ttl").is_file()
    assert (home / "reports" / "letters" / "resident.html").stat().st_mode & 0o777 == 0o600
    logins = home / "demo-logins.tsv"
    assert logins.stat().st_mode & 0o777 == 0o600
    assert [line.split("\t")[:2] for line in logins.read_text().splitlines()] == [
        ["carla", "committee"],
        ["chen", "committee"],
        ["rita", "researcher"],
        ["sam", "steward"],
    ]
    assert "start the committee's review app:   .venv/bin/research-kit serve" in out
    assert re.search(r"carla\s+committee\s+\S{16}", out)
    assert "where to look" in out
    rerun = cli("demo", "--patients", "1500", "--seed", "4").stdout  # a second run adds new extract versions
    assert "already initialised" in rerun
    assert "recorded 0 opt-out(s) (3 already in the register)" in rerun
    assert "using the key" in rerun
    assert "reconciliation of extract demo-2" in rerun
    # The twin refused again, a grant and 4 DP answers again; the pipeline's 3 actions on the new extract and
    # 2 runs. The same seed gave the same registry, so its outputs are those already queued: none queued again.
    # The three studies run again on the new extract (their DP answers replayed: the same data), nothing new
    # queued, no new grant (each has what it asked for): 3 actions and 3 runs. New web passwords for the 4 users.
    shift = 1 if twin_published else 0  # the phenotype study's run on demo-1, when it had a twin to train on
    assert f"run {6 + shift} of example on demo-2: succeeded (3 ran;" in rerun
    assert f"run {10 + shift} of survival on demo-2: succeeded (1 ran;" in rerun
    assert "granted" not in rerun.split("11. four studies")[1]
    assert "reconciliation of extract demo-sources-2" in rerun
    assert "granted the registry's DP-twin budget" not in rerun  # what the first grant left pays for the second
    # ... and the new overview study's owner; 4 more for the sources; the second DP twin's spend and its outcome
    again = int(re.search(r"audit log intact: (\d+) entries", rerun).group(1))  # type: ignore[union-attr]
    # ... and the opt-out register's second recording (the same three people: none new); the register, the letter
    # and the catalogue written again
    # The rerun's default twin may be published where the first run's was refused (its figures depend on the
    # random key): then the phenotype study runs on it too, and only the order of the counts is fixed.
    twin_again = "not published" not in rerun.split("7. the synthetic twin")[1].split("... and a differentially")[0]
    assert again == 164 if not (twin_published or twin_again) else again > first + 30, (first, again)


def test_key_ingest_and_risk_from_the_shell(signed_in: Run, home: Path, tmp_path: Path) -> None:
    cli = signed_in
    key = tmp_path / "keys" / "registry.key"
    env = {"RESEARCH_KIT_KEY_FILE": str(key)}
    assert "fingerprint" in cli("key", "new", env=env).stdout
    assert_one_line_error(cli("key", "new", env=env, check=False), 5, "never overwritten")
    cli("simulate", "--patients", "1200", "--seed", "6", "--faults", "--format", "csv")
    raw = home / "raw" / "sim-n1200-s6-faults"
    out = cli("ingest", str(raw), "--extract", "2026-11", env=env).stdout
    assert "reconciliation of extract 2026-11" in out
    assert "balanced" in out
    assert "2026-11" in cli("extracts").stdout
    again = cli("ingest", str(raw), "--extract", "2026-11", env=env, check=False)
    assert_one_line_error(again, 5, "extracts are immutable")
    risk = cli("risk", "2026-11", "--enforce-k", "3").stdout
    assert "k-anonymity" in risk
    assert "cost of k = 3" in risk
    report = json.loads((home / "reports" / "risk" / "2026-11-k3.json").read_text())
    assert report["enforce_k"]["risk"]["k"] >= 3
    assert report["enforce_k"]["within_max_suppression"]
    assert "warning" not in risk
    assert (home / "reports" / "risk" / "2026-11-k3.png").read_bytes()[:4] == b"\x89PNG"
    # A k that takes more suppression than the policy allows: the figure and the limit, on one warning line.
    policy = home / "research-kit.toml"
    policy.write_text(policy.read_text().replace("max_suppression = 0.05", "max_suppression = 0.01"))
    over = cli("risk", "2026-11", "--enforce-k", "40").stdout
    report = json.loads((home / "reports" / "risk" / "2026-11-k40.json").read_text())
    suppressed, records = report["enforce_k"]["rows_suppressed"], report["risk"]["records"]
    assert not report["enforce_k"]["within_max_suppression"]
    warning = next(line for line in over.splitlines() if line.startswith("warning:"))
    assert warning == (
        f"warning: enforcing k = 40 suppresses {suppressed:,} of {records:,} records ({suppressed / records:.1%}), "
        "more than the policy allows ([risk].max_suppression = 1.0%); no generalisation of the quasi-identifiers "
        "keeps within it"
    )
    assert_one_line_error(cli("risk", "nope", check=False), 4, "no extract 'nope'")


def test_ingest_errors_are_one_line(signed_in: Run, home: Path, tmp_path: Path) -> None:
    cli = signed_in
    key = tmp_path / "k.key"
    env = {"RESEARCH_KIT_KEY_FILE": str(key)}
    assert_one_line_error(cli("ingest", str(tmp_path), "--extract", "x", env=env, check=False), 4, "key new")
    cli("key", "new", env=env)
    key.chmod(0o644)
    assert_one_line_error(cli("ingest", str(tmp_path), "--extract", "x", env=env, check=False), 5, "chmod 600")
    key.chmod(0o600)
    bad = tmp_path / "export"
    bad.mkdir()
    for name in ("patients", "diagnoses", "phenotypes", "encounters"):
        (bad / f"{name}.csv").write_text("a,b\n1,2\n")
    result = cli("ingest", str(bad), "--extract", "x", env=env, check=False)
    assert_one_line_error(result, 3, "patients.csv", "missing columns")
    assert not (home / "extracts" / "x").exists()
    assert_one_line_error(cli("ingest", str(bad), "--extract", "../x", env=env, check=False), 3, "extract id")


def test_sandbox_check_says_how_code_is_confined_and_a_waiver_needs_a_steward(signed_in: Run, home: Path) -> None:
    cli = signed_in
    out = cli("sandbox", "check").stdout
    assert "sandbox: bwrap" in out
    assert "works here" in out
    assert "limits per action: memory 4096 MiB" in out
    cli("--as", "stew", "users", "add", "rita", "--role", "researcher", "--password-stdin",
        input_text="a long test password\n")  # fmt: skip
    cli("login", "rita", "--password-stdin", input_text="a long test password\n")
    waive = cli("--as", "rita", "sandbox", "waive", "--reason", "dev", check=False)
    assert_one_line_error(waive, 5, "needs the steward role")
    policy = home / "research-kit.toml"
    policy.write_text(policy.read_text().replace('sandbox = "bwrap"', 'sandbox = "container"'))
    assert (
        "the operator states that the platform's container confines" in cli("--as", "stew", "sandbox", "check").stdout
    )


@pytest.mark.parametrize(
    ("argv", "heavy"),
    [
        (["users", "list"], ("opendp", "pandas", "sdv", "papermill")),
        (["audit", "show"], ("opendp", "pandas", "sdv", "papermill")),
        (["pipeline", "check", "--help"], ("opendp", "sdv")),
        (["extracts"], ("opendp", "sdv", "papermill")),
    ],
)
def test_a_command_loads_only_the_libraries_it_needs(argv: list[str], heavy: tuple[str, ...], tmp_path: Path) -> None:
    """The CLI finds a command's module on first use: listing users never waits for OpenDP, SDV or pandas."""
    import subprocess
    import sys

    script = (
        "import sys\nfrom research_kit.cli import app\n"
        f"try:\n    app(args={argv!r}, prog_name='research-kit')\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in {list(heavy)!r} if m in sys.modules))"
    )
    env = {"RESEARCH_KIT_HOME": str(tmp_path / "ws"), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    for args in (["init", "--steward", "stew"], ["login", "stew"]):
        subprocess.run(
            [sys.executable, "-m", "research_kit", *args, "--password-stdin"], env=env, input="a long password\n",
            capture_output=True, check=True, text=True,
        )  # fmt: skip
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout


def test_simulate_never_writes_over_the_workspace_or_a_folder_it_did_not_make(
    cli: Run, home: Path, tmp_path: Path
) -> None:
    cli("init")
    for out in (home, tmp_path, home / "extracts" / "x"):
        done = cli("simulate", "--patients", "20", "--out", str(out), "--replace", check=False)
        assert_one_line_error(done, 3, "holds or lies in the workspace")
    real = tmp_path / "hospital-export"
    real.mkdir()
    (real / "patients.csv").write_text("national_id\n1\n")
    done = cli("simulate", "--patients", "20", "--out", str(real), "--replace", check=False)
    assert_one_line_error(done, 3, "not an export the simulator wrote")
    assert (real / "patients.csv").read_text() == "national_id\n1\n"
    assert (home / "research-kit.toml").is_file()
    assert "audit log intact" in cli("audit", "verify").stdout
