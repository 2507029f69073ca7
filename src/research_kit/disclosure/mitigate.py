"""Mitigations a researcher may ask for when a table fails its checks: suppression, rounding, ICD-10 roll-up.

Each returns a new table and a record of what was done (method, parameters,
cells changed, positions), which the caller stores in ``sidecar.mitigations``.
A record names cells by position and counts merges; it never holds a value.

Suppression
    Primary: every cell with a ``fail`` flag is set to missing. Secondary: no
    suppressed cell may be recoverable from margins. The label columns define
    lines: the rows sharing every label but one form a line, whose total is its
    margin. A row whose label on that dimension is ``Total``/``All`` (as ACRO
    and pandas margins write them) is the line's published margin; without one
    the margin is taken as known all the same (it may be published elsewhere,
    e.g. a cohort size), except for a line of a single cell, whose "margin" is
    that cell. In a wide table, count (or sum) columns form one more dimension
    when one of them is a ``Total``/``All`` column; without one they are read
    as separate measures (n and deaths do not add up). Additive columns (counts,
    the ``n_column`` and sums) are protected line by line:

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

Rounding
    Counts (and the ``n_column``) only; other figures are left alone. ``base``:
    the nearest multiple of ``base``, halves rounded up (ACRO rounds halves to
    even; with the default odd base no count is a half). ``midpoint6``: see
    :func:`midpoint6`. Each cell is rounded on its own: totals are rounded
    counts too, not sums of rounded cells.

ICD-10 roll-up
    Rows are grouped by a column of ICD-10 codes; while a group's count is
    below the minimum, the deepest such codes are replaced by their parent
    (subcategory -> category -> block -> chapter, one level at a time), and
    with them every code of the table under that parent, so a code always means
    its whole family. Counts and sums are re-summed, means and proportions
    re-weighted by ``n_column``. Rows labelled ``Total``/``All`` stay as they
    are. The sidecar's contributions describe the old rows: declare the rolled
    table anew.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

import numpy as np
import pandas as pd

from research_kit.core.config import SdcPolicy
from research_kit.core.errors import BadInput
from research_kit.disclosure.sdc import CheckResult, count_columns, validate_table
from research_kit.model.codes import icd10_module
from research_kit.outputs.sidecar import MAGNITUDE_ROLES, Sidecar

TOTAL_LABELS = frozenset({"total", "all"})
ROUNDING_METHODS = ("base", "midpoint6")
MIDPOINT_TO = 6
_EPS = 1e-9

Cell = tuple[int, str]  # (row, column)


@dataclass(frozen=True)
class Mitigated:
    frame: pd.DataFrame
    record: dict[str, Any]  # stored in sidecar.mitigations by the caller


def is_total(label: object) -> bool:
    return isinstance(label, str) and label.strip().lower() in TOTAL_LABELS


# --- suppression -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Line:
    """Cells whose sum is a margin: ``members`` add up to ``total`` (a published cell) or to a known number."""

    members: tuple[Cell, ...]
    total: Cell | None

    @property
    def cells(self) -> tuple[Cell, ...]:
        return self.members if self.total is None else (*self.members, self.total)


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


def additive_columns(sidecar: Sidecar) -> list[str]:
    """Columns whose cells add up along lines: counts, the n column and sums."""
    return list(dict.fromkeys(count_columns(sidecar) + sidecar.columns("sum")))


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


# --- rounding ----------------------------------------------------------------------------------------------


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


# --- ICD-10 roll-up ----------------------------------------------------------------------------------------


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
    return Mitigated(out, record)


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
