"""One numeric column's distribution: to standard normal scores and back.

The twin's synthesizers model dependence; the shape of each numeric column
(spikes at zero, long tails, whole-number counts) is kept by this
distributional transform instead of a fitted parametric family, which fits
none of these shapes. The support is clipped to the k-th smallest and k-th
largest value (see :mod:`research_kit.synth.rare`), so a real extreme is
never reproduced. Continuous columns are interpolated between the observed
values on the way back, except at an atom (a value at least k patients and
1% of them hold, such as an age at onset of 0), which is returned exactly:
interpolating smeared a spike of 27% at zero down to 19%. Discrete ones
(counts, years) return only values held inside the clipped range.
:class:`Conditional` places a column's scores within a context (a disease
group, a disease) by its mean and spread over at least 50 patients.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import numpy as np
import pandas as pd

from research_kit.synth.rare import clip_bounds

EPS = 1e-9
MIN_SD = 0.05  # a context whose scores hardly spread keeps the column's own spread
ATOM_SHARE = 0.01  # a continuous column's value held by this share of patients (and by k) is an atom
_special = importlib.import_module("scipy.special")  # untyped: imported by name for mypy
ndtr, ndtri = _special.ndtr, _special.ndtri


@dataclass(frozen=True)
class Marginal:
    support: np.ndarray  # sorted distinct values
    cdf: np.ndarray  # P(X <= support[i])
    continuous: bool
    decimals: int
    atoms: np.ndarray | None = None  # continuous: support values returned exactly (see ``fit``)

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
        atoms = (n >= k) & (n >= ATOM_SHARE * n.sum()) if continuous else None
        return cls(support, cdf, continuous, decimals, atoms)

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
        i = np.clip(np.searchsorted(self.cdf, u, side="left"), 0, len(self.support) - 1)
        if self.continuous and len(self.support) > 1:
            mids = (self.cdf + np.r_[0.0, self.cdf[:-1]]) / 2
            out = np.interp(u, mids, self.support)
            if self.atoms is not None:
                atom = self.atoms[i]
                out[atom] = self.support[i[atom]]
        else:
            out = self.support[i]
        return np.round(out, self.decimals)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """``n`` independent draws."""
        return self.from_normal(rng.standard_normal(n))


@dataclass(frozen=True)
class Conditional:
    """A numeric column's location and spread given a context (a patient's disease), finest context first.

    The patient model draws each number jointly with the patient's other
    columns, but a copula sees a category only through an arbitrary order of
    its values (the clinical stratum against the age at onset), and it cannot
    see what only the children are given later (how many HPO terms a patient
    has depends on their ORPHA code). Here each context that at least
    ``least`` real patients share has the mean and the standard deviation of
    its patients' normal scores (in the column's :class:`Marginal`). The
    synthesizer learns each patient's score standardised within their finest
    known context; a synthetic patient's score is put back in theirs before it
    is decoded. Numbers still come from the column's own clipped marginal (so
    from its k-trimmed range); what a context adds is a mean and a spread over
    ``least`` patients or more.
    """

    levels: list[dict[str, tuple[float, float]]]  # per level, finest first: context -> (mean, sd) of normal scores

    @classmethod
    def fit(cls, scores: np.ndarray, contexts: list[np.ndarray], *, least: int, scale: bool = True) -> Conditional:
        """``scores``: one normal score per patient; ``contexts``: per level, one context per patient."""
        z = pd.Series(np.asarray(scores, dtype=np.float64))
        levels = []
        for context in contexts:
            groups = z.groupby(np.asarray(context, dtype=object))
            sizes, means, sds = groups.size(), groups.mean(), groups.std()
            levels.append(
                {
                    str(c): (float(means[c]), float(sds[c]) if scale and sds[c] > MIN_SD else 1.0)
                    for c in sizes.index[sizes >= least]
                }
            )
        return cls(levels)

    def _of(self, contexts: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """Each row's (mean, sd): those of its finest known context ((0, 1) where none is known)."""
        n = len(contexts[0]) if contexts else 0
        mean, sd = np.zeros(n), np.ones(n)
        todo = np.ones(n, dtype=bool)
        for level, context in zip(self.levels, contexts, strict=True):
            keys = pd.Series(np.asarray(context, dtype=object))
            m = keys.map({c: v[0] for c, v in level.items()}).to_numpy(dtype=np.float64)
            here = todo & ~np.isnan(m)
            mean[here] = m[here]
            sd[here] = keys.map({c: v[1] for c, v in level.items()}).to_numpy(dtype=np.float64)[here]
            todo &= ~here
        return mean, sd

    def standardise(self, scores: np.ndarray, contexts: list[np.ndarray]) -> np.ndarray:
        mean, sd = self._of(contexts)
        return (np.asarray(scores, dtype=np.float64) - mean) / sd

    def restore(self, scores: np.ndarray, contexts: list[np.ndarray]) -> np.ndarray:
        mean, sd = self._of(contexts)
        return np.asarray(scores, dtype=np.float64) * sd + mean
