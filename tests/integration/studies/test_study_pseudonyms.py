"""Study pseudonyms: each study's actions see its own patient identifiers, stable across extracts, made without the
pseudonymisation key, so that two studies' outputs cannot be joined on the patient column."""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import polars as pl
import pytest
from tests.conftest import MEMBER, Project, permit

from research_kit.actions import permits as permit_actions
from research_kit.core import audit, permits
from research_kit.core.extracts import get_extract
from research_kit.ingest.pipeline import ingest
from research_kit.model.tables import CHILD_TABLES
from research_kit.pseudonymise.keys import load_key
from research_kit.pseudonymise.pseudonyms import study_pseudonyms
from research_kit.pseudonymise.study_secrets import CREATED, stored_secret
from research_kit.studies.runner import run_pipeline
from research_kit.studies.spec import load_pipeline

COHORT = """\
import research_kit as rk
data = rk.load()
patients = data["patients"]
patients[["pseudonym", "birth_year", "sex"]].to_csv("cohort.csv", index=False)
# Joins within the study still work: every child row finds its patient.
children = ("diagnoses", "phenotypes", "encounters")
matched = {t: len(data[t].merge(patients[["pseudonym"]], on="pseudonym")) for t in children}
rows = {t: len(data[t]) for t in children}
assert matched == rows, (matched, rows)
open("joined.txt", "w").write(str(sum(matched.values())))
"""


def cohort_study(project: Project, study: str) -> Path:
    project.notebook("cohort", "unused = 0", COHORT)
    action = {
        "notebook": "notebooks/cohort.ipynb",
        "outputs": {"highly_sensitive": {"cohort": "cohort.csv", "joined": "joined.txt"}},
    }
    return project.pipeline(study, {"cohort": action})


def cohort(project: Project, study: str, extract: str) -> pd.DataFrame:
    report = run_pipeline(project.ws, load_pipeline(cohort_study(project, study)), extract=extract)
    outcome = report.actions["cohort"]
    assert report.outcome == "succeeded", outcome.error
    assert outcome.folder is not None
    return pd.read_csv(outcome.folder / "outputs" / "cohort.csv", dtype={"pseudonym": str})


def extract_pseudonyms(project: Project, extract: str) -> pl.Series:
    return pl.read_parquet(get_extract(project.ws, extract).table_path("patients"))["pseudonym"]


def secret_of(project: Project, study: str) -> bytes:
    with project.ws.catalog() as conn:
        secret = stored_secret(conn, permits.pseudonym_line(conn, study))
    assert secret is not None
    return secret


@pytest.fixture
def no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The runner's process without the pseudonymisation key: its file absent, the default path too."""
    absent = tmp_path / "no-secrets" / "pseudonymisation.key"
    monkeypatch.setenv("RESEARCH_KIT_KEY_FILE", str(absent))
    monkeypatch.chdir(tmp_path)
    return absent


def test_two_studies_outputs_share_no_patient_identifier(project: Project, no_key: Path) -> None:
    one = cohort(project, "s1", "e1")
    two = cohort(project, "s2", "e1")
    extract = set(extract_pseudonyms(project, "e1").to_list())
    assert len(one) == len(two) == len(extract)
    assert one["pseudonym"].str.fullmatch(r"[0-9a-f]{32}").all()  # the extract's format: the gates still see them
    assert not set(one["pseudonym"]) & set(two["pseudonym"])
    assert not (set(one["pseudonym"]) | set(two["pseudonym"])) & extract
    # Each is its study's HMAC of the extract pseudonym, from the study's secret (the key file is absent).
    for study, seen in (("s1", one), ("s2", two)):
        expected = study_pseudonyms(secret_of(project, study), extract_pseudonyms(project, "e1"))
        assert set(seen["pseudonym"]) == set(expected.to_list())
    # The rows are in the study's pseudonym order, not the extract's: row numbers do not link them either.
    assert one["pseudonym"].is_monotonic_increasing
    assert two["pseudonym"].is_monotonic_increasing
    assert not no_key.exists()


