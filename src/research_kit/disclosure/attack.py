"""What an attacker with a linear-programming solver learns about suppressed cells: each one's feasible interval.

A suppressed cell is protected only when everything published leaves it
wide open. The attacker here knows every published cell and margin of the
tables given (a request's and those already released from the same extract
series), that counts are not negative, and that a margin is the sum of its
cells; integrality is relaxed (the bound of an LP is never tighter than the
integer one). For each suppressed cell, HiGHS (through ``highspy``) finds its
smallest and its largest value over every table consistent with all of it: the
cell's *feasible interval*. The interval must be at least the policy's
protection width (:func:`required_width`).

How tables are read
-------------------
Cells are sums of *atoms*: the finest groups the tables describe. Each
additive column (counts, the ``n_column``, sums) lives in a *space* of atoms:

- counts of the same unit and population share a space across tables when
  they measure the same thing: the same column name, or each the one counted
  column of its table (a wide table's columns, with their ``Total`` column,
  count as one, split by a label of its own), as differencing pairs them,
  linked transitively; sums of the same unit and population by their name.
  That is how one output's margins bound another's suppressed cells.

A space's labels are the union of its tables' label columns (names compared
without case or surrounding spaces; values likewise). Its atoms are
the interior rows (no label a margin) of the tables that carry all of those
labels, read as listing every group that is not empty; when none does, every
combination of the label values seen. A cell whose label is a margin
(``Total``, ``All``, ``Overall``), or that lacks a label of its space, sums
every atom matching the rest. A mitigation may also say that a line's margin
is known though unpublished (:attr:`Cell.assumed`): what the suppression
guarantees with it holds whatever margin is published later.

A linked space larger than :data:`MAX_ATOMS` atoms, or whose tables do not
add up together (different populations under one name, rounding), is audited
table by table, and each of its tables gets a note saying so (a review flag):
a reviewer must judge the links. A table that alone does not add up is not
audited, and says so.

Speed: one HiGHS model per space, solved again with a warm basis as only the
objective changes (a cell's min, then its max).
"""

from __future__ import annotations

import itertools
import math
import os
import sys
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field

import highspy
import numpy as np
import pandas as pd

from research_kit.core.config import SdcPolicy
from research_kit.core.errors import BadInput
from research_kit.disclosure.differencing_views import SINGLE, TOTAL, counted_values, label_strings
from research_kit.disclosure.margins import is_total
from research_kit.disclosure.results import Interval
from research_kit.disclosure.sdc_counts import count_columns
from research_kit.outputs.sidecar import Sidecar

MAX_ATOMS = 200_000  # a linked space with more atoms is audited table by table
WIDE = "\x00column"  # the label a wide table's count columns stand for
_TOL = 1e-7


@dataclass(frozen=True)
class Table:
    """One table the attacker reads: how the caller names it, its cells, its sidecar."""

    key: str
    frame: pd.DataFrame
    sidecar: Sidecar
    released: bool = False


def has_suppressed(table: Table) -> bool:
    """Whether any additive cell of the table is suppressed (missing, or not a number such as ``<10``)."""
    side = table.sidecar
    for col in dict.fromkeys(count_columns(side) + side.columns("sum")):
        if col in table.frame.columns and np.isnan(counted_values(table.frame[col], f"{table.key}, {col!r}")).any():
            return True
    return False


def required_width(policy: SdcPolicy, upper: float) -> float:
    """The width a suppressed cell's interval must have: the protection width, and a share of its upper end."""
    width = float(policy.protection_width or policy.min_cell_count)
    if policy.protection_percent and math.isfinite(upper):
        width = max(width, policy.protection_percent / 100 * upper)
    return width


@dataclass
class Cell:
    """One additive cell as the attacker sees it, in its space."""

    output: str
    row: int
    column: str
    key: dict[str, str]  # the space's labels this cell fixes (a margin or a missing label: summed over)
    value: float  # NaN: suppressed
    assumed: bool = False  # a margin the mitigation takes as known, though not published


@dataclass
class Space:
    """The cells that share atoms: one linear system."""

    id: Hashable
    cells: list[Cell] = field(default_factory=list)
    signed: bool = False  # a sum column with negative values: atoms may be negative

    @property
    def labels(self) -> list[str]:
        return sorted({name for c in self.cells for name in c.key} | self._declared)

    _declared: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class SpaceResult:
    """The intervals of one space's suppressed cells, or why it could not be audited."""

    intervals: list[Interval]
    problem: str | None = None  # "do not add up" or "too large", when not audited


