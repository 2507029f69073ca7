"""Protected secondary suppression of a 20 x 20 x 10 table, against naive suppression repaired after an audit.

The table: a seeded 20 x 20 x 10 array of counts (negative binomial, mean 35,
shape 1.5: about 15% of the 4,000 interior cells between 1 and 9, the primary
cells, and a few zeros), in long format with every margin (``Total`` rows):
4,851 cells. Both sides start from the same primary cells (``check_table``).

``ours`` times :func:`research_kit.disclosure.suppression.suppress` (the
hypercube method with its LP fallback, which guarantees every suppressed
cell's interval), then audits the result with
:func:`research_kit.disclosure.attack.audit`, timed apart.

``baseline`` is the textbook naive method, kept here (it is not product
code): each line (every cell but one fixed) with exactly one suppressed cell
gets its smallest non-zero published cell suppressed, until no line changes.
It is then audited and *repaired* to reach the same width: each cell the
audit finds narrower than the protection width gets the smallest published
cell of one of its lines (the line whose candidate is smallest) suppressed,
the naive rule is applied again, and only the cells that were narrow or newly
suppressed are audited again (suppressing more can only widen an interval),
until every cell is wide enough or no line has a cell left to give. Its time
is the naive pass and the repair with its audits; the final figures come from
a full audit of the result, timed apart.

Both report the cells suppressed (primary, secondary), the information lost
(cells, interior cells, and the sum of the suppressed interior values) and
the narrowest interval of the full audit.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from research_kit.core.config import SdcPolicy
from research_kit.disclosure.attack import Interval, Table, audit, audit_space, table_spaces
from research_kit.disclosure.sdc import check_table
from research_kit.disclosure.suppression import suppress
from research_kit.outputs.sidecar import Sidecar

SHAPE = (20, 20, 10)
DIMS = ("a", "b", "c")
TOTAL = "Total"
POLICY = SdcPolicy()
GOALS = (
    "no interval below the protection width",
    "protected under 10 s on 2 cores",
    "fewer cells lost than naive + repair",
)


def counts(seed: int = 22) -> np.ndarray:
    """The interior counts: negative binomial, mean 35, shape 1.5 (about 15% between 1 and 9)."""
    rng = np.random.default_rng(seed)
    k, mean = 1.5, 35.0
    return rng.negative_binomial(k, k / (k + mean), SHAPE)


def with_margins(cube: np.ndarray) -> np.ndarray:
    """The cube with a margin (its last index) added on every axis: shape (21, 21, 11)."""
    out = cube.astype(float)
    for axis in range(out.ndim):
        out = np.concatenate([out, out.sum(axis=axis, keepdims=True)], axis=axis)
    return out


def long_table(full: np.ndarray) -> tuple[pd.DataFrame, Sidecar]:
    """The table in long format: a row per cell of ``full``, in C order (row = flat index)."""
    levels = [[f"{d}{i}" for i in range(n - 1)] + [TOTAL] for d, n in zip(DIMS, full.shape, strict=True)]
    frame = pd.DataFrame(list(itertools.product(*levels)), columns=list(DIMS))
    frame["n"] = full.reshape(-1).astype(np.int64)
    sidecar = Sidecar(
        name="bench",
        file="bench.csv",
        type="table",
        kind="frequency",
        roles={**dict.fromkeys(DIMS, "label"), "n": "count"},
    )
    return frame, sidecar


def _setup(params: dict[str, Any]) -> tuple[np.ndarray, pd.DataFrame, Sidecar, np.ndarray]:
    full = with_margins(counts(int(params.get("seed", 22))))
    frame, sidecar = long_table(full)
    primary = np.zeros(full.size, dtype=bool)
    for row, column in check_table(frame, sidecar, POLICY).failed_cells():
        if column == "n":
            primary[row] = True
    return full, frame, sidecar, primary


def _figures(full: np.ndarray, hidden: np.ndarray, primary: np.ndarray, intervals: list[Interval]) -> dict[str, float]:
    interior = np.zeros(full.shape, dtype=bool)
    interior[tuple(slice(0, n - 1) for n in full.shape)] = True
    interior = interior.reshape(-1)
    values = full.reshape(-1)
    narrow = [iv for iv in intervals if not iv.protected]
    return {
        "primary": int(primary.sum()),
        "secondary": int((hidden & ~primary).sum()),
        "cells_lost": int(hidden.sum()),
        "interior_cells_lost": int((hidden & interior).sum()),
        "interior_value_lost": float(values[hidden & interior].sum()),
        "narrowest_interval": float(min(iv.width for iv in intervals)),
        "narrowest_margin": float(min(iv.width - iv.required for iv in intervals)),
        "cells_below_width": len(narrow),
        "cells_audited": len(intervals),
        "primary_share_of_interior": round(float(primary[interior].mean()), 3),
    }


def _full_audit(frame: pd.DataFrame, sidecar: Sidecar, hidden: np.ndarray) -> tuple[list[Interval], float]:
    shown = frame.copy()
    shown["n"] = shown["n"].astype(float).mask(hidden)
    start = time.perf_counter()
    intervals, notes = audit([Table("bench", shown, sidecar)], POLICY)
    if notes:
        raise RuntimeError(f"audit: {notes}")
    return intervals, time.perf_counter() - start


def ours(params: dict[str, Any], scratch: Path) -> dict[str, float]:
    full, frame, sidecar, primary = _setup(params)
    result = check_table(frame, sidecar, POLICY)
    start = time.perf_counter()
    done = suppress(frame, sidecar, result, POLICY)
    seconds = time.perf_counter() - start
    hidden = done.frame["n"].isna().to_numpy()
    intervals, audit_s = _full_audit(frame, sidecar, hidden)
    return {
        "seconds": seconds,
        "items": float(full.size),
        "audit_s": round(audit_s, 3),
        "unprotected_reported": len(done.record["unprotected"]),
        **_figures(full, hidden, primary, intervals),
    }


# --- the naive baseline, and its repair ----------------------------------------------------------------------------


def naive(full: np.ndarray, hidden: np.ndarray) -> None:
    """Each line with exactly one suppressed cell gets its smallest non-zero published cell suppressed, until stable.

    ``hidden`` (flat, C order over ``full``) is updated in place. A line: every
    cell along one axis (its margin included), the other indices fixed.
    """
    grid = hidden.reshape(full.shape)
    while True:
        changed = False
        for axis in range(full.ndim):
            single = grid.sum(axis=axis) == 1
            if not single.any():
                continue
            candidates = np.where(grid | (full <= 0), np.inf, full)
            best = np.argmin(candidates, axis=axis)
            found = np.isfinite(np.min(candidates, axis=axis)) & single
            others = [np.arange(n) for i, n in enumerate(full.shape) if i != axis]
            mesh = np.meshgrid(*others, indexing="ij")
            for idx in zip(*(m[found] for m in mesh), best[found], strict=True):
                at = list(idx[:-1])
                at.insert(axis, idx[-1])
                grid[tuple(at)] = True
                changed = True
        if not changed:
            return


def _partner(full: np.ndarray, grid: np.ndarray, cell: tuple[int, ...]) -> tuple[int, ...] | None:
    """The smallest published cell (non-zero first) over the lines through ``cell``."""
    best: tuple[float, tuple[int, ...]] | None = None
    for axis in range(full.ndim):
        for i in range(full.shape[axis]):
            at = list(cell)
            at[axis] = i
            key = tuple(at)
            if grid[key]:
                continue
            rank = float(full[key]) if full[key] > 0 else 1e12
            if best is None or rank < best[0]:
                best = (rank, key)
    return None if best is None else best[1]


def _audit_rows(frame: pd.DataFrame, sidecar: Sidecar, hidden: np.ndarray, rows: set[int]) -> list[Interval]:
    """The intervals of the suppressed ``rows`` only (the rest of the table as published)."""
    shown = frame.copy()
    shown["n"] = shown["n"].astype(float).mask(hidden)
    out: list[Interval] = []
    for space in table_spaces([Table("bench", shown, sidecar)]):
        for cell in space.cells:
            if cell.row in rows:
                cell.output = "focus"
        found = audit_space(space, POLICY, report={"focus"})
        if found.problem is not None:
            raise RuntimeError(found.problem)
        out += found.intervals
    return out


def baseline(params: dict[str, Any], scratch: Path) -> dict[str, float]:
    full, frame, sidecar, primary = _setup(params)
    start = time.perf_counter()
    hidden = primary.copy()
    naive(full, hidden)
    naive_s = time.perf_counter() - start
    naive_cells = int(hidden.sum())
    grid = hidden.reshape(full.shape)
    focus = set(np.flatnonzero(hidden).tolist())
    rounds, repair_audit_s, first_narrow = 0, 0.0, -1
    while focus:
        t0 = time.perf_counter()
        narrow = [iv for iv in _audit_rows(frame, sidecar, hidden, focus) if not iv.protected]
        repair_audit_s += time.perf_counter() - t0
        if first_narrow < 0:
            first_narrow = len(narrow)
        if not narrow:
            break
        rounds += 1
        before = hidden.copy()
        for iv in narrow:
            cell = tuple(int(x) for x in np.unravel_index(iv.row, full.shape))
            partner = _partner(full, grid, cell)
            if partner is not None:
                grid[partner] = True
        naive(full, hidden)
        added = set(np.flatnonzero(hidden & ~before).tolist())
        if not added:
            break  # nothing left to give: the rest stays narrow
        focus = {iv.row for iv in narrow} | added
    seconds = time.perf_counter() - start
    intervals, audit_s = _full_audit(frame, sidecar, hidden)
    return {
        "seconds": seconds,
        "items": float(full.size),
        "audit_s": round(audit_s, 3),
        "naive_s": round(naive_s, 3),
        "naive_cells_lost": naive_cells,
        "naive_cells_below_width": first_narrow,
        "repair_rounds": rounds,
        "repair_audit_s": round(repair_audit_s, 3),
        **_figures(full, hidden, primary, intervals),
    }


def goal_lines(entry: dict[str, Any]) -> list[str]:
    """The case's goals, each with whether this run met it."""
    ours_, base = entry["ours"], entry["baseline"]
    width = POLICY.protection_width or POLICY.min_cell_count
    fewer = ours_["cells_lost"] < base["cells_lost"]
    return [
        f"{GOALS[0]}: narrowest {ours_['narrowest_interval']:g} (width asked {width}), "
        f"{ours_['cells_below_width']} below: {'met' if ours_['cells_below_width'] == 0 else 'NOT met'}",
        f"{GOALS[1]}: {ours_['median_s']:.2f} s (audit {ours_['audit_s']:.1f} s apart): "
        f"{'met' if ours_['median_s'] < 10 else 'NOT met'}",
        f"{GOALS[2]}: {ours_['cells_lost']} cells ({ours_['interior_value_lost']:,.0f} counted) against "
        f"{base['cells_lost']} ({base['interior_value_lost']:,.0f}), naive + repair reaching "
        f"{base['cells_below_width']} below the width: {'met' if fewer else 'NOT met'}",
    ]
