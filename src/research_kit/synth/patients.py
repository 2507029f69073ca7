"""The patient model: one row per patient, fitted by a single-table SDV synthesizer.

A patient's row holds their own attributes, the attributes of their first
(primary) diagnosis and how many diagnoses, phenotypes and encounters they
have. Modelling these together keeps what ties a patient to their children
(age at onset against year of birth, the disease group against everything,
the number of encounters against the years followed) inside one joint model;
the child tables are then drawn conditionally on each synthetic patient (see
:mod:`research_kit.synth.children`). What decides a patient's codes (status,
rare-disease flag, genetic flag, disease group) is one category, the
clinical stratum, and every number is placed within its stratum's own mean
and spread (:class:`~research_kit.synth.marginals.Conditional`): a copula
alone kept neither the joint of several categories nor the age at onset of
a disease group (at 30,000 patients: median age at onset of neoplasms 58.8
real, 6.9 in the twin before, 56.5 after).

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
from research_kit.synth.marginals import Conditional, Marginal
from research_kit.synth.rare import NONE, Backoff, common_values, recode_rare
from research_kit.synth.synthesizers import PatientSynthesizer
from research_kit.synth.tables import KEY, YEAR, Granularity, Tables, birth_days, counts, patient_index, to_days

CONTEXT_PATIENTS = 50  # patients a context needs (and at least k) before a number is shifted by it
SEP = "\x1f"  # joins the parts of a composite category (residence)
ANY = "*"  # the disease group of a patient whose block and chapter are both rare
UNKNOWN = "?"  # a genetic flag the clinical stratum leaves open (see clinical_strata)
UNDIAGNOSED_STATUS = "undiagnosed"
CLINICAL = ("status", "rare_disease", "genetic", "disease_group")  # modelled as one category: see clinical_strata
CATEGORICAL = ("sex", "vital_status", "residence", "agrees_to_contact", "consent_reuse", "clinical")
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


def score(column: str) -> str:
    """The column of a sampled row holding the normal score of a column decoded ``later``."""
    return f"{column}:score"


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


def clinical_strata(flat: pd.DataFrame, k: int) -> np.ndarray:
    """Each patient's status, rare-disease flag, genetic flag and disease group as one category.

    The four decide every code a synthetic patient is given, and a copula
    keeps the joint of separate categorical columns poorly (measured on 2,245
    patients: the joint of disease group and rare flag drawn 0.27 away in
    total variation, though each column alone was within 0.05), so they are
    one column whose categories keep their real frequencies. Every stratum is
    held by at least ``k`` patients. One that is not is coarsened: its block
    to its chapter, then its genetic flag left open (``UNKNOWN``: drawn again
    by :class:`PatientModel`). A patient still left joins the largest stratum
    of their chapter (of their status and rare flag if there is one, else of
    their status, else any): their disease group, which decides their codes
    and age at onset, is kept where their flags cannot be. Only then is the
    group dropped (``*``); what is still rare is recoded by the patient model.
    """
    status, rare, genetic = (flat[c].to_numpy(dtype=object) for c in CLINICAL[:-1])
    group = flat["disease_group"].to_numpy(dtype=object)
    known = group != NONE
    chapter = np.where(known, [chapter_of(str(g)) for g in group], NONE)
    anything = np.where(known, ANY, NONE)
    open_flag = np.where(known, UNKNOWN, NONE)
    out = np.full(len(flat), None, dtype=object)

    def take(flag: np.ndarray, where: np.ndarray) -> None:
        stratum = np.array([SEP.join(map(str, x)) for x in zip(status, rare, flag, where, strict=True)], dtype=object)
        pending = pd.isna(out)
        held = pd.Series(stratum).map(pd.Series(stratum[pending]).value_counts()).fillna(0).to_numpy()
        chosen = pending & (held >= k)  # k patients still without a stratum share this one
        out[chosen] = stratum[chosen]

    for flag, where in ((genetic, group), (genetic, chapter), (open_flag, group), (open_flag, chapter)):
        take(flag, where)
    _join_chapter(out, status, rare, chapter)
    for flag, where in ((genetic, anything), (open_flag, anything)):
        take(flag, where)
    first = np.array([SEP.join(map(str, x)) for x in zip(status, rare, genetic, anything, strict=True)], dtype=object)
    return np.where(pd.isna(out), first, out)


def _join_chapter(out: np.ndarray, status: np.ndarray, rare: np.ndarray, chapter: np.ndarray) -> None:
    """Patients without a stratum (``None`` in ``out``) join the largest one of their chapter, in place."""
    assigned = pd.notna(out)
    if not assigned.any() or assigned.all():
        return
    strata = pd.Series(out[assigned]).value_counts()  # largest first
    parts = [str(v).split(SEP) for v in strata.index]
    own = pd.DataFrame(
        {
            "stratum": strata.index,
            "status": [q[0] for q in parts],
            "rare": [q[1] for q in parts],
            "chapter": [chapter_of(q[3]) if q[3] not in (NONE, ANY) else q[3] for q in parts],
        }
    )
    mine = {"status": status, "rare": rare, "chapter": chapter}
    for keys in (("status", "rare", "chapter"), ("status", "chapter"), ("chapter",)):
        pending = np.flatnonzero(pd.isna(out) & (chapter != NONE))
        if len(pending) == 0:
            return
        theirs = own[list(keys)].astype(str).agg(SEP.join, axis=1).to_numpy()
        largest = pd.Series(own["stratum"].to_numpy(), index=theirs)
        largest = largest[~largest.index.duplicated()]  # strata come largest first
        wanted = [SEP.join(str(mine[key][i]) for key in keys) for i in pending]
        found = largest.reindex(wanted).to_numpy(dtype=object)
        hit = pd.notna(found)
        out[pending[hit]] = found[hit]


def genetic_contexts(status: np.ndarray, rare: np.ndarray, group: np.ndarray) -> list[np.ndarray]:
    """Where an open genetic flag is drawn from, finest first: status|rare|group, status|rare|chapter, status|rare."""
    chapter = np.array([chapter_of(str(g)) if g != NONE else NONE for g in group], dtype=object)
    return [
        np.array([SEP.join(x) for x in zip(status, rare, group, strict=True)], dtype=object),
        np.array([SEP.join(x) for x in zip(status, rare, chapter, strict=True)], dtype=object),
        np.array([SEP.join(x) for x in zip(status, rare, strict=True)], dtype=object),
    ]


def stratum_contexts(strata: np.ndarray) -> list[np.ndarray]:
    """The contexts a number is shifted by (finest first): the clinical stratum, its disease group, its chapter."""
    group = np.array([str(c).split(SEP)[-1] for c in strata], dtype=object)
    chapter = np.array([chapter_of(g) if g != NONE else NONE for g in group], dtype=object)
    return [np.asarray(strata, dtype=object), group, chapter]


@dataclass
class PatientModel:
    """Marginals of the numeric columns, their shifts by context, and one SDV synthesizer for the joint.

    Every number is shifted by its patient's context (see
    :class:`~research_kit.synth.marginals.Conditional`): by the clinical
    stratum, which the synthesizer draws with it (age at onset, delay and
    follow-up differ by disease group, and a copula sees a category only
    through an arbitrary order of its values), or, for a column named in
    ``fit``'s ``later``, by contexts only known once the children draw the
    patient's codes (how many HPO terms a patient has depends on the disease).
    """

    granularity: Granularity
    k: int
    model: str
    seed: int
    marginals: dict[str, Marginal] = field(default_factory=dict)
    constants: dict[str, object] = field(default_factory=dict)
    shifts: dict[str, Conditional] = field(default_factory=dict)
    later: set[str] = field(default_factory=set)  # columns whose shift waits for the patient's codes
    genetic: Backoff | None = None  # an open genetic flag, given status, rare flag and group
    synthesizer: PatientSynthesizer | None = None

    def fit(
        self, real: RealPatients, rng: np.random.Generator, later: dict[str, list[np.ndarray]] | None = None
    ) -> None:
        """``later``: numeric columns shifted by the patient's disease, with each real patient's disease
        contexts (finest first); :meth:`sample` leaves them unshifted, for :meth:`decode`."""
        later = later or {}
        flat = real.flat.copy()
        flat["clinical"] = clinical_strata(flat, self.k)
        ids = np.arange(len(flat))
        self.genetic = Backoff.fit(
            flat["genetic"].to_numpy(dtype=object),
            ids,
            genetic_contexts(*(flat[c].to_numpy(dtype=object) for c in ("status", "rare_disease", "disease_group"))),
            self.k,
        )
        categorical = []
        for column in CATEGORICAL:
            values = recode_rare(flat[column].to_numpy(dtype=object), ids, self.k, rng)
            if len(set(values)) == 1:
                self.constants[column] = values[0]
                flat = flat.drop(columns=column)
                continue
            flat[column] = values
            categorical.append(column)
        strata = stratum_contexts(self._clinical(flat))
        least = max(CONTEXT_PATIENTS, self.k)
        numeric = [c for c in NUMERIC if c in flat]
        for column in numeric:
            continuous, decimals = NUMERIC[column]
            values = flat[column].to_numpy(dtype=np.float64)
            self.marginals[column] = Marginal.fit(values, k=self.k, continuous=continuous, decimals=decimals)
            missing = np.isnan(values)  # a patient without a diagnosis: any value (the row ignores it)
            values[missing] = self.marginals[column].sample(int(missing.sum()), rng)
            scores = self.marginals[column].to_normal(values, rng)
            contexts = later.get(column, strata)
            # A count's spread within a disease, learnt from 50 patients, made the counts' shape worse: shifted only.
            self.shifts[column] = Conditional.fit(scores, contexts, least=least, scale=column not in later)
            flat[column] = self.shifts[column].standardise(scores, contexts)
        self.later = set(later)
        self.synthesizer = PatientSynthesizer(self.model, categorical, numeric, self.seed)
        self.synthesizer.fit(flat)

    def _clinical(self, frame: pd.DataFrame) -> np.ndarray:
        if "clinical" in self.constants:
            return np.full(len(frame), self.constants["clinical"], dtype=object)
        return frame["clinical"].to_numpy(dtype=object)

    def sample(self, n: int, rng: np.random.Generator) -> pd.DataFrame:
        """``n`` rows of the model's columns, decoded (numbers in their units, categories as text).

        A column shifted ``later`` is decoded unshifted, its score kept beside it (:func:`score`)."""
        if self.synthesizer is None:
            raise RuntimeError("fit the patient model before sampling")
        raw = self.synthesizer.sample(n)
        out = pd.DataFrame(index=range(len(raw)))
        for column in CATEGORICAL:
            if column in self.constants:
                out[column] = np.full(len(raw), self.constants[column], dtype=object)
            else:
                out[column] = raw[column].astype(object).fillna(NONE).to_numpy(dtype=object)
        strata = stratum_contexts(self._clinical(out))
        parts = np.array([str(c).split(SEP) for c in out.pop("clinical")], dtype=object).reshape(-1, len(CLINICAL))
        for i, column in enumerate(CLINICAL):
            out[column] = parts[:, i]
        open_flag = out["genetic"].to_numpy() == UNKNOWN
        if open_flag.any() and self.genetic is not None:
            given = (out[c].to_numpy(dtype=object) for c in ("status", "rare_disease", "disease_group"))
            where = [c[open_flag] for c in genetic_contexts(*given)]
            drawn = self.genetic.sample(where, rng)
            out.loc[open_flag, "genetic"] = np.where(pd.isna(drawn), "no", drawn)
        for column, marginal in self.marginals.items():
            scores = raw[column].to_numpy(dtype=np.float64)
            if column in self.later:
                out[score(column)] = scores
            else:
                scores = self.shifts[column].restore(scores, strata)
            out[column] = marginal.from_normal(scores)
        return out

    def decode(self, column: str, scores: np.ndarray, contexts: list[np.ndarray]) -> np.ndarray:
        """A ``later`` column's values: its scores shifted by each synthetic patient's disease contexts."""
        return self.marginals[column].from_normal(self.shifts[column].restore(scores, contexts))


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
