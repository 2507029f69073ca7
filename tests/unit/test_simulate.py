from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest

from research_kit.core.errors import BadInput
from research_kit.model import geography
from research_kit.model.codes import UNDIAGNOSED_ORPHA, CodeSystems, hpo_id, icd10_codes, orpha_id
from research_kit.model.national_id import is_valid
from research_kit.model.tables import SEXES, TABLES, VITAL_STATUSES
from research_kit.simulator.export import SimulationSpec, simulate_export
from research_kit.simulator.simulate import AS_OF


def read(folder: Path) -> dict[str, pd.DataFrame]:
    return {t.name: pd.read_parquet(folder / f"{t.name}.parquet").astype(str).replace("None", "") for t in TABLES}


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> dict[str, pd.DataFrame]:
    out = tmp_path_factory.mktemp("sim") / "export"
    simulate_export(SimulationSpec(patients=20_000, seed=11, chunk_size=7_000), out)
    return read(out)


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_the_same_seed_gives_the_same_export_and_another_seed_another(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    for folder, seed in ((a, 4), (b, 4), (c, 5)):
        simulate_export(SimulationSpec(patients=600, seed=seed, format="csv", chunk_size=250), folder)
    assert digest(a) == digest(b)
    assert digest(a)["patients.csv"] != digest(c)["patients.csv"]


def test_files_have_the_schema_columns_in_order(tmp_path: Path) -> None:
    simulate_export(SimulationSpec(patients=50, seed=1, format="csv"), tmp_path / "x")
    for t in TABLES:
        header = (tmp_path / "x" / f"{t.name}.csv").read_text(encoding="utf-8").splitlines()[0]
        assert header == ",".join(t.required)


def test_national_ids_are_valid_unique_and_match_the_birth_date(export: dict[str, pd.DataFrame]) -> None:
    p = export["patients"]
    assert p["national_id"].is_unique
    assert all(is_valid(x) for x in p["national_id"])
    assert (p["national_id"].str[:8] == p["date_of_birth"].str.replace("-", "")).all()


def test_values_come_from_their_code_lists(export: dict[str, pd.DataFrame], codes: CodeSystems) -> None:
    p, d, ph = export["patients"], export["diagnoses"], export["phenotypes"]
    assert set(p["sex"]) == set(SEXES)
    assert set(p["vital_status"]) == set(VITAL_STATUSES)
    residents = p[p["country"] == "LU"]
    assert set(residents["canton"]) == set(geography.CANTONS)
    assert (residents["commune"].map(geography.CANTON_OF_COMMUNE) == residents["canton"]).all()
    cross = p[p["cross_border_insured"] == "yes"]
    assert (cross["canton"] == "").all()
    assert set(cross["country"]) <= {"FR", "BE", "DE"}
    valid_orpha = {orpha_id(o) for o in codes.orpha_codes}
    assert set(d["orpha_code"]) <= valid_orpha
    assert set(d["icd10_code"]) <= icd10_codes()
    assert (d.loc[d["status"] == "undiagnosed", "orpha_code"] == orpha_id(UNDIAGNOSED_ORPHA)).all()
    assert set(ph["hpo_code"]) <= {hpo_id(t) for t in codes.phenotypic_terms}


def test_genes_belong_to_the_disease(export: dict[str, pd.DataFrame], codes: CodeSystems) -> None:
    genes = {orpha_id(x.orpha): set(x.genes) for x in codes.diseases}
    d = export["diagnoses"]
    with_gene = d[d["gene_symbol"] != ""]
    assert len(with_gene) > 0.1 * len(d)
    assert all(g in genes[o] for o, g in zip(with_gene["orpha_code"], with_gene["gene_symbol"], strict=True))
    assert with_gene["variant_hgvs"].str.match(r"^c\.\d+(_\d+del|dup|[ACGT]>[ACGT])$").all()
    assert (d.loc[d["status"] != "confirmed", "gene_symbol"] == "").all()


def test_dates_are_in_order_and_nothing_happens_after_the_export(export: dict[str, pd.DataFrame]) -> None:
    p = export["patients"].set_index("national_id")
    birth = pd.to_datetime(p["date_of_birth"])
    as_of = pd.Timestamp(AS_OF)
    dead = p["vital_status"] == "dead"
    death = pd.to_datetime(p["date_of_death"].replace("", None))
    assert death[dead].notna().all()
    assert death[~dead].isna().all()
    assert (death[dead] >= birth[dead]).all()
    assert (death[dead] <= as_of).all()
    contact = pd.to_datetime(p["first_contact_date"])
    assert ((contact >= birth) & (contact <= as_of)).all()
    d = export["diagnoses"]
    onset, diag = pd.to_datetime(d["onset_date"]), pd.to_datetime(d["diagnosis_date"])
    b = birth.loc[d["national_id"]].to_numpy()
    assert (onset.to_numpy() >= b).all()
    assert (onset <= diag).all()
    assert (diag <= as_of).all()
    for table, col in (("phenotypes", "observed_date"), ("encounters", "encounter_date")):
        t = export[table]
        when = pd.to_datetime(t[col])
        assert (when.to_numpy() >= birth.loc[t["national_id"]].to_numpy()).all()
        assert (when <= as_of).all()


def test_every_child_row_belongs_to_a_patient(export: dict[str, pd.DataFrame]) -> None:
    ids = set(export["patients"]["national_id"])
    for table in ("diagnoses", "phenotypes", "encounters"):
        assert set(export[table]["national_id"]) <= ids
    assert set(export["diagnoses"]["national_id"]) == ids  # everyone has at least one diagnosis


def test_the_registry_has_the_shape_of_rare_diseases(export: dict[str, pd.DataFrame]) -> None:
    d = export["diagnoses"]
    diagnosed = d[d["status"] != "undiagnosed"].drop_duplicates(["national_id", "orpha_code"])
    per_disease = Counter(diagnosed["orpha_code"])
    counts = sorted(per_disease.values(), reverse=True)
    assert counts[0] >= 200  # a few diseases with hundreds of patients (at 20,000 patients)
    assert len(per_disease) >= 2_000  # thousands of distinct diseases
    assert sum(c <= 2 for c in counts) >= 0.35 * len(counts)  # a long tail held by one or two
    primary = d.drop_duplicates("national_id")
    delay = (pd.to_datetime(primary["diagnosis_date"]) - pd.to_datetime(primary["onset_date"])).dt.days / 365.25
    assert 3 <= delay.mean() <= 8  # several years on average
    assert delay.median() < 0.6 * delay.mean()  # a long right tail
    assert delay.quantile(0.99) > 20
    p = export["patients"].set_index("national_id")
    births = pd.to_datetime(p.loc[primary["national_id"], "date_of_birth"]).to_numpy()
    onset_age = (pd.to_datetime(primary["onset_date"]).to_numpy() - births) / pd.Timedelta(days=365.25)
    assert 0.5 <= (onset_age < 16).mean() <= 0.85  # many in childhood
    assert 0.25 <= (p["cross_border_insured"] == "yes").mean() <= 0.40  # about a third


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"patients": 0}, "--patients must be at least 1"),
        ({"seed": -1}, "--seed must be zero or more"),
        ({"format": "xlsx"}, "--format must be one of parquet, csv"),
    ],
)
def test_bad_specs_are_refused(spec: dict[str, object], message: str) -> None:
    with pytest.raises(BadInput, match=message):
        SimulationSpec(**spec)  # type: ignore[arg-type]


def test_an_existing_export_is_not_overwritten_unless_asked(tmp_path: Path) -> None:
    out = tmp_path / "x"
    simulate_export(SimulationSpec(patients=30, seed=1), out)
    before = digest(out)
    with pytest.raises(BadInput, match="already exists"):
        simulate_export(SimulationSpec(patients=30, seed=2), out)
    assert digest(out) == before
    simulate_export(SimulationSpec(patients=30, seed=2), out, replace=True)
    assert digest(out) != before
    assert [p.name for p in tmp_path.iterdir()] == ["x"]  # no temporary folder left behind


def test_a_failed_simulation_leaves_nothing_behind(tmp_path: Path) -> None:
    def explode(done: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        simulate_export(SimulationSpec(patients=300, seed=1, chunk_size=100), tmp_path / "x", progress=explode)
    assert list(tmp_path.iterdir()) == []
