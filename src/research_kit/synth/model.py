"""The twin model: patients from an SDV synthesizer, children drawn per synthetic patient.

Why not SDV's HMASynthesizer: it refuses more than five tables or a depth
over two; it fits one copula per patient and child table and flattens their
parameters into the patient table (measured here: about 80 ms per patient,
some 40 minutes for the 30,000-patient demo extract, against seconds); and
it reproduces every category it saw and leaves the order of dates to chance
(measured on 500 patients: thousands of rows holding codes of fewer than k
patients, thousands of constraint violations). Here the patient table carries
what ties children to their patient (counts, the primary diagnosis, the
timeline), one single-table synthesizer learns it, and each child table is
drawn for each synthetic patient from k-thresholded conditional tables.
Every child row belongs to a synthetic patient by construction, any number
of child tables fits, and every constraint holds by construction or by
redrawing the patient.

Sampling redraws (rejection) a synthetic patient born outside the k-trimmed
range of birth years, whose diagnosis status contradicts their number of
diagnoses, who has no common code for their diagnosis, or whose profile
copies a real patient's (see :mod:`research_kit.synth.profiles`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from research_kit.synth.children import ChildModel, Synthetic, disease_contexts, ends, synthetic_contexts
from research_kit.synth.patients import SEP, PatientModel, RealPatients, real_patients, score, timeline
from research_kit.synth.profiles import copies, profile
from research_kit.synth.rare import NONE, TooRare, clip_bounds
from research_kit.synth.tables import (
    DATE_COLUMNS,
    KEY,
    YEAR,
    Granularity,
    Tables,
    fresh_pseudonyms,
    from_days,
    month_start,
    to_days,
)

OVERSAMPLE = 1.25  # rows drawn per row still needed, in each round of rejection sampling
MAX_ROUNDS = 40


@dataclass
class Draw:
    """What one round of sampling kept: the patients' published columns and what their children need."""

    patients: pd.DataFrame
    primary: pd.DataFrame
    synthetic: Synthetic


@dataclass(frozen=True)
class SampleStats:
    drawn: int  # patient rows drawn from the synthesizer
    invalid_timeline: int
    no_common_code: int
    copies: int  # profiles that matched a real patient's, redrawn


def horizon_of(t: Tables, k: int) -> float:
    """The last day a twin's event may take: the k-th latest of the patients' last dates, to its month's end."""
    last = np.full(len(t.patients), -np.inf)
    lookup = pd.Series(np.arange(len(t.patients)), index=t.patients[KEY].to_numpy())
    for name, columns in DATE_COLUMNS.items():
        frame = t.as_dict()[name]
        who = lookup.reindex(frame[KEY].to_numpy()).to_numpy()
        for column in columns:
            days = to_days(frame[column])
            ok = ~np.isnan(days)
            np.maximum.at(last, who[ok].astype(np.int64), days[ok])
    last = np.sort(last[np.isfinite(last)])
    day = last[-min(k, len(last))]
    start = month_start(np.array([day]))[0]
    next_month = (np.array([start]).astype(np.int64).astype("datetime64[D]").astype("datetime64[M]") + 1).astype(
        "datetime64[D]"
    )
    return float(next_month.astype(np.int64)[0] - 1)


