"""The published twin of the package's registry: its files, constraints, rare values, gate and audit."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
import pytest

from research_kit.core import audit
from research_kit.core.errors import BadInput, PolicyRefusal
from research_kit.core.extracts import get_extract
from research_kit.core.workspace import init_workspace
from research_kit.ingest.pipeline import ingest
from research_kit.pseudonymise.keys import load_key, new_key
from research_kit.simulator.export import SimulationSpec, simulate_export
from research_kit.synth import build_twin, constraints, reports_dir
from research_kit.synth.publish import STAGING
from research_kit.synth.tables import CHILDREN, KEY, TABLES, Granularity, Tables, read_tables, to_days
from research_kit.tiers import published_twins, real_source, twin_source

from .conftest import Registry, fast, set_policy


def _twin(registry: Registry) -> Tables:
    return read_tables(registry.twin.path)[0]


def _bounds(registry: Registry, tables: Tables) -> constraints.Bounds:
    """The real extract's own bounds: its granularity, its last day and its per-patient count ranges."""
    extract = get_extract(registry.ws, "e1")
    last = max(np.nanmax(to_days(f[c])) for f in tables.as_dict().values() for c in f if c.endswith("_date"))
    counts = {}
    for name in CHILDREN:
        per = tables.as_dict()[name].groupby(KEY).size().reindex(tables.patients[KEY]).fillna(0)
        counts[name] = (int(per.min()), int(per.max()))
    return constraints.Bounds(Granularity.of(extract.manifest), float(last) + 31, counts)


def test_the_twin_is_published_with_the_four_tables_and_its_manifest(registry: Registry) -> None:
    folder = registry.twin.path
    assert folder == registry.ws.synthetic_dir / "e1"
    for name in TABLES:
        assert (folder / f"{name}.parquet").is_file()
    for name in ("twin.json", "metadata.json", "report.json", "report.html"):
        assert (folder / name).is_file()
    assert all(f.passed for f in registry.twin.figures.values())
    assert registry.twin.rows["patients"] == len(registry.real.patients)


def test_tiers_reads_the_twin_and_its_hash_is_its_own(registry: Registry) -> None:
    source = twin_source(registry.ws, "e1")
    real = real_source(registry.ws, "e1")
    manifest = json.loads((registry.twin.path / "twin.json").read_text())
    assert source.name == "twin:e1"
    assert source.folder == registry.twin.path
    assert source.content_hash == registry.twin.content_hash == manifest["content_hash"]
    assert source.content_hash != real.content_hash  # the DP view cache is keyed by it
    assert source.reference_year == real.reference_year
    assert {"extract", "content_hash", "reference_year", "published_at", "model", "seed"} <= set(manifest)
    assert [name for name, _ in published_twins(registry.ws)] == ["e1"]  # staging is never listed


def test_tables_have_the_extracts_schema(registry: Registry) -> None:
    extract = get_extract(registry.ws, "e1").path
    for name in TABLES:
        assert pl.read_parquet_schema(registry.twin.path / f"{name}.parquet") == pl.read_parquet_schema(
            extract / f"{name}.parquet"
        )


def test_constraints_hold_with_zero_violations(registry: Registry) -> None:
    twin = _twin(registry)
    found = constraints.check(twin, _bounds(registry, registry.real))
    assert found
    assert all(v == 0 for v in found.values()), {k: v for k, v in found.items() if v}
    report = json.loads((registry.twin.path / "report.json").read_text())
    assert report["constraint_violations"]
    assert not any(report["constraint_violations"].values())


def test_the_real_extract_passes_the_same_checks(registry: Registry) -> None:
    found = constraints.check(registry.real, _bounds(registry, registry.real))
    assert not any(found.values()), {k: v for k, v in found.items() if v}


def test_the_checks_catch_each_kind_of_violation(registry: Registry) -> None:
    twin = _twin(registry)
    p, d, ph, en = (twin.patients.copy(), twin.diagnoses.copy(), twin.phenotypes.copy(), twin.encounters.copy())
    alive = p.index[p["vital_status"] == "alive"][0]
    p.loc[alive, "death_date"] = p["first_contact_date"].max()
    d.loc[0, "onset_date"] = d.loc[0, "diagnosis_date"] + pd.Timedelta(days=400)
    d.loc[1, "orpha_code"] = "ORPHA:0"
    d.loc[2, "onset_age_years"] = d.loc[2, "onset_age_years"] + 30
    ph.loc[0, KEY] = "0" * 32
    en.loc[0, "encounter_date"] = pd.Timestamp("1800-01-01")
    found = constraints.check(Tables(p, d, ph, en), _bounds(registry, registry.real))
    for rule in (
        "patients.death_only_if_dead", "diagnoses.onset_after_diagnosis", "diagnoses.orpha_code",
        "diagnoses.onset_age", "phenotypes.unknown_patient", "encounters.before_birth",
    ):  # fmt: skip
        assert found[rule] >= 1, rule


