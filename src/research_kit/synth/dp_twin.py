"""A differentially private twin: every table drawn from marginals OpenDP measured under one budget (rho).

The privacy unit is the patient. What is measured, each part with its share
of the budget (:data:`SPLIT`):

- **the patient table** (one row per patient: profile, the first
  diagnosis's status, ICD-10 chapter and genetic flag, the intervals of the
  timeline, how many diagnoses, phenotypes and encounters), binned into the
  public categories of :mod:`research_kit.synth.dp_domain`, by OpenDP's
  ``make_contingency_table`` with AIM or MST (``opendp.extras.mbi``): a
  graphical model fitted to noisy low-order marginals;
- **the codes**, as noisy histograms over public code lists, each patient
  counted once per cell (OpenDP's Gaussian mechanism, L2 sensitivity 1, or
  the square root of the cap where a patient adds several cells): the first
  diagnosis's ICD-10 code, its ORPHA code per ICD-10 chapter, its gene per
  chapter, up to :data:`~research_kit.synth.dp_domain.ENCOUNTER_CAP` (centre,
  kind) pairs of encounters, and up to
  :data:`~research_kit.synth.dp_domain.HPO_CAP` observed HPO terms, measured
  twice (:func:`_selected`): each term's patients over all chapters, which
  decides the terms a twin may hold, and the terms per chapter, which weigh
  them.

Everything after the measurement is post-processing of its output alone:
noisy counts below a cut (the policy's k plus enough standard deviations
that a cell nobody holds survives with probability :data:`FALSE_KEEP` over
the whole histogram) are dropped; the HPO terms are those whose total clears
that cut, each weighed in a chapter by its noisy count there when that is
over :data:`DENOISE` noise scales (a cut against noise, not for privacy:
the term is held by k patients already); patients are drawn from the model;
numbers uniformly inside their bins; codes from the kept histogram cells of
the patient's chapter; dates inside the patient's own timeline, which ends at
the extract's reference date (its manifest's, not a date of the data). No
distribution is fitted on real rows, and nothing is redrawn by comparing to
real rows: the gates (which do read the real extract) can only refuse a
twin, outside the guarantee, as :mod:`research_kit.synth.publish` says.

OpenDP's noise comes from a cryptographic source and cannot be seeded (a
seeded noise would void the guarantee). The seed fixes everything after the
measurement: the same release and seed give the same twin
(:func:`generate`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from research_kit.core.errors import BadInput, MissingData
from research_kit.model.codes import UNDIAGNOSED_ORPHA, orpha_id
from research_kit.model.facts import first_diagnosis_rows
from research_kit.model.tables import CENTRES
from research_kit.synth import dp_domain as dom
from research_kit.synth.patients import flag_text, text
from research_kit.synth.rare import NONE, TooRare
from research_kit.synth.synthesizers import seeded
from research_kit.synth.tables import (
    KEY,
    YEAR,
    Granularity,
    Tables,
    birth_days,
    counts,
    fresh_pseudonyms,
    from_days,
    month_start,
    patient_index,
    to_days,
)

MECHANISMS = {
    "aim": "AIM (adaptive and iterative mechanism, McKenna et al. 2022)",
    "mst": "MST (maximum spanning tree, McKenna et al. 2021)",
}
# The HPO terms carry what a phenotype-to-disease study learns from, and which terms clear the cut decides it: they
# get the largest share. The patient table's low-order marginals are counts over every patient, which a quarter of
# the budget measures well (docs/benchmarks.md has the figures of both splits).
SPLIT = {"patients": 0.25, "icd10": 0.05, "orpha": 0.05, "gene": 0.05, "hpo": 0.55, "encounters": 0.05}
SELECT = 0.5  # of the HPO part: each term's total, which decides the terms kept; the rest weighs them per chapter
DENOISE = 2.0  # noise scales a kept term's chapter cell must clear to weigh in that chapter
# AIM with its defaults (every 3-way marginal, 16 rounds per column) had not finished after 45 minutes on the
# 30,000-patient extract here; pairs and 12 rounds take minutes (docs/benchmarks.md has the figures).
AIM_QUERIES = 2
AIM_ROUNDS = 12
CHUNK = 2_000  # patients drawn at once without replacement
FALSE_KEEP = 0.01  # chance, over a whole histogram, that some cell no real patient holds passes the cut
EXTRA = "pip install 'research-kit[dp-twin]' (make setup installs it)"
Step = Callable[[str], None]


def require_mbi() -> None:
    """Refuse in one line, before anything is spent, when OpenDP's mbi extra is not installed."""
    try:
        import jax  # noqa: F401
        import mbi  # noqa: F401
    except ImportError:
        raise MissingData(f"a DP twin needs OpenDP's marginal-based synthesis (opendp[mbi]): {EXTRA}") from None


