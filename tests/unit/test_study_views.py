"""Study pseudonyms in an action's view: every table rewritten alike from the study's secret, never the key's."""

from __future__ import annotations

import threading
from pathlib import Path

import polars as pl
import pytest

from research_kit.core import audit
from research_kit.core.workspace import Workspace, init_workspace
from research_kit.pseudonymise.pseudonyms import study_pseudonyms
from research_kit.pseudonymise.study_secrets import CREATED, require_secret, stored_secret, study_secret
from research_kit.sandbox.views import Projection, StudyPseudonyms, build_view
from research_kit.tiers import TWIN_MANIFEST, Source

PATIENTS = ["0a" * 16, "1b" * 16, "2c" * 16, "3d" * 16]


def stored(folder: Path, name: str, content_hash: str, tier: str = "real") -> Source:
    """Four tables as an extract stores them: in pseudonym order, children in their source order per patient."""
    folder.mkdir(parents=True)
    pl.DataFrame({"pseudonym": PATIENTS, "birth_year": [1950, 1960, 1970, 1980]}).write_parquet(
        folder / "patients.parquet"
    )
    for table in ("diagnoses", "phenotypes", "encounters"):
        rows = [(p, f"{table}-{i}-{j}") for i, p in enumerate(PATIENTS) for j in range(i + 1)]
        pl.DataFrame(rows, schema=["pseudonym", "code"], orient="row").write_parquet(folder / f"{table}.parquet")
    return Source(tier, name, folder, content_hash, 2026)  # type: ignore[arg-type]


@pytest.fixture
def policy(tmp_path: Path) -> Path:
    path = tmp_path / "research-kit.toml"
    path.write_text("")
    return path


def test_every_table_of_the_view_shows_the_study_pseudonyms_alike(tmp_path: Path, policy: Path) -> None:
    source = stored(tmp_path / "extract", "e1", "a" * 64)
    twin = stored(tmp_path / "twin", "twin:e1", "b" * 64, tier="sandbox")
    (twin.folder / TWIN_MANIFEST).write_text("{}")
    study = StudyPseudonyms(b"s" * 32, tmp_path / "cache")
    view = build_view(tmp_path / "view", source=source, policy_file=policy, pseudonyms=study, twin=twin)
    renamed = dict(zip(PATIENTS, study_pseudonyms(study.secret, pl.Series(PATIENTS)).to_list(), strict=True))
    for part, src in (("extract", source), ("twin", twin)):
        for table in ("patients", "diagnoses", "phenotypes", "encounters"):
            original = pl.read_parquet(src.folder / f"{table}.parquet")
            seen = pl.read_parquet(view.folder / part / f"{table}.parquet")
            assert not set(seen["pseudonym"]) & set(PATIENTS)
            # The same rows, each under its patient's study pseudonym; a patient's rows in their order.
            expected = original.with_columns(pl.col("pseudonym").replace_strict(renamed)).sort(
                "pseudonym", maintain_order=True
            )
            assert seen.equals(expected), (part, table)
            assert seen["pseudonym"].is_sorted()  # row order is the study's, not the extract's
    assert (view.folder / "twin" / TWIN_MANIFEST).is_file()
    assert '"pseudonyms": "study"' in (view.folder / "view.json").read_text()
    assert repr(study) == f"StudyPseudonyms(fingerprint={study.fingerprint!r})"  # never the secret


def test_the_rewritten_tables_are_written_once_per_study_and_linked_into_each_view(
    tmp_path: Path, policy: Path
) -> None:
    source = stored(tmp_path / "extract", "e1", "a" * 64)
    one = StudyPseudonyms(b"1" * 32, tmp_path / "cache")
    first = build_view(tmp_path / "v1", source=source, policy_file=policy, pseudonyms=one)
    second = build_view(tmp_path / "v2", source=source, policy_file=policy, pseudonyms=one)
    inode = (first.folder / "extract" / "patients.parquet").stat().st_ino
    assert (second.folder / "extract" / "patients.parquet").stat().st_ino == inode  # the cache's file, linked
    assert inode != (source.folder / "patients.parquet").stat().st_ino  # never the stored one
    other = build_view(
        tmp_path / "v3", source=source, policy_file=policy, pseudonyms=StudyPseudonyms(b"2" * 32, tmp_path / "cache")
    )
    a = set(pl.read_parquet(first.folder / "extract" / "patients.parquet")["pseudonym"])
    b = set(pl.read_parquet(other.folder / "extract" / "patients.parquet")["pseudonym"])
    assert len(a) == len(b) == len(PATIENTS)
    assert not a & b  # two studies' views share no identifier
    assert not list((tmp_path / "cache").rglob("*.tmp"))


