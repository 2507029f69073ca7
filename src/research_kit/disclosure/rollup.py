"""ICD-10 roll-up: small groups' codes replaced by their parents until every group reaches the minimum count.

Rows are grouped by a column of ICD-10 codes; while a group's count is
below the minimum, the deepest such codes are replaced by their parent
(subcategory -> category -> block -> chapter, one level at a time), and
with them every code of the table under that parent, so a code always means
its whole family. Counts and sums are re-summed, means and proportions
re-weighted by ``n_column``. Rows labelled ``Total``/``All`` stay as they
are. The sidecar's contributions describe the old rows (the result says so
with ``rows_kept=False``): declare the rolled table anew.
"""

from __future__ import annotations

from collections import Counter
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from research_kit.core.config import SdcPolicy
from research_kit.core.errors import BadInput
from research_kit.disclosure.margins import is_total
from research_kit.disclosure.results import Mitigated
from research_kit.disclosure.sdc import validate_table
from research_kit.disclosure.sdc_counts import count_columns
from research_kit.model.codes import icd10_module
from research_kit.outputs.sidecar import Sidecar


def roll_up(frame: pd.DataFrame, sidecar: Sidecar, column: str, policy: SdcPolicy) -> Mitigated:
    """Replace small groups' ICD-10 codes by their parents until every group's counts reach the minimum."""
    validate_table(frame, sidecar)
    if sidecar.roles.get(column) != "label":
        raise BadInput(f"{sidecar.file}: column {column!r} is not a label column")
    counts, sums, weighted = _roll_columns(sidecar)
    codes = _codes(frame, sidecar, column)
    mapping = {code: code for code in set(codes.values())}
    merges: Counter[str] = Counter()
    while True:
        small = _small_codes(frame, sidecar, column, codes, mapping, counts, policy.min_cell_count)
        rollable = [c for c in small if _parent(c) is not None]
        if not rollable:
            break
        deepest = max(_depth(c) for c in rollable)
        for code in sorted({c for c in rollable if _depth(c) == deepest}):
            parent = _parent(code)
            if parent is not None and _merge(mapping, parent):
                merges[_level(parent)] += 1
    rolled = frame.copy()
    rolled[column] = [mapping[codes[i]] if i in codes else v for i, v in enumerate(frame[column])]
    out = _regroup(rolled, sidecar, counts + sums, weighted)
    unresolved = _small_codes(out, sidecar, column, _codes(out, sidecar, column), None, counts, policy.min_cell_count)
    record = {
        "method": "icd10_roll_up",
        "parameters": {"column": column, "min_cell_count": policy.min_cell_count},
        "cells_changed": sum(mapping[code] != code for code in codes.values()),  # one per row whose code moved
        "merges": {level: merges[level] for level in ("category", "block", "chapter") if merges[level]},
        "rows_before": len(frame),
        "rows_after": len(out),
        "unresolved": len(unresolved),
    }
    return Mitigated(out, record, rows_kept=False)


def _roll_columns(sidecar: Sidecar) -> tuple[list[str], list[str], list[str]]:
    counts = count_columns(sidecar)
    sums = sidecar.columns("sum")
    weighted = sidecar.columns("mean", "proportion")
    if weighted and sidecar.n_column is None:
        raise BadInput(f"{sidecar.file}: column {weighted[0]!r} can only be rolled up with an n_column to weight it")
    for col, role in sidecar.roles.items():
        if role != "label" and col not in counts + sums + weighted:
            raise BadInput(f"{sidecar.file}: column {col!r} ({role}) cannot be re-summed; drop it before a roll-up")
    return counts, sums, weighted


def _codes(frame: pd.DataFrame, sidecar: Sidecar, column: str) -> dict[int, str]:
    """Row -> its ICD-10 code, for every row but totals."""
    icd = icd10_module()
    out: dict[int, str] = {}
    for row, value in enumerate(frame[column]):
        if is_total(value):
            continue
        if not isinstance(value, str) or not icd.is_valid_item(value):
            raise BadInput(f"{sidecar.file}: column {column!r}, row {row}: not an ICD-10 code")
        out[row] = value
    return out


def _small_codes(
    frame: pd.DataFrame,
    sidecar: Sidecar,
    column: str,
    codes: dict[int, str],
    mapping: dict[str, str] | None,
    counts: list[str],
    minimum: int,
) -> set[str]:
    """Current codes of the groups (by every label) whose counts are above 0 and below the minimum."""
    others = [c for c in sidecar.labels if c != column]
    sums: dict[tuple[object, ...], np.ndarray] = {}
    for row, code in codes.items():
        current = code if mapping is None else mapping[code]
        key = (current, *(frame[c].iloc[row] for c in others))
        values = frame[counts].iloc[row].astype("float64").to_numpy(na_value=np.nan)
        sums[key] = sums[key] + values if key in sums else values
    return {str(key[0]) for key, total in sums.items() if np.any((total > 0) & (total < minimum))}


@cache
def _ancestors(code: str) -> tuple[str, ...]:
    return tuple(icd10_module().get_ancestors(code))


def _parent(code: str) -> str | None:
    ancestors = _ancestors(code)
    return ancestors[0] if ancestors else None


def _depth(code: str) -> int:
    return len(_ancestors(code))


def _level(code: str) -> str:
    icd = icd10_module()
    return "chapter" if icd.is_chapter(code) else "block" if icd.is_block(code) else "category"


def _merge(mapping: dict[str, str], parent: str) -> bool:
    """Send every code of the family under ``parent`` to it; False when nothing moved."""
    moved = False
    for code, current in mapping.items():
        if current != parent and parent in _ancestors(current):
            mapping[code] = parent
            moved = True
    return moved


def _regroup(frame: pd.DataFrame, sidecar: Sidecar, additive: list[str], weighted: list[str]) -> pd.DataFrame:
    labels = sidecar.labels
    groups: dict[tuple[object, ...], list[int]] = {}
    for i, labelled in enumerate(frame[labels].itertuples(index=False)):
        groups.setdefault(tuple(None if pd.isna(v) else v for v in labelled), []).append(i)
    rows: list[dict[str, Any]] = []
    for key in groups:
        members = frame.iloc[groups[key]]
        row: dict[str, Any] = dict(zip(labels, key, strict=True))
        for col in additive:
            row[col] = members[col].sum(skipna=False)
        n = members[sidecar.n_column] if sidecar.n_column else None
        for col in weighted:
            assert n is not None  # checked by _roll_columns
            row[col] = (members[col] * n).sum(skipna=False) / n.sum(skipna=False)
        rows.append(row)
    out = pd.DataFrame(rows, columns=list(frame.columns))
    for col in additive:
        out[col] = out[col].astype(frame[col].dtype) if not out[col].isna().any() else out[col]
    return out