def test_a_study_sees_the_same_patient_under_the_same_identifier_in_every_extract(
    project: Project, registry_template: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A later export of the same registry: two thirds of e1's patients, as a new extract version (e3).
    raw = registry_template.parent / "raw-e1"
    later = tmp_path / "raw-later"
    later.mkdir()
    patients = pl.read_parquet(raw / "patients.parquet")
    kept = patients["national_id"].head(patients.height * 2 // 3)
    patients.filter(pl.col("national_id").is_in(kept.implode())).write_parquet(later / "patients.parquet")
    for table in CHILD_TABLES:
        child = pl.read_parquet(raw / f"{table}.parquet")
        child.filter(pl.col("national_id").is_in(kept.implode())).write_parquet(later / f"{table}.parquet")
    ingest(project.ws, [later], "e3", load_key(registry_template.parent / "secrets" / "k.key"))
    assert get_extract(project.ws, "e3").content_hash != get_extract(project.ws, "e1").content_hash

    monkeypatch.setenv("RESEARCH_KIT_KEY_FILE", str(tmp_path / "absent.key"))  # the runner never needs it
    monkeypatch.chdir(tmp_path)
    first = cohort(project, "s1", "e1")
    second = cohort(project, "s1", "e3")
    assert len(second) == len(extract_pseudonyms(project, "e3")) < len(first)
    by_patient = dict(zip(first["pseudonym"], zip(first["birth_year"], first["sex"], strict=True), strict=True))
    for pseudonym, year, sex in second[["pseudonym", "birth_year", "sex"]].itertuples(index=False):
        assert by_patient[pseudonym] == (year, sex)  # the same patient, the same study pseudonym
    other = cohort(project, "s2", "e3")
    assert not set(other["pseudonym"]) & set(first["pseudonym"])


def test_the_secret_is_made_once_audited_by_name_and_written_nowhere_else(project: Project, no_key: Path) -> None:
    cohort(project, "s1", "e1")
    again = run_pipeline(project.ws, load_pipeline(cohort_study(project, "s1")), extract="e1")
    assert again.actions["cohort"].outcome == "cached"  # the same study pseudonyms: the result is reused
    cohort(project, "s1", "e2")
    secret = secret_of(project, "s1")
    made = [e for e in audit.read_entries(project.ws.audit_path) if e["action"] == CREATED]
    with project.ws.catalog() as conn:
        line = permits.pseudonym_line(conn, "s1")  # the study's permit's pseudonyms
    assert [(e["details"], e["actor"]) for e in made] == [({"study": line}, "test-runner")]
    forms = (secret, secret.hex().encode(), secret.hex().upper().encode())
    for path in project.ws.root.rglob("*"):
        if path.is_file() and not path.name.startswith("catalog.sqlite"):
            data = path.read_bytes()
            assert not any(form in data for form in forms), path
    with project.ws.catalog() as conn:
        assert audit.verify(conn, project.ws.audit_path).ok


def test_a_new_permit_sees_new_pseudonyms_and_a_continuation_the_same(project: Project, no_key: Path) -> None:
    """The EHDS guidance: the pseudonyms a permit's users see are not reused by another permit, unless the
    committee records the new permit as the first one's continuation."""
    first = cohort(project, "s1", "e1")
    with project.ws.catalog() as conn:
        old = permits.in_force(conn, "s1")
    assert old is not None
    member = MEMBER
    with project.ws.catalog() as conn:  # the first period is over
        conn.execute("UPDATE permits SET until = '2020-01-01' WHERE id = ?", (old.id,))
    renewed = permit(project.ws, "s1", "test-runner")
    fresh = cohort(project, "s1", "e1")
    assert not set(fresh["pseudonym"]) & set(first["pseudonym"])  # a new permit: new pseudonyms
    permit_actions.revoke(project.ws, actor=member, permit_id=renewed, note="renewed again")
    applied = permit_actions.apply(
        project.ws, actor="test-runner", study="s1", holder="h", purpose="p", category="scientific-research",
        tier="real", tables="all", until="2099-01-01",
    )  # fmt: skip
    permit_actions.decide(project.ws, actor=member, permit_id=applied.id, legal_basis="DAC", continues=old.id)
    same = cohort(project, "s1", "e1")
    assert set(same["pseudonym"]) == set(first["pseudonym"])


def test_a_study_restored_from_its_cache_folder_being_gone_sees_the_same_pseudonyms(
    project: Project, no_key: Path
) -> None:
    first = cohort(project, "s1", "e1")
    shutil.rmtree(project.ws.cache_dir / "study-views")  # the cache is rebuilt at will
    forced = run_pipeline(project.ws, load_pipeline(cohort_study(project, "s1")), extract="e1", force=True)
    folder = forced.actions["cohort"].folder
    assert folder is not None
    again = pd.read_csv(folder / "outputs" / "cohort.csv", dtype={"pseudonym": str})
    assert again.equals(first)
