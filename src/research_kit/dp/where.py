"""A query's cohort filter: ``"sex = female and diagnosis_year >= 2010"``, a list of clauses, or a mapping.

Each clause is checked against the view's columns (its values typed as the
column is) and becomes a Polars expression OpenDP accepts. Clauses are kept
in a canonical order, so the same cohort written two ways is one replay key.
"""

from __future__ import annotations

import functools
import math
import operator
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import polars as pl

from research_kit.core.errors import BadInput, quoted
from research_kit.dp.columns import Column, column

OPS = ("=", "!=", "in", "not in", "<", "<=", ">", ">=")
_CLAUSE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(not in|in|!=|==|<=|>=|=|<|>)\s*(.+?)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class Clause:
    column: str
    op: str
    values: tuple[Any, ...]

    def text(self) -> str:
        shown = ", ".join(str(v) for v in self.values)
        return (
            f"{self.column} {self.op} ({shown})" if self.op in ("in", "not in") else f"{self.column} {self.op} {shown}"
        )

    def expr(self) -> pl.Expr:
        col = pl.col(self.column)
        if self.op in ("=", "in", "not in"):
            # OpenDP 0.16 does not take is_in: an OR of equalities says the same.
            match = functools.reduce(operator.or_, [col == pl.lit(v) for v in self.values])
            return ~match if self.op == "not in" else match
        value = pl.lit(self.values[0])
        return {"!=": col != value, "<": col < value, "<=": col <= value, ">": col > value, ">=": col >= value}[self.op]


LARGEST = 2**53  # a filter's whole number beyond this is a typo: no column holds one


def _typed(col: Column, raw: Any) -> Any:
    text = str(raw).strip()
    if len(text) > 100:
        raise BadInput(f"filter on {col.name}: a value of {len(text)} characters is not one it can hold")
    try:
        if col.kind == "int":
            number = int(text)
            if abs(number) > LARGEST:
                raise ValueError(text)
            return number
        if col.kind == "float":
            real = float(text)
            if not math.isfinite(real) or abs(real) > LARGEST:
                raise ValueError(text)
            return real
        if col.kind == "flag":
            low = text.lower()
            if low in ("true", "yes", "1"):
                return True
            if low in ("false", "no", "0"):
                return False
            raise ValueError(text)
    except ValueError:
        raise BadInput(
            f"filter on {col.name}: {quoted(repr(text))} is not a {col.kind} value (or out of range)"
        ) from None
    return raw if isinstance(raw, str) else text


def parse_where(table: str, where: str | Sequence[str] | Mapping[str, Any] | None) -> tuple[Clause, ...]:
    """Filters: "sex = female and diagnosis_year >= 2010", a list of such clauses, or {column: value(s)}."""
    if where is None:
        return ()
    clauses: list[Clause] = []
    if isinstance(where, Mapping):
        for name, value in where.items():
            col = column(table, name)
            if isinstance(value, list | tuple | set | frozenset):
                values = tuple(_typed(col, v) for v in value)
                clauses.append(Clause(name, "in", values))
            else:
                clauses.append(Clause(name, "=", (_typed(col, value),)))
    else:
        parts = [where] if isinstance(where, str) else list(where)
        for part in parts:
            if not isinstance(part, str):
                raise BadInput(f"filter {part!r}: write 'column OP value' as text")
            for text in re.split(r"\s+and\s+", part.strip(), flags=re.IGNORECASE):
                if not text.strip():
                    raise BadInput(f"filter {part!r}: an empty filter (leave the filter out to use every row)")
                m = _CLAUSE.match(text)
                if not m:
                    raise BadInput(f"filter {text!r}: write 'column OP value' with OP one of {', '.join(OPS)}")
                name, op, rest = m.group(1), m.group(2).lower().replace("==", "="), m.group(3)
                col = column(table, name)
                if op in ("in", "not in"):
                    items = [v.strip() for v in rest.strip().removeprefix("(").removesuffix(")").split(",")]
                    values = tuple(_typed(col, v) for v in items if v)
                else:
                    if op in ("<", "<=", ">", ">=") and col.kind not in ("int", "float"):
                        raise BadInput(f"filter {text!r}: {name} is not numeric; use = or in")
                    values = (_typed(col, rest),)
                if not values:
                    raise BadInput(f"filter {text!r}: no values")
                clauses.append(Clause(name, op, values))
    return tuple(sorted(clauses, key=lambda c: (c.column, c.op, [str(v) for v in c.values])))