def check_mechanism(name: str) -> str:
    if name not in MECHANISMS:
        raise BadInput(f"unknown DP mechanism {name!r}: use one of {', '.join(MECHANISMS)}")
    return name


@dataclass
class Histogram:
    """A noisy histogram over (context, code) of a public list, cut at ``cut``: kept counts (zeros elsewhere)."""

    codes: np.ndarray
    kept: np.ndarray  # shape (contexts, codes)
    scale: float
    cut: float
    rho: float
    selection: dict[str, float] = field(default_factory=dict)  # a code's total measured apart (see _selected)

    def draw(self, context: np.ndarray, rng: np.random.Generator, *, exclude: set[str] = frozenset()) -> np.ndarray:  # type: ignore[assignment]
        """One code per row given its context index (the context's kept cells, else all contexts' pooled;
        ``None`` where nothing was kept)."""
        weights = self.kept.copy()
        if exclude:
            weights[:, np.isin(self.codes, list(exclude))] = 0.0
        pooled = weights.sum(axis=0)
        out = np.full(len(context), None, dtype=object)
        for c in np.unique(context):
            rows = np.nonzero(context == c)[0]
            w = weights[c] if weights[c].sum() > 0 else pooled
            if w.sum() <= 0:
                continue
            out[rows] = self.codes[rng.choice(len(w), size=len(rows), p=w / w.sum())]
        return out

    def draw_distinct(self, context: np.ndarray, sizes: np.ndarray, rng: np.random.Generator) -> list[np.ndarray]:
        """Per row, ``sizes[i]`` distinct codes given its context (fewer when fewer were kept)."""
        pooled = self.kept.sum(axis=0)
        out: list[np.ndarray] = [np.empty(0, dtype=object)] * len(context)
        for c in np.unique(context):
            rows = np.nonzero(context == c)[0]
            w = self.kept[c] if self.kept[c].sum() > 0 else pooled
            nonzero = np.nonzero(w > 0)[0]
            if len(nonzero) == 0:
                continue
            logp = np.log(w[nonzero])
            for start in range(0, len(rows), CHUNK):  # bounded memory: rows x kept terms per chunk
                part = rows[start : start + CHUNK]
                # Gumbel top-k: per row, the k largest of log p + Gumbel noise are a draw without replacement.
                keys = logp[None, :] + rng.gumbel(size=(len(part), len(nonzero)))
                order = np.argsort(-keys, axis=1)
                for j, r in enumerate(part):
                    out[r] = self.codes[nonzero[order[j, : min(int(sizes[r]), len(nonzero))]]]
        return out

    def summary(self) -> dict[str, Any]:
        return {
            "rho": self.rho,
            "noise_scale": round(self.scale, 4),
            "cut": round(self.cut, 2),
            "domain": int(self.kept.size),
            "cells_kept": int((self.kept > 0).sum()),
            **({"selection": self.selection} if self.selection else {}),
        }


@dataclass
class Release:
    """What the DP measurement released: the patient model and the histograms (nothing else is used)."""

    mechanism: str
    rho: float  # spent, as OpenDP's maps give it
    k: int
    reference_year: int
    horizon: float  # days: the extract's reference date
    granularity: Granularity
    table: Any  # opendp.extras.mbi.ContingencyTable
    oneway_scale: float
    icd10: Histogram
    orpha: Histogram
    gene: Histogram
    hpo: Histogram
    encounters: Histogram
    parts: dict[str, float] = field(default_factory=dict)

    def possible_values(self) -> dict[str, set[str]]:
        """Per ``table.column``: every value a twin generated from this release can hold (its kept cells)."""
        keys = dom.patient_keys(self.reference_year)
        cut = self.patient_cut()
        out: dict[str, set[str]] = {}
        for column in GATED:
            table = "diagnoses" if column == "status" else "patients"
            estimate = self.estimates(column)
            out[f"{table}.{column}"] = {str(v) for v, c in estimate.items() if v is not None and c >= cut}
        del keys
        for key, histogram in (
            ("diagnoses.icd10_code", self.icd10),
            ("diagnoses.orpha_code", self.orpha),
            ("diagnoses.gene_symbol", self.gene),
            ("phenotypes.hpo_code", self.hpo),
        ):
            out[key] = {str(c) for c in histogram.codes[histogram.kept.sum(axis=0) > 0]}
        out["diagnoses.orpha_code"].add(orpha_id(UNDIAGNOSED_ORPHA))
        pairs = [str(c).split("\x1f") for c in self.encounters.codes[self.encounters.kept.sum(axis=0) > 0]]
        country = {c.code: c.country for c in CENTRES}
        out["encounters.centre_code"] = {p[0] for p in pairs}
        out["encounters.encounter_type"] = {p[1] for p in pairs}
        out["encounters.centre_country"] = {country[p[0]] for p in pairs}
        return out

    def patient_cut(self) -> float:
        """The estimated count under which a patient table's category is rolled into the kept ones."""
        keys = dom.patient_keys(self.reference_year)
        return self.k + self.oneway_scale * _z(max(len(v) + 1 for v in keys.values()))

    def estimates(self, column: str) -> dict[object, float]:
        """The model's count of each category of a patient-table column."""
        projected = self.table.project_melted([column])
        return dict(zip(projected[column].to_list(), projected["len"].to_list(), strict=True))

    def summary(self) -> dict[str, Any]:
        return {
            "mechanism": self.mechanism,
            "rho": self.rho,
            "split": self.parts,
            "patient_model": {
                "columns": list(dom.patient_keys(self.reference_year)),
                "oneway_noise_scale": round(self.oneway_scale, 4),
            },
            "histograms": {
                name: getattr(self, name).summary() for name in ("icd10", "orpha", "gene", "hpo", "encounters")
            },
        }


