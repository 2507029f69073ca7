"""rk.analysis: the cohort, pooling, prevalence and releasable survival tables the example studies rest on."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest

import research_kit as rk
from research_kit.analysis.cohort import data_cutoff
from research_kit.core.errors import BadInput


def _data() -> dict[str, pd.DataFrame]:
    patients = pd.DataFrame({
        "pseudonym": ["a", "b", "c"], "birth_year": [1980, 2010, 1950], "birth_month": [1, 2, 3],
        "sex": ["female", "male", "female"], "vital_status": ["alive", "dead", "lost to follow-up"],
        "death_date": [None, date(2020, 3, 1), None], "canton": ["Wiltz", None, "Capellen"],
        "country": ["LU", "FR", "LU"], "cross_border_insured": [False, True, False],
        "first_contact_date": [date(2001, 1, 1), date(2015, 1, 1), date(2010, 1, 1)],
        "consent_reuse": [True] * 3, "agrees_to_contact": [True] * 3,
    })  # fmt: skip
    diagnoses = pd.DataFrame({
        "pseudonym": ["a", "a", "b", "c"], "orpha_code": ["ORPHA:558", "ORPHA:586", "ORPHA:870", "ORPHA:586"],
        "icd10_code": ["Q87.4", "E84.9", "Q90.9", "E84.9"],
        "status": ["confirmed", "suspected", "confirmed", "confirmed"],
        "onset_date": [date(1999, 1, 1), date(1990, 1, 1), date(2010, 2, 1), date(2005, 6, 1)],
        "diagnosis_date": [date(2002, 1, 1), date(2005, 1, 1), date(2012, 2, 1), date(2010, 6, 1)],
        "onset_age_years": [19.0, 10.0, 0.0, 55.4], "diagnostic_delay_days": [1096, 5480, 730, 1826],
        "gene_symbol": ["FBN1", None, None, "CFTR"], "variant_hgvs": ["c.1A>G", None, None, "c.2T>C"],
    })  # fmt: skip
    encounters = pd.DataFrame({
        "pseudonym": ["c", "c", "a"], "encounter_date": [date(2011, 1, 1), date(2014, 5, 1), date(2024, 9, 1)],
        "centre_code": ["LU-CHL"] * 3, "centre_country": ["LU"] * 3, "encounter_type": ["outpatient"] * 3,
    })  # fmt: skip
    phenotypes = pd.DataFrame({"pseudonym": ["a"], "hpo_code": ["HP:0001166"], "observed_date": [date(2003, 1, 1)]})
    return {"patients": patients, "diagnoses": diagnoses, "phenotypes": phenotypes, "encounters": encounters}


def test_first_diagnoses_give_one_row_per_patient_with_survival_from_the_first_diagnosis() -> None:
    cohort = rk.analysis.first_diagnoses(_data()).set_index("pseudonym")
    assert data_cutoff(_data()) == pd.Timestamp("2024-09-30")
    assert cohort.loc["a", "orpha_code"] == "ORPHA:558"  # the earlier of a's two diagnoses
    assert cohort.loc["a", "n_diagnoses"] == 2
    assert (cohort.loc["a", "icd10_block"], cohort.loc["a", "disease_group"]) == ("Q80-Q89", "XVII")
    assert cohort.loc["a", "genetic"]
    assert cohort.loc["a", "age"] == 44
    assert (cohort.loc["a", "age_band"], cohort.loc["a", "age_band5"]) == ("40-49", "40-44")
    assert cohort.loc["b", "canton"] == "abroad"
    assert cohort.loc["b", "died"]
    assert cohort.loc["b", "years_from_diagnosis"] == pytest.approx(
        (pd.Timestamp("2020-03-01") - pd.Timestamp("2012-02-01")).days / 365.25
    )
    assert not cohort.loc["c", "died"]  # lost to follow-up: censored at the last encounter
    assert cohort.loc["c", "followup_end"] == pd.Timestamp("2014-05-01")
    assert cohort.loc["a", "followup_end"] == pd.Timestamp("2024-09-30")  # alive: censored at the cut-off
    assert cohort.loc["a", "diagnostic_delay_years"] == pytest.approx(1096 / 365.25)
    assert rk.analysis.icd10_chapter_label("XVII").startswith("XVII Congenital malformations")
    with pytest.raises(BadInput, match="no dates"):
        data_cutoff({"patients": pd.DataFrame({"death_date": [None]})})


def test_pool_small_leaves_no_group_below_the_threshold_and_keeps_the_total() -> None:
    counts = pd.DataFrame({"group": list("abcdef"), "n": [120, 40, 12, 6, 2, 0]})
    pooled = rk.analysis.pool_small(counts, "group", min_count=10)
    assert pooled["n"].min() >= 10
    assert pooled["n"].sum() == counts["n"].sum()
    assert pooled.to_dict("list") == {"group": ["a", "b", "other"], "n": [120, 40, 20]}  # 8 pooled was too few
    nested = pd.DataFrame({"chapter": ["I", "I", "I", "II", "II"], "block": ["x", "y", "z", "u", "v"],
                           "n": [50, 4, 30, 25, 11]})  # fmt: skip
    by_block = rk.analysis.pool_small(nested, "block", within="chapter", min_count=10)
    assert by_block["n"].min() >= 10
    assert by_block.groupby("chapter")["n"].sum().to_dict() == {"I": 84, "II": 36}
    assert "other (I)" in set(by_block["block"])
    with pytest.raises(BadInput, match="no column 'm'"):
        rk.analysis.pool_small(counts, "group", "m", min_count=10)


def test_prevalence_has_exact_poisson_intervals_against_the_shipped_population() -> None:
    total = int(rk.analysis.population()["population"].iloc[0])
    assert 600_000 < total < 700_000
    rates = rk.analysis.prevalence(pd.DataFrame({"n": [10, 0]}), per=10_000)
    assert rates.loc[0, "prevalence"] == pytest.approx(10 * 10_000 / total)
    # Garwood's exact interval for 10 events: 4.795 to 18.39.
    assert rates.loc[0, "lower"] == pytest.approx(4.7954 * 10_000 / total, rel=1e-3)
    assert rates.loc[0, "upper"] == pytest.approx(18.3904 * 10_000 / total, rel=1e-3)
    assert rates.loc[1, "lower"] == 0
    by_canton = rk.analysis.prevalence(pd.DataFrame({"canton": ["Wiltz", "abroad"], "n": [50, 70]}), by=["canton"])
    assert list(by_canton["canton"]) == ["Wiltz"]  # abroad is not a resident population
    with pytest.raises(BadInput, match="population by 'commune'"):
        rk.analysis.population(["commune"])


def test_a_km_table_reports_only_releasable_steps() -> None:
    rng = np.random.default_rng(4)
    n = 400
    frame = pd.DataFrame({
        "years": np.round(rng.exponential(8, n), 2), "died": rng.random(n) < 0.4,
        "group": np.where(rng.random(n) < 0.97, "big", "tiny"),
    })  # fmt: skip
    table = rk.analysis.km_table(frame, "years", "died", by="group", min_events=10, min_count=10)
    assert table.attrs["withheld"] == ["tiny"]  # too few deaths for one step
    steps = table[table["events"] > 0]
    assert steps["events"].min() >= 10
    assert ((table["censored"] == 0) | (table["censored"] >= 10)).all()
    assert table["at_risk"].min() >= 10
    assert table["survival"].is_monotonic_decreasing
    assert (table["lower"] <= table["survival"]).all()
    assert (table["survival"] <= table["upper"]).all()
    assert table["time"].is_unique
    from lifelines import KaplanMeierFitter

    big = frame[frame["group"] == "big"]
    km = KaplanMeierFitter().fit(big["years"], big["died"])
    expected = km.survival_function_at_times(steps["time"]).to_numpy()
    assert steps["survival"].to_numpy() == pytest.approx(expected)  # lifelines' estimate, at fewer times
