"""Secondary suppression that protects: complementary cells chosen against a solver, checked by the solver.

For a table and its primary suppressions, :func:`protect` hides further cells
until every suppressed cell's feasible interval
(:mod:`research_kit.disclosure.attack`; margins of the table's lines taken as
known even where unpublished) is at least the policy's protection width.

A regular table (a cell for every combination of its label values) is
protected in three steps, each a well-known method:

1. **line pairing**: every line (cells summing to one margin) holding a
   single suppressed cell gets a partner (non-zero before zero, interior
   before margin, then the smallest), until none is alone;
2. **exact check**: each suppressed cell, smallest first, gets its exact
   interval from a warm HiGHS model of the attacker's LP (one bound change
   per newly hidden cell); every optimum is a table the attacker cannot rule
   out, so it widens the *seen range* of every suppressed cell, and a cell
   whose seen range already reaches the width needs no LP of its own;
3. **hypercube** (tau-Argus's GHMITER): a cell still too narrow gets the
   cheapest cube of ``2^n`` cells (one partner level per label, every margin
   still adding up, no count below zero, no fixed margin moved) that moves it
   up by ``U`` and down by ``L`` (``U + L`` the width asked, ``L <= t``);
   all its corners are then protected at once. Costs: hidden cells are free,
   a published one costs ``1 + value`` (information loss by count and value).

Any other table, and a cell no cube can move, use the LP heuristic of the
incremental approach to cell suppression (Fischetti and Salazar-González's
model): HiGHS finds the cheapest deviation of the table moving the cell by
``U`` (then ``-L``) while every margin adds up and no count goes below zero;
every cell it moves is hidden. Either way a deviation found stays valid as
more cells are hidden, so the guarantee holds by construction; cells left
narrow are audited exactly before being called unprotected (zeros and
assumed margins can pin a table down), and such a table needs another
mitigation.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import highspy
import numpy as np

from research_kit.core.config import SdcPolicy
from research_kit.core.errors import PolicyRefusal
from research_kit.disclosure.attack import (
    MAX_ATOMS,
    Atoms,
    Cell,
    Interval,
    Space,
    audit_space,
    new_highs,
    required_width,
)

Position = tuple[int, str]  # (row, column) of the table
PARTNERS = 4  # single partners tried on a cell's lines before a cube
_MOVED = 1e-6
NOT_ADDING_UP = (
    "suppression cannot be audited: the table's cells do not add up (its margins are not the sums of its cells, "
    "e.g. patients counted in several groups): round it instead"
)
TOO_LARGE = "suppression cannot be audited: the table has too many groups for the solver: round or roll it up instead"


class _Deviation:
    """The deviation LP of one space, and the range each cell is seen to take in the tables found so far.

    Columns: an up and a down move per atom; an up and a down move per cell
    of several atoms (a margin), tied to its atoms' moves by one row. A
    margin taken as known has a row only: its atoms' moves cancel out.
    """

    def __init__(self, space: Space, hidden: set[Position]) -> None:
        atoms = Atoms(space)
        inf = highspy.kHighsInf
        n = len(atoms)
        self.cells = [c for c in space.cells if not c.assumed and atoms.of(c)]
        self.index = {(c.row, c.column): i for i, c in enumerate(self.cells)}
        self.true = np.array([0.0 if math.isnan(c.value) else c.value for c in self.cells])
        atom_true = np.zeros(n)
        for c, t in zip(self.cells, self.true, strict=True):
            members = atoms.of(c)
            if len(members) == 1:
                atom_true[members[0]] = t
        self.h = h = new_highs()
        down_limit = np.full(n, inf) if space.signed else np.maximum(atom_true, 0.0)
        upper = np.empty(2 * n)
        upper[0::2] = inf
        upper[1::2] = down_limit
        h.addVars(2 * n, np.zeros(2 * n), upper)
        uppers = [upper]
        self.up = np.empty(len(self.cells), dtype=np.int32)
        position = {id(c): i for i, c in enumerate(self.cells)}
        for c in space.cells:
            at = np.asarray(atoms.of(c), dtype=np.int32)
            ups = 2 * at
            if c.assumed:  # a known margin: its atoms' moves cancel out
                idx = np.concatenate([ups, ups + 1]).astype(np.int32)
                coef = np.concatenate([np.ones(len(at)), -np.ones(len(at))])
                h.addRow(0.0, 0.0, len(idx), idx, coef)
            elif len(at) == 1:
                self.up[position[id(c)]] = ups[0]
            elif len(at) > 1:
                col = h.getNumCol()
                h.addVars(2, np.zeros(2), np.full(2, inf))
                uppers.append(np.full(2, inf))
                self.up[position[id(c)]] = col
                idx = np.concatenate([[col, col + 1], ups, ups + 1]).astype(np.int32)
                coef = np.concatenate([[1.0, -1.0], -np.ones(len(at)), np.ones(len(at))])
                h.addRow(0.0, 0.0, len(idx), idx, coef)
        self.upper = np.concatenate(uppers)
        self.low = self.true.copy()
        self.high = self.true.copy()
        cost = 1.0 + np.abs(self.true)
        cost[[i for i, c in enumerate(self.cells) if (c.row, c.column) in hidden]] = 0.0
        self._cost(np.arange(len(self.cells)), cost)

    def _cost(self, cells: np.ndarray, cost: np.ndarray) -> None:
        cols = np.concatenate([self.up[cells], self.up[cells] + 1]).astype(np.int32)
        self.h.changeColsCost(len(cols), cols, np.concatenate([cost, cost]))

    def free(self, positions: list[Position]) -> None:
        """These cells are hidden now: they move for free."""
        cells = np.array([self.index[p] for p in positions if p in self.index], dtype=np.int64)
        if len(cells):
            self._cost(cells, np.zeros(len(cells)))

    def width(self, i: int) -> float:
        return float(self.high[i] - self.low[i])

    def move(self, i: int, amount: float) -> list[Position] | None:
        """The cells the cheapest deviation moving cell ``i`` by ``amount`` moves; None when none can.

        The table the deviation reaches is one an attacker cannot tell from
        the true one: every cell it moves widens its seen range.
        """
        up = int(self.up[i])
        h = self.h
        fixed_up, fixed_down = (amount, 0.0) if amount > 0 else (0.0, -amount)
        h.changeColBounds(up, fixed_up, fixed_up)
        h.changeColBounds(up + 1, fixed_down, fixed_down)
        h.run()
        ok = h.getModelStatus() == highspy.HighsModelStatus.kOptimal
        values = np.asarray(h.getSolution().col_value) if ok else None
        h.changeColBounds(up, 0.0, float(self.upper[up]))
        h.changeColBounds(up + 1, 0.0, float(self.upper[up + 1]))
        if values is None:
            return None
        y = values[self.up] - values[self.up + 1]
        reached = self.true + y
        np.minimum(self.low, reached, out=self.low)
        np.maximum(self.high, reached, out=self.high)
        moved = np.flatnonzero(np.abs(y) > _MOVED)
        return [(self.cells[j].row, self.cells[j].column) for j in moved]


class _Grid:
    """A regular table (every combination of its label values has a cell) as arrays, for the hypercube method.

    Levels per label: its interior values, then the margin. For a cell ``s``,
    a *hypercube* takes one partner level per label (another interior value,
    whose cells move the other way, or the margin, which moves with it) and
    moves its ``2^n`` corners by ``±amount``: every margin still adds up, so
    the table reached is one an attacker cannot tell from the true one (the
    tensor product of one additive move per label). The cheapest feasible
    cube (no count below zero, no fixed margin moved) is found over every
    partner choice at once with numpy. Cells it cannot move fall back to the
    LP (:class:`_Deviation`), which sees the same cells and seen ranges.
    """

    def __init__(self, space: Space, hidden: set[Position], levels: list[dict[str, int]], where: np.ndarray) -> None:
        self.space = space
        self.cells = [c for c in space.cells if not c.assumed]
        self.index = {(c.row, c.column): i for i, c in enumerate(self.cells)}
        self.true = np.array([0.0 if math.isnan(c.value) else c.value for c in self.cells])
        self.low = self.true.copy()
        self.high = self.true.copy()
        self.labels = space.labels
        self.levels = levels
        self.where = where  # level tuple -> cell index, -1 where no movable cell (a fixed margin)
        self.hidden = np.zeros(len(self.cells), dtype=bool)
        self.hidden[[self.index[p] for p in hidden if p in self.index]] = True
        self.cost = 1.0 + np.abs(self.true)
        self._lp: _Deviation | None = None
        self._exact: _Exact | None = None
        self._hidden_positions = hidden

    @classmethod
    def of(cls, space: Space, hidden: set[Position]) -> _Grid | None:
        labels = space.labels
        if not labels:
            return None
        levels = [{v: i for i, v in enumerate(sorted({c.key[n] for c in space.cells if n in c.key}))} for n in labels]
        shape = tuple(len(lv) + 1 for lv in levels)
        if math.prod(shape) > MAX_ATOMS:
            return None
        where = np.full(shape, -1, dtype=np.int64)
        cells = [c for c in space.cells if not c.assumed]
        for i, c in enumerate(cells):
            at = tuple(levels[d].get(c.key[n], -1) if n in c.key else len(levels[d]) for d, n in enumerate(labels))
            if where[at] != -1:
                return None  # two cells for one group: not a plain table
            where[at] = i
        interior = where[tuple(slice(0, len(lv)) for lv in levels)]
        if (interior < 0).any():
            return None  # a combination without its cell: not regular
        return cls(space, hidden, levels, where)

    def width(self, i: int) -> float:
        return float(self.high[i] - self.low[i])

    def free(self, positions: list[Position]) -> None:
        for p in positions:
            if p in self.index:
                self.hidden[self.index[p]] = True
                if self._exact is not None:
                    self._exact.hide(self.index[p])
        if self._lp is not None:
            self._lp.free(positions)

    def pair_lines(self) -> list[Position]:
        """Hide partners until no line holds exactly one hidden cell (the classic first step); the cells hidden.

        A line's partner: non-zero before zero, interior before its margin, then the smallest. Cheap, and it
        gives the exact checks a pattern that often protects most cells already.
        """
        added: list[Position] = []
        movable = self.where >= 0
        index = np.where(movable, self.where, 0)
        zero = self.true[index] == 0
        changed = True
        while changed:
            changed = False
            hidden = self.hidden[index] & movable
            for d in range(len(self.labels)):
                margin = len(self.levels[d])
                lonely = np.argwhere(hidden.sum(axis=d) == 1)
                for rest in lonely:
                    line = [(*rest[:d], level, *rest[d:]) for level in range(margin + 1)]
                    options = [
                        (bool(zero[at]), level == margin, float(self.true[index[at]]), at)
                        for level, at in enumerate(line)
                        if movable[at] and not hidden[at]
                    ]
                    if not options:
                        continue
                    at = min(options)[3]
                    j = int(index[at])
                    hidden[at] = True
                    self.hidden[j] = True
                    c = self.cells[j]
                    added.append((c.row, c.column))
                    changed = True
        return added

    def observe(self, i: int) -> None:
        """Widen cell ``i``'s seen range to its exact interval under the pattern so far (and others' along)."""
        if self._exact is None:
            self._exact = _Exact(self.space, self.cells, self.true, self.hidden)
        self._exact.observe(i, self.low, self.high)

    def move(self, i: int, amount: float) -> list[Position] | None:
        """The cells a cheapest cube (or, with none, the LP) moving cell ``i`` by ``amount`` moves; None if none."""
        return self.move_both(i, amount) if self._cube(i, amount) is not None else self._lp_move(i, amount)

    def move_both(self, i: int, *amounts: float) -> list[Position] | None:
        """One cube moving cell ``i`` by each of ``amounts`` (up, then down): every corner widens by all of them."""
        cube = self._cube(i, *amounts)
        if cube is None:
            return None
        moved = []
        for j, sign in cube:
            for amount in amounts:
                reached = self.true[j] + sign * amount
                self.low[j] = min(self.low[j], reached)
                self.high[j] = max(self.high[j], reached)
            c = self.cells[j]
            moved.append((c.row, c.column))
        return moved

    def _lp_move(self, i: int, amount: float) -> list[Position] | None:
        if self._lp is None:
            self._lp = _Deviation(self.space, self._hidden_positions)
            self._lp.low, self._lp.high = self.low, self.high
        return self._lp.move(i, amount)

    def _cube(self, i: int, *amounts: float) -> list[tuple[int, float]] | None:
        """The corners (cell, sign) of the cheapest cube that can move cell ``i`` by each of ``amounts``; or None."""
        n = len(self.labels)
        at = [int(x[0]) for x in np.nonzero(self.where == i)]
        partners, signs = [], []
        for d in range(n):
            margin = len(self.levels[d])
            if at[d] == margin:
                p = np.arange(margin)
                sg = np.ones(margin)
            else:
                p = np.array([x for x in range(margin + 1) if x != at[d]])
                sg = np.where(p == margin, 1.0, -1.0)
            if len(p) == 0:
                return None
            partners.append(p)
            signs.append(sg)
        shape = tuple(len(p) for p in partners)
        total = np.zeros(shape)
        ok = np.ones(shape, dtype=bool)
        signed = self.space.signed
        for mask in range(1, 2**n):
            index, sign = self._corner(at, partners, signs, mask)
            cell = self.where[index]
            movable = cell >= 0
            j = np.where(movable, cell, 0)
            ok &= movable
            if not signed:
                for amount in amounts:
                    ok &= self.true[j] + sign * amount >= -1e-9
            total = total + np.where(self.hidden[j], 0.0, self.cost[j])
        total = np.where(ok, total, np.inf)
        best = np.unravel_index(int(np.argmin(total)), shape)
        if not math.isfinite(float(total[best])):
            return None
        corners = [(i, 1.0)]
        for mask in range(1, 2**n):
            index, sign = self._corner(
                at,
                [p[[b]] for p, b in zip(partners, best, strict=True)],
                [g[[b]] for g, b in zip(signs, best, strict=True)],
                mask,
            )
            corners.append((int(self.where[index].reshape(-1)[0]), float(np.asarray(sign).reshape(-1)[0])))
        return corners

    @staticmethod
    def _corner(
        at: list[int], partners: list[np.ndarray], signs: list[np.ndarray], mask: int
    ) -> tuple[tuple[np.ndarray, ...], np.ndarray]:
        """The level of a cube's corner (partners on the labels in ``mask``) for every partner choice, and its sign."""
        n = len(at)
        index = []
        sign: np.ndarray = np.ones([1] * n)
        for d in range(n):
            shape = [1] * n
            if mask >> d & 1:
                shape[d] = len(partners[d])
                index.append(partners[d].reshape(shape))
                sign = sign * signs[d].reshape(shape)
            else:
                index.append(np.full(shape, at[d]))
        return tuple(index), sign


