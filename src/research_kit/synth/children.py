"""Diagnoses, phenotypes and encounters, drawn for each synthetic patient from their own attributes.

Per synthetic patient the patient model gives how many rows each child table
holds, the primary diagnosis's status, disease group, rare-disease flag, age
at onset and delay, and the timeline. Here:

- codes come from k-thresholded :class:`~research_kit.synth.rare.Backoff`
  samplers (see :mod:`research_kit.synth.coding` for diagnoses): HPO terms
  given the patient's ORPHA code (backing off to its ICD-10 block, chapter,
  the rare or common kind of disease, then any patient), centres given the
  same, the centre's country given the centre, the kind of encounter given
  the country. HPO terms and centres back off as Katz's back-off does (a
  coarser context learns from the rows no finer one kept) and learn nothing
  from rows holding a value no twin may hold: a term spread thinly over
  many diseases keeps its share (measured on 2,245 patients: SDV's shape
  score of the HPO column 0.39 -> 0.50, its ceiling under the rule 0.51);
- secondary diagnoses are every diagnosis but the first (the earliest, as
  :func:`research_kit.model.facts.first_diagnoses` and the patient model
  define it); one gets a code whatever its kind, backing off to all
  diagnoses of its kind where its status has no common code;
- dates are placed inside the patient's own interval (a phenotype between
  onset and the end of follow-up, an encounter between first contact and
  the end, a secondary diagnosis between the first diagnosis and the end)
  at the position real rows take in theirs: every date is valid by
  construction, and the first diagnosis stays the first.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import pandas as pd

from research_kit.model.facts import first_diagnosis_rows
from research_kit.synth.coding import Coder, groups_of, join
from research_kit.synth.marginals import Marginal
from research_kit.synth.patients import RealPatients
from research_kit.synth.rare import NONE, Backoff, common_values
from research_kit.synth.tables import KEY, YEAR, Tables, patient_index, to_days

MAX_REDRAWS = 4  # rounds of redrawing a patient's duplicate HPO terms


def fraction(day: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """Where ``day`` lies in [start, end], as a share (0 where the interval is empty; NaN where a day is unknown)."""
    span = end - start
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(span > 0, (day - start) / span, 0.0)
    share[np.isnan(day) | np.isnan(start) | np.isnan(end)] = np.nan
    return np.clip(share, 0.0, 1.0)


def place(share: np.ndarray, start: np.ndarray, end: np.ndarray) -> np.ndarray:
    """The day at ``share`` of [start, end] (whole days, never outside the interval)."""
    return np.clip(start + np.floor(share * np.maximum(end - start, 0)), start, end)


def ends(death: np.ndarray, horizon: float) -> np.ndarray:
    """Each patient's last possible day: death, else the horizon."""
    return np.where(np.isnan(death), horizon, death)


@dataclass
class Synthetic:
    """Synthetic patients as the children see them (arrays in the patients' order)."""

    status: np.ndarray
    group: np.ndarray
    rare: np.ndarray  # "yes" where the patient stands for a real patient with a rare disease
    genetic: np.ndarray
    n_diagnoses: np.ndarray
    n_phenotypes: np.ndarray
    n_encounters: np.ndarray
    birth: np.ndarray
    onset: np.ndarray
    diag: np.ndarray
    contact: np.ndarray
    end: np.ndarray

    def take(self, keep: np.ndarray) -> Synthetic:
        return Synthetic(**{f.name: getattr(self, f.name)[keep] for f in fields(self)})

    @classmethod
    def concat(cls, parts: list[Synthetic], n: int) -> Synthetic:
        return cls(**{f.name: np.concatenate([getattr(p, f.name) for p in parts])[:n] for f in fields(cls)})


def _root(n: int) -> np.ndarray:
    return np.full(n, "", dtype=object)