def test_every_child_row_belongs_to_a_synthetic_patient(registry: Registry) -> None:
    twin = _twin(registry)
    patients = set(twin.patients[KEY])
    for name in CHILDREN:
        assert set(twin.as_dict()[name][KEY]) <= patients
    assert (twin.diagnoses.groupby(KEY).size() >= 1).all()


def test_pseudonyms_are_fresh_and_in_the_extracts_format(registry: Registry) -> None:
    twin = _twin(registry)
    names = twin.patients[KEY]
    assert names.is_unique
    assert names.str.fullmatch(r"[0-9a-f]{32}").all()
    assert not set(names) & set(registry.real.patients[KEY])
    assert names.is_monotonic_increasing  # in pseudonym order, as an extract: row order tells nothing


def test_per_patient_counts_stay_in_the_real_range(registry: Registry) -> None:
    twin = _twin(registry)
    for name in ("diagnoses", "phenotypes", "encounters"):
        real = registry.real.as_dict()[name].groupby(KEY).size()
        synthetic = twin.as_dict()[name].groupby(KEY).size()
        assert synthetic.max() <= real.max()
        assert synthetic.min() >= real.reindex(registry.real.patients[KEY]).fillna(0).min()


def _held(real: Tables, table: str, column: str) -> pd.Series:
    frame = real.as_dict()[table]
    return frame.dropna(subset=[column]).groupby(column)[KEY].nunique()


def test_every_code_in_the_twin_is_held_by_k_real_patients(registry: Registry) -> None:
    k = registry.ws.policy().synth.rare_category_k
    twin = _twin(registry)
    for table, column in (
        ("diagnoses", "orpha_code"), ("diagnoses", "icd10_code"), ("diagnoses", "gene_symbol"),
        ("phenotypes", "hpo_code"), ("encounters", "centre_code"), ("patients", "canton"),
    ):  # fmt: skip
        held = _held(registry.real, table, column)
        values = set(twin.as_dict()[table][column].dropna())
        assert values or column == "gene_symbol", column  # at 2,000 patients no gene is held by k of them
        assert (held.reindex(sorted(values)).fillna(0) >= k).all(), column
    assert not set(twin.diagnoses["variant_hgvs"].dropna()) & set(registry.real.diagnoses["variant_hgvs"].dropna())


def test_planted_rare_codes_reach_no_published_file(registry: Registry) -> None:
    planted = registry.planted
    held = _held(registry.real, "diagnoses", "orpha_code")
    assert held[planted.orpha] == 1
    twin = _twin(registry)
    values = {str(v) for frame in twin.as_dict().values() for c in frame for v in frame[c].dropna().unique()}
    folders = [registry.twin.path, reports_dir(registry.ws, "e1")]
    texts = [f.read_bytes() for folder in folders for f in folder.iterdir() if f.suffix in (".json", ".html")]
    assert len(texts) == 6  # twin.json, metadata.json and the reports, published and steward copies
    for value in planted.values():
        assert value not in values, value
        assert not any(value.encode() in blob for blob in texts), value
    # The scan can fail: the extract's own values are found the same way.
    real_values = {str(v) for v in registry.real.diagnoses["orpha_code"]}
    assert planted.orpha in real_values


def test_the_rare_value_check_catches_a_planted_code(registry: Registry) -> None:
    twin = _twin(registry)
    twin.diagnoses.loc[0, "orpha_code"] = registry.planted.orpha
    allowed = {"diagnoses.orpha_code": set(_held(registry.real, "diagnoses", "orpha_code").index)}
    forbidden = {"diagnoses.orpha_code": {registry.planted.orpha}}
    assert constraints.rare_values(twin, allowed, forbidden) == {"diagnoses.orpha_code": 1}


def test_the_report_records_every_figure_and_its_subsample(registry: Registry) -> None:
    report = json.loads((registry.twin.path / "report.json").read_text())
    assert report["published"] is True
    assert set(report["gate"]) >= {
        "quality", "dcr_baseline_protection", "new_row_copies", "singling_out_risk", "linkability_risk",
        "inference_risk",
    }  # fmt: skip
    privacy = report["privacy"]
    assert privacy["dcr_baseline_protection"]["rows"] == 200
    assert privacy["singling_out_risk"]["attacks"] == 200
    assert privacy["new_row_copies"]["all_profiles_checked"] == len(registry.real.patients)
    assert report["quality"]["properties"].keys() >= {"Column Shapes", "Column Pair Trends", "Cardinality"}
    page = (registry.twin.path / "report.html").read_text()
    assert page.count("src='data:image/png;base64,") == 5  # the gate, fidelity, shapes, numbers, categories


def test_publishing_is_audited(registry: Registry) -> None:
    entries = audit.read_entries(registry.ws.audit_path)
    published = [e for e in entries if e.get("action") == "synth.publish"]
    assert published
    assert published[0]["details"]["twin_content_hash"] == registry.twin.content_hash
    with registry.ws.catalog() as conn:
        assert audit.verify(conn, registry.ws.audit_path).ok


