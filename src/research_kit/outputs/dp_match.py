"""Is a table made of DP answers? Every figure one of theirs, every label one of their keys.

A table declared as differentially private (``rk.outputs.table(answer, ...)``
or ``dp=``) has the small-cell checks and differencing waived. That holds
only for figures the ledger released, so the table is compared with the
answers it names (at intake, the answers the ledger recorded:
:mod:`research_kit.review.dp_outputs`; at declaration, the answers given, so
the notebook says at once what intake will say):

- an answer's columns are its keys (the ``by`` columns, a histogram's
  ``bin``) and its figures (:data:`FIGURES`: ``value``, ``lower``, ``upper``,
  ``n``);
- every non-empty cell of a ``label`` column, as the CSV file holds it, must
  be a key of the answers *in the key column of the same name* (an empty
  label: that key is not given in this row);
- every other cell must be a number equal (within :data:`REL_TOL`, for the
  float's round trip through the CSV file) to a figure of an answer row whose
  keys are exactly the row's non-empty labels, column by column: a figure
  moved beside another group's labels, a count written into a label column,
  or a row without labels carrying a grouped answer's figure does not match.
  Missing cells (nothing published) match.

Reordering rows, dropping rows or figure columns, renaming figure columns and
putting several answers in one table (each row keyed by its own answer's key
columns, the others empty) keep a table DP; renamed or relabelled keys, a
pivoted crosstab and any computed figure (a rate, a sum of answers, a rounded
value) do not, and the table is then checked as an ordinary one.
"""

from __future__ import annotations

import io
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

FIGURES = ("value", "lower", "upper", "n")
REL_TOL = 1e-9


@dataclass(frozen=True)
class _Row:
    keys: frozenset[tuple[str, str]]  # (key column, its value as the CSV file writes it)
    figures: tuple[float, ...]


def _key_texts(frame: pd.DataFrame, keys: list[str]) -> list[list[str]]:
    """Each row's keys as ``DataFrame.to_csv`` writes them and the checks read them back (text, as in the file)."""
    if not keys:
        return [[] for _ in range(len(frame))]
    text = frame[keys].to_csv(index=False, lineterminator="\n")
    back = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    return [[str(v) for v in row] for row in back.itertuples(index=False, name=None)]


def _rows(answers: Sequence[pd.DataFrame]) -> list[_Row]:
    rows = []
    for frame in answers:
        keys = [str(c) for c in frame.columns if c not in FIGURES]
        figures = [c for c in frame.columns if c in FIGURES]
        texts = _key_texts(frame, keys)
        for record, key_text in zip(frame[figures].to_dict("records"), texts, strict=True):
            values = tuple(float(v) for v in (_scalar(record[c]) for c in figures) if _number(v) and not _missing(v))
            rows.append(_Row(frozenset(zip(keys, key_text, strict=True)), values))
    return rows


def _scalar(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def unmatched(table: Path, roles: Mapping[str, str], answers: Sequence[pd.DataFrame]) -> str | None:
    """None when every cell of the CSV file ``table`` comes from ``answers``; else the first cell that does not,
    in words (its row and column, never its value)."""
    try:
        numbers_ = pd.read_csv(table)
        texts = pd.read_csv(table, dtype=str, keep_default_na=False)
    except (ValueError, OSError) as exc:
        return f"its file cannot be read as a table ({type(exc).__name__})"
    rows = _rows(answers)
    all_keys: frozenset[tuple[str, str]] = frozenset().union(*(r.keys for r in rows))
    by_keys: dict[frozenset[tuple[str, str]], list[float]] = {}
    for r in rows:
        by_keys.setdefault(r.keys, []).extend(r.figures)
    labels = [c for c in texts.columns if roles.get(str(c)) == "label"]
    others = [c for c in numbers_.columns if c not in labels]
    for i in range(len(numbers_)):
        given = [c for c in labels if str(texts.at[i, c]) != ""]  # an empty label: that key is not given
        row_keys = frozenset((str(c), str(texts.at[i, c])) for c in given)
        for column in given:
            if (str(column), str(texts.at[i, column])) not in all_keys:
                return f"row {i}, column {column!r}: a label that is none of the answers' keys in its column"
        figures = by_keys.get(row_keys, [])
        for column in others:
            cell = _scalar(numbers_.at[i, column])
            if _missing(cell):
                continue
            if not _number(cell):
                return f"row {i}, column {column!r}: not a number of the answers"
            if not _among(float(cell), figures):
                return f"row {i}, column {column!r}: not a figure the answers gave for its row's labels"
    return None


def _among(value: float, figures: Sequence[float]) -> bool:
    return any(math.isclose(value, f, rel_tol=REL_TOL, abs_tol=REL_TOL) for f in figures)
