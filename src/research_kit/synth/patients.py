"""The patient model: one row per patient, fitted by a single-table SDV synthesizer.

A patient's row holds their own attributes, the attributes of their first
(primary) diagnosis and how many diagnoses, phenotypes and encounters they
have. Modelling these together keeps what ties a patient to their children
(age at onset against year of birth, the disease group against everything,
the number of encounters against the years followed) inside one joint model;
the child tables are then drawn conditionally on each synthetic patient (see
:mod:`research_kit.synth.children`).

Dates are not modelled as dates but as the intervals that make a timeline,
counted back from the extract's horizon (its last month): how long before
the horizon the primary diagnosis was made, the diagnostic delay before it,
the age at onset before that, and the first contact relative to the
diagnosis. A synthetic timeline is rebuilt backwards from the horizon to an
exact birth day, so every diagnosis precedes the horizon, onset precedes
diagnosis, birth precedes onset, and ages and delays agree with the dates,
all by construction. (Modelled forwards from the year of birth, a third of
the draws overshot the horizon.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache

import numpy as np
import pandas as pd

from research_kit.model.codes import icd10_groups, icd10_module
from research_kit.model.facts import first_diagnosis_rows
from research_kit.synth.marginals import Marginal
from research_kit.synth.rare import NONE, common_values, recode_rare
from research_kit.synth.synthesizers import PatientSynthesizer
from research_kit.synth.tables import KEY, YEAR, Granularity, Tables, birth_days, counts, patient_index, to_days

SEP = "\x1f"  # joins the parts of a composite category (residence)
ANY = "*"  # the disease group of a patient whose block and chapter are both rare
UNDIAGNOSED_STATUS = "undiagnosed"
CATEGORICAL = (
    "sex", "vital_status", "residence", "agrees_to_contact", "consent_reuse", "status", "disease_group",
    "rare_disease", "genetic",
)  # fmt: skip
# name -> (continuous, decimals)
NUMERIC: dict[str, tuple[bool, int]] = {
    "anchor_back_days": (True, 0),  # horizon - primary diagnosis (first contact for a patient without one)
    "onset_age": (True, 1),  # age at onset (at first contact without a diagnosis)
    "delay_days": (True, 0),
    "contact_offset_days": (True, 0),
    "n_diagnoses": (False, 0),
    "n_phenotypes": (False, 0),
    "n_encounters": (False, 0),
}


@cache
def chapter_of(group: str) -> str:
    """The chapter of a disease group (an ICD-10 block or chapter)."""
    icd = icd10_module()
    if group == ANY or not icd.is_valid_item(group):
        return ANY
    if icd.is_chapter(group):
        return group
    return str(icd.get_ancestors(group)[-1])


def flag_text(values: pd.Series) -> np.ndarray:
    """A nullable flag as text: ``yes``, ``no`` or missing."""
    out = np.full(len(values), NONE, dtype=object)
    known = values.notna().to_numpy()
    out[known] = np.where(values[known].astype(bool).to_numpy(), "yes", "no")
    return out


def text(values: pd.Series) -> np.ndarray:
    return values.astype(object).where(values.notna(), NONE).to_numpy(dtype=object)


@dataclass
class RealPatients:
    """The training patients as the model sees them, and the real timeline behind them."""

    flat: pd.DataFrame  # one row per patient, the model's columns
    birth: np.ndarray  # days: first of the birth month
    diag: np.ndarray  # primary diagnosis date (NaN without diagnosis)
    onset: np.ndarray
    contact: np.ndarray
    death: np.ndarray
    primary: pd.DataFrame  # each patient's first diagnosis row (NaN rows where none)
    block: np.ndarray  # ICD-10 block and chapter of the primary diagnosis
    chapter: np.ndarray


def real_patients(t: Tables, k: int, horizon: float) -> RealPatients:
    p = t.patients
    first = first_diagnosis_rows(t.diagnoses, KEY).set_index(KEY).reindex(p[KEY].to_numpy())
    icd = first["icd10_code"].fillna("").to_numpy(dtype=object)
    groups = [icd10_groups(str(c)) for c in icd]
    block = np.array([g[0] for g in groups], dtype=object)
    chapter = np.array([g[1] for g in groups], dtype=object)
    has_dx = first["status"].notna().to_numpy()
    common = common_values(t.diagnoses["orpha_code"].to_numpy(dtype=object), patient_index(t.diagnoses, p), k)
    rare = ~first["orpha_code"].isin(common).to_numpy()
    birth = birth_days(p)
    diag = to_days(first["diagnosis_date"])
    contact = to_days(p["first_contact_date"])
    anchor = np.where(has_dx, diag, contact)
    flat = pd.DataFrame(
        {
            "sex": text(p["sex"]),
            "vital_status": text(p["vital_status"]),
            "residence": residence_text(p),
            "agrees_to_contact": flag_text(p["agrees_to_contact"]),
            "consent_reuse": flag_text(p["consent_reuse"]),
            "status": text(first["status"]),
            "disease_group": np.where(has_dx, disease_groups(block, chapter, k), NONE),
            "rare_disease": np.where(has_dx, np.where(rare, "yes", "no"), NONE),
            "genetic": np.where(has_dx, np.where(first["gene_symbol"].notna(), "yes", "no"), NONE),
            "anchor_back_days": horizon - anchor,
            "onset_age": np.where(
                has_dx, first["onset_age_years"].to_numpy(dtype=np.float64, na_value=np.nan), (contact - birth) / YEAR
            ),
            "delay_days": np.where(has_dx, first["diagnostic_delay_days"].to_numpy(dtype=np.float64, na_value=0), 0),
            "n_diagnoses": counts(t.diagnoses, p).astype(np.float64),
            "n_phenotypes": counts(t.phenotypes, p).astype(np.float64),
            "n_encounters": counts(t.encounters, p).astype(np.float64),
        }
    )
    flat["contact_offset_days"] = contact - anchor
    return RealPatients(
        flat=flat,
        birth=birth,
        diag=diag,
        onset=to_days(first["onset_date"]),
        contact=contact,
        death=to_days(p["death_date"]),
        primary=first.reset_index(),
        block=block,
        chapter=chapter,
    )


def residence_text(p: pd.DataFrame) -> np.ndarray:
    parts = [text(p["country"]), text(p["canton"]), flag_text(p["cross_border_insured"])]
    return np.array([SEP.join(x) for x in zip(*parts, strict=True)], dtype=object)


def disease_groups(block: np.ndarray, chapter: np.ndarray, k: int) -> np.ndarray:
    """Each patient's ICD-10 block, or its chapter where the block has under k patients, or ``*``."""
    blocks = pd.Series(block).value_counts()
    chapters = pd.Series(chapter).value_counts()
    common_block = pd.Series(block).map(blocks).to_numpy() >= k
    common_chapter = pd.Series(chapter).map(chapters).to_numpy() >= k
    return np.where(common_block, block, np.where(common_chapter, chapter, ANY))