class _Exact:
    """The attacker's LP over a regular table, kept warm as cells are hidden (a bound change each).

    Columns: one per atom (an interior cell), one per multi-atom cell (a
    margin, printed or assumed) tied to its atoms by a row. A published cell
    is fixed at its value; a hidden one is free above zero. Every solution is
    a table the attacker cannot rule out, so it widens the seen range of
    every hidden cell at once.
    """

    def __init__(self, space: Space, cells: list[Cell], true: np.ndarray, hidden: np.ndarray) -> None:
        atoms = Atoms(space)
        inf = highspy.kHighsInf
        self.lower = -inf if space.signed else 0.0
        self.h = h = new_highs()
        n = len(atoms)
        h.addVars(n, np.full(n, self.lower), np.full(n, inf))
        self.col = np.empty(len(cells), dtype=np.int32)
        position = {id(c): j for j, c in enumerate(cells)}
        for c in space.cells:
            at = np.asarray(atoms.of(c), dtype=np.int32)
            j = position.get(id(c))
            if j is not None and len(at) == 1:
                self.col[j] = at[0]
                continue
            col = h.getNumCol()
            value = c.value if j is None else true[j]
            h.addVar(value, value)
            if j is not None:
                self.col[j] = col
            idx = np.concatenate([[col], at]).astype(np.int32)
            h.addRow(0.0, 0.0, len(idx), idx, np.concatenate([[1.0], -np.ones(len(at))]))
        for j, c in enumerate(cells):
            if hidden[j]:
                h.changeColBounds(int(self.col[j]), self.lower, inf)
            elif len(atoms.of(c)) == 1:
                h.changeColBounds(int(self.col[j]), float(true[j]), float(true[j]))
        self.hidden = hidden

    def hide(self, j: int) -> None:
        self.h.changeColBounds(int(self.col[j]), self.lower, highspy.kHighsInf)

    def observe(self, j: int, low: np.ndarray, high: np.ndarray) -> None:
        h, col = self.h, int(self.col[j])
        for sense in (highspy.ObjSense.kMinimize, highspy.ObjSense.kMaximize):
            h.changeColCost(col, 1.0)
            h.changeObjectiveSense(sense)
            h.run()
            status = h.getModelStatus()
            h.changeColCost(col, 0.0)
            if status == highspy.HighsModelStatus.kOptimal:
                values = np.asarray(h.getSolution().col_value)[self.col]
                np.minimum(low, np.where(self.hidden, values, low), out=low)
                np.maximum(high, np.where(self.hidden, values, high), out=high)
            elif status in (highspy.HighsModelStatus.kUnbounded, highspy.HighsModelStatus.kUnboundedOrInfeasible):
                high[j] = math.inf
            else:
                raise PolicyRefusal(NOT_ADDING_UP)


