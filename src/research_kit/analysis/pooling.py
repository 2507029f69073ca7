"""Pooling small groups before a count table is declared, so that no cell falls below the threshold.

Suppressing a small cell invites differencing (the total minus the cells
shown gives it back); pooling does not. :func:`pool_small` moves every group
below ``[sdc].min_cell_count`` into one ``other`` row and, when that row
would itself be small, adds the smallest shown group to it until it is not.
With ``within``, the pooling happens inside each group of a coarser label
(ICD-10 blocks within their chapter), so the table still adds up to the
coarser one.
"""

from __future__ import annotations

import pandas as pd

from research_kit.core.errors import BadInput


def sdc_min_count() -> int:
    """The workspace policy's ``[sdc].min_cell_count``."""
    from research_kit.tiers import current_policy

    return int(current_policy().sdc.min_cell_count)


def pool_small(
    counts: pd.DataFrame,
    label: str,
    count: str = "n",
    *,
    within: str | None = None,
    other: str = "other",
    min_count: int | None = None,
) -> pd.DataFrame:
    """``counts`` (one row per ``label``, its patients in ``count``) with small groups pooled into ``other``.

    With ``within``, groups are pooled inside each value of that column and
    the pooled row is labelled ``"other (VALUE)"``. Rows keep their order,
    largest first; the pooled row comes last in its group. A whole table (or
    ``within`` group) below the threshold becomes one row: pool the coarser
    label first, then this one.
    """
    for column in (label, count, *(() if within is None else (within,))):
        if column not in counts.columns:
            raise BadInput(f"pool_small: no column {column!r}")
    minimum = sdc_min_count() if min_count is None else int(min_count)
    if within is None:
        return _pool(counts[[label, count]], label, count, other, minimum)
    parts = []
    for key, rows in counts.groupby(within, sort=False, observed=True):
        pooled = _pool(rows[[label, count]], label, count, f"{other} ({key})", minimum)
        pooled.insert(0, within, key)
        parts.append(pooled)
    return pd.concat(parts, ignore_index=True)


def _pool(frame: pd.DataFrame, label: str, count: str, other: str, minimum: int) -> pd.DataFrame:
    summed: pd.DataFrame = frame.groupby(label, sort=False, observed=True, as_index=False)[[count]].sum()
    frame = summed.sort_values(count, ascending=False, kind="stable")
    small = frame[count] < minimum
    shown, pooled = frame[~small], frame[small]
    total = int(pooled[count].sum())
    while 0 < total < minimum and len(shown):
        smallest = shown.iloc[[-1]]
        shown = shown.iloc[:-1]
        total += int(smallest[count].iloc[0])
    rows = shown.reset_index(drop=True)
    if total > 0 or len(pooled):
        rows = pd.concat([rows, pd.DataFrame({label: [other], count: [total]})], ignore_index=True)
    return rows
