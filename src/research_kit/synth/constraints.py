"""The rules every published twin keeps, counted: a twin is published only with zero violations.

The same checks hold for a real extract (the tests run them on one): dates
in order (birth <= onset <= diagnosis, nothing after death or the horizon,
death only for dead patients), ages and delays consistent with the dates at
the extract's granularity, every code valid in its code system, every child
row belonging to a patient, and per-patient counts within bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from research_kit.ingest.validate import HGVS
from research_kit.model import geography
from research_kit.model.codes import UNDIAGNOSED_ORPHA, hpo_id, icd10_codes, load_code_systems, orpha_id
from research_kit.model.tables import CENTRES, DIAGNOSIS_STATUSES, ENCOUNTER_TYPES, SEXES, VITAL_STATUSES
from research_kit.pseudonymise.pseudonyms import PSEUDONYM_HEX
from research_kit.synth.tables import KEY, YEAR, Granularity, Tables, birth_days, counts, to_days

ROUNDING_DAYS = 0.05 * YEAR  # ages are published to one decimal
VARIANT = HGVS.replace("(", "(?:")  # ingest's rule, without capture groups (pandas warns about them)


@dataclass(frozen=True)
class Bounds:
    """What a check needs beyond the tables: granularity, the last allowed day, per-patient count ranges."""

    granularity: Granularity
    horizon: float  # days since 1970-01-01
    counts: dict[str, tuple[int, int]]  # table -> (fewest, most) rows per patient
    max_shift_days: int = 0


def _spans(g: Granularity, max_shift_days: int) -> tuple[float, float, float]:
    """How far an exact birth may lie after its published day, and an exact event before/after its published day."""
    birth = 365.0 if g.birth == "year" else 30.0
    if g.events == "month":
        return birth, 0.0, 30.0
    return birth, float(max_shift_days), float(max_shift_days)


def check(t: Tables, b: Bounds) -> dict[str, int]:
    """Violations per rule (every rule is listed, most with zero)."""
    codes = load_code_systems()
    p, d, ph, en = t.patients, t.diagnoses, t.phenotypes, t.encounters
    out: dict[str, int] = {}
    names = p[KEY].astype(str)
    out["patients.pseudonym_format"] = int((~names.str.fullmatch(f"[0-9a-f]{{{PSEUDONYM_HEX}}}")).sum())
    out["patients.pseudonym_unique"] = int(names.duplicated().sum())
    months = p["birth_month"]
    if b.granularity.birth == "year":
        out["patients.birth_month"] = int(months.notna().sum())
    else:
        out["patients.birth_month"] = int((~months.isin(range(1, 13))).sum())
    birth = birth_days(p)
    dead = (p["vital_status"] == "dead").to_numpy()
    death = to_days(p["death_date"])
    contact = to_days(p["first_contact_date"])
    out["patients.death_only_if_dead"] = int((np.isnan(death) == dead).sum())
    out["patients.death_before_birth"] = int((death < birth).sum())
    out["patients.contact_before_birth"] = int((contact < birth).sum())
    out["patients.contact_after_death"] = int((contact > death).sum())
    out["patients.after_horizon"] = int(((death > b.horizon) | (contact > b.horizon) | (birth > b.horizon)).sum())
    out["patients.sex"] = int((~p["sex"].isin(SEXES)).sum())
    out["patients.vital_status"] = int((~p["vital_status"].isin(VITAL_STATUSES)).sum())
    out["patients.country"] = int((~p["country"].astype(str).str.fullmatch("[A-Z]{2}")).sum())
    out["patients.canton"] = int((p["canton"].notna() & ~p["canton"].isin(geography.CANTONS)).sum())

    lookup = pd.Series(np.arange(len(p)), index=p[KEY].to_numpy())
    for name, frame in (("diagnoses", d), ("phenotypes", ph), ("encounters", en)):
        out[f"{name}.unknown_patient"] = int((~frame[KEY].isin(lookup.index)).sum())
        per = counts(frame, p)
        lo, hi = b.counts.get(name, (0, np.iinfo(np.int64).max))
        out[f"{name}.count_per_patient"] = int(((per < lo) | (per > hi)).sum())

    def patient_of(frame: pd.DataFrame) -> np.ndarray:
        return lookup.reindex(frame[KEY].to_numpy()).fillna(-1).to_numpy(dtype=np.int64)

    birth_span, before, after = _spans(b.granularity, b.max_shift_days)
    w = patient_of(d)
    known = w >= 0
    onset, diag = to_days(d["onset_date"]), to_days(d["diagnosis_date"])
    db = np.where(known, birth[np.maximum(w, 0)], np.nan)
    dd = np.where(known, death[np.maximum(w, 0)], np.nan)
    out["diagnoses.onset_before_birth"] = int((onset < db - before).sum())
    out["diagnoses.onset_after_diagnosis"] = int((onset > diag).sum())
    out["diagnoses.after_death"] = int(((diag > dd + after) | (onset > dd + after)).sum())
    out["diagnoses.after_horizon"] = int(((diag > b.horizon) | (onset > b.horizon)).sum())
    age_days = d["onset_age_years"].to_numpy(dtype=np.float64) * YEAR
    low = onset - before - (db + birth_span) - ROUNDING_DAYS - 1
    high = onset + after - db + ROUNDING_DAYS + 1
    out["diagnoses.onset_age"] = int(((age_days < 0) | (age_days < low) | (age_days > high)).sum())
    delay = d["diagnostic_delay_days"].to_numpy(dtype=np.float64)
    slack = 30.0 if b.granularity.events == "month" else 0.0
    out["diagnoses.delay"] = int(((delay < 0) | (np.abs(delay - (diag - onset)) > slack + 0.5)).sum())
    orpha = {orpha_id(o) for o in codes.orpha_codes}
    undiagnosed = orpha_id(UNDIAGNOSED_ORPHA)
    out["diagnoses.orpha_code"] = int((~d["orpha_code"].isin(orpha)).sum())
    out["diagnoses.icd10_code"] = int((~d["icd10_code"].isin(icd10_codes())).sum())
    out["diagnoses.status"] = int((~d["status"].isin(DIAGNOSIS_STATUSES)).sum())
    out["diagnoses.undiagnosed_code"] = int(((d["status"] == "undiagnosed") != (d["orpha_code"] == undiagnosed)).sum())
    gene, variant = d["gene_symbol"], d["variant_hgvs"]
    out["diagnoses.gene_symbol"] = int((gene.notna() & ~gene.isin(codes.genes)).sum())
    out["diagnoses.variant_hgvs"] = int(
        (variant.notna() & (gene.isna() | ~variant.astype(str).str.contains(VARIANT))).sum()
    )

    hpo = {hpo_id(h) for h in codes.hpo_names}
    w = patient_of(ph)
    observed = to_days(ph["observed_date"])
    pb = np.where(w >= 0, birth[np.maximum(w, 0)], np.nan)
    pd_ = np.where(w >= 0, death[np.maximum(w, 0)], np.nan)
    out["phenotypes.hpo_code"] = int((~ph["hpo_code"].isin(hpo)).sum())
    out["phenotypes.duplicate_term"] = int(ph.duplicated([KEY, "hpo_code"]).sum())
    out["phenotypes.before_birth"] = int((observed < pb - before).sum())
    out["phenotypes.after_death"] = int((observed > pd_ + after).sum())
    out["phenotypes.after_horizon"] = int((observed > b.horizon).sum())

    w = patient_of(en)
    day = to_days(en["encounter_date"])
    eb = np.where(w >= 0, birth[np.maximum(w, 0)], np.nan)
    ed = np.where(w >= 0, death[np.maximum(w, 0)], np.nan)
    centres = {c.code: c.country for c in CENTRES}
    out["encounters.centre_code"] = int((~en["centre_code"].isin(centres)).sum())
    out["encounters.centre_country"] = int((en["centre_code"].map(centres) != en["centre_country"]).sum())
    out["encounters.encounter_type"] = int((~en["encounter_type"].isin(ENCOUNTER_TYPES)).sum())
    out["encounters.before_birth"] = int((day < eb - before).sum())
    out["encounters.after_death"] = int((day > ed + after).sum())
    out["encounters.after_horizon"] = int((day > b.horizon).sum())
    return out


def rare_values(twin: Tables, allowed: dict[str, set[str]], forbidden: dict[str, set[str]]) -> dict[str, int]:
    """Per ``table.column``: twin values outside ``allowed`` (codes: values held by at least k real
    patients) plus twin values in ``forbidden`` (values held by fewer than k real patients)."""
    out: dict[str, int] = {}
    for key in sorted(set(allowed) | set(forbidden)):
        table, column = key.split(".")
        series = twin.as_dict()[table][column].dropna().astype(str)
        bad = series.isin(forbidden.get(key, set()))
        if key in allowed:
            bad |= ~series.isin(allowed[key])
        out[key] = int(bad.sum())
    return out
