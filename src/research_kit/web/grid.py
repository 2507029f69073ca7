"""An output table laid out for a reviewer: every cell as written, with the SDC flags that fall on it.

The cells are the file's own text (read with :mod:`csv`, never re-formatted,
so the reviewer sees exactly what would leave). Flags come from the stored
checks (:mod:`research_kit.disclosure.checks`): a flag with a row and a column
marks that cell, one with a row only marks the row, one with neither the
whole output. Escaping is the template's job (autoescape), not this module's.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TABLE_SUFFIXES = (".csv",)
SEVERITY_ORDER = {"fail": 0, "review": 1}


@dataclass(frozen=True)
class Cell:
    text: str
    numeric: bool
    flags: tuple[dict[str, Any], ...] = ()
    id: str = ""

    @property
    def severity(self) -> str | None:
        """The worst severity among the cell's flags: 'fail', 'review' or None."""
        if not self.flags:
            return None
        return min((str(f.get("severity", "review")) for f in self.flags), key=lambda s: SEVERITY_ORDER.get(s, 9))


@dataclass(frozen=True)
class Row:
    number: int  # 0-based data row, as the flags count them
    cells: list[Cell]
    flags: tuple[dict[str, Any], ...] = ()  # flags on the whole row

    @property
    def flagged(self) -> bool:
        return bool(self.flags) or any(c.flags for c in self.cells)


@dataclass(frozen=True)
class Grid:
    columns: list[str]
    rows: list[Row]
    total_rows: int
    flagged_rows: int
    truncated: bool
    output_flags: list[dict[str, Any]] = field(default_factory=list)  # flags naming no row
    roles: dict[str, str] = field(default_factory=dict)


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def is_table(path: Path) -> bool:
    return path.suffix.lower() in TABLE_SUFFIXES


def table_grid(
    path: Path,
    flags: list[dict[str, Any]],
    *,
    prefix: str,
    roles: dict[str, str] | None = None,
    only_flagged: bool = False,
    max_rows: int = 5000,
) -> Grid:
    """Read a CSV output and attach its flags; ``prefix`` makes cell ids unique on the page."""
    by_cell: dict[tuple[int, str], list[dict[str, Any]]] = {}
    by_row: dict[int, list[dict[str, Any]]] = {}
    whole: list[dict[str, Any]] = []
    for flag in flags:
        row, column = flag.get("row"), flag.get("column")
        if row is None:
            whole.append(flag)
        elif column is None:
            by_row.setdefault(int(row), []).append(flag)
        else:
            by_cell.setdefault((int(row), str(column)), []).append(flag)
    rows: list[Row] = []
    total = flagged = 0
    with path.open(newline="", encoding="utf-8", errors="replace") as fh:
        reader = csv.reader(fh)
        columns = next(reader, [])
        for number, values in enumerate(reader):
            total += 1
            cells = [
                Cell(
                    text,
                    _numeric(text),
                    tuple(by_cell.get((number, column), ())),
                    f"{prefix}-r{number}-c{i}",
                )
                for i, (column, text) in enumerate(zip(columns, values, strict=False))
            ]
            row = Row(number, cells, tuple(by_row.get(number, ())))
            flagged += row.flagged
            if (row.flagged or not only_flagged) and len(rows) < max_rows:
                rows.append(row)
    shown_limit = flagged if only_flagged else total
    return Grid(columns, rows, total, flagged, shown_limit > len(rows), whole, dict(roles or {}))
