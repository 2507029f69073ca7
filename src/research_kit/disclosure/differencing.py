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
4. **Recovering a suppressed cell** is not searched here: the protection
   check (:mod:`research_kit.disclosure.attack`) solves every margin of the
   request's and the released tables together, and fails a suppressed cell
   (of a candidate, or of a released table that a candidate narrows) whose
   feasible interval is narrower than the protection width; an exact
   recovery is an interval of width 0.

Levels are tried only where they can matter: every common level of a
candidate's labels with another table's, and every margin pattern of a
candidate. The work is a few pandas merges and group-bys per level, with
counts binned by the threshold so that only near pairs are joined: a request
of ~50 tables against a few hundred released ones takes seconds. Reading the
tables into counted cells and their views is
:mod:`research_kit.disclosure.differencing_views`; the pair search is here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from research_kit.core.errors import BadInput
from research_kit.disclosure.differencing_views import (
    CELL,
    MARGIN_LABELS,
    PUBLISHED,
    SEP,
    SINGLE,
    SUMMED,
    Bools,
    CountedCells,
    Ints,
    TableInfo,
    TableRef,
    table_info,
)

__all__ = ["MARGIN_LABELS", "DifferencingFlag", "TableRef", "find_differencing"]


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


def _fmt(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _group_text(group: dict[str, str]) -> str:
    return ", ".join(f"{k}={v}" for k, v in group.items()) if group else "the overall total"


def _population_text(info: TableInfo) -> str:
    return f"population '{info.population}'" if info.population else "unnamed population"


class _Search:
    """The pairs of one call: the three kinds of comparison, on the counted cells' views at each level."""

    def __init__(self, cells: CountedCells, threshold: int) -> None:
        self.cells = cells
        self.threshold = threshold
        self._sides: dict[tuple[int, int, frozenset[str]], str] = {}

    # -- the three kinds of comparison -------------------------------------------------------------------

    def between(self, level: frozenset[str], views: pd.DataFrame) -> list[tuple[int, int, DifferencingFlag]]:
        """Rules 1 and 2: a candidate against another table whose labels meet its own exactly at ``level``."""
        known = views[views["nnan"].to_numpy() == 0]
        left = known[self.cells.cand[known["t"].to_numpy()]]
        if left.empty:
            return []
        left = left.assign(bin=np.floor(left["value"].to_numpy() / self.threshold).astype(np.int64))
        base = np.floor(known["value"].to_numpy() / self.threshold).astype(np.int64)
        right = pd.concat([known.assign(bin=base + step) for step in (-1, 0, 1)], ignore_index=True)
        pairs = left.merge(right, on=["key", "ckey", "bin"], suffixes=("_a", "_b"))
        ta = pairs["t_a"].to_numpy()
        tb = pairs["t_b"].to_numpy()
        cells = self.cells
        level_ok = cells.meet[cells.lset_id[ta], cells.lset_id[tb]] == cells.level_code.get(level, -2)
        diff = np.abs(pairs["value_a"].to_numpy() - pairs["value_b"].to_numpy())
        keep = (
            (ta != tb)
            & (~self.cells.cand[tb] | (ta < tb))
            & level_ok
            & (diff > 0)
            & (diff < self.threshold)
            & self._one_column_key(pairs, ta, tb)
        )
        flags = []
        for row in pairs[keep].itertuples(index=False):
            a, b = self.cells.infos[row.t_a], self.cells.infos[row.t_b]
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
        own = views[(views["ckey"] != SINGLE) & (views["nnan"] == 0) & self.cells.cand[views["t"].to_numpy()]]
        pub = own[own["kind"] == PUBLISHED]
        if pub.empty:
            return []
        pairs = pub.merge(own[own["kind"] == SUMMED], on=["t", "col", "key"], suffixes=("_p", "_s"))
        diff = np.abs(pairs["value_p"].to_numpy() - pairs["value_s"].to_numpy())
        flags = []
        for row in pairs[(diff > 0) & (diff < self.threshold)].itertuples(index=False):
            info = self.cells.infos[row.t]
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

    # -- helpers -----------------------------------------------------------------------------------------

    def _one_column_key(self, pairs: pd.DataFrame, ta: Ints, tb: Ints) -> Bools:
        """Drop the second match of two one-column tables (matched by the shared key and by name)."""
        both_single = self.cells.single[ta] & self.cells.single[tb]
        keep: Bools = ~both_single | (pairs["ckey"].to_numpy() == SINGLE)
        return keep

    def _group(self, info: TableInfo, level: frozenset[str], key: str) -> dict[str, str]:
        ordered = sorted(level)
        values = dict(zip(ordered, key.split(SEP), strict=True)) if ordered else {}
        return {n: values[n] for n in info.labels if n in values}

    def _side(self, info: TableInfo, kind: int, level: frozenset[str]) -> str:
        cached = self._sides.get((id(info), kind, level))
        if cached is None:
            outside = ", ".join(n for n in info.labels if n not in level)
            how = {CELL: "", PUBLISHED: f" (its margin row, {outside} = Total)", SUMMED: f" (summed over {outside})"}
            cached = self._sides[(id(info), kind, level)] = f"{info.name}{how[kind]} [{_population_text(info)}]"
        return cached

    def _flag(
        self, a: TableInfo, b: TableInfo, group: dict[str, str], column: str, d: float, reason: str
    ) -> DifferencingFlag:
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
    infos = [table_info(ref, True) for ref in candidates] + [table_info(ref, False) for ref in released]
    if not any(i.candidate for i in infos):
        return []
    cells = CountedCells(infos)
    search = _Search(cells, threshold)
    found: list[tuple[int, int, DifferencingFlag]] = []
    for unit, level in cells.levels():
        views = cells.views(unit, level)
        if views.empty:
            continue
        found += search.between(level, views)
        found += search.margins(level, views)
    seen: set[tuple[int, int, str, tuple[tuple[str, str], ...], int]] = set()
    result: list[tuple[tuple[int, int, str, tuple[tuple[str, str], ...], int], DifferencingFlag]] = []
    for a, b, flag in found:
        key = (a, b, flag.column, tuple(flag.group.items()), flag.difference)
        if key not in seen:
            seen.add(key)
            result.append((key, flag))
    result.sort(key=lambda kf: kf[0])
    return [flag for _, flag in result]