def test_an_existing_twin_is_replaced_only_when_asked(registry: Registry) -> None:
    with pytest.raises(PolicyRefusal, match="already published"):
        build_twin(registry.ws, "e1")
    with pytest.raises(BadInput, match="unknown model"):
        build_twin(registry.ws, "e1", model="gpt")


@pytest.mark.slow  # a second twin build, ~16 s
def test_same_seed_rebuilds_byte_identical_tables(registry: Registry, monkeypatch: pytest.MonkeyPatch) -> None:
    before = {n: (registry.twin.path / f"{n}.parquet").read_bytes() for n in TABLES}
    fast(monkeypatch)
    again = build_twin(registry.ws, "e1", seed=0, replace=True)
    assert again.content_hash == registry.twin.content_hash
    for name in TABLES:
        assert (again.path / f"{name}.parquet").read_bytes() == before[name], name
    assert not any((registry.ws.synthetic_dir / STAGING).iterdir())  # the old twin was swapped out and removed


@pytest.mark.slow  # a second twin build, ~16 s
def test_a_refused_twin_publishes_nothing_and_names_the_figure(
    registry: Registry, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    ingest(registry.ws, [registry.raw], "e2", load_key(registry.key))
    policy = registry.ws.policy_path.read_text(encoding="utf-8")
    set_policy(registry.ws, {"min_quality = 0.5": "min_quality = 1.0"})
    fast(monkeypatch)
    try:
        with pytest.raises(PolicyRefusal) as refused:
            build_twin(registry.ws, "e2", seed=1, progress=print)
    finally:
        registry.ws.policy_path.write_text(policy, encoding="utf-8")
    message = str(refused.value)
    assert "\n" not in message
    pattern = r"SDV quality score \(coarsened as the twin is\) 0\.\d+ is below the policy's minimum 1\b"
    assert re.search(pattern, message), message
    assert not (registry.ws.synthetic_dir / "e2").exists()
    assert [name for name, _ in published_twins(registry.ws)] == ["e1"]
    assert not any((registry.ws.synthetic_dir / STAGING).iterdir())
    steward = json.loads((reports_dir(registry.ws, "e2") / "report.json").read_text())
    assert steward["published"] is False
    assert steward["gate"]["quality"]["passed"] is False
    refusals = [e for e in audit.read_entries(registry.ws.audit_path) if e.get("action") == "synth.refuse"]
    assert refusals[-1]["details"]["extract"] == "e2"
    assert "quality" in refusals[-1]["details"]["failed"]
    # Nothing printed, logged or audited names a real patient.
    shown = capsys.readouterr()
    logged = Path(registry.ws.audit_path).read_text()
    real = read_tables(get_extract(registry.ws, "e2").path)[0]
    for name in real.patients[KEY].tolist()[:200]:
        assert name not in shown.out + shown.err
        assert name not in logged


def test_an_extract_too_small_for_the_rule_is_refused(tmp_path: Path) -> None:
    ws, _ = init_workspace(tmp_path / "ws")
    simulate_export(SimulationSpec(patients=60, seed=2, format="parquet"), tmp_path / "raw")
    ingest(ws, [tmp_path / "raw"], "tiny", load_key(new_key(tmp_path / "k.key")[0]))
    with pytest.raises(PolicyRefusal, match=r"not published: .* held by 10 (real )?patients"):
        build_twin(ws, "tiny")
    assert not (ws.synthetic_dir / "tiny").exists()
    assert audit.read_entries(ws.audit_path)[-1]["action"] == "synth.refuse"


def test_a_publication_killed_after_it_committed_is_finished_by_the_next_reader(
    registry: Registry, tmp_path: Path
) -> None:
    """What a kill between the publication's commit and its rename leaves, finished by the next read of twins."""
    import shutil

    from research_kit.tiers import STAGING, published_twins

    ws = registry.ws
    final = ws.synthetic_dir / "e1"
    staged = ws.synthetic_dir / STAGING / "e1-killed"
    staged.parent.mkdir(exist_ok=True)
    kept = tmp_path / "kept"
    shutil.copytree(final, kept)
    try:
        os.replace(final, staged)  # committed (its synth.publish is in the log), not yet moved
        assert "e1" in dict(published_twins(ws))  # the read finished it
        assert (final / "twin.json").is_file()
        assert not staged.exists()
        # A staged twin that is not the last one committed (an old one an exchange left) stays where it is.
        shutil.copytree(final, staged)
        manifest = json.loads((staged / "twin.json").read_text())
        (staged / "twin.json").write_text(json.dumps({**manifest, "content_hash": "0" * 64}))
        published_twins(ws)
        assert staged.is_dir()
        assert json.loads((final / "twin.json").read_text())["content_hash"] == manifest["content_hash"]
    finally:
        shutil.rmtree(staged, ignore_errors=True)
        if not final.exists():
            shutil.copytree(kept, final)