# --- reading tables into spaces ----------------------------------------------------------------------------


def table_spaces(tables: Sequence[Table], *, link: bool = True, assumed: bool = False) -> list[Space]:
    """Every table's additive cells, in the spaces they share (see the module docstring).

    Parts of tables (a column, or a wide table's columns) that share a linking
    key share a space, transitively: a count column is linked by its name and,
    when it is its table's only counted column (a wide table's columns count
    as one), to every other such column; a sum column by its name. Keys hold
    the unit and the population: only like is linked with like.
    """
    parts = [part for table in tables for part in _table_parts(table, assumed=assumed)]
    parent = list(range(len(parts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if link:
        first: dict[Hashable, int] = {}
        for i, part in enumerate(parts):
            for key in part.links:
                j = first.setdefault(key, i)
                parent[root(i)] = root(j)
    spaces: dict[int, Space] = {}
    for i, part in enumerate(parts):
        space = spaces.setdefault(root(i), Space(("space", root(i))))
        space.cells += part.cells
        space._declared |= set(part.labels)
        space.signed = space.signed or part.signed
    return list(spaces.values())


@dataclass(frozen=True)
class _Part:
    cells: list[Cell]
    labels: list[str]
    signed: bool
    links: tuple[Hashable, ...]


def _name(label: str) -> str:
    """A label column's name as linking compares it (``Sex`` and ``sex `` are one label)."""
    return str(label).strip().casefold()


def _table_parts(table: Table, *, assumed: bool) -> Iterable[_Part]:
    side, frame = table.sidecar, table.frame
    columns = [c for c in side.labels if c in frame.columns]
    labels = [_name(c) for c in columns]
    values = {name: label_strings(frame[col]) for name, col in zip(labels, columns, strict=True)}
    counted = count_columns(side)
    sums = side.columns("sum")
    rows = range(len(frame))
    keys = [{name: str(values[name][r]).casefold() for name in labels if values[name][r] != TOTAL} for r in rows]
    if len({_frozen(k) for k in keys}) != len(keys):
        raise BadInput(f"{side.file}: the label columns ({', '.join(columns)}) do not identify rows uniquely")
    like = (side.unit, side.population)
    for group, kind in ((counted, "count"), (sums, "sum")):
        totals = [c for c in group if is_total(c)]
        interior = [c for c in group if not is_total(c)]
        if len(totals) == 1 and interior:  # a wide table: its columns are one more label, its own
            wide = f"{WIDE}{table.key}"
            cells = []
            for col in [*interior, totals[0]]:
                data = counted_values(frame[col], f"{table.key}, column {col!r}")
                for r in rows:
                    key = dict(keys[r]) if is_total(col) else {**keys[r], wide: col}
                    cells.append(Cell(table.key, r, col, key, float(data[r])))
            found = cells + (_assumed_margins(cells, [*labels, wide]) if assumed else [])
            yield _Part(found, [*labels, wide], _negative(cells), ((kind, *like, SINGLE),))
            continue
        for col in group:
            data = counted_values(frame[col], f"{table.key}, column {col!r}")
            cells = [Cell(table.key, r, col, dict(keys[r]), float(data[r])) for r in rows]
            links: tuple[Hashable, ...] = ((kind, *like, _name(col)),)
            if kind == "count" and len(counted) == 1:
                links = (*links, (kind, *like, SINGLE))
            found = cells + (_assumed_margins(cells, labels) if assumed else [])
            yield _Part(found, labels, kind == "sum" and _negative(cells), links)


def _negative(cells: list[Cell]) -> bool:
    return any(c.value < 0 for c in cells if not math.isnan(c.value))


def _assumed_margins(cells: list[Cell], labels: list[str]) -> list[Cell]:
    """Each line without a published margin gets one the attacker is taken to know: the sum of its cells.

    A line: the cells that share every label but one, ``d``, with ``d`` interior.
    Its sum is only known (to the mitigation) when every cell holds its value.
    """
    out: list[Cell] = []
    interior = [c for c in cells if all(name in c.key for name in labels)]
    published = {_frozen(c.key) for c in cells}
    for d in labels:
        lines: dict[frozenset[tuple[str, str]], list[Cell]] = {}
        for c in interior:
            rest = {k: v for k, v in c.key.items() if k != d}
            lines.setdefault(_frozen(rest), []).append(c)
        for line, members in lines.items():
            if len(members) < 2 or line in published:
                continue
            if any(math.isnan(c.value) for c in members):
                continue  # the caller passes true values; a missing one cannot be summed
            first = members[0]
            total = sum(c.value for c in members)
            out.append(Cell(first.output, -1, first.column, dict(line), total, assumed=True))
    return out


def _frozen(key: dict[str, str]) -> frozenset[tuple[str, str]]:
    return frozenset(key.items())


# --- atoms -------------------------------------------------------------------------------------------------


class Atoms:
    """A space's atoms and, for each cell, the atoms it sums."""

    def __init__(self, space: Space) -> None:
        self.labels = space.labels
        full = [c for c in space.cells if len(c.key) == len(self.labels) and not c.assumed]
        if full:
            combos = sorted({tuple(c.key[n] for n in self.labels) for c in full})
        else:
            domains = [sorted({c.key[n] for c in space.cells if n in c.key}) for n in self.labels]
            size = math.prod(len(d) for d in domains)
            if size > MAX_ATOMS:
                raise OverflowError(size)
            combos = list(itertools.product(*domains))
        if len(combos) > MAX_ATOMS:
            raise OverflowError(len(combos))
        self.combos = combos
        self._index: dict[tuple[str, ...], dict[tuple[str, ...], list[int]]] = {}

    def __len__(self) -> int:
        return len(self.combos)

    def of(self, cell: Cell) -> list[int]:
        """The atoms ``cell`` sums (those matching every label it fixes)."""
        fixed = tuple(n for n in self.labels if n in cell.key)
        if fixed not in self._index:
            positions = [self.labels.index(n) for n in fixed]
            index: dict[tuple[str, ...], list[int]] = {}
            for j, combo in enumerate(self.combos):
                index.setdefault(tuple(combo[p] for p in positions), []).append(j)
            self._index[fixed] = index
        return self._index[fixed].get(tuple(cell.key[n] for n in fixed), [])


# --- the audit ---------------------------------------------------------------------------------------------


def _quiet_first_highs() -> None:
    """Build one HiGHS instance with the process's stdout closed: HiGHS prints its banner on the first one.

    The banner is written by C++ straight to file descriptor 1, before any
    option can silence it; it would land in the middle of a ``--json`` answer.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


_quiet_first_highs()


def new_highs() -> highspy.Highs:
    """A silent HiGHS instance that keeps its basis between solves (presolve off, so the warm start holds)."""
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("presolve", "off")
    h.setOptionValue("simplex_strategy", 4)  # primal: after an objective change the last basis stays feasible
    return h


def audit_space(space: Space, policy: SdcPolicy, *, report: set[str] | None = None) -> SpaceResult:
    """The feasible interval of every suppressed cell of ``space`` (of the outputs in ``report``, if given)."""
    hidden = [c for c in space.cells if math.isnan(c.value) and (report is None or c.output in report)]
    if not hidden:
        return SpaceResult([])
    try:
        atoms = Atoms(space)
    except OverflowError:
        return SpaceResult([], "too large")
    model = _Model.build(space, atoms, hidden)
    if model is None:
        return SpaceResult([], "do not add up")
    h, column_of = model
    intervals = []
    for c in hidden:
        j = column_of[id(c)]
        bounds = []
        for sense in (highspy.ObjSense.kMinimize, highspy.ObjSense.kMaximize):
            h.changeColCost(j, 1.0)
            h.changeObjectiveSense(sense)
            h.run()
            status = h.getModelStatus()
            if status == highspy.HighsModelStatus.kInfeasible:
                return SpaceResult([], "do not add up")
            if status in (highspy.HighsModelStatus.kUnbounded, highspy.HighsModelStatus.kUnboundedOrInfeasible):
                bounds.append(-math.inf if sense == highspy.ObjSense.kMinimize else math.inf)
            elif status == highspy.HighsModelStatus.kOptimal:
                bounds.append(float(h.getInfo().objective_function_value))
            else:  # pragma: no cover - HiGHS's other statuses (time limit, numerical trouble)
                raise RuntimeError(f"HiGHS stopped with {h.modelStatusToString(status)}")
            h.changeColCost(j, 0.0)
        lo, hi = bounds
        lo = max(lo, 0.0) if not space.signed else lo
        linked = _linked(space, c, atoms)
        intervals.append(Interval(c.output, c.row, c.column, _snap(lo), _snap(hi), required_width(policy, hi), linked))
    return SpaceResult(intervals)


class _Model:
    """The audit's LP of one space: atoms that a published cell pins alone are substituted out first."""

    @staticmethod
    def build(space: Space, atoms: Atoms, hidden: list[Cell]) -> tuple[highspy.Highs, dict[int, int]] | None:
        """HiGHS holding the space's system and the column of each cell in ``hidden``; None if it does not add up."""
        inf = highspy.kHighsInf
        fixed = np.full(len(atoms), np.nan)
        for c in space.cells:
            members = atoms.of(c)
            if len(members) == 1 and not math.isnan(c.value):
                j = members[0]
                if not math.isnan(fixed[j]) and abs(fixed[j] - c.value) > _TOL:
                    return None
                fixed[j] = c.value
        free = np.flatnonzero(np.isnan(fixed))
        column = np.full(len(atoms), -1, dtype=np.int64)
        column[free] = np.arange(len(free))
        h = new_highs()
        lower = -inf if space.signed else 0.0
        h.addVars(len(free), np.full(len(free), lower), np.full(len(free), inf))
        column_of: dict[int, int] = {}
        tied = set()
        for c in hidden:
            members = atoms.of(c)
            if len(members) == 1 and column[members[0]] >= 0:
                column_of[id(c)] = int(column[members[0]])  # an interior cell is its atom
                tied.add(id(c))
            else:
                column_of[id(c)] = h.getNumCol()
                h.addVar(-inf, inf)
        for c in space.cells:
            at = np.asarray(atoms.of(c), dtype=np.int64)
            known = float(np.nansum(fixed[at])) if len(at) else 0.0
            moving = column[at][column[at] >= 0]
            if math.isnan(c.value):
                if id(c) not in column_of or id(c) in tied:
                    continue  # another table's suppressed cell: its atoms are bounded by what is published
                idx = np.array([column_of[id(c)], *moving], dtype=np.int32)
                coef = np.array([1.0] + [-1.0] * len(moving))
                h.addRow(known, known, len(idx), idx, coef)
            elif len(moving) == 0:
                if abs(c.value - known) > _TOL * max(1.0, abs(c.value)):
                    return None
            else:
                rhs = c.value - known
                h.addRow(rhs, rhs, len(moving), moving.astype(np.int32), np.ones(len(moving)))
        return h, column_of


def _snap(x: float) -> float:
    """An LP optimum of whole-number data, rid of solver noise (1e-9 off a whole number)."""
    if math.isinf(x):
        return x
    near = round(x)
    return float(near) if abs(x - near) < 1e-6 else x


def _linked(space: Space, cell: Cell, atoms: Atoms) -> tuple[str, ...]:
    """The other outputs of the space whose cells share an atom with ``cell``."""
    mine = set(atoms.of(cell))
    return tuple(sorted({c.output for c in space.cells if c.output != cell.output and mine.intersection(atoms.of(c))}))


def audit(
    tables: Sequence[Table],
    policy: SdcPolicy,
    *,
    report: Iterable[str] | None = None,
    touching: Iterable[str] | None = None,
) -> tuple[list[Interval], list[str]]:
    """Every suppressed cell's feasible interval (of the outputs in ``report``), and notes on what was not audited.

    ``touching``: only the spaces holding a cell of one of these outputs.
    Linked spaces too large or that do not add up are audited again table by
    table; a table that alone does not add up is named in the notes.
    """
    wanted = set(report) if report is not None else {t.key for t in tables}
    near = set(touching) if touching is not None else None
    intervals: list[Interval] = []
    notes: list[str] = []
    for space in table_spaces(tables):
        if near is not None and not any(c.output in near for c in space.cells):
            continue
        found = audit_space(space, policy, report=wanted)
        if found.problem is None:
            intervals += found.intervals
            continue
        pairs = {(c.output, c.column) for c in space.cells}
        outputs = sorted({c.output for c in space.cells})
        for table in [t for t in tables if t.key in outputs and t.key in wanted]:
            alone = [s for s in table_spaces([table], link=False) if (table.key, s.cells[0].column) in pairs]
            problems = []
            for part in alone:
                own = audit_space(part, policy)
                intervals += own.intervals
                if own.problem is not None:
                    problems.append(f"its suppressed cells were not audited: its cells {own.problem}")
            others = [o for o in outputs if o != table.key]
            if not problems and others and any(math.isnan(c.value) for c in space.cells if c.output == table.key):
                why = "together do not add up" if found.problem == "do not add up" else "make too large a system"
                problems.append(
                    f"its suppressed cells were audited on this table alone: it and {', '.join(others)}, which "
                    f"share its margins, {why} (different populations or definitions?); a reviewer must check "
                    "whether those outputs narrow its suppressed cells"
                )
            notes += [f"{table.key}: {p}" for p in dict.fromkeys(problems)]
    return intervals, notes
