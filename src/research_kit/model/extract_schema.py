"""The extract's schema versions, and how a table of an older extract is read in the current one.

Extracts are immutable (their content hash is registered), so an extract
written before the data model grew is never rewritten: every reader of an
extract's (or a twin's) tables passes them through :func:`conform`, which
adds the columns of later versions with the value they would have had
(``excluded`` false: the old model had no excluded findings; a code, age or
source absent: null). One place says what each version added.

Version 1: the first model (ORPHA and ICD-10 codes, dates only).
Version 2 (issue 23): OMIM, ICD-11 and MONDO codes; excluded diagnoses and
phenotypes; ages and HPO onset classes beside dates; the source of each row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import polars as pl

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = 2

# The columns each version after the first added, per table, with their type.
ADDED: dict[str, dict[str, pl.DataType]] = {
    "patients": {
        "age_at_last_record_years": pl.Float64(),
        "age_at_death_years": pl.Float64(),
        "sources": pl.String(),
        "value_sources": pl.String(),
    },
    "diagnoses": {
        "omim_code": pl.String(),
        "icd11_code": pl.String(),
        "mondo_code": pl.String(),
        "excluded": pl.Boolean(),
        "onset_age_basis": pl.String(),
        "onset_class": pl.String(),
        "diagnosis_age_years": pl.Float64(),
        "diagnostic_delay_basis": pl.String(),
        "source": pl.String(),
    },
    "phenotypes": {
        "excluded": pl.Boolean(),
        "onset_age_years": pl.Float64(),
        "onset_class": pl.String(),
        "source": pl.String(),
    },
    "encounters": {"source": pl.String()},
}
DEFAULTS: dict[str, object] = {"excluded": False}

Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


def missing(table: str, names: list[str]) -> dict[str, pl.DataType]:
    """The columns of the current schema a table with columns ``names`` lacks."""
    return {c: t for c, t in ADDED.get(table, {}).items() if c not in names}


def conform(table: str, frame: Frame) -> Frame:
    """``frame`` (an extract's or a twin's ``table``) with every column of the current schema.

    >>> conform("phenotypes", pl.DataFrame({"pseudonym": ["a"], "hpo_code": ["HP:0001250"]})).row(0)
    ('a', 'HP:0001250', False, None, None, None)
    """
    absent = missing(table, frame.collect_schema().names())
    if not absent:
        return frame
    return frame.with_columns(pl.lit(DEFAULTS.get(c), dtype=t).alias(c) for c, t in absent.items())


def conform_pandas(table: str, frame: pd.DataFrame) -> pd.DataFrame:
    """:func:`conform` for a pandas frame (``rk.load``)."""
    absent = missing(table, list(frame.columns))
    if not absent:
        return frame
    out = frame.copy()
    for column, dtype in absent.items():
        default = DEFAULTS.get(column)
        out[column] = pl.Series(column, [default] * len(out), dtype=dtype).to_pandas(use_pyarrow_extension_array=False)
    return out
