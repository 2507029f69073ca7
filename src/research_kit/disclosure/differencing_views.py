"""The tables of one differencing search, normalised into one long frame of counted cells, and viewed at a level.

:mod:`research_kit.disclosure.differencing` documents the rules and searches
the pairs; this module only reads the tables: labels as normalised strings
(margins as ``Total``, missing as ``(missing)``), counts as floats (NaN for a
suppressed cell), and each table's cells at a level, published or summed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from research_kit.core.errors import BadInput
from research_kit.outputs.sidecar import Sidecar

MARGIN_LABELS = frozenset({"total", "all", "overall"})  # label values (any case) that mark a margin row
TOTAL = "Total"  # how a margin label is written after normalising
MISSING = "(missing)"
SEP = "\x1f"  # joins the label values of a cell into one key
SINGLE = "\x00single"  # column key shared by every table with exactly one counted column
CELL, PUBLISHED, SUMMED = 0, 1, 2  # how a view row was obtained

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
class TableInfo:
    """A table as the search reads it: a candidate or not, its labels and its counted columns."""

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


def table_info(ref: TableRef, candidate: bool) -> TableInfo:
    """Its labels and counted columns (``count`` columns and the ``n_column``); BadInput if the table lacks one."""
    side = ref.sidecar
    labels = tuple(side.labels)
    counted = [c for c in side.columns("count") if c not in labels]
    if side.n_column is not None and side.n_column not in counted and side.n_column not in labels:
        counted.append(side.n_column)
    missing = [c for c in (*labels, *counted) if c not in ref.frame.columns]
    if missing:
        raise BadInput(f"output {ref.output_id}: its sidecar names column(s) {missing} that the table does not have")
    return TableInfo(ref, candidate, labels, frozenset(labels), tuple(counted))


def label_strings(s: pd.Series[Any]) -> Objects:
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
    result[margin] = TOTAL
    result[missing] = MISSING
    return result


def counted_values(s: pd.Series[Any], where: str) -> Floats:
    """A counted column as floats, NaN for a suppressed cell (missing or not a number, e.g. ``<10``)."""
    if pd.api.types.is_bool_dtype(s.dtype) or pd.api.types.is_datetime64_any_dtype(s.dtype):
        raise BadInput(f"{where}: a counted column must hold numbers")
    values: Floats = pd.to_numeric(s, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    values[~np.isfinite(values)] = np.nan
    return values


def keys(columns: list[Objects], n: int) -> Objects:
    """One string per row joining the label values of ``columns``."""
    if not columns:
        return np.full(n, "", dtype=object)
    if len(columns) == 1:
        return columns[0]
    joined = pd.Series(columns[0], dtype=object)
    for c in columns[1:]:
        joined = joined + SEP + pd.Series(c, dtype=object)
    out: Objects = joined.to_numpy(dtype=object)
    return out


class CountedCells:
    """The tables of one call, as one long frame of counted cells (one row per cell and counted column)."""

    def __init__(self, infos: list[TableInfo]) -> None:
        self.infos = infos
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
            labels = {c: label_strings(frame[c]) for c in info.labels}
            for col in info.counted:
                t_parts.append(np.full(n, t, dtype=np.int64))
                row_parts.append(np.arange(n, dtype=np.int64))
                col_parts.append(np.full(n, col, dtype=object))
                value_parts.append(counted_values(frame[col], f"output {info.ref.output_id}, column {col}"))
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
            self.margin[:, k] = self.labels[name] == TOTAL

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
        nnan (suppressed cells in it), kind.
        """
        tables: Bools = np.array([i.unit == unit and level <= i.lset for i in self.infos], dtype=bool)
        sel: Ints = np.flatnonzero(tables[self.t]) if len(self.t) else np.zeros(0, dtype=np.int64)
        t = self.t[sel]
        value = self.value[sel]
        isnan = np.isnan(value)
        key = keys([self.labels[n][sel] for n in sorted(level)], len(sel))
        outside = np.array([n not in level for n in self.names], dtype=bool)
        margin = self.margin[sel][:, outside]
        has = self.has[t][:, outside]
        full = ~has.any(axis=1)
        direct = (margin | ~has).all(axis=1)  # all labels outside the level are margins (every row when full)
        summed = ~full & ~margin.any(axis=1)
        known = np.where(isnan, 0.0, value)

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
                        "kind": np.where(full[direct], CELL, PUBLISHED),
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
                }
            )
            grouped = (
                rows.groupby(["t", "col", "key"], sort=False)
                .agg(
                    known=("known", "sum"),
                    nnan=("nnan", "sum"),
                )
                .reset_index()
            )
            grouped["value"] = np.where(grouped["nnan"].to_numpy() == 0, grouped["known"].to_numpy(), np.nan)
            grouped["kind"] = SUMMED
            parts.append(grouped)
        if not parts:
            return pd.DataFrame()
        views = pd.concat(parts, ignore_index=True)
        # Column keys: the column's name, and a shared key for tables with one counted column.
        views["ckey"] = views["col"]
        single = views[self.single[views["t"].to_numpy()]].assign(ckey=SINGLE)
        if not single.empty:
            views = pd.concat([views, single], ignore_index=True)
        return views
