"""The twin's privacy figures on profiles where a date is sparse: a small extract with few deaths."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from research_kit.synth import evaluate, profiles


def _profiles(n: int, deaths: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "birth_year": rng.integers(1940, 2020, n),
            "birth_month": rng.integers(1, 13, n),
            "sex": rng.choice(["female", "male"], n),
            "vital_status": "alive",
            "death_date": pd.NaT,
            "canton": rng.choice(["Luxembourg", "Esch-sur-Alzette", "Diekirch"], n),
            "country": "LU",
            "cross_border_insured": rng.random(n) < 0.1,
            "first_contact_date": pd.Timestamp("2015-01-01") + pd.to_timedelta(rng.integers(0, 3000, n), unit="D"),
            "consent_reuse": True,
            "agrees_to_contact": rng.random(n) < 0.5,
            "orpha_code": rng.choice(["ORPHA:558", "ORPHA:586", "ORPHA:98896"], n),
            "icd10_code": rng.choice(["Q87.4", "E84.9", "G71.0"], n),
            "status": "confirmed",
            "onset_date": pd.Timestamp("2010-01-01") + pd.to_timedelta(rng.integers(0, 3000, n), unit="D"),
            "diagnosis_date": pd.Timestamp("2014-01-01") + pd.to_timedelta(rng.integers(0, 3000, n), unit="D"),
            "onset_age_years": rng.integers(0, 60, n),
            "diagnostic_delay_days": rng.integers(0, 2000, n),
            "gene_symbol": rng.choice(["FBN1", "CFTR", "DMD"], n),
            "n_diagnoses": rng.integers(1, 3, n),
            "n_phenotypes": rng.integers(0, 8, n),
            "n_encounters": rng.integers(0, 5, n),
        }
    )
    dead = rng.choice(n, deaths, replace=False)
    frame.loc[dead, "vital_status"] = "deceased"
    frame.loc[dead, "death_date"] = pd.Timestamp("2024-05-01")
    return profiles.normalise(frame)


def test_a_date_few_patients_hold_is_measured_even_when_a_sample_misses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    """Three deaths in 240 training patients, one among the 60 held out: SDMetrics samples 40 reference rows, which
    may hold no date of death (a range of NaT it could not divide by, which failed a twin build in CI); the figures
    come out, each a share between 0 and 1."""
    for name, value in (("DCR_ROWS", 40), ("NEW_ROW_SAMPLE", 40), ("ATTACKS", 20), ("SINGLING_OUT_REPEATS", 1)):
        monkeypatch.setattr(evaluate, name, value)
    train, control, twin = _profiles(240, 3, 0), _profiles(60, 1, 1), _profiles(240, 2, 2)
    out = evaluate.privacy(train, control, twin, copies_all=0, seed=0, step=lambda _s: None)
    for key in ("dcr_baseline_protection", "dcr_overfitting_protection", "singling_out_risk", "linkability_risk"):
        assert 0.0 <= out[key]["value"] <= 1.0, key


def test_a_column_no_training_patient_holds_is_left_out_of_the_distance(monkeypatch: pytest.MonkeyPatch) -> None:
    """No one dead among the training patients: the date of death tells no row apart and is not measured."""
    for name, value in (("DCR_ROWS", 40), ("NEW_ROW_SAMPLE", 40), ("ATTACKS", 20), ("SINGLING_OUT_REPEATS", 1)):
        monkeypatch.setattr(evaluate, name, value)
    train, control, twin = _profiles(240, 0, 0), _profiles(60, 2, 1), _profiles(240, 0, 2)
    out = evaluate.privacy(train, control, twin, copies_all=0, seed=0, step=lambda _s: None)
    assert 0.0 <= out["dcr_overfitting_protection"]["value"] <= 1.0


def test_a_number_one_twin_patient_lacks_does_not_stop_the_attacks(monkeypatch: pytest.MonkeyPatch) -> None:
    """A missing number held by one profile is a rare value to anonymeter's univariate singling out, which then
    compares with None (polars warns; the suite turns warnings into errors): the figures still come out."""
    for name, value in (("DCR_ROWS", 40), ("NEW_ROW_SAMPLE", 40), ("ATTACKS", 40), ("SINGLING_OUT_REPEATS", 1)):
        monkeypatch.setattr(evaluate, name, value)
    train, control, twin = _profiles(60, 3, 0), _profiles(60, 1, 1), _profiles(60, 2, 2)  # every row attacked
    for frame in (train, control, twin):
        frame.loc[0, "onset_age_years"] = np.nan
    out = evaluate.privacy(train, control, twin, copies_all=0, seed=0, step=lambda _s: None)
    assert 0.0 <= out["singling_out_risk"]["value"] <= 1.0
