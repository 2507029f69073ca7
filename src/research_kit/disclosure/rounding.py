"""Rounding counts on request: to a base, or OpenSAFELY's midpoint 6.

Counts (and the ``n_column``) only; other figures are left alone. ``base``:
the nearest multiple of ``base``, halves rounded up (ACRO rounds halves to
even; with the default odd base no count is a half). ``midpoint6``: see
:func:`midpoint6`. Each cell is rounded on its own: totals are rounded
counts too, not sums of rounded cells.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from research_kit.core.errors import BadInput
from research_kit.disclosure.results import Mitigated
from research_kit.disclosure.sdc import validate_table
from research_kit.disclosure.sdc_counts import count_columns
from research_kit.outputs.sidecar import Sidecar

ROUNDING_METHODS = ("base", "midpoint6")
MIDPOINT_TO = 6


def midpoint6(value: float) -> float:
    """OpenSAFELY's midpoint-6 rounding: 0 stays 0; otherwise ``ceil(value / 6) * 6 - 3``.

    So 1-6 -> 3, 7-12 -> 9, 13-18 -> 15: zero is zero and the rounded values
    are unbiased. Source: OpenSAFELY documentation, "Releasing files",
    section "Rounding to midpoint 6" (https://docs.opensafely.org/releasing-files/,
    opensafely/documentation docs/releasing-files.md), whose R reference is
    ``ceiling(x/to)*to - (floor(to/2)*(x!=0))`` with ``to = 6``.
    """
    if value == 0:
        return 0.0
    return math.ceil(value / MIDPOINT_TO) * MIDPOINT_TO - MIDPOINT_TO // 2


def round_to_base(value: float, base: int) -> float:
    """The nearest multiple of ``base``, halves up."""
    return math.floor(value / base + 0.5) * base


def round_counts(frame: pd.DataFrame, sidecar: Sidecar, method: str = "base", base: int = 5) -> Mitigated:
    """Round the count columns (and the n column); ``midpoint6`` ignores ``base``."""
    validate_table(frame, sidecar)
    if method not in ROUNDING_METHODS:
        raise BadInput(f"{sidecar.file}: rounding method {method!r} is not one of {', '.join(ROUNDING_METHODS)}")
    if method == "base" and base < 1:
        raise BadInput(f"{sidecar.file}: rounding base must be at least 1, not {base}")
    columns = count_columns(sidecar)
    out = frame.copy()
    changed = 0
    for col in columns:
        before = frame[col].astype("float64").to_numpy(na_value=np.nan)
        if method == "midpoint6" and np.any(before < 0):
            raise BadInput(f"{sidecar.file}: column {col!r} holds negative counts; midpoint-6 rounding needs counts")
        after = np.array([v if math.isnan(v) else _round(v, method, base) for v in before])
        changed += int(np.sum(~np.isnan(before) & (before != after)))
        out[col] = _like(frame[col], after)
    parameters: dict[str, Any] = {"method": method, "columns": columns}
    parameters.update({"to": MIDPOINT_TO} if method == "midpoint6" else {"base": base})
    return Mitigated(out, {"method": "rounding", "parameters": parameters, "cells_changed": changed})


def _round(value: float, method: str, base: int) -> float:
    return midpoint6(value) if method == "midpoint6" else round_to_base(value, base)


def _like(original: pd.Series, values: np.ndarray) -> pd.Series:
    series = pd.Series(values, index=original.index, name=original.name)
    if pd.api.types.is_integer_dtype(original):
        return series.astype("Int64" if series.isna().any() else original.dtype)
    return series