@dataclass
class PatientModel:
    """Marginals of the numeric columns plus one SDV synthesizer for their joint distribution."""

    granularity: Granularity
    k: int
    model: str
    seed: int
    marginals: dict[str, Marginal] = field(default_factory=dict)
    constants: dict[str, object] = field(default_factory=dict)
    synthesizer: PatientSynthesizer | None = None

    def fit(self, real: RealPatients, rng: np.random.Generator) -> None:
        flat = real.flat.copy()
        ids = np.arange(len(flat))
        categorical = []
        for column in CATEGORICAL:
            values = recode_rare(flat[column].to_numpy(dtype=object), ids, self.k, rng)
            if len(set(values)) == 1:
                self.constants[column] = values[0]
                flat = flat.drop(columns=column)
                continue
            flat[column] = values
            categorical.append(column)
        numeric = [c for c in NUMERIC if c in flat]
        for column in numeric:
            continuous, decimals = NUMERIC[column]
            values = flat[column].to_numpy(dtype=np.float64)
            self.marginals[column] = Marginal.fit(values, k=self.k, continuous=continuous, decimals=decimals)
            missing = np.isnan(values)  # a patient without a diagnosis: any value (the row ignores it)
            values[missing] = self.marginals[column].sample(int(missing.sum()), rng)
            flat[column] = self.marginals[column].to_normal(values, rng)
        self.synthesizer = PatientSynthesizer(self.model, categorical, numeric, self.seed)
        self.synthesizer.fit(flat)

    def sample(self, n: int) -> pd.DataFrame:
        """``n`` rows of the model's columns, decoded (numbers in their units, categories as text)."""
        if self.synthesizer is None:
            raise RuntimeError("fit the patient model before sampling")
        raw = self.synthesizer.sample(n)
        out = pd.DataFrame(index=range(len(raw)))
        for column in CATEGORICAL:
            if column in self.constants:
                out[column] = np.full(len(raw), self.constants[column], dtype=object)
            else:
                out[column] = raw[column].astype(object).fillna(NONE).to_numpy(dtype=object)
        for column, marginal in self.marginals.items():
            out[column] = marginal.from_normal(raw[column].to_numpy(dtype=np.float64))
        return out


@dataclass
class Timeline:
    """Synthetic patients' exact days: birth, onset and diagnosis of the primary diagnosis, first contact."""

    birth: np.ndarray
    onset: np.ndarray
    diag: np.ndarray
    contact: np.ndarray

    def birth_year_month(self) -> tuple[np.ndarray, np.ndarray]:
        months = self.birth.astype(np.int64).astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
        return (months // 12 + 1970, months % 12 + 1)


def timeline(rows: pd.DataFrame, horizon: float) -> Timeline:
    """Exact days, rebuilt backwards from the horizon: diagnosis, onset, birth; first contact beside them.

    First contact is kept between birth and the horizon (a repair: the real
    process caps it there too).
    """
    has_dx = rows["n_diagnoses"].to_numpy() > 0
    anchor = horizon - np.maximum(rows["anchor_back_days"].to_numpy(dtype=np.float64), 0)
    delay = np.where(has_dx, np.maximum(rows["delay_days"].to_numpy(dtype=np.float64), 0), 0)
    age = np.round(np.maximum(rows["onset_age"].to_numpy(dtype=np.float64), 0) * YEAR)
    diag = np.where(has_dx, anchor, np.nan)
    onset = diag - delay
    birth = np.where(has_dx, onset, anchor) - age
    contact = np.clip(anchor + rows["contact_offset_days"].to_numpy(dtype=np.float64), birth, horizon)
    return Timeline(birth=birth, onset=onset, diag=diag, contact=contact)
