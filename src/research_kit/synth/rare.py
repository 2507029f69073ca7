"""The rare-category rule, applied everywhere a twin draws a value.

A value (a code, a canton, a centre ...) held by fewer than ``k`` distinct
real patients never reaches a twin (``policy.synth.rare_category_k``). The
same rule bounds numbers: a numeric column is clipped to the range between
its k-th smallest and k-th largest per-patient value, so no twin value lies
beyond what k real patients share (a real minimum or maximum is never copied).

Values that depend on a context (the ICD-10 code of an ORPHA code, the HPO
terms of a disease) are drawn by :class:`Backoff`: from the cells
(context, value) held by at least ``k`` real patients, falling back to a
coarser context (the disease's ICD-10 block, then chapter, then none) for the
share of rows whose cell is rare; fitted ``residual``, a coarser context
learns only from the rows no finer one kept (Katz's back-off). No pattern of
fewer than ``k`` patients is ever sampled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

NONE = ""  # a categorical column's missing value, while it is modelled


class TooRare(ValueError):
    """The extract is too small for a twin under the rule: nothing left to draw from."""


def patients_per_value(values: np.ndarray, patient: np.ndarray) -> pd.Series:
    """Distinct patients holding each value (missing values ignored)."""
    frame = pd.DataFrame({"v": values, "p": patient})
    frame = frame[frame["v"].notna() & (frame["v"] != NONE)]
    return frame.drop_duplicates().groupby("v", sort=True).size()


def common_values(values: np.ndarray, patient: np.ndarray, k: int) -> set[str]:
    """Values held by at least ``k`` distinct patients."""
    held = patients_per_value(values, patient)
    return set(held.index[held >= k])


def clip_bounds(per_patient: np.ndarray, k: int) -> tuple[float, float]:
    """The k-th smallest and k-th largest of one value per patient (the median when there are under 2k)."""
    x = np.sort(per_patient[~np.isnan(per_patient)])
    if len(x) == 0:
        return (0.0, 0.0)
    if len(x) < 2 * k:
        mid = float(np.median(x))
        return (mid, mid)
    return (float(x[k - 1]), float(x[-k]))


def recode_rare(values: np.ndarray, patient: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Rare values replaced by common ones, drawn at their frequencies (missing counts as a value)."""
    values = np.asarray(values, dtype=object)
    held = pd.DataFrame({"v": values, "p": patient}).drop_duplicates().groupby("v").size()
    common = held.index[held >= k]
    rare = ~pd.Series(values).isin(common).to_numpy()
    if not rare.any():
        return values
    out = values.copy()
    pool = values[~rare]
    if len(pool) == 0:
        raise TooRare(f"no value of a patient attribute is held by {k} patients")
    out[rare] = pool[rng.integers(0, len(pool), int(rare.sum()))]
    return out


@dataclass(frozen=True)
class _Level:
    contexts: pd.Index  # the contexts seen at this level
    stay: np.ndarray  # per context: share of its rows whose cell is held by >= k patients
    keys: np.ndarray  # context i's cells occupy (i, i + 1]: i + cumulative share
    values: np.ndarray


