"""The lines of a table whose cells add up to a margin, and which hidden cells those margins pin down.

Suppression (:mod:`research_kit.disclosure.suppression`) hides cells until no
hidden cell can be recovered from the lines described here. A line is a set
of additive cells (counts, the ``n_column``, sums) whose total is known:

- the label columns define lines: the rows sharing every label but one form
  a line, whose total is its margin. A row whose label on that dimension is
  ``Total``/``All`` (as ACRO and pandas margins write them) is the line's
  published margin; without one the margin is taken as known all the same
  (it may be published elsewhere, e.g. a cohort size), except for a line of a
  single cell, whose "margin" is that cell;
- in a wide table, count (or sum) columns form one more dimension when one of
  them is a ``Total``/``All`` column; without one they are read as separate
  measures (n and deaths do not add up).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from research_kit.core.errors import BadInput
from research_kit.disclosure.sdc_counts import count_columns
from research_kit.outputs.sidecar import Sidecar

TOTAL_LABELS = frozenset({"total", "all"})
_EPS = 1e-9

Cell = tuple[int, str]  # (row, column)


def is_total(label: object) -> bool:
    return isinstance(label, str) and label.strip().lower() in TOTAL_LABELS


@dataclass(frozen=True)
class Line:
    """Cells whose sum is a margin: ``members`` add up to ``total`` (a published cell) or to a known number."""

    members: tuple[Cell, ...]
    total: Cell | None

    @property
    def cells(self) -> tuple[Cell, ...]:
        return self.members if self.total is None else (*self.members, self.total)


def additive_columns(sidecar: Sidecar) -> list[str]:
    """Columns whose cells add up along lines: counts, the n column and sums."""
    return list(dict.fromkeys(count_columns(sidecar) + sidecar.columns("sum")))


def table_lines(frame: pd.DataFrame, sidecar: Sidecar) -> list[Line]:
    """Every line of additive cells with a known margin (see the module's docstring)."""
    additive = additive_columns(sidecar)
    lines: list[Line] = []
    for rows, total in _label_lines(frame, sidecar):
        lines += [Line(tuple((r, col) for r in rows), None if total is None else (total, col)) for col in additive]
    for group in (count_columns(sidecar), sidecar.columns("sum")):
        totals = [c for c in group if is_total(c)]
        interior = [c for c in group if not is_total(c)]
        if len(totals) == 1 and interior:
            lines += [Line(tuple((r, c) for c in interior), (r, totals[0])) for r in range(len(frame))]
    return lines


def _label_lines(frame: pd.DataFrame, sidecar: Sidecar) -> list[tuple[list[int], int | None]]:
    labels = sidecar.labels
    keys = [tuple(None if pd.isna(v) else v for v in row) for row in frame[labels].itertuples(index=False)]
    if len(set(keys)) != len(keys):
        raise BadInput(f"{sidecar.file}: the label columns ({', '.join(labels)}) do not identify rows uniquely")
    out: list[tuple[list[int], int | None]] = []
    for d, label in enumerate(labels):
        groups: dict[tuple[object, ...], list[int]] = {}
        for row, key in enumerate(keys):
            groups.setdefault(key[:d] + key[d + 1 :], []).append(row)
        for rows in groups.values():
            totals = [r for r in rows if is_total(keys[r][d])]
            interior = [r for r in rows if not is_total(keys[r][d])]
            if len(totals) > 1:
                raise BadInput(f"{sidecar.file}: column {label!r} has more than one total label in a line")
            if interior and (totals or len(interior) > 1):
                out.append((interior, totals[0] if totals else None))
    return out


def pinned_down(hidden: set[Cell], values: dict[Cell, float], lines: list[Line]) -> list[Cell]:
    """Hidden cells that the published cells and margins determine.

    Hidden cells above zero form the unknowns of the margins' linear system;
    one is determined when every solution of the homogeneous system leaves it
    unchanged (its coordinate vanishes in every null-space vector). A hidden
    zero is determined unless it can move with the positive unknowns.
    """
    in_lines = {c for line in lines for c in line.cells if c in hidden}
    positive = sorted(c for c in in_lines if values.get(c, math.nan) != 0)
    zeros = sorted(c for c in in_lines if values.get(c, math.nan) == 0)
    out = _determined(positive, lines)
    out += [z for z in zeros if z in _determined([*positive, z], lines)]
    return sorted(out)


def _determined(unknowns: list[Cell], lines: list[Line]) -> list[Cell]:
    index = {c: i for i, c in enumerate(unknowns)}
    rows = []
    for line in lines:
        row = np.zeros(len(unknowns))
        for c in line.members:
            if c in index:
                row[index[c]] += 1
        if line.total in index:
            row[index[line.total]] -= 1
        if row.any():
            rows.append(row)
    if not rows:
        return []
    basis = _null_space(np.array(rows))
    if basis.shape[1] == 0:
        return list(unknowns)
    return [c for c, i in index.items() if np.all(np.abs(basis[i]) < _EPS)]


def _null_space(matrix: np.ndarray) -> np.ndarray:
    """An orthonormal basis of the matrix's null space, as columns (from its SVD)."""
    _, singular, vh = np.linalg.svd(matrix)
    rank = int(np.sum(singular > _EPS * max(matrix.shape) * (singular[0] if singular.size else 0.0)))
    return np.asarray(vh[rank:].T)
