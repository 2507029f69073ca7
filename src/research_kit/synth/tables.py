"""An extract's four tables in memory, their granularity, and writing a twin in the extract's exact schema.

Dates are handled as whole days since 1970-01-01 (``float64``, NaN when
absent) inside the synth package; tables are pandas frames at the edges
(SDV and SDMetrics take pandas) and are written through Polars with the
extract's own Arrow schema, so a notebook cannot tell a twin's files from an
extract's by their types.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from research_kit.core.errors import BadInput
from research_kit.model.extract_schema import DEFAULTS, conform
from research_kit.model.facts import YEAR_DAYS, observed
from research_kit.model.tables import CHILD_TABLES, EXTRACT_KEY, TABLE_NAMES

TABLES = TABLE_NAMES
CHILDREN = CHILD_TABLES
KEY = EXTRACT_KEY
DATE_COLUMNS = {
    "patients": ("death_date", "first_contact_date"),
    "diagnoses": ("onset_date", "diagnosis_date"),
    "phenotypes": ("observed_date",),
    "encounters": ("encounter_date",),
}
YEAR = YEAR_DAYS


@dataclass(frozen=True)
class Granularity:
    """How coarsely the extract holds dates and residence (from its manifest's pseudonymisation policy)."""

    birth: str  # "year" | "year-month"
    events: str  # "month" | "shift"
    residence: str  # "canton" | "country"

    @classmethod
    def of(cls, manifest: dict[str, Any]) -> Granularity:
        policy = manifest.get("policy", {}).get("pseudonymise", {})
        return cls(
            birth=str(policy.get("birth_date", "year-month")),
            events=str(policy.get("event_dates", "month")),
            residence=str(policy.get("residence", "canton")),
        )


@dataclass
class Tables:
    """The four tables (pandas), dates as ``datetime64[ns]``; child rows keep their patient's order."""

    patients: pd.DataFrame
    diagnoses: pd.DataFrame
    phenotypes: pd.DataFrame
    encounters: pd.DataFrame

    def as_dict(self) -> dict[str, pd.DataFrame]:
        return {name: getattr(self, name) for name in TABLES}

    def subset(self, pseudonyms: pd.Index) -> Tables:
        """The patients named and their child rows, in the same order as here."""
        keep = set(pseudonyms)
        return Tables(*(frame[frame[KEY].isin(keep)].reset_index(drop=True) for frame in self.as_dict().values()))

    def rows(self) -> dict[str, int]:
        return {name: len(frame) for name, frame in self.as_dict().items()}


def read_tables(folder: Path) -> tuple[Tables, dict[str, pl.Schema]]:
    """The extract's tables and their Polars schemas (to write a twin in the same types).

    Tables of an older extract gain the current schema's columns (:func:`conform`). Phenotypes are the
    observed ones: an excluded finding (ruled out) is no phenotype, and the twin does not model them (it
    writes none).
    """
    frames: dict[str, pd.DataFrame] = {}
    schemas: dict[str, pl.Schema] = {}
    for name in TABLES:
        path = folder / f"{name}.parquet"
        if not path.is_file():
            raise BadInput(f"{folder}: no {name}.parquet (not an extract folder)")
        frame = conform(name, pl.read_parquet(path))
        if name == "phenotypes":
            frame = observed(frame)
        schemas[name] = frame.schema
        dates = [c for c, t in frame.schema.items() if t == pl.Date]
        frame = frame.with_columns(pl.col(dates).cast(pl.Datetime("ns")))
        frames[name] = frame.to_pandas()
    return Tables(**frames), schemas


def to_days(values: pd.Series | np.ndarray) -> np.ndarray:
    """Dates as days since 1970-01-01 (float, NaN where absent)."""
    stamps = pd.to_datetime(pd.Series(values)).to_numpy(dtype="datetime64[ns]")
    days = stamps.astype("datetime64[D]").astype(np.int64).astype(np.float64)
    days[np.isnat(stamps)] = np.nan
    return days


def from_days(days: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 as ``datetime64[ns]`` (NaT where NaN)."""
    out = np.full(len(days), np.datetime64("NaT"), dtype="datetime64[ns]")
    ok = ~np.isnan(days)
    out[ok] = days[ok].astype(np.int64).astype("datetime64[D]").astype("datetime64[ns]")
    return out


def month_start(days: np.ndarray) -> np.ndarray:
    """Each date moved to the first of its month (NaN stays NaN)."""
    out = np.full(len(days), np.nan)
    ok = ~np.isnan(days)
    months = days[ok].astype(np.int64).astype("datetime64[D]").astype("datetime64[M]")
    out[ok] = months.astype("datetime64[D]").astype(np.int64)
    return out


def birth_days(patients: pd.DataFrame) -> np.ndarray:
    """The first day of each patient's birth month (of January when the extract holds the year only)."""
    months = patients["birth_month"].astype("Float64").fillna(1).to_numpy(dtype=np.float64)
    text = [f"{int(y):04d}-{int(m):02d}" for y, m in zip(patients["birth_year"].to_numpy(), months, strict=True)]
    return np.array(text, dtype="datetime64[M]").astype("datetime64[D]").astype(np.int64).astype(np.float64)


def patient_index(frame: pd.DataFrame, patients: pd.DataFrame) -> np.ndarray:
    """Each child row's patient as a row number of ``patients``."""
    lookup = pd.Series(np.arange(len(patients)), index=patients[KEY].to_numpy())
    return lookup.reindex(frame[KEY].to_numpy()).to_numpy(dtype=np.int64)


def counts(frame: pd.DataFrame, patients: pd.DataFrame) -> np.ndarray:
    """Rows per patient (zero for a patient without any), in the patients' order."""
    per = frame.groupby(KEY, sort=False).size()
    return per.reindex(patients[KEY].to_numpy()).fillna(0).to_numpy(dtype=np.int64)


def fresh_pseudonyms(rng: np.random.Generator, n: int, taken: set[str]) -> np.ndarray:
    """``n`` distinct random pseudonyms in the extract's format (32 hex characters), none in ``taken``.

    Drawn from the run's seeded generator, so a twin is reproducible, and never
    derived from a real pseudonym. Collisions (about 1 in 10^29 per pair) are redrawn.
    """
    out: list[str] = []
    seen: set[str] = set()
    while len(out) < n:
        raw = rng.bytes(16 * (n - len(out)))
        for i in range(0, len(raw), 16):
            name = raw[i : i + 16].hex()
            if name not in taken and name not in seen:
                seen.add(name)
                out.append(name)
    return np.array(out, dtype=object)


def write_tables(tables: Tables, schemas: dict[str, pl.Schema], folder: Path) -> dict[str, str]:
    """Write the four tables as Parquet in the extract's schema; return each file's SHA-256."""
    hashes: dict[str, str] = {}
    for name, frame in tables.as_dict().items():
        schema = schemas[name]
        columns = {}
        for column, dtype in schema.items():
            absent = DEFAULTS.get(column)  # a column the model does not draw: its value in the current schema
            values = frame[column] if column in frame else pd.Series([absent] * len(frame), dtype=object)
            if dtype == pl.Date:
                series = pl.Series(column, pd.to_datetime(values).to_numpy(dtype="datetime64[ns]")).cast(pl.Date)
            else:
                plain = values.astype(object).tolist()
                series = pl.Series(column, [None if v is None or v != v else v for v in plain], strict=False)
                series = series.cast(dtype, strict=True)
            columns[column] = series
        path = folder / f"{name}.parquet"
        pl.DataFrame(columns, schema=schema).write_parquet(path, compression="zstd")
        hashes[name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


def content_hash(file_hashes: dict[str, str]) -> str:
    """The twin's own content hash (never the extract's: the DP view cache is keyed by it)."""
    canonical = json.dumps({"twin": file_hashes}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
