"""Differencing: counts in two outputs that differ by a few, so that subtracting one reveals a small group.

:func:`find_differencing` compares the tables of one request (the
*candidates*) with each other, with themselves, and with tables already
released, and returns one :class:`DifferencingFlag` per comparable pair of
counts whose difference ``d`` satisfies ``0 < d < threshold`` (the threshold is
the policy's ``SdcPolicy.differencing_threshold``, passed in by the caller).
It errs on the side of flagging: a reviewer can dismiss a flag, not a
disclosure.

What is compared
----------------
* Only counted columns: those whose sidecar role is ``count``, and the
  sidecar's ``n_column``. Two tables' columns are compared when they have the
  same name, or when each table has exactly one counted column (whatever their
  names).
* Only tables of the same ``unit``: counts of patients are never compared with
  counts of events.
* Cells are identified by their label values, compared as strings (stripped;
  a float label that is a whole number is written without ``.0``; a missing
  label is ``(missing)``). A label value ``Total``, ``All`` or ``Overall`` (any
  case) marks a margin: a row whose label is a margin counts every value of
  that label. Margins of different spellings match each other.
* A table with no label columns is one cell: an overall total.
* ``population`` never makes two tables incomparable. Different populations
  ("all patients" and "diagnosed since 2010") make the difference a group of
  patients (those diagnosed before 2010, in that cell); the same population
  makes it the change between two versions of one figure (a new extract added
  2 patients). Both are flagged alike; the reason says which.
* Pairs where both tables were already released are not compared (they were
  reviewed then); neither are a released table's own margins.
* Tables built from differentially private answers are never given to it
  (:func:`research_kit.disclosure.checks.check_items` leaves them out): their
  figures carry noise, so a difference with them reveals noise, and their
  guarantee holds whatever else is published.

The rules
---------
Each table ``T`` with labels ``L`` can be *viewed at a level* ``C ⊆ L``, as
counts keyed by the values of the labels in ``C``, in two ways: *published*,
the rows whose labels outside ``C`` are all margins (at ``C = L``, the table's
cells themselves); and *summed*, the sum over the labels outside ``C`` of the
rows where none of them is a margin. A summed count with a suppressed cell in
it is unknown and is not compared.

1. **Same labels.** Two tables with the same labels are compared cell by cell
   (rows with the same label values, margins included).
2. **Nested and overlapping labels.** Two tables with labels ``LA`` and ``LB``
   are compared at their common level ``C = LA ∩ LB``, each viewed both ways.
   When ``LB ⊃ LA`` this compares ``A`` with ``B`` summed over its extra
   labels (a difference is patients missing from ``B``, e.g. unknown sex
   dropped); when the labels only overlap, both are summed to what they share;
   when they share none, their overall totals are compared.
3. **Margins inside one table.** For each pattern of margins in a candidate
   table (e.g. ``sex = Total``), its margin rows are compared with the sum of
   the cells they total.
4. **Recovering a suppressed cell.** A missing (NaN) or non-numeric count is a
   suppressed cell. Viewed at a level ``C``, a group of ``T``'s cells holding
   exactly one suppressed cell, or a suppressed margin row, is recoverable when
   a known count for the same group is available from ``T``'s own margin row,
   from the sum of ``T``'s own cells, or from any view of another table of the
   same unit and the *same population* (a table of another population only
   bounds it). The recovered count is the known count minus the group's other
   cells; a recovery is flagged whatever its value (unless negative, which
   means the tables do not agree), and ``difference`` is the recovered count.
   Levels tried: the common levels of rule 2 and the margin levels of rule 3.
   Only one step is taken: a cell recovered by solving several margins
   together, or by first recovering another cell, is not found.

Levels are tried only where they can matter: every common level of a
candidate's labels with another table's, and every margin pattern of a
candidate. The work is a few pandas merges and group-bys per level, with
counts binned by the threshold so that only near pairs are joined: a request
of ~50 tables against a few hundred released ones takes seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from research_kit.core.errors import BadInput
from research_kit.outputs.sidecar import Sidecar

__all__ = ["MARGIN_LABELS", "DifferencingFlag", "TableRef", "find_differencing"]

MARGIN_LABELS = frozenset({"total", "all", "overall"})  # label values (any case) that mark a margin row
_TOTAL = "Total"  # how a margin label is written after normalising
_MISSING = "(missing)"
_SEP = "\x1f"  # joins the label values of a cell into one key
_SINGLE = "\x00single"  # column key shared by every table with exactly one counted column
_CELL, _PUB, _SUM = 0, 1, 2  # how a view row was obtained

Bools = npt.NDArray[np.bool_]
Ints = npt.NDArray[np.int64]
Floats = npt.NDArray[np.float64]
Objects = npt.NDArray[np.object_]


@dataclass(frozen=True)
class TableRef:
    """One declared table: how the caller names it, its data, and its sidecar.

    Which list it is passed in (candidates or released) decides how it is
    treated; ``released`` is kept for the caller's bookkeeping.
    """

    output_id: str
    frame: pd.DataFrame
    sidecar: Sidecar
    released: bool = False


@dataclass(frozen=True)
class DifferencingFlag:
    """Two outputs (or one output and itself) whose counts for one group differ by a few.

    ``group`` holds the label values of the group compared (``{}`` for overall
    totals); for a recoverable suppressed cell, the labels of that cell in
    ``first``. ``column`` is the counted column (``"a vs b"`` when the two
    tables name it differently). ``difference`` is ``0 < d < threshold``,
    except for a recoverable suppressed cell, where it is the recovered count.
    """

    first: str
    second: str
    group: dict[str, str]
    column: str
    difference: int
    reason: str


@dataclass(frozen=True)
class _Info:
    ref: TableRef
    candidate: bool
    labels: tuple[str, ...]
    lset: frozenset[str]
    counted: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"'{self.ref.output_id}'"

    @property
    def population(self) -> str:
        return self.ref.sidecar.population

    @property
    def unit(self) -> str:
        return self.ref.sidecar.unit


def _info(ref: TableRef, candidate: bool) -> _Info:
    side = ref.sidecar
    labels = tuple(side.labels)
    counted = [c for c in side.columns("count") if c not in labels]
    if side.n_column is not None and side.n_column not in counted and side.n_column not in labels:
        counted.append(side.n_column)
    missing = [c for c in (*labels, *counted) if c not in ref.frame.columns]
    if missing:
        raise BadInput(f"output {ref.output_id}: its sidecar names column(s) {missing} that the table does not have")
    return _Info(ref, candidate, labels, frozenset(labels), tuple(counted))


def _label_strings(s: pd.Series[Any]) -> Objects:
    """A label column as normalised strings: margins as ``Total``, missing as ``(missing)``."""
    missing = s.isna().to_numpy()
    if pd.api.types.is_float_dtype(s.dtype):
        values = s.to_numpy(dtype=np.float64, na_value=np.nan)
        whole = ~missing & np.isfinite(values) & (values == np.floor(values))
        out = s.astype(object).astype(str).to_numpy(dtype=object)
        out[whole] = values[whole].astype(np.int64).astype(str)
    else:
        out = s.astype(object).astype(str).to_numpy(dtype=object)
    stripped = pd.Series(out, dtype=object).str.strip()
    margin = stripped.str.lower().isin(MARGIN_LABELS).to_numpy()
    result: Objects = stripped.to_numpy(dtype=object)
    result[margin] = _TOTAL
    result[missing] = _MISSING
    return result


def _counts(s: pd.Series[Any], where: str) -> Floats:
    """A counted column as floats, NaN for a suppressed cell (missing or not a number, e.g. ``<10``)."""
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_datetime64_any_dtype(s.dtype):
        raise BadInput(f"{where}: a counted column must hold numbers")
    values: Floats = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    values[~np.isfinite(values)] = np.nan
    return values


def _keys(columns: list[Objects], n: int) -> Objects:
    """One string per row joining the label values of ``columns``."""
    if not columns:
        return np.full(n, "", dtype=object)
    if len(columns) == 1:
        return columns[0]
    joined = pd.Series(columns[0], dtype=object)
    for c in columns[1:]:
        joined = joined + _SEP + pd.Series(c, dtype=object)
    out: Objects = joined.to_numpy(dtype=object)
    return out


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _group_text(group: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in group.items()) if group else "the overall total"


def _population_text(info: _Info) -> str:
    return f"population '{info.population}'" if info.population else "unnamed population"


class _Finder:
    """The tables of one call, as one long frame of counted cells (one row per cell and counted column)."""

    def __init__(self, infos: list[_Info], threshold: int) -> None:
        self.infos = infos
        self.threshold = threshold
        self._sides: dict[tuple[int, int, frozenset[str]], str] = {}
        self.cand: Bools = np.array([i.candidate for i in infos], dtype=bool)
        self.single: Bools = np.array([len(i.counted) == 1 for i in infos], dtype=bool)
        self.names = sorted({n for i in infos for n in i.labels})
        index = {n: k for k, n in enumerate(self.names)}
        self.has: Bools = np.zeros((len(infos), len(self.names)), dtype=bool)
        for t, info in enumerate(infos):
            self.has[t, [index[n] for n in info.labels]] = True
        pops = {p: k for k, p in enumerate(sorted({i.population for i in infos}))}
        self.pop: Ints = np.array([pops[i.population] for i in infos], dtype=np.int64)
        lsets = {s: k for k, s in enumerate(sorted({(i.unit, tuple(sorted(i.lset))) for i in infos}))}
        self.lset_id: Ints = np.array([lsets[(i.unit, tuple(sorted(i.lset)))] for i in infos], dtype=np.int64)
        self.lsets = [frozenset(s[1]) for s in sorted(lsets, key=lsets.__getitem__)]
        # meet[a, b]: a code for the labels two label sets share (-1 unless one of them is a candidate's)
        self.level_code: dict[frozenset[str], int] = {}
        self.meet: Ints = np.full((len(self.lsets), len(self.lsets)), -1, dtype=np.int64)
        for a in sorted({int(self.lset_id[t]) for t, i in enumerate(infos) if i.candidate}):
            for b, other in enumerate(self.lsets):
                code = self.level_code.setdefault(self.lsets[a] & other, len(self.level_code))
                self.meet[a, b] = self.meet[b, a] = code

        t_parts: list[Ints] = []
        row_parts: list[Ints] = []
        col_parts: list[Objects] = []
        value_parts: list[Floats] = []
        label_parts: list[dict[str, Objects]] = []
        for t, info in enumerate(infos):
            frame = info.ref.frame
            n = len(frame)
            if n == 0 or not info.counted:
                continue
            labels = {c: _label_strings(frame[c]) for c in info.labels}
            for col in info.counted:
                t_parts.append(np.full(n, t, dtype=np.int64))
                row_parts.append(np.arange(n, dtype=np.int64))
                col_parts.append(np.full(n, col, dtype=object))
                value_parts.append(_counts(frame[col], f"output {info.ref.output_id}, column {col}"))
                label_parts.append(labels)
        self.t: Ints = np.concatenate(t_parts) if t_parts else np.zeros(0, dtype=np.int64)
        self.col: Objects = np.concatenate(col_parts) if col_parts else np.zeros(0, dtype=object)
        self.value: Floats = np.concatenate(value_parts) if value_parts else np.zeros(0, dtype=np.float64)
        size = len(self.t)
        self.labels: dict[str, Objects] = {n: np.full(size, None, dtype=object) for n in self.names}
        start = 0
        for rows, labels in zip(row_parts, label_parts, strict=True):
            for name, values in labels.items():
                self.labels[name][start : start + len(rows)] = values
            start += len(rows)
        self.margin: Bools = np.zeros((size, len(self.names)), dtype=bool)
        for k, name in enumerate(self.names):
            self.margin[:, k] = self.labels[name] == _TOTAL

    # -- levels -----------------------------------------------------------------------------------------

    def levels(self) -> list[tuple[str, frozenset[str]]]:
        """Every (unit, level) where a comparison involving a candidate can happen."""
        found: set[tuple[str, frozenset[str]]] = set()
        units = {i.unit for i in self.infos}
        by_unit = {u: {self.lset_id[t] for t, i in enumerate(self.infos) if i.unit == u} for u in units}
        for t, info in enumerate(self.infos):
            if not info.candidate:
                continue
            for other in by_unit[info.unit]:
                found.add((info.unit, info.lset & self.lsets[other]))
            rows = self.t == t
            if rows.any():
                for pattern in np.unique(self.margin[rows], axis=0):
                    if pattern.any():
                        found.add((info.unit, info.lset - {self.names[k] for k in np.flatnonzero(pattern)}))
        return sorted(found, key=lambda uc: (uc[0], len(uc[1]), sorted(uc[1])))

    def views(self, unit: str, level: frozenset[str]) -> pd.DataFrame:
        """Every table of ``unit`` whose labels include ``level``, viewed at ``level`` (see the module docstring).

        Columns: t, col, ckey, key, value (NaN when unknown), known (sum of the known cells),
        nnan (suppressed cells in it), nanrow (a suppressed cell's row, or -1), cells, kind.
        """
        tables: Bools = np.array([i.unit == unit and level <= i.lset for i in self.infos], dtype=bool)
        sel: Ints = np.flatnonzero(tables[self.t]) if len(self.t) else np.zeros(0, dtype=np.int64)
        t = self.t[sel]
        value = self.value[sel]
        isnan = np.isnan(value)
        key = _keys([self.labels[n][sel] for n in sorted(level)], len(sel))
        outside = np.array([n not in level for n in self.names], dtype=bool)
        margin = self.margin[sel][:, outside]
        has = self.has[t][:, outside]
        full = ~has.any(axis=1)
        direct = (margin | ~has).all(axis=1)  # all labels outside the level are margins (every row when full)
        summed = ~full & ~margin.any(axis=1)
        known = np.where(isnan, 0.0, value)
        nanrow = np.where(isnan, sel, -1)

        parts = []
        if direct.any():
            parts.append(
                pd.DataFrame(
                    {
                        "t": t[direct],
                        "col": self.col[sel][direct],
                        "key": key[direct],
                        "value": value[direct],
                        "known": known[direct],
                        "nnan": isnan[direct].astype(np.int64),
                        "nanrow": nanrow[direct],
                        "cells": np.ones(int(direct.sum()), dtype=np.int64),
                        "kind": np.where(full[direct], _CELL, _PUB),
                    }
                )
            )
        if summed.any():
            rows = pd.DataFrame(
                {
                    "t": t[summed],
                    "col": self.col[sel][summed],
                    "key": key[summed],
                    "known": known[summed],
                    "nnan": isnan[summed].astype(np.int64),
                    "nanrow": nanrow[summed],
                }
            )
            grouped = (
                rows.groupby(["t", "col", "key"], sort=False)
                .agg(
                    known=("known", "sum"),
                    nnan=("nnan", "sum"),
                    nanrow=("nanrow", "max"),
                    cells=("known", "size"),
                )
                .reset_index()
            )
            grouped["value"] = np.where(grouped["nnan"].to_numpy() == 0, grouped["known"].to_numpy(), np.nan)
            grouped["kind"] = _SUM
            parts.append(grouped)
        if not parts:
            return pd.DataFrame()
        views = pd.concat(parts, ignore_index=True)
        # Column keys: the column's name, and a shared key for tables with one counted column.
        views["ckey"] = views["col"]
        single = views[self.single[views["t"].to_numpy()]].assign(ckey=_SINGLE)
        if not single.empty:
            views = pd.concat([views, single], ignore_index=True)
        return views

    # -- the three kinds of comparison -------------------------------------------------------------------

    def between(self, level: frozenset[str], views: pd.DataFrame) -> list[tuple[int, int, DifferencingFlag]]:
        """Rules 1 and 2: a candidate against another table whose labels meet its own exactly at ``level``."""
        known = views[views["nnan"].to_numpy() == 0]
        left = known[self.cand[known["t"].to_numpy()]]
        if left.empty:
            return []
        left = left.assign(bin=np.floor(left["value"].to_numpy() / self.threshold).astype(np.int64))
        base = np.floor(known["value"].to_numpy() / self.threshold).astype(np.int64)
        right = pd.concat([known.assign(bin=base + step) for step in (-1, 0, 1)], ignore_index=True)
        pairs = left.merge(right, on=["key", "ckey", "bin"], suffixes=("_a", "_b"))
        ta = pairs["t_a"].to_numpy()
        tb = pairs["t_b"].to_numpy()
        level_ok = self.meet[self.lset_id[ta], self.lset_id[tb]] == self.level_code.get(level, -2)
        diff = np.abs(pairs["value_a"].to_numpy() - pairs["value_b"].to_numpy())
        keep = (
            (ta != tb)
            & (~self.cand[tb] | (ta < tb))
            & level_ok
            & (diff > 0)
            & (diff < self.threshold)
            & self._one_column_key(pairs, ta, tb)
        )
        flags = []
        for row in pairs[keep].itertuples(index=False):
            a, b = self.infos[row.t_a], self.infos[row.t_b]
            group = self._group(a, level, str(row.key))
            column = row.col_a if row.col_a == row.col_b else f"{row.col_a} vs {row.col_b}"
            d = abs(float(row.value_a) - float(row.value_b))
            same = a.population == b.population
            what = f"subtracting one from the other reveals a group of {_fmt(d)} {a.unit}" + (
                " (the same population: added between two versions of one figure, or missing from one table)"
                if same
                else " (in one population and not the other)"
            )
            reason = (
                f"{column} for {_group_text(group)}: {self._side(a, row.kind_a, level)} has {_fmt(row.value_a)}, "
                f"{self._side(b, row.kind_b, level)} has {_fmt(row.value_b)}; {what}"
            )
            flags.append((int(row.t_a), int(row.t_b), self._flag(a, b, group, column, d, reason)))
        return flags

    def margins(self, level: frozenset[str], views: pd.DataFrame) -> list[tuple[int, int, DifferencingFlag]]:
        """Rule 3: a candidate's margin rows against the sum of the cells they total."""
        own = views[(views["ckey"] != _SINGLE) & (views["nnan"] == 0) & self.cand[views["t"].to_numpy()]]
        pub = own[own["kind"] == _PUB]
        if pub.empty:
            return []
        pairs = pub.merge(own[own["kind"] == _SUM], on=["t", "col", "key"], suffixes=("_p", "_s"))
        diff = np.abs(pairs["value_p"].to_numpy() - pairs["value_s"].to_numpy())
        flags = []
        for row in pairs[(diff > 0) & (diff < self.threshold)].itertuples(index=False):
            info = self.infos[row.t]
            group = self._group(info, level, str(row.key))
            outside = ", ".join(n for n in info.labels if n not in level)
            d = abs(float(row.value_p) - float(row.value_s))
            reason = (
                f"{row.col} for {_group_text(group)} in {info.name}: its margin row ({outside} = Total) has "
                f"{_fmt(row.value_p)} but its cells summed over {outside} give {_fmt(row.value_s)}; "
                f"subtracting reveals a group of {_fmt(d)} {info.unit} missing from the cells"
            )
            flags.append((int(row.t), int(row.t), self._flag(info, info, group, str(row.col), d, reason)))
        return flags

    def recoveries(self, level: frozenset[str], views: pd.DataFrame) -> list[tuple[int, int, DifferencingFlag]]:
        """Rule 4: a group with one suppressed cell (or a suppressed margin) and a known count for the same group."""
        groups = views[views["nnan"].to_numpy() == 1]
        if groups.empty:
            return []
        sources = views[(views["nnan"].to_numpy() == 0) & views["key"].isin(groups["key"]).to_numpy()]
        pairs = groups.merge(sources, on=["key", "ckey"], suffixes=("_g", "_s"))
        tg = pairs["t_g"].to_numpy()
        ts = pairs["t_s"].to_numpy()
        recovered = pairs["value_s"].to_numpy() - pairs["known_g"].to_numpy()
        kinds_differ = pairs["kind_g"].to_numpy() != pairs["kind_s"].to_numpy()
        keep = (
            (self.pop[tg] == self.pop[ts])
            & ((tg != ts) | kinds_differ)
            & np.where(tg == ts, self.cand[tg], self.cand[tg] | self.cand[ts])
            & (recovered >= 0)
            & self._one_column_key(pairs, tg, ts)
        )
        flags = []
        for row in pairs[keep].itertuples(index=False):
            g, s = self.infos[row.t_g], self.infos[row.t_s]
            nanrow = int(row.nanrow_g)
            cell = {n: str(self.labels[n][nanrow]) for n in g.labels}
            group = self._group(g, level, str(row.key))
            r = float(row.value_s) - float(row.known_g)
            if row.t_g == row.t_s:
                source = "its own margin row" if row.kind_s == _PUB else "the sum of its own published cells"
            else:
                source = self._side(s, row.kind_s, level)
            if row.kind_g == _SUM and int(row.cells_g) > 1:
                how = (
                    f"{source} gives {_fmt(row.value_s)} for {_group_text(group)}, and the other "
                    f"{int(row.cells_g) - 1} cells of {g.name} in that group sum to {_fmt(row.known_g)}"
                )
            else:
                how = f"{source} gives {_fmt(row.value_s)} for the same group"
            reason = (
                f"the suppressed {row.col_g} cell ({_group_text(cell)}) of {g.name} is recoverable: "
                f"{how}, so it holds {_fmt(r)} {g.unit}"
            )
            flag = DifferencingFlag(g.ref.output_id, s.ref.output_id, cell, str(row.col_g), round(r), reason)
            flags.append((int(row.t_g), int(row.t_s), flag))
        return flags

    # -- helpers -----------------------------------------------------------------------------------------

    def _one_column_key(self, pairs: pd.DataFrame, ta: Ints, tb: Ints) -> Bools:
        """Drop the second match of two one-column tables (matched by the shared key and by name)."""
        both_single = self.single[ta] & self.single[tb]
        keep: Bools = ~both_single | (pairs["ckey"].to_numpy() == _SINGLE)
        return keep

    def _group(self, info: _Info, level: frozenset[str], key: str) -> dict[str, str]:
        ordered = sorted(level)
        values = dict(zip(ordered, key.split(_SEP), strict=True)) if ordered else {}
        return {n: values[n] for n in info.labels if n in values}

    def _side(self, info: _Info, kind: int, level: frozenset[str]) -> str:
        cached = self._sides.get((id(info), kind, level))
        if cached is None:
            outside = ", ".join(n for n in info.labels if n not in level)
            how = {_CELL: "", _PUB: f" (its margin row, {outside} = Total)", _SUM: f" (summed over {outside})"}[kind]
            cached = self._sides[(id(info), kind, level)] = f"{info.name}{how} [{_population_text(info)}]"
        return cached

    def _flag(self, a: _Info, b: _Info, group: dict[str, str], column: str, d: float, reason: str) -> DifferencingFlag:
        difference = min(max(round(d), 1), self.threshold - 1)  # non-whole counts (noisy outputs) stay in range
        return DifferencingFlag(a.ref.output_id, b.ref.output_id, group, column, difference, reason)


def find_differencing(
    candidates: Sequence[TableRef], released: Sequence[TableRef], threshold: int
) -> list[DifferencingFlag]:
    """Flags for counts of comparable groups that differ by ``0 < d < threshold`` (see the module docstring).

    ``candidates`` are the tables of the request under review, ``released``
    those already released; ``threshold`` is the policy's
    ``differencing_threshold``. Flags come ordered by the position of their
    tables in ``[*candidates, *released]``, then column and group; each
    names the candidate first (a recoverable cell: the table that suppressed
    it first).
    """
    if isinstance(threshold, bool) or not isinstance(threshold, int) or threshold < 1:
        raise BadInput(f"differencing threshold must be a whole number of at least 1 (got {threshold!r})")
    infos = [_info(ref, True) for ref in candidates] + [_info(ref, False) for ref in released]
    if not any(i.candidate for i in infos):
        return []
    finder = _Finder(infos, threshold)
    found: list[tuple[int, int, DifferencingFlag]] = []
    for unit, level in finder.levels():
        views = finder.views(unit, level)
        if views.empty:
            continue
        found += finder.between(level, views)
        found += finder.margins(level, views)
        found += finder.recoveries(level, views)
    seen: set[tuple[int, int, str, tuple[tuple[str, str], ...], int]] = set()
    result: list[tuple[tuple[int, int, str, tuple[tuple[str, str], ...], int], DifferencingFlag]] = []
    for a, b, flag in found:
        key = (a, b, flag.column, tuple(flag.group.items()), flag.difference)
        if key not in seen:
            seen.add(key)
            result.append((key, flag))
    result.sort(key=lambda kf: kf[0])
    return [flag for _, flag in result]
