"""Epidemiology helpers for study notebooks: one row per patient, rates with intervals, releasable survival.

In a notebook::

    import research_kit as rk
    data = rk.load()
    cohort = rk.analysis.first_diagnoses(data)        # one row per patient, with the first diagnosis
    terms = rk.analysis.observed_phenotypes(data)     # phenotypes without the excluded (ruled-out) findings
    rates = rk.analysis.prevalence(counts, by=["sex"])   # per 10,000 residents, exact Poisson interval
    steps = rk.analysis.km_table(cohort, "years_from_diagnosis", "died", by="disease_group")
    table = rk.analysis.pool_small(counts, "icd10_block", within="icd10_chapter")   # no cell below the threshold

The same code runs on the synthetic twin and on the real extract; nothing
here reads files other than what ``rk.load`` gave, or spends privacy budget.
"""

from research_kit.analysis.cohort import first_diagnoses, icd10_chapter_label, observed_phenotypes
from research_kit.analysis.pooling import pool_small, sdc_min_count
from research_kit.analysis.rates import POPULATION_SOURCE, population, prevalence
from research_kit.analysis.survival import SURVIVAL_ROLES, km_table

__all__ = [
    "POPULATION_SOURCE",
    "SURVIVAL_ROLES",
    "first_diagnoses",
    "icd10_chapter_label",
    "km_table",
    "observed_phenotypes",
    "pool_small",
    "population",
    "prevalence",
    "sdc_min_count",
]
