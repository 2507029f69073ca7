from __future__ import annotations

import json
import re
import stat
from pathlib import Path

import pandas as pd
import pytest

from research_kit import __version__, catalog

from .conftest import Run

VERBS = [[], ["init"], ["simulate"], ["demo"], ["audit"], ["audit", "verify"], ["audit", "show"]]


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


def test_nothing_identifying_is_printed_or_audited(cli: Run, home: Path) -> None:
    cli("init")
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


def test_audit_show_lists_who_did_what(cli: Run) -> None:
    cli("init", env={"RESEARCH_KIT_USER": "alice"})
    out = cli("audit", "show").stdout
    assert "workspace.init" in out
    assert "alice" in out


def test_demo_runs_the_flow_and_says_where_to_look(cli: Run, home: Path) -> None:
    out = cli("demo", "--patients", "1500", "--seed", "4").stdout
    assert "workspace created" in out
    assert re.search(r"patients\s+│\s+1,500", out)
    assert "faults" in out
    assert (home / "raw" / "demo-faults" / "faults.json").is_file()
    assert "audit log intact: 3 entries" in out
    assert "where to look" in out
    rerun = cli("demo", "--patients", "1500", "--seed", "4").stdout  # a second run works over the first
    assert "already initialised" in rerun
    assert "audit log intact: 5 entries" in rerun
