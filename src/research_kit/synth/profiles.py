"""A patient's profile: everything a twin says about one patient, as one row.

The patient's own columns, their first diagnosis and how many diagnoses,
phenotypes and encounters they have. Privacy is measured on profiles (the
patient is the privacy unit) and a synthetic profile that copies a real one
is redrawn before anything is published, by the rule SDMetrics'
NewRowSynthesis applies: every categorical value equal (missing equals
missing), every number and date within 1% of the synthetic value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from research_kit.synth.tables import KEY, Tables, counts

PATIENT_COLUMNS = (
    "birth_year", "birth_month", "sex", "vital_status", "death_date", "canton", "country",
    "cross_border_insured", "first_contact_date", "consent_reuse", "agrees_to_contact",
)  # fmt: skip
PRIMARY_COLUMNS = (
    "orpha_code", "icd10_code", "status", "onset_date", "diagnosis_date", "onset_age_years",
    "diagnostic_delay_days", "gene_symbol",
)  # fmt: skip
COUNT_COLUMNS = ("n_diagnoses", "n_phenotypes", "n_encounters")
DATETIME = ("death_date", "first_contact_date", "onset_date", "diagnosis_date")
NUMERIC = ("birth_year", "birth_month", "onset_age_years", "diagnostic_delay_days", *COUNT_COLUMNS)
CATEGORICAL = tuple(c for c in (*PATIENT_COLUMNS, *PRIMARY_COLUMNS) if c not in DATETIME and c not in NUMERIC)
TOLERANCE = 0.01  # NewRowSynthesis' default numerical_match_tolerance
_MISSING = "\x00"


def profile(patients: pd.DataFrame, primary: pd.DataFrame, n: dict[str, np.ndarray]) -> pd.DataFrame:
    """Profiles from patient rows, their first diagnosis rows (aligned) and their child counts."""
    out = pd.DataFrame(index=range(len(patients)))
    for column in PATIENT_COLUMNS:
        out[column] = patients[column].to_numpy()
    for column in PRIMARY_COLUMNS:
        out[column] = primary[column].to_numpy()
    for column in COUNT_COLUMNS:
        out[column] = n[column]
    return normalise(out)


def normalise(frame: pd.DataFrame) -> pd.DataFrame:
    """Types SDMetrics and anonymeter compare: text categories, float numbers, datetime64 dates."""
    out = frame.copy()
    for column in CATEGORICAL:
        values = out[column].astype(object)
        text = values.map(_category).to_numpy(dtype=object)
        text[values.isna().to_numpy()] = None
        out[column] = text
    for column in NUMERIC:
        out[column] = pd.to_numeric(out[column], errors="coerce").astype(np.float64)
    for column in DATETIME:
        out[column] = pd.to_datetime(out[column]).astype("datetime64[ns]")
    return out


def _category(value: object) -> str:
    if isinstance(value, bool | np.bool_):
        return "yes" if value else "no"
    return str(value)


def real_profiles(t: Tables) -> pd.DataFrame:
    p = t.patients
    first = t.diagnoses.drop_duplicates(KEY, keep="first").set_index(KEY).reindex(p[KEY].to_numpy())
    n = {
        "n_diagnoses": counts(t.diagnoses, p),
        "n_phenotypes": counts(t.phenotypes, p),
        "n_encounters": counts(t.encounters, p),
    }
    return profile(p, first.reset_index(drop=True), n)


def metadata() -> dict[str, object]:
    """SDMetrics single-table metadata of a profile (written by hand: it holds no value)."""
    columns: dict[str, dict[str, str]] = {c: {"sdtype": "categorical"} for c in CATEGORICAL}
    columns |= {c: {"sdtype": "numerical"} for c in NUMERIC}
    columns |= {c: {"sdtype": "datetime"} for c in DATETIME}
    return {"columns": columns}


def copies(real: pd.DataFrame, synthetic: pd.DataFrame, tolerance: float = TOLERANCE) -> np.ndarray:
    """Per synthetic profile: does it match a real one (NewRowSynthesis' rule)?"""
    keys = list(CATEGORICAL)
    numbers = [*NUMERIC, *DATETIME]

    def prepared(frame: pd.DataFrame) -> pd.DataFrame:
        out = frame[keys].astype(object).where(frame[keys].notna(), _MISSING)
        for column in numbers:
            values = frame[column]
            if column in DATETIME:
                stamps = values.to_numpy(dtype="datetime64[ns]")
                numeric = stamps.astype(np.int64).astype(np.float64)
                numeric[np.isnat(stamps)] = np.nan
                out[column] = numeric
            else:
                out[column] = values.to_numpy(dtype=np.float64)
        return out

    syn = prepared(synthetic).assign(_row=np.arange(len(synthetic)))
    pairs = syn.merge(prepared(real), on=keys, how="inner", suffixes=("", "_real"))
    match = np.ones(len(pairs), dtype=bool)
    for column in numbers:
        s = pairs[column].to_numpy()
        r = pairs[f"{column}_real"].to_numpy()
        with np.errstate(invalid="ignore"):
            close = np.abs(r - s) <= np.abs(tolerance * s)
        match &= np.where(np.isnan(s), np.isnan(r), close)
    out = np.zeros(len(synthetic), dtype=bool)
    out[pairs["_row"].to_numpy()[match]] = True
    return out
