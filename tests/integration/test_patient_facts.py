"""Every consumer of a derived patient fact agrees with its one definition (:mod:`research_kit.model.facts`).

The DP views, the risk report, the twin's training rows and the studies'
cohort each take "the patient's first diagnosis"; on every patient of an
extract they must name the same diagnosis.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import polars as pl
import pytest
from tests.conftest import Project

from research_kit.analysis.cohort import first_diagnoses as cohort_of
from research_kit.core.extracts import get_extract
from research_kit.dp.columns import IDENTIFIER, build_view
from research_kit.model.facts import first_diagnoses
from research_kit.model.tables import TABLE_NAMES
from research_kit.pseudonymise.assessment import SENSITIVE, risk_records
from research_kit.synth.patients import real_patients
from research_kit.synth.tables import read_tables


def _by_pseudonym(frame: pd.DataFrame, value: str) -> dict[str, object]:
    return dict(zip(frame["pseudonym"], frame[value], strict=True))


@pytest.fixture
def extract_tables(project: Project) -> dict[str, pd.DataFrame]:
    """Extract e1 (a copy), its diagnoses shuffled and with same-month ties, as a real export may have them.

    A consumer that took the file's order, or broke ties its own way, names another diagnosis for some patients.
    """
    extract = get_extract(project.ws, "e1")
    path = extract.table_path("diagnoses")
    diagnoses = pd.read_parquet(path).sample(frac=1.0, random_state=7).reset_index(drop=True)
    several = diagnoses["pseudonym"].duplicated(keep=False)
    earliest = diagnoses[several].groupby("pseudonym")["diagnosis_date"].transform("min")
    tie = several & (diagnoses.index % 2 == 0)
    diagnoses.loc[tie, "diagnosis_date"] = earliest[tie]
    diagnoses.to_parquet(path, index=False)
    return {t: pd.read_parquet(extract.table_path(t)) for t in TABLE_NAMES}


def test_every_consumer_names_the_same_first_diagnosis(
    project: Project, extract_tables: dict[str, pd.DataFrame]
) -> None:
    extract = get_extract(project.ws, "e1")
    diagnoses = pl.from_pandas(extract_tables["diagnoses"])
    truth = first_diagnoses(diagnoses).to_pandas()
    expected = _by_pseudonym(truth, "orpha_code")
    assert len(expected) == extract_tables["diagnoses"]["pseudonym"].nunique() > 100

    # Ties are common (dates to the month): the definition breaks them, and every consumer must follow it.
    tied = diagnoses.group_by("pseudonym", "diagnosis_date").len().filter(pl.col("len") > 1)
    assert tied.height > 0, "the extract has no same-month diagnoses: the test would not test the tie rule"

    # The DP patients view (identified by the pseudonym's first 64 bits).
    view = build_view(extract.path, "patients", 2026).to_pandas()
    ids = {int(p[:16], 16): p for p in extract_tables["patients"]["pseudonym"]}
    dp = {ids[i]: code for i, code in zip(view[IDENTIFIER], view["primary_orpha"], strict=True) if code is not None}
    assert dp == expected

    # The risk report's sensitive attribute.
    records = risk_records(extract, date(2026, 11, 1)).to_pandas()
    risk = {p: c for p, c in _by_pseudonym(records, SENSITIVE).items() if c is not None}
    assert risk == expected

    # The studies' cohort.
    cohort = cohort_of(extract_tables)
    assert _by_pseudonym(cohort, "orpha_code") == expected

    # The twin's training rows.
    tables, _ = read_tables(extract.path)
    real = real_patients(tables, k=5, horizon=0.0)
    twin = dict(zip(tables.patients["pseudonym"], real.primary["orpha_code"], strict=True))
    assert {p: c for p, c in twin.items() if isinstance(c, str)} == expected


def test_the_diagnosis_group_is_the_first_diagnosis_chapter_in_every_view(
    project: Project, extract_tables: dict[str, pd.DataFrame]
) -> None:
    extract = get_extract(project.ws, "e1")
    patients = build_view(extract.path, "patients", 2026)
    diagnoses = build_view(extract.path, "diagnoses", 2026)
    cohort = cohort_of(extract_tables)
    # The patients view's group is one of the patient's diagnosis groups, and the cohort's is the same.
    groups = diagnoses.group_by(IDENTIFIER).agg(pl.col("disease_group")).to_pandas()
    per_patient = {i: set(g) for i, g in zip(groups[IDENTIFIER], groups["disease_group"], strict=True)}
    for identifier, group in zip(patients[IDENTIFIER], patients["disease_group"], strict=True):
        if group is not None:
            assert group in per_patient[identifier]
    ids = {int(p[:16], 16): p for p in cohort["pseudonym"]}
    view = dict(zip(patients[IDENTIFIER].to_list(), patients["disease_group"].to_list(), strict=True))
    cohort_groups = _by_pseudonym(cohort, "disease_group")
    assert all(view[i] == cohort_groups[p] for i, p in ids.items() if isinstance(cohort_groups[p], str))
