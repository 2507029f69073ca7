"""Suppression: every failing cell hidden, then enough others that none can be recovered from margins.

Primary: every cell with a ``fail`` flag is set to missing. Secondary: no
suppressed cell may be recoverable from margins. Additive columns (counts, the
``n_column`` and sums) are protected line by line (a line: cells adding up to
a known margin, see :mod:`research_kit.disclosure.margins`):

1. a line with exactly one suppressed cell gets its smallest non-zero
   unsuppressed cell suppressed too (interior cells before its total);
2. a row's ``n_column`` and its magnitude and proportion cells are hidden
   together (a mean and a count give the sum; a sum and a mean the count);
3. once stable, the pattern is checked as a linear system: a suppressed
   cell that the published cells and margins still pin down (it lies on no
   cycle of suppressed cells, e.g. a bridge between two protected blocks)
   gets the smallest non-zero unsuppressed cell of one of its lines
   suppressed, and the steps repeat.

The guarantee: every suppressed cell not listed under ``unprotected`` has
a minimum and a maximum, over all tables consistent with every margin and
with non-negativity, that differ (tested by linear programming on random
2-D and 3-D tables). Zeros are the one limit: a suppressed zero can only
move up, and zeros can pin a table down whatever else is hidden (a 2x2x2
table of three 1s and five 0s with every margin known has one solution);
the cells that stay determined once nothing is left to hide are listed
under ``unprotected``, and such a table needs another mitigation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from research_kit.disclosure.margins import Cell, Line, additive_columns, pinned_down, table_lines
from research_kit.disclosure.results import CheckResult, Mitigated
from research_kit.disclosure.sdc import validate_table
from research_kit.outputs.sidecar import MAGNITUDE_ROLES, Sidecar


@dataclass
class _Pattern:
    values: dict[Cell, float]
    lines: list[Line]
    coupled: list[list[Cell]]
    hidden: set[Cell]
    added: list[Cell] = field(default_factory=list)
    through: dict[Cell, list[Line]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for line in self.lines:
            for cell in line.cells:
                self.through.setdefault(cell, []).append(line)

    def hide(self, cell: Cell) -> None:
        self.hidden.add(cell)
        self.added.append(cell)


def suppress(frame: pd.DataFrame, sidecar: Sidecar, result: CheckResult) -> Mitigated:
    """Suppress every failing cell, then enough others that none can be recovered from margins."""
    validate_table(frame, sidecar)
    additive = additive_columns(sidecar)
    coupled_columns = _coupled_columns(sidecar)
    values = _cell_values(frame, list(dict.fromkeys(additive + coupled_columns)))
    primary = sorted(c for c in result.failed_cells() if c[1] in frame.columns and not _missing(frame, c))
    already = {c for c, v in values.items() if math.isnan(v)}
    pattern = _Pattern(
        values=values,
        lines=table_lines(frame, sidecar),
        coupled=[[(row, col) for col in coupled_columns] for row in range(len(frame))] if coupled_columns else [],
        hidden=set(primary) | already,
    )
    unprotected = _protect(pattern)
    secondary = sorted(pattern.added)
    record = {
        "method": "suppression",
        "parameters": {"columns": additive, "lines": len(pattern.lines)},
        "cells_changed": len(primary) + len(secondary),
        "primary": [[row, col] for row, col in primary],
        "secondary": [[row, col] for row, col in secondary],
        "unprotected": [[row, col] for row, col in sorted(unprotected)],
    }
    return Mitigated(_blank(frame, primary + secondary), record)


def _coupled_columns(sidecar: Sidecar) -> list[str]:
    if sidecar.n_column is None:
        return []
    return [sidecar.n_column, *sidecar.columns(*MAGNITUDE_ROLES, "proportion")]


def _cell_values(frame: pd.DataFrame, columns: list[str]) -> dict[Cell, float]:
    out: dict[Cell, float] = {}
    for col in columns:
        for row, v in enumerate(frame[col].astype("float64").to_numpy(na_value=np.nan)):
            out[(row, col)] = float(v)
    return out


def _missing(frame: pd.DataFrame, cell: Cell) -> bool:
    return bool(pd.isna(frame[cell[1]].iloc[cell[0]]))


def _protect(p: _Pattern) -> set[Cell]:
    """Hide cells until no hidden cell is pinned down; return those that could not be protected."""
    stuck: set[Cell] = set()
    while True:
        if _couple(p) or _line_rule(p):
            continue
        exposed = [c for c in pinned_down(p.hidden, p.values, p.lines) if c not in stuck]
        if not exposed:
            return stuck
        cell = exposed[0]
        candidate = _smallest(p, [c for line in p.through.get(cell, []) for c in line.cells])
        if candidate is None:
            stuck.add(cell)
        else:
            p.hide(candidate)


def _couple(p: _Pattern) -> bool:
    changed = False
    for group in p.coupled:
        if any(c in p.hidden for c in group):
            for cell in group:
                if cell not in p.hidden:
                    p.hide(cell)
                    changed = True
    return changed


def _line_rule(p: _Pattern) -> bool:
    changed = False
    for line in p.lines:
        if sum(c in p.hidden for c in line.cells) == 1:
            candidate = _smallest(p, list(line.cells))
            if candidate is not None:
                p.hide(candidate)
                changed = True
    return changed


def _smallest(p: _Pattern, cells: Iterable[Cell]) -> Cell | None:
    """The unsuppressed cell to hide next: non-zero before zero, interior before a total, then the smallest."""
    open_cells = {c for c in cells if c not in p.hidden}
    totals = {line.total for c in open_cells for line in p.through.get(c, []) if line.total == c}
    if not open_cells:
        return None
    return min(open_cells, key=lambda c: (p.values[c] == 0, c in totals, abs(p.values[c]), c))


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
