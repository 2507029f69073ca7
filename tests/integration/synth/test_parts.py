"""The twin's building blocks: the k-thresholded samplers, marginals, copy detection and the seeded model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from research_kit.core.extracts import get_extract
from research_kit.synth import profiles
from research_kit.synth.marginals import Marginal
from research_kit.synth.model import TwinModel
from research_kit.synth.rare import Backoff, clip_bounds, recode_rare
from research_kit.synth.tables import KEY, Granularity, read_tables, write_tables

from .conftest import Registry


def test_backoff_never_draws_a_cell_of_fewer_than_k_patients() -> None:
    rng = np.random.default_rng(0)
    # Context "a": value x held by 5 patients, y by 1; context "b": z by 4. Root: x 5, y 1, z 4.
    values = np.array(["x"] * 5 + ["y"] + ["z"] * 4, dtype=object)
    patients = np.arange(10)
    context = np.array(["a"] * 6 + ["b"] * 4, dtype=object)
    root = np.full(10, "", dtype=object)
    sampler = Backoff.fit(values, patients, [context, root], k=4)
    drawn = sampler.sample([np.array(["a", "b", "c"] * 300, dtype=object), np.full(900, "", dtype=object)], rng)
    assert set(drawn) == {"x", "z"}
    assert sampler.values() == {"x", "z"}
    # Context "a" keeps x for 5 of its 6 rows; the rare share backs off to the root.
    assert set(drawn[0::3]) == {"x", "z"}
    assert set(drawn[1::3]) == {"z"}  # "b" holds z for 4 patients: it stays
    greedy = sampler.sample([np.array(["a"] * 100, dtype=object), np.full(100, "", dtype=object)], rng, greedy=True)
    assert set(greedy) == {"x"}


def test_backoff_gives_none_when_nothing_is_common() -> None:
    sampler = Backoff.fit(np.array(["x", "y"], dtype=object), np.arange(2), [np.array(["", ""], dtype=object)], k=2)
    assert sampler.sample([np.array(["", ""], dtype=object)], np.random.default_rng(0)).tolist() == [None, None]


def test_marginals_keep_discrete_values_and_never_pass_the_kth_extremes() -> None:
    rng = np.random.default_rng(1)
    counts = rng.poisson(3, 2_000).astype(float)
    counts[:3] = [40, 50, 60]  # outliers: fewer than k patients beyond the 10th largest
    marginal = Marginal.fit(counts, k=10, continuous=False)
    back = marginal.from_normal(marginal.to_normal(counts, rng))
    assert set(back) <= set(counts)
    assert back.max() == clip_bounds(counts, 10)[1] < 40
    drawn = marginal.sample(20_000, rng)
    assert abs(drawn.mean() - np.clip(counts, *marginal.bounds).mean()) < 0.1
    continuous = Marginal.fit(rng.normal(size=2_000), k=10, continuous=True, decimals=2)
    assert continuous.sample(5_000, rng).max() <= continuous.bounds[1]


def test_recode_rare_replaces_values_held_by_fewer_than_k() -> None:
    values = np.array(["a"] * 10 + ["b"] * 2, dtype=object)
    out = recode_rare(values, np.arange(12), 5, np.random.default_rng(0))
    assert set(out) == {"a"}


@pytest.mark.slow  # the module's registry and twin, ~17 s
def test_copies_follow_new_row_synthesis_rule(registry: Registry) -> None:
    real = profiles.real_profiles(registry.real)
    twin = real.iloc[:50].copy()
    assert profiles.copies(real, twin).all()
    twin["onset_age_years"] = twin["onset_age_years"] * 1.5 + 1.0
    assert not profiles.copies(real, twin).any()


def _model_twin(registry: Registry, seed: int) -> bytes:
    extract = get_extract(registry.ws, "e1")
    tables, _ = read_tables(extract.path)
    model = TwinModel(granularity=Granularity.of(extract.manifest), k=10, model="gaussian_copula", seed=seed)
    rng = np.random.default_rng(seed)
    model.fit(tables, rng)
    twin, _ = model.sample(500, rng, profiles.real_profiles(tables), taken=set(tables.patients[KEY]), step=print)
    return twin.diagnoses.to_csv().encode() + twin.patients.to_csv().encode()


@pytest.mark.slow  # the module's registry and twin, ~17 s
def test_another_seed_gives_another_twin(registry: Registry) -> None:
    assert _model_twin(registry, 5) != _model_twin(registry, 6)


@pytest.mark.slow  # the module's registry and twin, ~17 s
def test_tables_are_written_in_the_extracts_types(registry: Registry, tmp_path: Path) -> None:
    tables, schemas = read_tables(get_extract(registry.ws, "e1").path)
    write_tables(tables, schemas, tmp_path)
    again, again_schemas = read_tables(tmp_path)
    assert again_schemas == schemas
    pd.testing.assert_frame_equal(again.diagnoses, tables.diagnoses)
