"""What the twin of a small registry keeps of the real one: its first diagnoses, ages at onset, counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from research_kit.model.codes import icd10_groups
from research_kit.model.facts import first_diagnosis_rows
from research_kit.synth.model import TwinModel
from research_kit.synth.patients import UNKNOWN, clinical_strata
from research_kit.synth.rare import NONE
from research_kit.synth.tables import KEY, Granularity, Tables, counts, read_tables

from .conftest import Registry

pytestmark = pytest.mark.slow  # the module's registry and twin, ~21 s


def _twin(registry: Registry) -> Tables:
    return read_tables(registry.twin.path)[0]


def test_a_twin_patients_first_diagnosis_is_the_primary_one_its_model_drew(registry: Registry) -> None:
    d = _twin(registry).diagnoses
    primary = d.groupby(KEY, sort=False)["diagnosis_date"].transform("first")
    assert (d["diagnosis_date"] >= primary).all()  # secondary diagnoses are dated from the primary one on
    assert d.groupby(KEY, sort=False).size().gt(1).any()


def test_a_twin_keeps_the_share_of_patients_with_several_diagnoses(registry: Registry) -> None:
    def several(t: Tables) -> float:
        return float((counts(t.diagnoses, t.patients) > 1).mean())

    # Every secondary diagnosis gets a code (none is dropped for want of a common one).
    assert abs(several(_twin(registry)) - several(registry.real)) < 0.025


def test_a_twin_keeps_the_age_at_onset_of_each_disease_group(registry: Registry) -> None:
    def means(t: Tables) -> pd.Series:
        first = first_diagnosis_rows(t.diagnoses, KEY)
        chapter = first["icd10_code"].fillna("").map(lambda c: icd10_groups(str(c))[1]).to_numpy()
        by = first.groupby(chapter)["onset_age_years"]
        return by.mean()[by.size() >= 100]

    real, twin = means(registry.real), means(_twin(registry))
    assert len(real) >= 3
    # Real means differ by a decade or more between chapters; the twin's are within a few years of each.
    assert real.max() - real.min() > 10
    assert (twin.reindex(real.index) - real).abs().max() < 5


def test_the_patient_model_draws_every_flag_its_strata_leave_open(registry: Registry) -> None:
    granularity = Granularity(birth="year-month", events="month", residence="canton")
    model = TwinModel(granularity=granularity, k=10, model="gaussian_copula", seed=0)
    fitted = model.fit(registry.real, np.random.default_rng(0))
    assert any(UNKNOWN in s for s in clinical_strata(fitted.flat, 10))  # strata whose genetic flag is open
    rows = model.patients.sample(3_000, np.random.default_rng(1))
    assert set(rows["genetic"]) <= {"yes", "no", NONE}
    assert (rows["genetic"] == "yes").any()