@dataclass
class ChildModel:
    coder: Coder
    secondary_status: Backoff
    secondary_rare: dict[str, float]  # per status: share of secondary diagnoses of a rare disease
    secondary_genetic: dict[str, float]
    secondary_diagnosis: Marginal  # share of [the primary diagnosis, end]
    secondary_delay: Marginal  # days
    hpo: Backoff
    observed: Marginal  # share of [onset, end]
    centre: Backoff
    centre_country: Backoff
    encounter_type: Backoff
    encounter: Marginal  # share of [first contact, end]
    death: Marginal  # share of [max(diagnosis, first contact), horizon]

    @classmethod
    def fit(cls, t: Tables, real: RealPatients, end: np.ndarray, horizon: float, k: int) -> ChildModel:
        """``end``: each real patient's last possible day (death, else the horizon)."""
        d, p = t.diagnoses.reset_index(drop=True), t.patients
        who = patient_index(d, p)
        # The patient model's primary diagnosis is each patient's first (facts.first_diagnoses: the earliest);
        # every other row is a secondary one, dated from the primary's diagnosis on.
        first = np.zeros(len(d), dtype=bool)
        first[first_diagnosis_rows(d, KEY).index.to_numpy(dtype=np.int64)] = True
        second = ~first
        status = d["status"].fillna(NONE).to_numpy(dtype=object)
        coder = Coder.fit(d, who, first, k)
        orpha_codes = d["orpha_code"].to_numpy(dtype=object)
        rare_row = ~np.isin(orpha_codes, list(common_values(orpha_codes, who, k)))
        onset = to_days(d["onset_date"])

        def share(flag: np.ndarray) -> dict[str, float]:
            if not second.any():
                return {}
            return {str(s): float(v) for s, v in pd.Series(flag[second]).groupby(status[second]).mean().items()}

        ph, en = t.phenotypes, t.encounters
        ph_who, en_who = patient_index(ph, p), patient_index(en, p)
        rare = real.flat["rare_disease"].to_numpy(dtype=object)
        orpha = real.primary["orpha_code"].fillna(NONE).to_numpy(dtype=object)
        anchor = np.where(np.isnan(real.onset), real.birth, real.onset)
        country = en["centre_country"].fillna(NONE).to_numpy(dtype=object)
        dead = ~np.isnan(real.death)
        return cls(
            coder=coder,
            secondary_status=Backoff.fit(status[second], who[second], [_root(int(second.sum()))], k),
            secondary_rare=share(rare_row),
            secondary_genetic=share(d["gene_symbol"].notna().to_numpy()),
            secondary_diagnosis=Marginal.fit(
                fraction(to_days(d["diagnosis_date"]), real.diag[who], end[who])[second],
                k=k,
                continuous=True,
                decimals=4,
            ),
            secondary_delay=Marginal.fit(
                (to_days(d["diagnosis_date"]) - onset)[second], k=k, continuous=True, decimals=0
            ),
            hpo=Backoff.fit(
                only_common(ph["hpo_code"].fillna(NONE).to_numpy(dtype=object), ph_who, k),
                ph_who,
                _disease_levels(real, ph_who),
                k,
                residual=True,
            ),
            observed=Marginal.fit(
                fraction(to_days(ph["observed_date"]), anchor[ph_who], end[ph_who]), k=k, continuous=True, decimals=4
            ),
            centre=Backoff.fit(
                en["centre_code"].fillna(NONE).to_numpy(dtype=object),
                en_who,
                [
                    join(rare[en_who], orpha[en_who]),
                    join(rare[en_who], real.chapter[en_who]),
                    rare[en_who],
                    _root(len(en_who)),
                ],
                k,
                residual=True,
            ),
            centre_country=Backoff.fit(country, en_who, [en["centre_code"].fillna(NONE).to_numpy(dtype=object)], k),
            encounter_type=Backoff.fit(
                en["encounter_type"].fillna(NONE).to_numpy(dtype=object), en_who, [country, _root(len(en))], k
            ),
            encounter=Marginal.fit(
                fraction(to_days(en["encounter_date"]), real.contact[en_who], end[en_who]),
                k=k,
                continuous=True,
                decimals=4,
            ),
            death=Marginal.fit(
                fraction(real.death[dead], np.fmax(real.diag, real.contact)[dead], np.full(int(dead.sum()), horizon)),
                k=k,
                continuous=True,
                decimals=4,
            ),
        )

    def primary_codes(self, s: Synthetic, rng: np.random.Generator) -> pd.DataFrame:
        """ORPHA, ICD-10 and gene of each patient's first diagnosis (``None`` where no common code fits)."""
        return self.coder.codes(s.status, s.rare, s.genetic == "yes", rng, group=s.group)

    def death_days(self, start: np.ndarray, horizon: float, rng: np.random.Generator) -> np.ndarray:
        return place(self.death.sample(len(start), rng), start, np.full(len(start), horizon))

    def diagnoses(self, s: Synthetic, primary: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        """Every diagnosis row (primary first per patient), with ``_p``: the patient's row number."""
        has = s.n_diagnoses > 0
        first = primary[has].assign(_p=np.nonzero(has)[0], _order=0, status=s.status[has])
        first = first.assign(_onset=s.onset[has], _diag=s.diag[has])
        extra = np.maximum(s.n_diagnoses - 1, 0).astype(np.int64)
        who = np.repeat(np.arange(len(extra)), extra)
        m = len(who)
        status = self.secondary_status.sample([_root(m)], rng)
        rare = rng.random(m) < np.array([self.secondary_rare.get(str(x), 0.0) for x in status])
        genetic = rng.random(m) < np.array([self.secondary_genetic.get(str(x), 0.0) for x in status])
        codes = self.coder.codes(status, np.where(rare, "yes", "no"), genetic, rng)
        diag = place(self.secondary_diagnosis.sample(m, rng), s.diag[who], s.end[who])
        onset = np.maximum(diag - np.maximum(self.secondary_delay.sample(m, rng), 0), s.birth[who])
        within = np.arange(m) - np.repeat(np.r_[0, np.cumsum(extra)[:-1]], extra) + 1
        second = codes.assign(_p=who, _order=within, status=status, _onset=onset, _diag=diag)
        # A secondary diagnosis without a common code is left out (its patient keeps fewer diagnoses).
        second = second[second["icd10_code"].notna() & second["status"].notna()]
        rows = pd.concat([first, second], ignore_index=True).sort_values(["_p", "_order"], kind="stable")
        rows = rows.reset_index(drop=True)
        onset_days = rows["_onset"].to_numpy(dtype=np.float64)
        diag_days = rows["_diag"].to_numpy(dtype=np.float64)
        rows["onset_age_years"] = np.round((onset_days - s.birth[rows["_p"].to_numpy()]) / YEAR, 1)
        rows["diagnostic_delay_days"] = (diag_days - onset_days).astype(np.int64)
        genes = rows["gene_symbol"].notna().to_numpy()
        rows["variant_hgvs"] = None
        rows.loc[genes, "variant_hgvs"] = self.coder.variants(int(genes.sum()), rng)
        return rows.drop(columns="_order")

    def phenotypes(self, s: Synthetic, primary: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        """Distinct HPO terms per patient, dated between onset (birth without a diagnosis) and the end."""
        levels = _synthetic_levels(s, primary)
        who = np.repeat(np.arange(len(s.birth)), s.n_phenotypes.astype(np.int64))
        frame = pd.DataFrame({"_p": who, "hpo_code": self.hpo.sample([c[who] for c in levels], rng)})
        for _ in range(MAX_REDRAWS):
            repeat = frame.duplicated(["_p", "hpo_code"]).to_numpy() | frame["hpo_code"].isna().to_numpy()
            if not repeat.any():
                break
            w = frame["_p"].to_numpy()[repeat]
            frame.loc[repeat, "hpo_code"] = self.hpo.sample([c[w] for c in levels], rng)
        frame = frame[frame["hpo_code"].notna()].drop_duplicates(["_p", "hpo_code"]).reset_index(drop=True)
        w = frame["_p"].to_numpy()
        anchor = np.where(np.isnan(s.onset), s.birth, s.onset)
        frame["_day"] = place(self.observed.sample(len(frame), rng), anchor[w], s.end[w])
        return frame.sort_values(["_p", "_day"], kind="stable").reset_index(drop=True)

    def encounters(self, s: Synthetic, primary: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        """Encounters between first contact and the end, in date order per patient."""
        orpha = primary["orpha_code"].to_numpy(dtype=object)
        _, chapter = groups_of(primary["icd10_code"].to_numpy(dtype=object))
        who = np.repeat(np.arange(len(orpha)), s.n_encounters.astype(np.int64))
        rare = s.rare[who]
        centre = self.centre.sample([join(rare, orpha[who]), join(rare, chapter[who]), rare, _root(len(who))], rng)
        country = self.centre_country.sample([centre], rng)
        kind = self.encounter_type.sample([country, _root(len(who))], rng)
        day = place(self.encounter.sample(len(who), rng), s.contact[who], s.end[who])
        frame = pd.DataFrame(
            {"_p": who, "_day": day, "centre_code": centre, "centre_country": country, "encounter_type": kind}
        )
        frame = frame[frame["centre_code"].notna() & frame["encounter_type"].notna()]
        return frame.sort_values(["_p", "_day"], kind="stable").reset_index(drop=True)


def only_common(values: np.ndarray, who: np.ndarray, k: int) -> np.ndarray:
    """``values`` with every value held by fewer than ``k`` patients blanked (``NONE``)."""
    out = np.asarray(values, dtype=object).copy()
    out[~np.isin(out, list(common_values(out, who, k)))] = NONE
    return out


def disease_contexts(real: RealPatients) -> list[np.ndarray]:
    """Each real patient's rare|ORPHA, rare|block, rare|chapter, rare (the HPO terms' contexts, root left out)."""
    return _disease_levels(real, np.arange(len(real.flat)))[:-1]


def synthetic_contexts(s: Synthetic, primary: pd.DataFrame) -> list[np.ndarray]:
    """:func:`disease_contexts` of synthetic patients."""
    return _synthetic_levels(s, primary)[:-1]


def _disease_levels(real: RealPatients, who: np.ndarray) -> list[np.ndarray]:
    """Per child row: its patient's rare|ORPHA, rare|block, rare|chapter, rare (real patients)."""
    rare = real.flat["rare_disease"].to_numpy(dtype=object)[who]
    orpha = real.primary["orpha_code"].fillna(NONE).to_numpy(dtype=object)[who]
    return [join(rare, orpha), join(rare, real.block[who]), join(rare, real.chapter[who]), rare, _root(len(who))]


def _synthetic_levels(s: Synthetic, primary: pd.DataFrame) -> list[np.ndarray]:
    """As :func:`_disease_levels`, one entry per synthetic patient."""
    block, chapter = groups_of(primary["icd10_code"].to_numpy(dtype=object))
    orpha = primary["orpha_code"].to_numpy(dtype=object)
    return [join(s.rare, orpha), join(s.rare, block), join(s.rare, chapter), s.rare, _root(len(s.rare))]