def _flag(values: pd.Series) -> np.ndarray:
    """A nullable flag as ``yes``, ``no`` or ``None`` (missing is a category of its own for OpenDP)."""
    return _none_for_missing(flag_text(values))


def _text(values: pd.Series) -> np.ndarray:
    return _none_for_missing(text(values))


def _none_for_missing(values: np.ndarray) -> np.ndarray:
    out = values.copy()
    out[out == NONE] = None
    return out


def patient_rows(t: Tables, horizon: float, reference_year: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The patient table the mechanism measures (public categories) and each patient's first diagnosis row."""
    p = t.patients
    first = first_diagnosis_rows(t.diagnoses, KEY).set_index(KEY).reindex(p[KEY].to_numpy())
    has_dx = first["status"].notna().to_numpy()
    birth = birth_days(p)
    diag = to_days(first["diagnosis_date"])
    contact = to_days(p["first_contact_date"])
    anchor = np.where(has_dx, diag, contact)
    onset_age = np.where(
        has_dx, first["onset_age_years"].to_numpy(dtype=np.float64, na_value=np.nan), (contact - birth) / YEAR
    )
    delay = np.where(has_dx, first["diagnostic_delay_days"].to_numpy(dtype=np.float64, na_value=np.nan), np.nan)
    chapters = np.array([dom.chapter_of(c) for c in first["icd10_code"].to_numpy(dtype=object)], dtype=object)
    chapters[(~has_dx) | (chapters == dom.NO_CHAPTER)] = None
    frame = pd.DataFrame(
        {
            "sex": _text(p["sex"]),
            "vital_status": _text(p["vital_status"]),
            "country": _text(p["country"]),
            "canton": _text(p["canton"]),
            "cross_border_insured": _flag(p["cross_border_insured"]),
            "consent_reuse": _flag(p["consent_reuse"]),
            "agrees_to_contact": _flag(p["agrees_to_contact"]),
            "status": _text(first["status"]),
            "chapter": chapters,
            "genetic": _where(has_dx, np.where(first["gene_symbol"].notna(), "yes", "no")),
            "onset_age": dom.ONSET_AGE.label(onset_age),
            "delay": dom.DELAY.label(delay),
            "anchor_back": dom.ANCHOR_BACK.label(horizon - anchor),
            "contact_offset": dom.CONTACT_OFFSET.label(contact - anchor),
            "n_diagnoses": dom.N_DIAGNOSES.label(counts(t.diagnoses, p).astype(np.float64)),
            "n_phenotypes": dom.N_PHENOTYPES.label(counts(t.phenotypes, p).astype(np.float64)),
            "n_encounters": dom.N_ENCOUNTERS.label(counts(t.encounters, p).astype(np.float64)),
        }
    )
    return frame, first.reset_index()


def _context_index(chapters: np.ndarray) -> np.ndarray:
    where = {c: i for i, c in enumerate(dom.contexts())}
    return np.array(
        [where.get(c, where[dom.NO_CHAPTER]) if c is not None else where[dom.NO_CHAPTER] for c in chapters],
        dtype=np.int64,
    )


def _cells(context: np.ndarray, codes: np.ndarray, domain: dom.CodeDomain, patient: np.ndarray) -> np.ndarray:
    """Counts of distinct patients per (context, code) cell, codes outside the public list left out."""
    index = np.array([domain.index.get(c, -1) if isinstance(c, str) else -1 for c in codes], dtype=np.int64)
    ok = index >= 0
    frame = pd.DataFrame({"c": context[ok], "v": index[ok], "p": patient[ok]}).drop_duplicates()
    out = np.zeros((len(dom.contexts()), len(domain.codes)))
    np.add.at(out, (frame["c"].to_numpy(), frame["v"].to_numpy()), 1.0)
    return out


def _noisy(counts_: np.ndarray, sensitivity: int, rho: float) -> tuple[np.ndarray, float, float]:
    """Noisy counts from OpenDP's Gaussian mechanism at ``rho`` (zCDP; integer counts, so the discrete Gaussian,
    several times faster than the continuous one over these domains), its scale and the rho spent."""
    import opendp.prelude as dp

    dp.enable_features("contrib")
    flat = np.rint(counts_.ravel()).astype(np.int64)
    space = (dp.vector_domain(dp.atom_domain(T=int), size=len(flat)), dp.l2_distance(T=int))
    scale = float(
        dp.binary_search_param(lambda s: dp.m.make_gaussian(*space, scale=s), d_in=sensitivity, d_out=float(rho))
    )
    measurement = dp.m.make_gaussian(*space, scale=scale)
    noisy = np.asarray(measurement(flat.tolist()), dtype=np.float64).reshape(counts_.shape)
    return noisy, scale, float(measurement.map(sensitivity))


def _gaussian(counts_: np.ndarray, sensitivity: int, rho: float, k: int) -> Histogram:
    """The noisy counts kept above the cut: k plus :func:`_z` noise scales over the histogram's cells."""
    noisy, scale, spent = _noisy(counts_, sensitivity, rho)
    cut = k + scale * _z(counts_.size)
    return Histogram(codes=np.empty(0), kept=np.where(noisy >= cut, noisy, 0.0), scale=scale, cut=cut, rho=spent)


def _selected(cells: np.ndarray, sensitivity: int, rho: float, k: int) -> Histogram:
    """Codes kept by their total over the contexts, weighed per context (:data:`SELECT` of ``rho`` on the totals).

    A code's total clears the cut far more often than its count in any one context (a term is spread over
    chapters), so more codes are kept than by cutting each cell; the cut on the totals is the same rule as
    :func:`_gaussian`'s, so a kept code is held by k patients (except with probability :data:`FALSE_KEEP` over the
    whole list). Each kept code's cells then weigh it per context where they clear :data:`DENOISE` noise scales,
    which only drops noise: which codes may appear is decided already. A patient's codes are all in one context,
    so the sensitivity is the same for both.
    """
    totals = _gaussian(cells.sum(axis=0, keepdims=True), sensitivity, rho * SELECT, k)
    noisy, scale, spent = _noisy(cells, sensitivity, rho * (1 - SELECT))
    chosen = totals.kept[0] > 0
    kept = np.where(chosen[None, :] & (noisy >= DENOISE * scale), noisy, 0.0)
    selection = {
        "rho": totals.rho,
        "noise_scale": round(totals.scale, 4),
        "cut": round(totals.cut, 2),
        "codes_kept": int(chosen.sum()),
    }
    return Histogram(codes=np.empty(0), kept=kept, scale=scale, cut=DENOISE * scale, rho=totals.rho + spent,
                     selection=selection)  # fmt: skip


def _z(cells: int) -> float:
    """Standard deviations above which a cell of zero patients stays with probability FALSE_KEEP over ``cells``."""
    from scipy.stats import norm

    return float(norm.isf(FALSE_KEEP / max(cells, 1)))


@contextmanager
def _mst_budget_margin() -> Iterator[None]:
    """MST's selection step in OpenDP 0.16 splits its budget over n - 1 rounds and the rounds' sum can exceed
    the part by a few ulps, so the release fails (opendp/opendp#2789). Give that step a budget smaller by one
    part in 10^9: OpenDP still checks every query against it, the guarantee is unchanged."""
    from opendp.extras.mbi import _mst

    original: Any = _mst._make_mst_select

    def select(*args: Any, d_out: float, **kwargs: Any) -> Any:
        return original(*args, d_out=d_out * (1 - 1e-9), **kwargs)

    setattr(_mst, "_make_mst_select", select)  # noqa: B010 (mypy: a module attribute of another signature)
    try:
        yield
    finally:
        setattr(_mst, "_make_mst_select", original)  # noqa: B010


def _patient_table(
    frame: pd.DataFrame, keys: dict[str, tuple[str, ...]], mechanism: str, rho: float, touching: Callable[[], None]
) -> tuple[Any, float, float]:
    """The contingency table of the patient rows (AIM or MST), its one-way noise scale and the rho spent."""
    import opendp.prelude as dp
    import polars as pl

    dp.enable_features("contrib")
    data = pl.LazyFrame({c: pl.Series(c, frame[c].tolist(), dtype=pl.String) for c in keys})
    domain = dp.lazyframe_domain([dp.series_domain(c, dp.atom_domain(T=dp.String)) for c in keys])
    unit = [dp.polars.Bound(per_group=1)]
    algorithm = dp.mbi.AIM(queries=AIM_QUERIES, rounds=AIM_ROUNDS) if mechanism == "aim" else dp.mbi.MST()
    measurement, scale, _ = dp.mbi.make_contingency_table(
        domain,
        dp.frame_distance(dp.symmetric_distance()),
        dp.zero_concentrated_divergence(),
        d_in=unit,
        d_out=float(rho),
        keys={c: list(v) for c, v in keys.items()},
        algorithm=algorithm,
    )
    spent = float(measurement.map(unit))
    touching()
    with _mst_budget_margin():
        table = measurement(data)
    return table, float(scale or 0.0), spent


def measure(
    train: Tables,
    *,
    mechanism: str,
    rho: float,
    k: int,
    reference_date: float,
    granularity: Granularity,
    step: Step,
    touching: Callable[[], None] = lambda: None,
) -> Release:
    """Spend ``rho`` on the training patients: the patient model and the code histograms (all of OpenDP's noise).

    ``touching`` is called once, just before the first mechanism reads the data: from then on the budget is spent,
    whatever fails after (the caller records the spend).
    """
    require_mbi()
    check_mechanism(mechanism)
    reference_year = int(from_days(np.array([reference_date]))[0].astype("datetime64[Y]").astype(int) + 1970)
    keys = dom.patient_keys(reference_year)
    frame, first = patient_rows(train, reference_date, reference_year)
    parts = {name: rho * share for name, share in SPLIT.items()}
    step(f"measuring the patient table ({mechanism.upper()}, rho {parts['patients']:.4g})")
    table, oneway_scale, spent_patients = _patient_table(frame, keys, mechanism, parts["patients"], touching)

    step("measuring the code histograms (Gaussian mechanism)")
    p, d = train.patients, train.diagnoses
    n = len(p)
    own = np.arange(n)
    context = _context_index(frame["chapter"].to_numpy(dtype=object))
    icd = _cells(np.zeros(n, dtype=np.int64), first["icd10_code"].to_numpy(dtype=object), dom.icd10(), own)[:1]
    orpha = _cells(context, first["orpha_code"].to_numpy(dtype=object), dom.orpha(), own)
    gene = _cells(context, first["gene_symbol"].to_numpy(dtype=object), dom.genes(), own)
    ph = train.phenotypes
    ph_who = patient_index(ph, p)
    rank = pd.Series(ph_who).groupby(ph_who).cumcount().to_numpy()  # each patient's first HPO_CAP terms
    capped = rank < dom.HPO_CAP
    hpo = _cells(context[ph_who[capped]], ph["hpo_code"].to_numpy(dtype=object)[capped], dom.hpo(), ph_who[capped])
    en = train.encounters
    en_who = patient_index(en, p)
    pair_text = (en["centre_code"].astype(str) + "\x1f" + en["encounter_type"].astype(str)).to_numpy(dtype=object)
    pairs = dom.CodeDomain(
        np.array(["\x1f".join(x) for x in dom.encounter_pairs()], dtype=object),
        {"\x1f".join(x): i for i, x in enumerate(dom.encounter_pairs())},
    )
    distinct = pd.DataFrame({"p": en_who, "v": pair_text}).drop_duplicates()
    first_pairs = distinct[distinct.groupby("p").cumcount() < dom.ENCOUNTER_CAP]
    enc = _cells(np.zeros(len(first_pairs), dtype=np.int64), first_pairs["v"].to_numpy(dtype=object), pairs,
                 first_pairs["p"].to_numpy())[:1]  # fmt: skip

    def histogram(name: str, cells: np.ndarray, codes: np.ndarray, sensitivity: int) -> Histogram:
        measure = _selected if name == "hpo" else _gaussian
        return replace(measure(cells, sensitivity, parts[name], k), codes=codes)

    histograms = {
        "icd10": histogram("icd10", icd, dom.icd10().codes, 1),
        "orpha": histogram("orpha", orpha, dom.orpha().codes, 1),
        "gene": histogram("gene", gene, dom.genes().codes, 1),
        "hpo": histogram("hpo", hpo, dom.hpo().codes, math.ceil(math.sqrt(dom.HPO_CAP))),
        "encounters": histogram("encounters", enc, pairs.codes, math.ceil(math.sqrt(dom.ENCOUNTER_CAP))),
    }
    del d
    spent = spent_patients + sum(h.rho for h in histograms.values())
    return Release(
        mechanism=mechanism,
        rho=spent,
        k=k,
        reference_year=reference_year,
        horizon=reference_date,
        granularity=granularity,
        table=table,
        oneway_scale=oneway_scale,
        parts={"patients": spent_patients, **{name: h.rho for name, h in histograms.items()}},
        **histograms,
    )


def _common_only(
    values: np.ndarray, estimate: dict[object, float], cut: float, rng: np.random.Generator, *, required: bool
) -> np.ndarray:
    """Values whose estimated count is under ``cut`` replaced by kept ones at their estimated shares (missing
    stays missing unless the schema ``required`` a value); all missing when none is kept."""
    kept = {v: c for v, c in estimate.items() if v is not None and c >= cut}
    out = np.asarray(values, dtype=object).copy()
    bad = np.array([(v is not None or required) and v not in kept for v in out], dtype=bool)
    if not bad.any():
        return out
    if not kept:
        out[bad] = None
        return out
    names = np.array(list(kept), dtype=object)
    weights = np.array(list(kept.values()), dtype=np.float64)
    out[bad] = names[rng.choice(len(names), size=int(bad.sum()), p=weights / weights.sum())]
    return out


GATED = ("sex", "vital_status", "country", "canton", "status")  # patient columns whose rare values a gate refuses
REQUIRED = ("sex", "vital_status", "country")  # never missing in an extract


def _draw_patients(release: Release, n: int, rng: np.random.Generator, seed: int) -> pd.DataFrame:
    keys = dom.patient_keys(release.reference_year)
    with seeded(seed):
        rows = release.table.synthesize(rows=n, method="sample").to_pandas()
    for column in keys:
        rows[column] = rows[column].astype(object).where(rows[column].notna(), None)
    cut = release.patient_cut()
    for column in GATED:
        rows[column] = _common_only(
            rows[column].to_numpy(dtype=object), release.estimates(column), cut, rng, required=column in REQUIRED
        )
    return rows


def generate(release: Release, n: int | None, *, seed: int, taken: set[str]) -> Tables:
    """``n`` synthetic patients (``None``: as many as the release's noisy total) and their rows from ``release``
    alone (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    if n is None:
        n = max(round(float(release.table.model.total)), 1)
    rows = _draw_patients(release, n, rng, seed)
    horizon = release.horizon
    n_dx = dom.N_DIAGNOSES.draw(rows["n_diagnoses"].to_numpy(dtype=object), rng, whole=True)
    n_dx = np.nan_to_num(n_dx, nan=0.0).astype(np.int64)
    status = rows["status"].to_numpy(dtype=object)
    statuses = [s for s in ("confirmed", "suspected", "undiagnosed") if s in set(status[status != None])]  # noqa: E711
    has_dx = n_dx > 0
    missing_status = has_dx & np.array([s is None for s in status])
    if missing_status.any():
        status[missing_status] = rng.choice(statuses or ["confirmed"], size=int(missing_status.sum()))
    status[~has_dx] = None

    back = dom.ANCHOR_BACK.draw(rows["anchor_back"].to_numpy(dtype=object), rng)
    back = np.where(np.isnan(back), dom.ANCHOR_BACK.draw(np.array(["00"] * n, dtype=object), rng), back)
    anchor = horizon - np.floor(back)
    delay = np.floor(np.nan_to_num(dom.DELAY.draw(rows["delay"].to_numpy(dtype=object), rng), nan=0.0))
    age = dom.ONSET_AGE.draw(rows["onset_age"].to_numpy(dtype=object), rng)
    age = np.where(np.isnan(age), rng.random(n) * 60, age)
    diag = np.where(has_dx, anchor, np.nan)
    onset = np.where(has_dx, anchor - np.where(has_dx, delay, 0.0), np.nan)
    birth = np.floor(np.where(has_dx, onset, anchor) - np.round(age * YEAR))
    offset = np.nan_to_num(dom.CONTACT_OFFSET.draw(rows["contact_offset"].to_numpy(dtype=object), rng), nan=0.0)
    contact = np.clip(np.floor(anchor + offset), birth, horizon)
    # A birth outside the public range of years moves inside it (and the timeline with it).
    births = dom.birth_bins(release.reference_year)
    lowest = float(np.datetime64(f"{int(births.edges[0])}-01-01", "D").astype(np.int64))
    shift = np.maximum(lowest - birth, 0.0)
    birth, onset, diag = birth + shift, onset + shift, diag + shift
    contact = np.clip(contact + shift, birth, horizon)
    overshoot = np.maximum(np.fmax(diag, contact) - horizon, 0.0)
    birth, onset, diag, contact = birth - overshoot, onset - overshoot, diag - overshoot, contact - overshoot

    dead = rows["vital_status"].to_numpy(dtype=object) == "dead"
    start = np.fmax(diag, contact)
    death = np.where(dead, np.floor(start + rng.random(n) * np.maximum(horizon - start, 0.0)), np.nan)
    end = np.where(np.isnan(death), horizon, death)

    chapters = np.array([c for c in rows["chapter"].to_numpy(dtype=object)], dtype=object)
    context = _context_index(chapters)
    # The first diagnosis: ICD-10 code in the chapter, ORPHA code and gene in the code's chapter.
    icd_first = (
        release.icd10.draw(np.zeros(n, dtype=np.int64), rng)
        if not has_dx.any()
        else _icd_in_chapter(release.icd10, context, rng)
    )
    code_context = dom.icd10_chapter_index()[[dom.icd10().index.get(c, 0) if c is not None else 0 for c in icd_first]]
    undiagnosed = orpha_id(UNDIAGNOSED_ORPHA)
    orpha_first = release.orpha.draw(code_context, rng, exclude={undiagnosed})
    orpha_first[status == "undiagnosed"] = undiagnosed
    genetic = (rows["genetic"].to_numpy(dtype=object) == "yes") & has_dx
    gene_first = _where(genetic, release.gene.draw(code_context, rng))
    coded = ~has_dx | (np.array([c is not None for c in icd_first]) & np.array([c is not None for c in orpha_first]))
    if not has_dx.any() or not coded[has_dx].any():
        raise TooRare(
            "the release gives no synthetic patient a coded diagnosis (the cut of the code histograms is "
            f"{release.icd10.cut:.1f} patients): a larger budget or a larger extract"
        )
    # A patient whose diagnosis found no code keeps none (no diagnosis row): they count among the undiagnosed.
    has_dx &= coded
    n_dx = np.where(has_dx, np.maximum(n_dx, 1), 0)
    status[~has_dx] = None

    diagnoses = _diagnoses(
        release, rng, has_dx, n_dx, status, icd_first, orpha_first, gene_first, birth, onset, diag, end, delay
    )
    n_ph = np.nan_to_num(dom.N_PHENOTYPES.draw(rows["n_phenotypes"].to_numpy(dtype=object), rng, whole=True), nan=0)
    terms = release.hpo.draw_distinct(code_context * has_dx + (~has_dx) * (len(dom.contexts()) - 1), n_ph, rng)
    ph_who = np.repeat(np.arange(n), [len(t) for t in terms])
    ph_codes = np.concatenate([t for t in terms]) if len(ph_who) else np.empty(0, dtype=object)
    ph_start = np.where(np.isnan(onset), birth, onset)[ph_who]
    ph_day = np.floor(ph_start + rng.random(len(ph_who)) * np.maximum(end[ph_who] - ph_start, 0.0))
    n_en = np.nan_to_num(dom.N_ENCOUNTERS.draw(rows["n_encounters"].to_numpy(dtype=object), rng, whole=True), nan=0)
    en_who = np.repeat(np.arange(n), n_en.astype(np.int64))
    pair = release.encounters.draw(np.zeros(len(en_who), dtype=np.int64), rng)
    keep = np.array([x is not None for x in pair], dtype=bool)
    en_who, pair = en_who[keep], pair[keep]
    centre = np.array([str(x).split("\x1f")[0] for x in pair], dtype=object)
    kind = np.array([str(x).split("\x1f")[1] for x in pair], dtype=object)
    country = {c.code: c.country for c in CENTRES}
    en_day = np.floor(contact[en_who] + rng.random(len(en_who)) * np.maximum(end[en_who] - contact[en_who], 0.0))

    months = birth.astype(np.int64).astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    names = fresh_pseudonyms(rng, n, taken)
    g = release.granularity

    def date(days: np.ndarray) -> np.ndarray:
        return from_days(month_start(days) if g.events == "month" else days)

    patients = pd.DataFrame(
        {
            KEY: names,
            "birth_year": months // 12 + 1970,
            "birth_month": (months % 12 + 1).astype(np.float64) if g.birth == "year-month" else np.full(n, np.nan),
            "sex": rows["sex"].to_numpy(dtype=object),
            "vital_status": rows["vital_status"].to_numpy(dtype=object),
            "death_date": date(death),
            "canton": rows["canton"].to_numpy(dtype=object),
            "country": rows["country"].to_numpy(dtype=object),
            "cross_border_insured": _bool(rows["cross_border_insured"]),
            "first_contact_date": date(contact),
            "consent_reuse": _bool(rows["consent_reuse"]),
            "agrees_to_contact": _bool(rows["agrees_to_contact"]),
        }
    )
    order = np.argsort(names, kind="stable")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)

    def child(who: np.ndarray, day: np.ndarray, columns: dict[str, np.ndarray]) -> pd.DataFrame:
        frame = pd.DataFrame({KEY: names[who], "_rank": rank[who], "_day": day, **columns})
        frame = frame.sort_values(["_rank", "_day"], kind="stable").drop(columns=["_rank", "_day"])
        return frame.reset_index(drop=True)

    dx_who = diagnoses.pop("_p").to_numpy(dtype=np.int64)
    dx_order = diagnoses.pop("_order").to_numpy(dtype=np.float64)
    diagnoses = diagnoses.assign(
        onset_date=date(diagnoses["onset_date"].to_numpy(dtype=np.float64)),
        diagnosis_date=date(diagnoses["diagnosis_date"].to_numpy(dtype=np.float64)),
    )
    return Tables(
        patients=patients.iloc[order].reset_index(drop=True),
        diagnoses=child(dx_who, dx_order, {c: diagnoses[c].to_numpy() for c in diagnoses.columns}),
        phenotypes=child(ph_who, ph_day, {"hpo_code": ph_codes, "observed_date": date(ph_day)}),
        encounters=child(
            en_who,
            en_day,
            {
                "encounter_date": date(en_day),
                "centre_code": centre,
                "centre_country": np.array([country[c] for c in centre], dtype=object),
                "encounter_type": kind,
            },
        ),
    )


def _icd_in_chapter(h: Histogram, context: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An ICD-10 code per row from the kept cells of the row's chapter (any chapter's where its own has none)."""
    chapter = dom.icd10_chapter_index()
    weights = h.kept[0]
    out = np.full(len(context), None, dtype=object)
    for c in np.unique(context):
        rows = np.nonzero(context == c)[0]
        w = np.where(chapter == c, weights, 0.0)
        if w.sum() <= 0:
            w = weights
        if w.sum() <= 0:
            continue
        out[rows] = h.codes[rng.choice(len(w), size=len(rows), p=w / w.sum())]
    return out


def _diagnoses(
    release: Release,
    rng: np.random.Generator,
    has_dx: np.ndarray,
    n_dx: np.ndarray,
    status: np.ndarray,
    icd_first: np.ndarray,
    orpha_first: np.ndarray,
    gene_first: np.ndarray,
    birth: np.ndarray,
    onset: np.ndarray,
    diag: np.ndarray,
    end: np.ndarray,
    delay: np.ndarray,
) -> pd.DataFrame:
    """Every diagnosis row: the first from the patient's draw, later ones from the same histograms."""
    first = np.nonzero(has_dx)[0]
    extra = np.where(has_dx, n_dx - 1, 0)
    who2 = np.repeat(np.arange(len(n_dx)), extra)
    m = len(who2)
    icd2 = release.icd10.draw(np.zeros(m, dtype=np.int64), rng)
    context2 = dom.icd10_chapter_index()[[dom.icd10().index.get(c, 0) if c is not None else 0 for c in icd2]]
    undiagnosed = orpha_id(UNDIAGNOSED_ORPHA)
    orpha2 = release.orpha.draw(context2, rng, exclude={undiagnosed})
    confirmed = [s for s in ("confirmed", "suspected") if s in set(status[first])] or ["confirmed"]
    status2 = rng.choice(confirmed, size=m).astype(object)
    onset2 = np.floor(birth[who2] + rng.random(m) * np.maximum(end[who2] - birth[who2], 0.0))
    diag2 = np.minimum(onset2 + delay[who2], end[who2])
    ok = np.array([a is not None and b is not None for a, b in zip(icd2, orpha2, strict=True)], dtype=bool)
    firsts = pd.DataFrame(
        {
            "_p": first,
            "_order": 0.0,
            "orpha_code": orpha_first[first],
            "icd10_code": icd_first[first],
            "status": status[first],
            "onset_date": onset[first],
            "diagnosis_date": diag[first],
            "gene_symbol": gene_first[first],
        }
    )
    seconds = pd.DataFrame(
        {
            "_p": who2[ok],
            "_order": np.arange(1, m + 1, dtype=np.float64)[ok],
            "orpha_code": orpha2[ok],
            "icd10_code": icd2[ok],
            "status": status2[ok],
            "onset_date": onset2[ok],
            "diagnosis_date": diag2[ok],
            "gene_symbol": None,
        }
    )
    rows = pd.concat([firsts, seconds], ignore_index=True)
    who = rows["_p"].to_numpy(dtype=np.int64)
    o = rows["onset_date"].to_numpy(dtype=np.float64)
    dgn = rows["diagnosis_date"].to_numpy(dtype=np.float64)
    rows["onset_age_years"] = np.round((o - birth[who]) / YEAR, 1)
    rows["diagnostic_delay_days"] = (dgn - o).astype(np.int64)
    # No variant: an HGVS expression is in no public list (the space is unbounded), and a random one can
    # coincide with a real patient's, which the rare-value gate refuses. The gene stays.
    rows["variant_hgvs"] = None
    return rows


def count_bounds() -> dict[str, tuple[int, int]]:
    """Per child table: the fewest and most rows a DP twin gives a patient (public: the bins' ends)."""
    return {
        "diagnoses": (0, dom.N_DIAGNOSES.top),
        "phenotypes": (0, dom.N_PHENOTYPES.top),
        "encounters": (0, dom.N_ENCOUNTERS.top),
    }


def _where(condition: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``values`` where ``condition`` holds, else missing (``None``)."""
    out = np.full(len(condition), None, dtype=object)
    out[condition] = np.asarray(values, dtype=object)[condition]
    return out


def _bool(values: pd.Series) -> np.ndarray:
    return values.astype(object).map({"yes": True, "no": False}).astype(object).to_numpy(dtype=object)