class TwinModel:
    def __init__(self, *, granularity: Granularity, k: int, model: str, seed: int) -> None:
        self.granularity = granularity
        self.k = k
        self.model = model
        self.seed = seed
        self.patients = PatientModel(granularity, k, model, seed)
        self.children: ChildModel | None = None
        self.horizon = 0.0
        self.birth_years = (0.0, 0.0)
        self.fewest: dict[str, int] = {}

    def fit(
        self, train: Tables, rng: np.random.Generator, *, real_variants: frozenset[str] = frozenset()
    ) -> RealPatients:
        """Fit on the training patients; ``real_variants``: every real variant (held out ones too), never drawn."""
        self.horizon = horizon_of(train, self.k)
        self.birth_years = clip_bounds(train.patients["birth_year"].to_numpy(dtype=np.float64), self.k)
        real = real_patients(train, self.k, self.horizon)
        self.fewest = {name: int(real.flat[f"n_{name}"].min()) for name in ("diagnoses", "phenotypes", "encounters")}
        self.patients.fit(real, rng, later={"n_phenotypes": disease_contexts(real)})
        end = ends(real.death, self.horizon)
        self.children = ChildModel.fit(train, real, end, self.horizon, self.k)
        self.children.coder.real_variants = self.children.coder.real_variants | real_variants
        return real

    def count_bounds(self) -> dict[str, tuple[int, int]]:
        """Per child table: (the real minimum, the k-th largest real count) of rows per patient."""
        out = {}
        for name, low in self.fewest.items():
            marginal = self.patients.marginals.get(f"n_{name}")
            out[name] = (low, int(marginal.bounds[1]) if marginal else low)
        return out

    def _date(self, days: np.ndarray) -> np.ndarray:
        published = month_start(days) if self.granularity.events == "month" else days
        return from_days(published)

    def _draw(self, m: int, rng: np.random.Generator, real: pd.DataFrame, stats: dict[str, int]) -> Draw:
        if self.children is None:
            raise RuntimeError("fit the twin model before sampling")
        rows = self.patients.sample(m, rng)
        stats["drawn"] += len(rows)
        tl = timeline(rows, self.horizon)
        year, month = tl.birth_year_month()
        has_dx = rows["n_diagnoses"].to_numpy(dtype=np.int64) > 0
        # By construction birth <= onset <= diagnosis <= horizon; what is left to check:
        ok = (rows["status"].to_numpy() != NONE) == has_dx
        ok &= (year >= self.birth_years[0]) & (year <= self.birth_years[1])
        stats["invalid_timeline"] += int((~ok).sum())
        rows = rows[ok].reset_index(drop=True)
        rows["birth_year"], rows["birth_month"] = year[ok], month[ok]
        birth, onset, diag, contact = tl.birth[ok], tl.onset[ok], tl.diag[ok], tl.contact[ok]
        dead = rows["vital_status"].to_numpy() == "dead"
        death = np.full(len(rows), np.nan)
        death[dead] = self.children.death_days(np.fmax(diag, contact)[dead], self.horizon, rng)
        s = Synthetic(
            status=rows["status"].to_numpy(dtype=object),
            group=rows["disease_group"].to_numpy(dtype=object),
            rare=rows["rare_disease"].to_numpy(dtype=object),
            genetic=rows["genetic"].to_numpy(dtype=object),
            n_diagnoses=rows["n_diagnoses"].to_numpy(dtype=np.int64),
            n_phenotypes=rows["n_phenotypes"].to_numpy(dtype=np.int64),
            n_encounters=rows["n_encounters"].to_numpy(dtype=np.int64),
            birth=birth,
            onset=onset,
            diag=diag,
            contact=contact,
            end=ends(death, self.horizon),
        )
        primary = self.children.primary_codes(s, rng)
        scores = rows[score("n_phenotypes")].to_numpy(dtype=np.float64)
        s.n_phenotypes = self.patients.decode("n_phenotypes", scores, synthetic_contexts(s, primary)).astype(np.int64)
        coded = np.where(s.n_diagnoses > 0, primary["icd10_code"].notna().to_numpy(), True)
        stats["no_common_code"] += int((~coded).sum())
        patients = self._patient_columns(rows, s, death)
        first = primary.assign(
            status=_blank(s.status, s.n_diagnoses == 0),
            onset_date=self._date(onset),
            diagnosis_date=self._date(diag),
            onset_age_years=np.round((onset - birth) / YEAR, 1),
            diagnostic_delay_days=diag - onset,
        )
        n = {"n_diagnoses": s.n_diagnoses, "n_phenotypes": s.n_phenotypes, "n_encounters": s.n_encounters}
        copied = copies(real, profile(patients, first, n))
        stats["copies"] += int((coded & copied).sum())
        keep = coded & ~copied
        return Draw(
            patients=patients[keep].reset_index(drop=True),
            primary=primary[keep].reset_index(drop=True),
            synthetic=s.take(keep),
        )

    def _patient_columns(self, rows: pd.DataFrame, s: Synthetic, death: np.ndarray) -> pd.DataFrame:
        parts = np.array([str(r).split(SEP) for r in rows["residence"]], dtype=object).reshape(len(rows), 3)
        return pd.DataFrame(
            {
                "birth_year": rows["birth_year"].to_numpy(dtype=np.int64),
                "birth_month": rows["birth_month"].to_numpy(dtype=np.float64)
                if self.granularity.birth == "year-month"
                else np.full(len(rows), np.nan),
                "sex": _nullable(rows["sex"]),
                "vital_status": _nullable(rows["vital_status"]),
                "death_date": self._date(death),
                "canton": _nullable(pd.Series(parts[:, 1])),
                "country": _nullable(pd.Series(parts[:, 0])),
                "cross_border_insured": _flag(pd.Series(parts[:, 2])),
                "first_contact_date": self._date(s.contact),
                "consent_reuse": _flag(rows["consent_reuse"]),
                "agrees_to_contact": _flag(rows["agrees_to_contact"]),
            }
        )

    def sample(
        self, n: int, rng: np.random.Generator, real: pd.DataFrame, *, taken: set[str], step: Callable[[str], None]
    ) -> tuple[Tables, SampleStats]:
        """A twin of ``n`` patients; ``real`` holds every real patient's profile, ``taken`` their pseudonyms."""
        if self.children is None:
            raise RuntimeError("fit the twin model before sampling")
        stats = {"drawn": 0, "invalid_timeline": 0, "no_common_code": 0, "copies": 0}
        draws: list[Draw] = []
        have = 0
        for _ in range(MAX_ROUNDS):
            if have >= n:
                break
            step(f"sampling patients ({have:,} of {n:,})")
            draw = self._draw(int((n - have) * OVERSAMPLE) + 16, rng, real, stats)
            draws.append(draw)
            have += len(draw.patients)
        if have < n:
            raise TooRare(
                f"only {have:,} of {n:,} synthetic patients could be given codes held by {self.k} real patients"
            )
        patients = pd.concat([d.patients for d in draws], ignore_index=True).iloc[:n]
        primary = pd.concat([d.primary for d in draws], ignore_index=True).iloc[:n]
        s = Synthetic(
            **{f: np.concatenate([getattr(d.synthetic, f) for d in draws])[:n] for f in Synthetic.__dataclass_fields__}
        )
        step("sampling diagnoses, phenotypes and encounters")
        diagnoses = self.children.diagnoses(s, primary, rng)
        phenotypes = self.children.phenotypes(s, primary, rng)
        encounters = self.children.encounters(s, primary, rng)

        names = fresh_pseudonyms(rng, n, taken)
        order = np.argsort(names, kind="stable")  # patients in pseudonym order, as an extract's
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        patients.insert(0, KEY, names)
        patients = patients.iloc[order].reset_index(drop=True)

        def child(frame: pd.DataFrame, columns: dict[str, object]) -> pd.DataFrame:
            who = frame["_p"].to_numpy(dtype=np.int64)
            out = pd.DataFrame({KEY: names[who], "_rank": rank[who], **columns})
            return out.sort_values("_rank", kind="stable").drop(columns="_rank").reset_index(drop=True)

        tables = Tables(
            patients=patients,
            diagnoses=child(
                diagnoses,
                {
                    "orpha_code": diagnoses["orpha_code"].to_numpy(dtype=object),
                    "icd10_code": diagnoses["icd10_code"].to_numpy(dtype=object),
                    "status": diagnoses["status"].to_numpy(dtype=object),
                    "onset_date": self._date(diagnoses["_onset"].to_numpy(dtype=np.float64)),
                    "diagnosis_date": self._date(diagnoses["_diag"].to_numpy(dtype=np.float64)),
                    "onset_age_years": diagnoses["onset_age_years"].to_numpy(dtype=np.float64),
                    "diagnostic_delay_days": diagnoses["diagnostic_delay_days"].to_numpy(dtype=np.int64),
                    "gene_symbol": diagnoses["gene_symbol"].to_numpy(dtype=object),
                    "variant_hgvs": diagnoses["variant_hgvs"].to_numpy(dtype=object),
                },
            ),
            phenotypes=child(
                phenotypes,
                {
                    "hpo_code": phenotypes["hpo_code"].to_numpy(dtype=object),
                    "observed_date": self._date(phenotypes["_day"].to_numpy(dtype=np.float64)),
                },
            ),
            encounters=child(
                encounters,
                {
                    "encounter_date": self._date(encounters["_day"].to_numpy(dtype=np.float64)),
                    "centre_code": encounters["centre_code"].to_numpy(dtype=object),
                    "centre_country": encounters["centre_country"].to_numpy(dtype=object),
                    "encounter_type": encounters["encounter_type"].to_numpy(dtype=object),
                },
            ),
        )
        return tables, SampleStats(**stats)


def _blank(values: np.ndarray, where: np.ndarray) -> np.ndarray:
    out = np.asarray(values, dtype=object).copy()
    out[where] = None
    return out


def _nullable(values: pd.Series) -> np.ndarray:
    v = values.astype(object).to_numpy(dtype=object)
    return _blank(v, v == NONE)


def _flag(values: pd.Series) -> np.ndarray:
    return values.astype(object).map({"yes": True, "no": False}).astype(object).to_numpy(dtype=object)