class Backoff:
    """Draws a value given contexts, finest first, from cells held by at least ``k`` patients."""

    def __init__(self, levels: list[_Level]) -> None:
        self.levels = levels

    @classmethod
    def fit(
        cls,
        values: np.ndarray,
        patient: np.ndarray,
        contexts: Sequence[np.ndarray],
        k: int,
        *,
        residual: bool = False,
    ) -> Backoff:
        """``contexts``: one array per level (finest first), each a context key per row of ``values``.

        ``residual``: each coarser level learns only from the rows that no
        finer level could keep (their cell there held by fewer than ``k``
        patients), as in Katz's back-off: the rows a finer level did not keep
        are the ones a sample backs off with, so a value spread thinly over
        many contexts gets back its own share instead of the share of values
        every finer level already draws. Every cell drawn is still held by at
        least ``k`` patients among the rows it is learnt from. For samplers
        that back off only where a context is unknown (``greedy``), leave it off.
        """
        levels = []
        pending = np.ones(len(values), dtype=bool)
        present = pd.notna(values) & (np.asarray(values, dtype=object) != NONE)
        for context in contexts:
            frame = pd.DataFrame({"c": context, "v": values, "p": patient})
            frame = frame[present & pending]
            cells = frame.groupby(["c", "v"], sort=True).agg(rows=("p", "size"), patients=("p", "nunique"))
            rows_per_context = cells.groupby(level="c")["rows"].sum()
            kept = cells[cells["patients"] >= k]
            kept_rows = kept.groupby(level="c")["rows"].sum()
            contexts_kept = kept_rows.index
            if residual:
                held = pd.MultiIndex.from_arrays([np.asarray(context, dtype=object), np.asarray(values, dtype=object)])
                pending &= ~held.isin(kept.index)
            share = kept["rows"] / kept_rows.reindex(kept.index.get_level_values("c")).to_numpy()
            position = pd.Index(contexts_kept).get_indexer(kept.index.get_level_values("c"))
            within = share.groupby(level="c").cumsum().to_numpy()
            # The last cell of each context ends exactly at i + 1 (no rounding gap).
            last = np.r_[position[1:] != position[:-1], True] if len(position) else np.array([], dtype=bool)
            within[last] = 1.0
            levels.append(
                _Level(
                    contexts=pd.Index(contexts_kept),
                    stay=(kept_rows / rows_per_context.reindex(contexts_kept)).to_numpy(dtype=np.float64),
                    keys=position + within,
                    values=kept.index.get_level_values("v").to_numpy(dtype=object),
                )
            )
        return cls(levels)

    def values(self) -> set[str]:
        """Every value this sampler can draw."""
        return {str(v) for level in self.levels for v in level.values}

    def sample(self, contexts: Sequence[np.ndarray], rng: np.random.Generator, *, greedy: bool = False) -> np.ndarray:
        """One value per row (``None`` where no level has a common cell for the row's contexts).

        A row whose context is known at a level stays there with the share of
        that context's real rows held in common cells, and otherwise moves to
        the next, coarser level: the rare cells' mass is spread as the coarser
        context spreads it. ``greedy`` keeps every row at the finest level
        that knows its context (a stand-in drawn among the context's common
        values, as for a stand-in ORPHA code given an ICD-10 code). Rows reaching
        the coarsest level stay there; a row that moved on and that no coarser
        level knows is drawn at the last level that knew it.
        """
        n = len(contexts[0])
        out = np.full(n, None, dtype=object)
        pending = np.arange(n)
        last_depth = np.full(n, -1)  # per row: the last level that knew its context, and where
        last_where = np.full(n, -1)
        for depth, (level, context) in enumerate(zip(self.levels, contexts, strict=True)):
            if len(pending) == 0 or len(level.contexts) == 0:
                continue
            where = level.contexts.get_indexer(np.asarray(context, dtype=object)[pending])
            known = where >= 0
            last_depth[pending[known]], last_where[pending[known]] = depth, where[known]
            stay = known.copy()
            if not greedy and depth < len(self.levels) - 1:
                u = rng.random(len(pending))
                stay[known] = u[known] < level.stay[where[known]]
            self._draw(level, pending[stay], where[stay], out, rng)
            pending = pending[~stay]
        for depth, level in enumerate(self.levels):
            back = pending[last_depth[pending] == depth]
            self._draw(level, back, last_where[back], out, rng)
        return out

    @staticmethod
    def _draw(level: _Level, rows: np.ndarray, where: np.ndarray, out: np.ndarray, rng: np.random.Generator) -> None:
        """``out[rows]``: values drawn among the common cells of their contexts (``where``) at ``level``."""
        if len(rows):
            pick = np.searchsorted(level.keys, where + rng.random(len(rows)), side="right")
            out[rows] = level.values[np.minimum(pick, len(level.values) - 1)]