def protect(
    spaces: list[Space], hidden: set[Position], policy: SdcPolicy, couple: Callable[[set[Position]], bool]
) -> set[Position]:
    """Hide cells (added to ``hidden``) until every hidden cell is protected; return those that cannot be.

    ``spaces``: the table's spaces with true values (and its assumed margins);
    ``couple`` hides, in place, the cells that must go with a hidden one (a
    row's n with its means) and says whether it hid any. A cell whose seen
    range already reaches the width asked needs no LP of its own; the cells
    left narrow are audited exactly before being called unprotected.
    """
    couple(hidden)
    deviations: list[_Grid | _Deviation] = [_Grid.of(s, hidden) or _Deviation(s, hidden) for s in spaces]
    owner = {p: d for d in deviations for p in d.index}
    for dev in deviations:
        if isinstance(dev, _Grid):
            paired = dev.pair_lines()
            hidden.update(paired)
            dev.free(paired)
    # The smallest cells first: they are the hardest to protect, and the cubes they take cover larger ones.
    queue = sorted((p for p in hidden if p in owner), key=lambda p: (owner[p].true[owner[p].index[p]], p))
    stuck: set[Position] = set()
    while queue:
        position = queue.pop(0)
        dev = owner[position]
        i = dev.index[position]
        t = dev.true[i]
        up, down = _targets(t, required_width(policy, t), policy)
        if isinstance(dev, _Grid) and not _wide_enough(dev, i, policy):
            dev.observe(i)  # the pattern so far may protect it already: its exact interval says
        if isinstance(dev, _Grid) and up and down and not _wide_enough(dev, i, policy):
            moved = dev.move_both(i, up, -down)  # one cube for both ways: its corners are protected at once
            if moved is not None:
                new = [p for p in moved if p not in hidden]
                hidden.update(new)
                dev.free(new)
                queue += new
        for amount in (up, -down):
            if _wide_enough(dev, i, policy):
                break
            if amount == 0 or (amount > 0 and dev.high[i] >= t + amount) or (amount < 0 and dev.low[i] <= t + amount):
                continue
            moved = dev.move(i, amount)
            if moved is None:
                stuck.add(position)
                continue
            new = [p for p in moved if p not in hidden]
            hidden.update(new)
            dev.free(new)
            queue += new
        before = set(hidden)
        if couple(hidden):
            added = sorted(hidden - before)
            for d in deviations:
                d.free(added)
            queue += [p for p in added if p in owner]
    narrow = {
        p
        for p, d in owner.items()
        if p in hidden and d.width(d.index[p]) < required_width(policy, d.high[d.index[p]]) - 1e-6
    }
    if not narrow:
        return set()
    exact = {(iv.row, iv.column): iv for iv in _audit(spaces, hidden, policy)}
    return {p for p in narrow if p in exact and not exact[p].protected}


