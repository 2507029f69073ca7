"""Facts derived from a patient's rows, each defined here once and used by every consumer.

The DP views (:mod:`research_kit.dp.columns`), the risk report
(:mod:`research_kit.pseudonymise.assessment`), the synthetic twin
(:mod:`research_kit.synth.patients`) and the studies' cohort
(:mod:`research_kit.analysis.cohort`) all take a patient's first diagnosis,
ages and bands from these functions, so a figure means the same wherever it
is shown.

- **first diagnosis**: the patient's diagnosis, not excluded (a disease ruled
  out is no diagnosis), with the earliest diagnosis date; an undated diagnosis
  comes after every dated one; a tie (extracts hold dates to the month) goes to
  the lowest ORPHA code, then OMIM, ICD-10, ICD-11, MONDO (text order; a
  missing code last);
- **age at onset**: years from birth to onset, to 0.1 year (stored in the
  extract as ``onset_age_years``), from the dates where the source has them,
  else from the age the source gives (``onset_age_basis`` says which);
- **diagnostic delay**: days from onset to diagnosis (``diagnostic_delay_days``),
  in years of :data:`YEAR_DAYS`, from dates or ages (``diagnostic_delay_basis``);
- **age at diagnosis**: age at onset plus the diagnostic delay;
- **a phenotype** of a patient is an observed one: an excluded finding
  (``excluded``, a feature ruled out) never counts as one (:func:`observed`);
- **diagnosis group**: the ICD-10 chapter of the diagnosis's ICD-10 code
  (none for a code outside WHO ICD-10 2019);
- **age band**: ten-year bands ``0-9`` ... ``90+`` (:data:`AGE_BANDS`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, TypeVar

import polars as pl

from research_kit.model.codes import icd10_parents

if TYPE_CHECKING:  # pandas only for the pandas adapters below: polars callers never load it
    import pandas as pd

YEAR_DAYS = 365.25
FIRST_DIAGNOSIS_ORDER = ("diagnosis_date", "orpha_code", "omim_code", "icd10_code", "icd11_code", "mondo_code")
AGE_BANDS = ("0-9", "10-19", "20-29", "30-39", "40-49", "50-59", "60-69", "70-79", "80-89", "90+")
KEY = "pseudonym"

Frame = TypeVar("Frame", pl.DataFrame, pl.LazyFrame)


def first_diagnoses(diagnoses: Frame, key: str = KEY) -> Frame:
    """One row per patient of ``diagnoses``: their first diagnosis (see the module's definition).

    >>> d = pl.DataFrame({"pseudonym": ["a", "a", "a", "b", "b"],
    ...                   "diagnosis_date": [None, "2020-02", "2020-02", "2019-01", "2018-01"],
    ...                   "orpha_code": ["1", "99", "7", "5", "3"], "icd10_code": [None, None, None, "Q87.1", None],
    ...                   "excluded": [False, False, False, False, True]})
    >>> first_diagnoses(d).sort("pseudonym")["orpha_code"].to_list()
    ['7', '5']
    """
    names = diagnoses.collect_schema().names()
    by: list[str] = [c for c in FIRST_DIAGNOSIS_ORDER if c in names]  # an older extract's frame lacks new codes
    kept = diagnoses.filter(~pl.col("excluded").fill_null(False)) if "excluded" in names else diagnoses
    return kept.sort([key, *by], nulls_last=True).group_by(key, maintain_order=True).first()


def first_diagnosis_rows(diagnoses: pd.DataFrame, key: str = KEY) -> pd.DataFrame:
    """:func:`first_diagnoses` for a pandas frame: its first-diagnosis rows, as they are (index kept)."""
    wanted = [key, *(c for c in (*FIRST_DIAGNOSIS_ORDER, "excluded") if c in diagnoses.columns)]
    order = pl.from_pandas(diagnoses[wanted].reset_index(drop=True)).with_row_index("_row")
    rows = first_diagnoses(order, key)["_row"].to_list()
    return diagnoses.iloc[sorted(rows)]


def observed(phenotypes: Frame) -> Frame:
    """The phenotypes a patient has: excluded findings (ruled out) left out.

    >>> observed(pl.DataFrame({"hpo_code": ["HP:1", "HP:2"], "excluded": [False, True]}))["hpo_code"].to_list()
    ['HP:1']
    """
    if "excluded" not in phenotypes.collect_schema().names():
        return phenotypes
    return phenotypes.filter(~pl.col("excluded").fill_null(False))


def observed_rows(phenotypes: pd.DataFrame) -> pd.DataFrame:
    """:func:`observed` for a pandas frame."""
    if "excluded" not in phenotypes.columns:
        return phenotypes
    return phenotypes[~phenotypes["excluded"].fillna(False).astype(bool)]


def diagnosis_group(icd10_code: str | None) -> str | None:
    """The diagnosis group of an ICD-10 code: its chapter (``None`` outside WHO ICD-10 2019)."""
    found = icd10_parents().get(icd10_code or "")
    return found[1] if found else None


def icd10_groups_frame() -> pl.DataFrame:
    """Every ICD-10 code with its block, its chapter and its diagnosis group: a frame to join on ``icd10_code``."""
    parents = icd10_parents()
    codes = sorted(parents)
    chapters = [parents[c][1] for c in codes]
    return pl.DataFrame(
        {"icd10_code": codes, "icd10_block": [parents[c][0] for c in codes], "icd10_chapter": chapters,
         "disease_group": chapters}
    )  # fmt: skip


def diagnostic_delay_years(days: pl.Expr) -> pl.Expr:
    """A diagnostic delay in days, in years."""
    return days / YEAR_DAYS


def age_band(years: pl.Expr) -> pl.Expr:
    """The ten-year band of an age in years (0-9, ..., 90+); a negative age falls in 0-9."""
    decade = (years // 10).clip(0, 9).cast(pl.Int32)
    return decade.replace_strict(dict(enumerate(AGE_BANDS)), return_dtype=pl.String)


def age_bands(years: pd.Series) -> pd.Categorical:
    """:func:`age_band` for a pandas series, as a categorical of the bands in order."""
    import pandas as pd

    frame = pl.DataFrame({"age": pd.to_numeric(years).to_numpy()})
    return pd.Categorical(frame.select(age_band(pl.col("age")))["age"].to_list(), categories=AGE_BANDS)
