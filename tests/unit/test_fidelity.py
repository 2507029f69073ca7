"""The twin's fidelity yardsticks: real tables coarsened as the twin is, and train-synthetic-test-real."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from research_kit.core.errors import BadInput
from research_kit.core.extracts import get_extract
from research_kit.core.workspace import init_workspace
from research_kit.ingest.pipeline import ingest
from research_kit.model.codes import icd10_groups
from research_kit.pseudonymise.keys import load_key, new_key
from research_kit.simulator.export import SimulationSpec, simulate_export
from research_kit.synth.fidelity import coarsen, tstr
from research_kit.synth.rare import patients_per_value
from research_kit.synth.tables import KEY, Tables, patient_index, read_tables

DAY = pd.Timestamp("2020-01-01")


def _tables(diagnoses: list[tuple[str, str | None, str | None]], terms: dict[str, list[str]] | None = None) -> Tables:
    """One patient per diagnosis row (pseudonym, ORPHA code, ICD-10 code); ``terms``: HPO terms per pseudonym."""
    names = [p for p, _, _ in diagnoses]
    patients = pd.DataFrame(
        {KEY: names, "sex": ["female" if i % 2 else "male" for i in range(len(names))], "birth_year": 1990}
    )
    d = pd.DataFrame(
        {
            KEY: names,
            "orpha_code": [o for _, o, _ in diagnoses],
            "icd10_code": [c for _, _, c in diagnoses],
            "status": "confirmed",
            "diagnosis_date": DAY,
        }
    )
    rows = [(p, t) for p, held in (terms or {}).items() for t in held]
    phenotypes = pd.DataFrame(rows or None, columns=[KEY, "hpo_code"]).assign(observed_date=DAY)
    encounters = pd.DataFrame({KEY: names, "centre_code": "C1"})
    return Tables(patients, d, phenotypes, encounters)


def _many(code: str, orpha: str, n: int, start: int) -> list[tuple[str, str | None, str | None]]:
    return [(f"p{start + i:04d}", orpha, code) for i in range(n)]


# -- coarsen ----------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def codes() -> Tables:
    """Q87.1 (block Q80-Q89) held by 30 rows, Q87.0 by 10, E75.2 (chapter IV) by 20; rarer codes beside them."""
    rows = (
        _many("Q87.1", "ORPHA:1", 30, 0) + _many("Q87.0", "ORPHA:2", 10, 100) + _many("E75.2", "ORPHA:4", 20, 200)
        + _many("Q87.4", "ORPHA:3", 200, 300)  # not allowed; its block holds Q87.1 and Q87.0
        + _many("Q90.0", "ORPHA:5", 3, 600)  # not allowed; nothing allowed in its block (Q90-Q99), some in XVII
        + _many("E75.0", "ORPHA:6", 3, 700)  # not allowed; its block (E70-E90) holds E75.2
        + _many("I42.0", "ORPHA:7", 3, 800)  # not allowed; nothing allowed in its chapter (IX)
        + [("p0900", None, None)]  # missing stays missing
    )  # fmt: skip
    terms = {p: ["HP:A"] for p, _, c in rows if c and c.startswith("Q87.1")}
    terms |= {p: ["HP:B"] for p, _, c in rows if c == "E75.2"}
    terms |= {"p0300": ["HP:RARE1"], "p0700": ["HP:RARE2"]}  # a Q87.4 patient; an E75.0 patient
    return _tables(rows, terms)


ALLOWED = {
    "diagnoses.icd10_code": {"Q87.1", "Q87.0", "E75.2"},
    "diagnoses.orpha_code": {"ORPHA:1", "ORPHA:2", "ORPHA:4"},
    "phenotypes.hpo_code": {"HP:A", "HP:B"},
    "patients.sex": {"female"},
}


def test_coarsen_keeps_allowed_values_rows_and_patients(codes: Tables) -> None:
    out = coarsen(codes, ALLOWED, seed=0)
    assert out.rows() == codes.rows()
    for name, frame in out.as_dict().items():
        assert frame[KEY].tolist() == codes.as_dict()[name][KEY].tolist()
    before, after = codes.diagnoses["icd10_code"], out.diagnoses["icd10_code"]
    kept = before.isin(ALLOWED["diagnoses.icd10_code"])
    assert (after[kept] == before[kept]).all()
    assert after[before.isna()].isna().all()
    pd.testing.assert_frame_equal(out.encounters, codes.encounters)  # a column not named is never changed
    pd.testing.assert_series_equal(out.diagnoses["diagnosis_date"], codes.diagnoses["diagnosis_date"])
    for key, values in ALLOWED.items():
        table, column = key.split(".")
        assert set(out.as_dict()[table][column].dropna()) <= values, key


def test_coarsen_replaces_a_code_from_its_block_then_chapter_at_real_frequencies(codes: Tables) -> None:
    out = coarsen(codes, ALLOWED, seed=0)
    was = codes.diagnoses.set_index(KEY)["icd10_code"]
    icd = out.diagnoses.set_index(KEY)["icd10_code"]
    orpha = out.diagnoses.set_index(KEY)["orpha_code"]
    in_block = icd[was == "Q87.4"]
    assert set(in_block) == {"Q87.1", "Q87.0"}
    assert 0.62 < (in_block == "Q87.1").mean() < 0.88  # 30 rows to 10: three in four
    assert set(orpha[was == "Q87.4"]) == {"ORPHA:1", "ORPHA:2"}  # an ORPHA code by its row's ICD-10 block
    assert set(icd[was == "E75.0"]) == {"E75.2"}
    assert set(orpha[was == "E75.0"]) == {"ORPHA:4"}
    assert set(icd[was == "Q90.0"]) <= {"Q87.1", "Q87.0"}  # no allowed code in Q90-Q99: chapter XVII
    assert set(icd[was == "I42.0"]) <= ALLOWED["diagnoses.icd10_code"]  # nothing in chapter IX: any allowed code
    hpo = out.phenotypes.set_index(KEY)["hpo_code"]
    assert hpo["p0300"] == "HP:A"  # a rare term backs off to its patient's disease block
    assert hpo["p0700"] == "HP:B"
    assert set(out.patients["sex"]) == {"female"}


def test_coarsen_rolls_up_first() -> None:
    rows = _many("Q87.1", "ORPHA:1", 5, 0) + _many("Q87.4", "ORPHA:1", 5, 10) + _many("Q90.0", "ORPHA:1", 2, 20)
    out = coarsen(_tables(rows), {"diagnoses.icd10_code": {"Q87"}}, seed=0, rollup={"diagnoses.icd10_code": _three})
    assert out.diagnoses["icd10_code"].tolist() == ["Q87"] * 12  # Q90 (not allowed) then goes to its chapter's Q87
    kept = coarsen(
        _tables(rows), {"diagnoses.icd10_code": {"Q87", "Q90"}}, seed=0, rollup={"diagnoses.icd10_code": _three}
    )
    assert kept.diagnoses["icd10_code"].tolist() == ["Q87"] * 10 + ["Q90"] * 2
    only = coarsen(_tables(rows), {}, seed=0, rollup={"diagnoses.icd10_code": _three})  # rolled up, nothing barred
    assert only.diagnoses["icd10_code"].tolist() == ["Q87"] * 10 + ["Q90"] * 2


def _three(code: str) -> str:
    return code[:3]


def test_coarsen_is_seeded(codes: Tables) -> None:
    first, again, other = (coarsen(codes, ALLOWED, seed=s) for s in (1, 1, 2))
    pd.testing.assert_frame_equal(first.diagnoses, again.diagnoses)
    assert not first.diagnoses["icd10_code"].equals(other.diagnoses["icd10_code"])


def test_coarsen_refuses_an_unknown_column(codes: Tables) -> None:
    with pytest.raises(BadInput, match=r"no column 'diagnoses\.nope'"):
        coarsen(codes, {"diagnoses.nope": set()}, seed=0)


@pytest.fixture(scope="module")
def extract(tmp_path_factory: pytest.TempPathFactory) -> Tables:
    base: Path = tmp_path_factory.mktemp("fidelity")
    simulate_export(SimulationSpec(patients=500, seed=5, format="parquet"), base / "raw")
    ws, _ = init_workspace(base / "ws")
    ingest(ws, [base / "raw"], "e1", load_key(new_key(base / "secrets" / "k.key")[0]))
    return read_tables(get_extract(ws, "e1").path)[0]


def test_coarsen_on_an_extract_leaves_only_values_of_k_patients(extract: Tables) -> None:
    allowed = {}
    for key in ("patients.canton", "diagnoses.orpha_code", "diagnoses.icd10_code", "diagnoses.gene_symbol",
                "phenotypes.hpo_code", "encounters.centre_code"):  # fmt: skip
        table, column = key.split(".")
        frame = extract.as_dict()[table]
        held = patients_per_value(frame[column].astype(object).to_numpy(), patient_index(frame, extract.patients))
        allowed[key] = {str(v) for v in held.index[held >= 5]}
    out = coarsen(extract, allowed, seed=0)
    assert out.rows() == extract.rows()
    for key, values in allowed.items():
        table, column = key.split(".")
        before, after = extract.as_dict()[table][column], out.as_dict()[table][column]
        assert set(after.dropna()) <= values, key
        assert after.isna().equals(before.isna()) or not values, key
    # A replaced ICD-10 code stays in its block wherever the block holds an allowed code.
    blocks = {icd10_groups(c)[0] for c in allowed["diagnoses.icd10_code"]}
    before, after = extract.diagnoses["icd10_code"], out.diagnoses["icd10_code"]
    replaced = before.notna() & ~before.isin(allowed["diagnoses.icd10_code"])
    assert replaced.sum() > 20
    for old, new in zip(before[replaced], after[replaced], strict=True):
        if icd10_groups(old)[0] in blocks:
            assert icd10_groups(new)[0] == icd10_groups(old)[0]


# -- train on synthetic, test on real ---------------------------------------------------------------------------------

CHAPTERS = {"E75.2": "IV", "G71.0": "VI", "Q87.1": "XVII"}


def _cohort(seed: int, per_group: int, start: int, *, small: int = 0) -> Tables:
    """Patients of three disease groups, each with three terms of their group's six and one of six shared ones;
    ``small`` more patients of a fourth group (I42.0, chapter IX)."""
    rng = np.random.default_rng(seed)
    rows, terms = [], {}
    plan = [(code, per_group) for code in CHAPTERS] + [("I42.0", small)]
    for g, (code, n) in enumerate(plan):
        for i in range(n):
            name = f"p{start + g * 1000 + i:05d}"
            rows.append((name, f"ORPHA:{g}", code))
            own = rng.choice(6, 3, replace=False)
            terms[name] = [f"HP:{g}{j}" for j in own] + [f"HP:9{rng.integers(6)}"]
    return _tables(rows, terms)


@pytest.fixture(scope="module")
def split() -> tuple[Tables, Tables]:
    return _cohort(1, 100, 0, small=30), _cohort(2, 40, 50_000, small=10)


def test_a_twin_equal_to_the_training_set_scores_as_the_real_model(split: tuple[Tables, Tables]) -> None:
    train, test = split
    result = tstr(train, test, train, min_cell=10, seed=0)
    assert {k: result[k] for k in ("accuracy", "balanced_accuracy", "macro_f1")} == result["trtr"]
    assert result["trtr"]["accuracy"] > 0.85
    assert result["classes"] == 4  # three groups of 100 and "other groups" (30 patients: under 50)
    assert result["n_train_twin"] == result["n_train_real"] == 330
    assert result["n_test"] == 130
    assert result["features"] == result["features_real"] == 24
    assert tstr(train, test, train, min_cell=200, seed=0)["classes"] == 1  # every group under the minimum cell count


def test_a_twin_with_phenotypes_shuffled_across_patients_scores_lower(split: tuple[Tables, Tables]) -> None:
    train, test = split
    shuffled = Tables(
        train.patients,
        train.diagnoses,
        train.phenotypes.assign(**{KEY: np.random.default_rng(0).permutation(train.phenotypes[KEY].to_numpy())}),
        train.encounters,
    )
    result = tstr(train, test, shuffled, min_cell=10, seed=0)
    assert result["accuracy"] < result["trtr"]["accuracy"] - 0.3
    assert result["macro_f1"] < result["trtr"]["macro_f1"] - 0.3


def test_a_twin_without_a_usable_patient_scores_zero(split: tuple[Tables, Tables]) -> None:
    train, test = split
    empty = Tables(train.patients, train.diagnoses, train.phenotypes.iloc[:0], train.encounters)
    result = tstr(train, test, empty, min_cell=10, seed=0)
    assert (result["accuracy"], result["balanced_accuracy"], result["macro_f1"], result["n_train_twin"]) == (0, 0, 0, 0)
    assert result["trtr"]["accuracy"] > 0.85


def test_tstr_output_holds_scores_and_sizes_only(split: tuple[Tables, Tables]) -> None:
    train, test = split
    result = tstr(train, test, train, min_cell=10, seed=0)
    assert set(result) == {
        "task", "accuracy", "balanced_accuracy", "macro_f1", "trtr", "classes", "features", "features_real",
        "n_train_twin", "n_train_real", "n_test",
    }  # fmt: skip

    def leaves(value: Any) -> list[Any]:
        return [x for v in value.values() for x in leaves(v)] if isinstance(value, dict) else [value]

    numbers = leaves({k: v for k, v in result.items() if k != "task"})
    assert all(isinstance(x, int | float) and not isinstance(x, bool) for x in numbers)
    assert all(round(x, 4) == x for x in numbers)
    text = json.dumps(result)
    for value in ("HP:", "ORPHA", "p0", "I42", "IX", *CHAPTERS, *CHAPTERS.values()):
        assert value not in text