def _wide_enough(solver: _Grid | _Deviation, i: int, policy: SdcPolicy) -> bool:
    """Whether the range cell ``i`` is seen to take already covers the width asked of it."""
    return solver.width(i) >= required_width(policy, float(solver.high[i])) - 1e-6


def _targets(value: float, width: float, policy: SdcPolicy) -> tuple[float, float]:
    """How far up and down the cell must be able to move: ``U + L`` covers the width asked, ``L <= value``."""
    for _ in range(3):  # a percentage of the upper end depends on how far up the cell moves
        width = max(width, required_width(policy, value + width))
    down = min(max(value, 0.0), width / 2)
    return width - down, down


def _audit(spaces: list[Space], hidden: set[Position], policy: SdcPolicy) -> list[Interval]:
    """The exact audit of the spaces as published with ``hidden`` suppressed (assumed margins kept)."""
    out: list[Interval] = []
    for space in spaces:
        shown = Space(space.id, signed=space.signed, _declared=set(space._declared))
        shown.cells = [
            Cell(c.output, c.row, c.column, c.key, math.nan if (c.row, c.column) in hidden else c.value, c.assumed)
            for c in space.cells
        ]
        found = audit_space(shown, policy)
        if found.problem is not None:
            raise PolicyRefusal(NOT_ADDING_UP if found.problem == "do not add up" else TOO_LARGE)
        out += found.intervals
    return out
