"""The twin model's parts that let a small registry's twin keep its real shares without a value of fewer than k."""

from __future__ import annotations

import numpy as np
import pandas as pd

from research_kit.synth.coding import Coder
from research_kit.synth.marginals import Conditional, Marginal
from research_kit.synth.patients import ANY, SEP, UNKNOWN, clinical_strata
from research_kit.synth.rare import Backoff, patients_per_value

K = 10


def _thin_term() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """12 diseases of 20 patients, one term each: "f" (2 per patient of every disease), plus a term "t"
    held by 2 patients of each of 6 diseases (12 in all, never 10 in one disease) and "r" by 3 patients."""
    values, patients, disease = [], [], []
    for d in range(12):
        for i in range(20):
            p = d * 20 + i
            values += ["f"]
            patients += [p]
            disease += [f"d{d}"]
            if d < 6 and i < 2:
                values += ["t"]
                patients += [p]
                disease += [f"d{d}"]
            if d == 0 and i < 3:
                values += ["r"]
                patients += [p]
                disease += [f"d{d}"]
    v, w, c = np.array(values, dtype=object), np.array(patients), np.array(disease, dtype=object)
    return v, w, c, np.full(len(v), "", dtype=object)


def test_residual_backoff_gives_a_thinly_spread_value_its_share_and_nothing_rare() -> None:
    values, patients, disease, root = _thin_term()
    sampler = Backoff.fit(values, patients, [disease, root], K, residual=True)
    many = np.tile(disease, 40)
    drawn = pd.Series(sampler.sample([many, np.tile(root, 40)], np.random.default_rng(0)))
    assert set(drawn) == {"f", "t"}  # "r" (3 patients) never; "t" (12 patients, never 10 in one disease) does
    real = pd.Series(values).value_counts(normalize=True)
    # The rows the disease level could not keep are the ones a draw backs off with, and the root learns from
    # those rows only: "t" gets its own share back, plus the share of "r" that no twin may hold.
    share = drawn.value_counts(normalize=True)["t"]
    assert real["t"] - 0.01 < share < real["t"] + real["r"] + 0.01
    # Each level learns only from rows no finer level kept: every cell it draws is held by k of those rows' patients.
    kept = np.isin(values, ["f"])  # the disease level keeps "f" (20 patients per disease)
    held = patients_per_value(values[~kept], patients[~kept])
    assert set(sampler.levels[1].values) <= set(held.index[held >= K])


def test_backoff_draws_a_row_no_coarser_level_knows_at_the_last_level_that_knew_it() -> None:
    # Level "a" keeps x (10 patients) and moves y's rows (3 patients) on; the root learns only from y's rows
    # (residual), where nothing is common, so it knows no context at all.
    values = np.array(["x"] * 10 + ["y"] * 3, dtype=object)
    context = np.full(13, "a", dtype=object)
    sampler = Backoff.fit(values, np.arange(13), [context, np.full(13, "", dtype=object)], K, residual=True)
    where = [np.full(2_000, "a", dtype=object), np.full(2_000, "", dtype=object)]
    drawn = sampler.sample(where, np.random.default_rng(1))
    assert set(drawn) == {"x"}  # never None: a row of a known context always gets a value


def test_an_atom_of_a_continuous_column_is_kept_only_when_k_patients_share_it() -> None:
    rng = np.random.default_rng(2)
    ages = np.round(np.where(rng.random(3_000) < 0.3, 0.0, rng.gamma(2.0, 10.0, 3_000)), 1)
    marginal = Marginal.fit(ages, k=K, continuous=True, decimals=1)
    drawn = marginal.sample(50_000, rng)
    assert abs((drawn == 0).mean() - (ages == 0).mean()) < 0.01  # the spike at 0 keeps its share
    few = np.r_[np.full(5, 7.5), rng.normal(50, 5, 2_000)]  # 7.5: five patients, under k
    lone = Marginal.fit(few, k=K, continuous=True, decimals=1)
    assert 7.5 not in set(lone.sample(20_000, rng))  # the k-trimmed range starts above it