def test_a_projected_table_shows_the_study_pseudonyms_and_the_real_extract_needs_them(
    tmp_path: Path, policy: Path
) -> None:
    source = stored(tmp_path / "extract", "e1", "a" * 64)
    study = StudyPseudonyms(b"s" * 32, tmp_path / "cache")
    projection = Projection({"patients": ("pseudonym",), "diagnoses": ("code",)})
    view = build_view(tmp_path / "view", source=source, policy_file=policy, pseudonyms=study, projection=projection)
    patients = pl.read_parquet(view.folder / "extract" / "patients.parquet")
    assert patients.columns == ["pseudonym"]
    assert not set(patients["pseudonym"]) & set(PATIENTS)
    assert pl.read_parquet(view.folder / "extract" / "diagnoses.parquet").columns == ["code"]
    with pytest.raises(ValueError, match="study pseudonyms"):
        build_view(tmp_path / "bare", source=source, policy_file=policy, pseudonyms=None)


def test_a_study_secret_is_made_once_at_random_and_audited_without_it(tmp_path: Path) -> None:
    ws, _ = init_workspace(tmp_path / "ws")
    barrier = threading.Barrier(4)
    got: list[bytes] = []

    def make() -> None:
        with Workspace(ws.root).catalog() as conn:
            barrier.wait()
            got.append(study_secret(conn, ws.audit_path, "s1"))

    threads = [threading.Thread(target=make) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(got) == 4
    assert len(set(got)) == 1  # four runs starting at once: one secret
    secret = got[0]
    assert len(secret) == 32
    with ws.catalog() as conn:
        assert stored_secret(conn, "s1") == require_secret(conn, "s1") == secret
        assert study_secret(conn, ws.audit_path, "s2") != secret
        assert stored_secret(conn, "s3") is None
        with pytest.raises(Exception, match="has no pseudonym secret"):
            require_secret(conn, "s3")
        assert audit.verify(conn, ws.audit_path).ok
    made = [e for e in audit.read_entries(ws.audit_path) if e["action"] == CREATED]
    assert [e["details"] for e in made] == [{"study": "s1"}, {"study": "s2"}]
    log = ws.audit_path.read_bytes()
    assert secret not in log
    assert secret.hex().encode() not in log


def test_a_child_row_whose_patient_is_missing_is_rewritten_too(tmp_path: Path, policy: Path) -> None:
    source = stored(tmp_path / "extract", "e1", "a" * 64)
    orphan = "ff" * 16
    path = source.folder / "encounters.parquet"
    pl.concat([pl.read_parquet(path), pl.DataFrame({"pseudonym": [orphan], "code": ["x"]})]).write_parquet(path)
    study = StudyPseudonyms(b"s" * 32, tmp_path / "cache")
    view = build_view(tmp_path / "view", source=source, policy_file=policy, pseudonyms=study)
    seen = pl.read_parquet(view.folder / "extract" / "encounters.parquet")
    assert orphan not in seen["pseudonym"].to_list()
    assert study_pseudonyms(study.secret, pl.Series([orphan]))[0] in seen["pseudonym"].to_list()
    assert seen.height == pl.read_parquet(path).height


def test_views_built_at_once_share_one_rewrite(tmp_path: Path, policy: Path) -> None:
    source = stored(tmp_path / "extract", "e1", "a" * 64)
    study = StudyPseudonyms(b"s" * 32, tmp_path / "cache")
    barrier = threading.Barrier(4)

    def build(i: int) -> None:
        barrier.wait()
        build_view(tmp_path / f"v{i}", source=source, policy_file=policy, pseudonyms=study)

    threads = [threading.Thread(target=build, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    inodes = {(tmp_path / f"v{i}" / "extract" / "encounters.parquet").stat().st_ino for i in range(4)}
    assert len(inodes) == 1
    assert not list((tmp_path / "cache").rglob("*.tmp"))
