"""One numeric column's distribution: to standard normal scores and back.

The twin's synthesizers model dependence; the shape of each numeric column
(spikes at zero, long tails, whole-number counts) is kept by this
distributional transform instead of a fitted parametric family, which fits
none of these shapes. The support is clipped to the k-th smallest and k-th
largest value (see :mod:`research_kit.synth.rare`), so a real extreme is
never reproduced. Continuous columns are interpolated between the observed
values on the way back; discrete ones (counts, years) return only values
held inside the clipped range.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np

from research_kit.synth.rare import clip_bounds

EPS = 1e-9
_special = importlib.import_module("scipy.special")  # untyped: imported by name for mypy
ndtr, ndtri = _special.ndtr, _special.ndtri


@dataclass(frozen=True)
class Marginal:
    support: np.ndarray  # sorted distinct values
    cdf: np.ndarray  # P(X <= support[i])
    continuous: bool
    decimals: int

    @classmethod
    def fit(cls, values: np.ndarray, *, k: int, continuous: bool, decimals: int = 0) -> Marginal:
        """From one value per patient (NaN ignored), clipped to the k-trimmed range."""
        x = np.asarray(values, dtype=np.float64)
        x = x[~np.isnan(x)]
        if len(x) == 0:
            return cls(np.array([0.0]), np.array([1.0]), continuous, decimals)
        lo, hi = clip_bounds(x, k)
        support, n = np.unique(np.clip(x, lo, hi), return_counts=True)
        cdf = np.cumsum(n) / n.sum()
        cdf[-1] = 1.0
        return cls(support, cdf, continuous, decimals)

    @property
    def bounds(self) -> tuple[float, float]:
        return (float(self.support[0]), float(self.support[-1]))

    def to_normal(self, values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Normal scores, ties spread uniformly over their step (the distributional transform)."""
        x = np.clip(np.asarray(values, dtype=np.float64), *self.bounds)
        i = np.clip(np.searchsorted(self.support, x, side="left"), 0, len(self.support) - 1)
        upper = self.cdf[i]
        lower = np.where(i > 0, self.cdf[np.maximum(i - 1, 0)], 0.0)
        u = lower + rng.random(len(x)) * (upper - lower)
        return np.asarray(ndtri(np.clip(u, EPS, 1 - EPS)), dtype=np.float64)

    def from_normal(self, scores: np.ndarray) -> np.ndarray:
        u = np.clip(ndtr(np.asarray(scores, dtype=np.float64)), EPS, 1 - EPS)
        if self.continuous and len(self.support) > 1:
            mids = (self.cdf + np.r_[0.0, self.cdf[:-1]]) / 2
            out = np.interp(u, mids, self.support)
        else:
            i = np.clip(np.searchsorted(self.cdf, u, side="left"), 0, len(self.support) - 1)
            out = self.support[i]
        return np.round(out, self.decimals)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` independent draws."""
        return self.from_normal(rng.standard_normal(n))
