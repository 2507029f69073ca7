"""Suppression: every failing cell hidden, then enough others that an attacker with a solver learns too little.

Primary: every cell with a ``fail`` flag is set to missing. Secondary: every
suppressed cell must keep a feasible interval at least the policy's
protection width (``[sdc].protection_width``, by default the small-cell
threshold, and ``protection_percent`` of its upper end), given every cell
published, every margin of the table's lines (taken as known even where the
table does not print it: it may be published elsewhere) and non-negative
counts. Complementary cells are chosen by linear programming
(:mod:`research_kit.disclosure.protection`) and the result is checked by the
audit (:mod:`research_kit.disclosure.attack`). A row's ``n_column`` and its
magnitude and proportion cells are hidden together (a mean and a count give
the sum; a sum and a mean the count).

Zeros are the one limit: a suppressed zero can only move up, and zeros can
pin a table down whatever else is hidden (a 2x2x2 table of three 1s and five
0s with every margin known has one solution); the cells left too narrow once
no deviation can widen them are listed under ``unprotected``, and such a
table needs another mitigation.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from research_kit.core.config import SdcPolicy
from research_kit.disclosure.attack import Table, required_width, table_spaces
from research_kit.disclosure.margins import Cell, additive_columns
from research_kit.disclosure.protection import protect
from research_kit.disclosure.results import CheckResult, Mitigated
from research_kit.disclosure.sdc import validate_table
from research_kit.outputs.sidecar import MAGNITUDE_ROLES, Sidecar


def suppress(frame: pd.DataFrame, sidecar: Sidecar, result: CheckResult, policy: SdcPolicy) -> Mitigated:
    """Suppress every failing cell, then enough others that none can be recovered from margins."""
    validate_table(frame, sidecar)
    coupled_columns = _coupled_columns(sidecar)
    primary = sorted(c for c in result.failed_cells() if c[1] in frame.columns and not _missing(frame, c))
    hidden: set[Cell] = set(primary) | {
        (row, col) for col in frame.columns for row in np.flatnonzero(frame[col].isna().to_numpy()).tolist()
    }
    before = set(hidden)
    coupled = [[(row, col) for col in coupled_columns] for row in range(len(frame))] if coupled_columns else []
    spaces = table_spaces([Table(sidecar.file, frame, sidecar)], link=False, assumed=True)
    unprotected = protect(spaces, hidden, policy, lambda h: _couple(h, coupled))
    secondary = sorted(hidden - before)
    record = {
        "method": "suppression",
        "parameters": {
            "columns": additive_columns(sidecar),
            "protection_width": required_width(policy, 0.0),
            "protection_percent": policy.protection_percent,
        },
        "cells_changed": len(primary) + len(secondary),
        "primary": [[row, col] for row, col in primary],
        "secondary": [[row, col] for row, col in secondary],
        "unprotected": [[row, col] for row, col in sorted(unprotected)],
    }
    return Mitigated(_blank(frame, primary + secondary), record)


def _coupled_columns(sidecar: Sidecar) -> list[str]:
    """A row's n and its magnitude and proportion cells (hidden together); the one count column stands for n."""
    figures = sidecar.columns(*MAGNITUDE_ROLES, "proportion")
    n = sidecar.n_column
    if n is None and len(sidecar.columns("count")) == 1:
        n = sidecar.columns("count")[0]  # a sum and a mean beside it give it back whether declared as n or not
    return [n, *figures] if n is not None and figures else []


def _missing(frame: pd.DataFrame, cell: Cell) -> bool:
    return bool(pd.isna(frame[cell[1]].iloc[cell[0]]))


def _couple(hidden: set[Cell], groups: list[list[Cell]]) -> bool:
    """Hide every cell of a group that has a hidden one; whether any was hidden."""
    changed = False
    for group in groups:
        if any(c in hidden for c in group):
            for cell in group:
                if cell not in hidden:
                    hidden.add(cell)
                    changed = True
    return changed


def _blank(frame: pd.DataFrame, cells: list[Cell]) -> pd.DataFrame:
    out = frame.copy()
    by_column: dict[str, list[int]] = {}
    for row, col in cells:
        by_column.setdefault(col, []).append(row)
    for col, rows in by_column.items():
        if pd.api.types.is_integer_dtype(out[col]):
            out[col] = out[col].astype("Int64")
        elif not pd.api.types.is_float_dtype(out[col]):
            out[col] = out[col].astype(object)
        out[col] = out[col].mask(np.isin(np.arange(len(out)), rows))
    return out
