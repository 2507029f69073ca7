"""One row per patient with their first diagnosis: the cohort most rare-disease analyses start from.

The extract (and its twin) holds dates to the month. The data's cut-off is
the end of the last month anything is recorded in (a diagnosis, an
encounter, a phenotype, a death): ages are taken at that year, and follow-up
for survival runs to it.

Survival from diagnosis: a death ends follow-up with an event; a patient lost
to follow-up is censored at their last encounter (or at diagnosis, if none
came after); everyone else is censored at the cut-off.
"""

from __future__ import annotations

from collections.abc import Mapping

import pandas as pd
import polars as pl

from research_kit.core.errors import BadInput
from research_kit.dp.columns import ABROAD
from research_kit.model.codes import icd10_chapter_names, icd10_parents
from research_kit.model.facts import YEAR_DAYS, age_bands, first_diagnosis_rows, observed_rows
from research_kit.pseudonymise.population import age_band

FIVE_YEAR_BANDS = (*(f"{a}-{a + 4}" for a in range(0, 85, 5)), "85+")  # the population table's bands, in order


def first_diagnoses(data: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per patient: their attributes, their first diagnosis (by date) and their survival from it.

    ``data`` is what ``rk.load()`` returns. Columns: ``pseudonym``, ``sex``,
    ``birth_year``, ``age`` and ``age_band`` (10-year) and ``age_band5``
    (5-year, as the population table) at the cut-off year, ``canton``
    (``"abroad"`` for cross-border residents), ``cross_border_insured``,
    ``vital_status``; the first diagnosis's ``orpha_code``, ``icd10_code``,
    ``icd10_block``, ``icd10_chapter`` (also as ``disease_group``, the
    chapter, as ``rk.dp`` names it), ``status``, ``genetic`` (a causative gene
    recorded), ``onset_age_years``, ``onset_age_band``,
    ``diagnostic_delay_years``, ``diagnosis_date``, ``diagnosis_year``,
    ``diagnosis_decade``; ``n_diagnoses``; and ``died``, ``followup_end``,
    ``years_from_diagnosis``. Patients without a diagnosis are left out.
    """
    patients = data["patients"].copy()
    diagnoses = data["diagnoses"].copy()
    cutoff = data_cutoff(data)
    for column in ("onset_date", "diagnosis_date"):
        diagnoses[column] = pd.to_datetime(diagnoses[column])
    diagnoses = diagnoses.dropna(subset=["diagnosis_date"])
    counts = diagnoses.groupby("pseudonym").size().rename("n_diagnoses")
    first = first_diagnosis_rows(diagnoses).copy()

    parents = icd10_parents()
    first["icd10_block"] = first["icd10_code"].map(lambda c: parents.get(c, (None, None))[0])
    first["icd10_chapter"] = first["icd10_code"].map(lambda c: parents.get(c, (None, None))[1])
    first["disease_group"] = first["icd10_chapter"]
    first["genetic"] = first["gene_symbol"].notna()
    first["onset_age_band"] = _bands(first["onset_age_years"])
    first["diagnostic_delay_years"] = first["diagnostic_delay_days"] / YEAR_DAYS
    first["diagnosis_year"] = first["diagnosis_date"].dt.year
    first["diagnosis_decade"] = (first["diagnosis_year"] // 10 * 10).astype(str) + "s"
    keep = [
        "pseudonym", "orpha_code", "icd10_code", "icd10_block", "icd10_chapter", "disease_group", "status",
        "genetic", "onset_age_years", "onset_age_band", "diagnostic_delay_years", "diagnosis_date",
        "diagnosis_year", "diagnosis_decade",
    ]  # fmt: skip
    cohort = patients.merge(first[keep], on="pseudonym", how="inner").merge(counts, on="pseudonym", how="left")

    cohort["canton"] = cohort["canton"].fillna(ABROAD)
    # A source with ages only has no birth year: its age is the age at the last record.
    age = cutoff.year - pd.to_numeric(cohort["birth_year"], errors="coerce")
    if "age_at_last_record_years" in cohort:
        age = age.fillna(pd.to_numeric(cohort["age_at_last_record_years"], errors="coerce").floordiv(1))
    age = age.clip(0, 120)
    cohort["age"] = age
    cohort["age_band"] = _bands(age)
    # The population table's own banding, so that prevalence joins on the same labels.
    ages = pl.Series("age", age.to_numpy(dtype="float64"), nan_to_null=True)
    bands = pl.DataFrame({"age": ages}).select(age_band(pl.col("age")))["age"].to_list()
    cohort["age_band5"] = pd.Categorical(bands, categories=FIVE_YEAR_BANDS)
    _survival(cohort, data, cutoff)
    columns = [
        "pseudonym", "sex", "birth_year", "age", "age_band", "age_band5", "canton", "cross_border_insured",
        "vital_status", *keep[1:], "n_diagnoses", "died", "followup_end", "years_from_diagnosis",
    ]  # fmt: skip
    return cohort[columns].reset_index(drop=True)


def observed_phenotypes(data: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The phenotypes patients have: ``data["phenotypes"]`` without the excluded findings (ruled out).

    An excluded finding says a feature was looked for and is absent; counting it as a phenotype would
    turn "no seizures" into seizures. Use this, not the raw table, wherever a phenotype is counted.
    """
    return observed_rows(data["phenotypes"])


def data_cutoff(data: Mapping[str, pd.DataFrame]) -> pd.Timestamp:
    """The end of the last month anything is recorded in."""
    latest = []
    for table, column in (
        ("diagnoses", "diagnosis_date"), ("encounters", "encounter_date"), ("phenotypes", "observed_date"),
        ("patients", "death_date"), ("patients", "first_contact_date"),
    ):  # fmt: skip
        frame = data.get(table)
        if frame is not None and column in frame.columns:
            latest.append(pd.to_datetime(frame[column]).max())
    latest = [d for d in latest if pd.notna(d)]
    if not latest:
        raise BadInput("no dates in the data: give the tables rk.load() returns")
    return pd.Timestamp(max(latest)) + pd.offsets.MonthEnd(0)


def icd10_chapter_label(chapter: object) -> str:
    """``"IV"`` -> ``"IV Endocrine, nutritional and metabolic diseases"`` (other values as given)."""
    names = icd10_chapter_names()
    return f"{chapter} {names[chapter]}" if isinstance(chapter, str) and chapter in names else str(chapter)


def _bands(years: pd.Series) -> pd.Series:
    return pd.Series(age_bands(pd.to_numeric(years, errors="coerce")), index=years.index)


def _survival(cohort: pd.DataFrame, data: Mapping[str, pd.DataFrame], cutoff: pd.Timestamp) -> None:
    death = pd.to_datetime(cohort["death_date"])
    died = (cohort["vital_status"] == "dead") & death.notna()
    end = pd.Series(cutoff, index=cohort.index)
    encounters = data.get("encounters")
    lost = cohort["vital_status"] == "lost to follow-up"
    if encounters is not None and lost.any():
        last = pd.to_datetime(encounters["encounter_date"]).groupby(encounters["pseudonym"]).max()
        end[lost] = cohort.loc[lost, "pseudonym"].map(last)
    end[died] = death[died]
    end = end.fillna(cohort["diagnosis_date"])
    end = end.where(end >= cohort["diagnosis_date"], cohort["diagnosis_date"])
    cohort["died"] = died
    cohort["followup_end"] = end
    cohort["years_from_diagnosis"] = (end - cohort["diagnosis_date"]).dt.days / YEAR_DAYS
