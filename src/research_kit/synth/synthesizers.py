"""The single-table SDV synthesizers a twin's patient model can use, seeded.

Numeric columns reach the synthesizer as normal scores (see
:mod:`research_kit.synth.marginals`), categorical ones as text. Metadata is
written here from the column lists, never detected from data: SDV's detected
metadata holds real values (category lists, minima and maxima).

SDV, RDT, CTGAN and Copulas are under the Business Source License 1.1.
"""

from __future__ import annotations

import importlib
import random
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from research_kit.core.errors import BadInput

TABLE = "patients"


@dataclass(frozen=True)
class ModelSpec:
    name: str
    summary: str
    neural: bool  # trained with torch: slower, seeded through torch too


MODELS: dict[str, ModelSpec] = {
    m.name: m
    for m in (
        ModelSpec("gaussian_copula", "SDV GaussianCopulaSynthesizer (default; seconds)", False),
        ModelSpec("ctgan", "SDV CTGANSynthesizer (GAN; minutes on a CPU)", True),
        ModelSpec("tvae", "SDV TVAESynthesizer (variational autoencoder; minutes on a CPU)", True),
        ModelSpec("copulagan", "SDV CopulaGANSynthesizer (GAN on copula marginals; minutes on a CPU)", True),
    )
}


def check_model(name: str) -> ModelSpec:
    if name not in MODELS:
        raise BadInput(f"unknown model {name!r}: use one of {', '.join(MODELS)}")
    return MODELS[name]


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed numpy's, Python's and torch's global generators for the block; restore them after.

    SDV and its dependencies draw from these global generators while fitting,
    and anonymeter from Polars' (which cannot be read back, so is only set).
    """
    import polars as pl
    import torch

    np_state = np.random.get_state()
    py_state = random.getstate()
    np.random.seed(seed)
    random.seed(seed)
    pl.set_random_seed(seed)
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def library(name: str) -> Any:
    """An SDV, SDMetrics or anonymeter module (untyped libraries, imported by name; also keeps imports lazy)."""
    return importlib.import_module(name)


def _metadata(categorical: list[str], numeric: list[str]) -> Any:
    columns = {c: {"sdtype": "categorical"} for c in categorical} | {c: {"sdtype": "numerical"} for c in numeric}
    return library("sdv.metadata").Metadata.load_from_dict({"tables": {TABLE: {"columns": columns}}})


class PatientSynthesizer:
    """An SDV single-table synthesizer over the patient model's columns."""

    def __init__(self, model: str, categorical: list[str], numeric: list[str], seed: int) -> None:
        self.spec = check_model(model)
        self.categorical = categorical
        self.numeric = numeric
        self.seed = seed
        self._synth: Any = None

    def _build(self) -> Any:
        single_table = library("sdv.single_table")
        metadata = _metadata(self.categorical, self.numeric)
        if self.spec.name == "gaussian_copula":
            # Numeric columns arrive as normal scores; categorical ones, once encoded, are uniform on [0, 1].
            return single_table.GaussianCopulaSynthesizer(
                metadata,
                numerical_distributions={c: "norm" for c in self.numeric},
                default_distribution="uniform",
            )
        options: dict[str, Any] = {"enable_gpu": False, "verbose": False}
        if self.spec.name == "ctgan":
            return single_table.CTGANSynthesizer(metadata, **options)
        if self.spec.name == "tvae":
            return single_table.TVAESynthesizer(metadata, **options)
        return single_table.CopulaGANSynthesizer(metadata, **options)

    def fit(self, frame: pd.DataFrame) -> None:
        with seeded(self.seed), _quiet():
            self._synth = self._build()
            self._synth.fit({TABLE: frame[self.categorical + self.numeric]})
            # SDV samples from a fixed seed unless told otherwise: make the run's seed count.
            self._synth._set_random_state(self.seed)

    def sample(self, n: int) -> pd.DataFrame:
        """``n`` rows; successive calls continue one seeded stream."""
        if self._synth is None:
            raise RuntimeError("fit the synthesizer before sampling")
        with seeded(self.seed + n), _quiet():
            out = self._synth.sample(n)
        frame = out[TABLE] if isinstance(out, dict) else out
        return frame.reset_index(drop=True)


@contextmanager
def _quiet() -> Iterator[None]:
    """SDV's notices that do not concern us, silenced narrowly (warnings are errors in the tests)."""
    with warnings.catch_warnings():
        # Our metadata is written by hand from the model's columns; SDV suggests saving it.
        warnings.filterwarnings("ignore", message=r".*[Mm]etadata.*", category=UserWarning)
        # CTGAN/TVAE on a CPU-only torch build.
        warnings.filterwarnings("ignore", message=r".*(cuda|CUDA|GPU).*")
        yield
