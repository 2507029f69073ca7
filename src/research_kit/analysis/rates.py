"""Prevalence per 10,000 residents, with an exact (Garwood) Poisson interval.

The denominators are the population table that ships with research-kit
(:mod:`research_kit.pseudonymise.population`: Luxembourg's residents by canton,
sex and 5-year age band, an approximation, see :data:`POPULATION_SOURCE`).
Cross-border residents (canton ``"abroad"``) and sexes the table does not
hold are not residents of a cell: they get no rate.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.stats import chi2

from research_kit.core.errors import BadInput
from research_kit.pseudonymise.population import SOURCE as POPULATION_SOURCE
from research_kit.pseudonymise.population import load_population

KEYS = ("canton", "sex", "age_band5")

__all__ = ["POPULATION_SOURCE", "population", "prevalence"]


def population(by: Sequence[str] = ()) -> pd.DataFrame:
    """Residents by the ``by`` keys (any of canton, sex, age_band5); one row, ``population``, for ``by=()``."""
    by = list(by)
    unknown = [k for k in by if k not in KEYS]
    if unknown:
        raise BadInput(f"population by {unknown[0]!r}: the table has {', '.join(KEYS)}")
    frame = load_population().to_pandas().rename(columns={"age_band": "age_band5"})
    if not by:
        return pd.DataFrame({"population": [int(frame["population"].sum())]})
    grouped: pd.DataFrame = frame.groupby(by, as_index=False, observed=True)[["population"]].sum()
    return grouped


def prevalence(
    counts: pd.DataFrame,
    *,
    count: str = "n",
    by: Sequence[str] = (),
    per: int = 10_000,
    confidence: float = 0.95,
) -> pd.DataFrame:
    """``counts`` with ``population``, ``prevalence`` (per ``per`` residents) and its ``lower``/``upper`` bounds.

    ``counts`` holds one row per cell of ``by`` (population keys) and the
    number of patients in ``count``. Rows with no resident population (abroad,
    an undetermined sex) are dropped.
    """
    if count not in counts.columns:
        raise BadInput(f"prevalence: no column {count!r} in the counts")
    if not 0 < confidence < 1:
        raise BadInput(f"prevalence: confidence {confidence!r} must lie between 0 and 1")
    by = list(by)
    missing = [k for k in by if k not in counts.columns]
    if missing:
        raise BadInput(f"prevalence: the counts have no column {missing[0]!r}")
    frame = counts.copy()
    if by:
        for key in by:  # population keys are text; counts may hold categories
            frame[key] = frame[key].astype(str)
        frame = frame.merge(population(by), on=by, how="inner")
    else:
        frame["population"] = int(population()["population"].iloc[0])
    k = frame[count].to_numpy(dtype=float)
    alpha = 1 - confidence
    lower = np.where(k > 0, chi2.ppf(alpha / 2, 2 * k) / 2, 0.0)
    upper = chi2.ppf(1 - alpha / 2, 2 * k + 2) / 2
    scale = per / frame["population"].to_numpy(dtype=float)
    frame["prevalence"] = k * scale
    frame["lower"] = lower * scale
    frame["upper"] = upper * scale
    return frame.reset_index(drop=True)