def test_a_context_moves_numbers_by_its_own_mean_and_spread_and_they_stay_in_the_trimmed_range() -> None:
    rng = np.random.default_rng(3)
    context = np.array(["a"] * 400 + ["b"] * 400 + ["c"] * 30, dtype=object)
    # "a" spreads over the whole range, "b" sits at 50, "c" (30 patients) at 80.
    values = np.round(np.r_[rng.uniform(0, 100, 400), rng.normal(50, 1, 400), rng.normal(80, 2, 30)], 1)
    marginal = Marginal.fit(values, k=K, continuous=True, decimals=1)
    scores = marginal.to_normal(values, rng)
    given = Conditional.fit(scores, [context], least=50)
    assert set(given.levels[0]) == {"a", "b"}  # "c" has 30 patients, under 50: nothing of its own
    assert given.restore(np.array([0.5]), [np.array(["c"], dtype=object)])[0] == 0.5
    standard = given.standardise(scores, [context])
    assert abs(standard[400:800].mean()) < 1e-9
    assert abs(standard[400:800].std(ddof=1) - 1) < 1e-9

    def spreads(conditional: Conditional) -> list[float]:
        """Each context's interquartile range when a synthesizer that learnt nothing of the context (scores
        drawn for any row) has its scores put back in their row's context."""
        drawn = rng.permutation(conditional.standardise(scores, [context])[:800])
        back = marginal.from_normal(conditional.restore(drawn, [context[:800]]))
        assert marginal.bounds[0] <= back.min()
        assert back.max() <= marginal.bounds[1]
        return [float(np.subtract(*np.percentile(part, [75, 25]))) for part in (back[:400], back[400:800])]

    wide, narrow = spreads(given)
    assert wide > 35  # real: 47
    assert narrow < 2  # real: 1.3
    assert spreads(Conditional.fit(scores, [context], least=50, scale=False))[1] > 2  # a shift alone widens "b"


def test_clinical_strata_hold_k_patients_each_and_keep_the_disease_group_longest() -> None:
    def patients(n: int, genetic: str, group: str) -> list[tuple[str, str, str, str]]:
        return [("confirmed", "no", genetic, group)] * n

    rows = (
        patients(12, "no", "E70-E90")  # a stratum of its own
        + patients(5, "yes", "E70-E90")  # too few, in their block or chapter, even with the flag left open
        + patients(6, "no", "D50-D53")
        + patients(6, "yes", "D50-D53")  # 12 in the block once the genetic flag is left open
        + patients(3, "no", "G40-G47")  # alone in their chapter
    )
    flat = pd.DataFrame(rows, columns=["status", "rare_disease", "genetic", "disease_group"])
    strata = clinical_strata(flat, K)
    held = pd.Series(strata).value_counts()
    # The five join the largest stratum of their chapter (their block too): their group is kept, their flag is not.
    assert held[SEP.join(["confirmed", "no", "no", "E70-E90"])] == 17
    assert held[SEP.join(["confirmed", "no", UNKNOWN, "D50-D53"])] == 12
    assert set(strata[-3:]) == {SEP.join(["confirmed", "no", "no", ANY])}  # left for the recoding (3 < k)
    assert (held[held.index.str.endswith(ANY)] < K).all()
    assert (held[~held.index.str.endswith(ANY)] >= K).all()


def test_a_genetic_diagnosis_is_given_a_disease_with_genes_and_one_of_its_genes() -> None:
    # One block, two common diseases: A never genetic, B genetic for 20 of its 30 patients (gene G1).
    rows = [("ORPHA:1", "E75.2", None)] * 30 + [("ORPHA:2", "E76.0", "G1")] * 20 + [("ORPHA:2", "E76.0", None)] * 10
    d = pd.DataFrame(rows, columns=["orpha_code", "icd10_code", "gene_symbol"])
    d["status"], d["variant_hgvs"] = "confirmed", None
    coder = Coder.fit(d, np.arange(len(d)), np.ones(len(d), dtype=bool), K)
    n = 2_000
    yes = coder.codes(
        np.full(n, "confirmed", dtype=object),
        np.full(n, "no", dtype=object),
        np.ones(n, dtype=bool),
        np.random.default_rng(4),
        group=np.full(n, "E70-E90", dtype=object),
    )
    # Drawn given the block alone, half would name A with a gene no patient of A holds.
    assert set(zip(yes["orpha_code"], yes["gene_symbol"], strict=True)) == {("ORPHA:2", "G1")}
    no = coder.codes(
        np.full(n, "confirmed", dtype=object),
        np.full(n, "no", dtype=object),
        np.zeros(n, dtype=bool),
        np.random.default_rng(5),
        group=np.full(n, "E70-E90", dtype=object),
    )
    assert abs((no["orpha_code"] == "ORPHA:1").mean() - 0.75) < 0.05  # 30 of the 40 non-genetic diagnoses
