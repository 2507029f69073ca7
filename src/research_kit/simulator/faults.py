"""Realistic faults injected into a simulated export, each recorded in a sidecar: the ingest oracle.

Every faulty row carries exactly one fault, so its expected quarantine reason
is unambiguous. A patient row that must be quarantined takes its child rows
(diagnoses, phenotypes, encounters) with it: those are listed too, as
``patient_quarantined``. Stray whitespace and case are faults an ingest must
normalise and report but not quarantine (``quarantine: false``).

Rows are numbered from 1 within each table's file, the header excluded.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import date

import numpy as np
import pandas as pd

from research_kit.model.disease_codes import INVALID, check_code
from research_kit.model.national_id import make as make_national_id

RATE = 0.0015  # share of a table's rows given each kind of fault (at least one each)


@dataclass(frozen=True)
class Fault:
    table: str
    row: int | None  # 1-based data row; None for a whole-file fault
    field: str | None
    kind: str
    quarantine: bool
    detail: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


class _Picker:
    """Draws disjoint rows of one table, so that no row gets two faults."""

    def __init__(self, rng: np.random.Generator, size: int, eligible: np.ndarray | None = None) -> None:
        self.rng = rng
        self.free = np.ones(size, dtype=bool) if eligible is None else eligible.astype(bool).copy()

    def take(self, count: int, where: np.ndarray | None = None) -> np.ndarray:
        pool = np.nonzero(self.free if where is None else self.free & where)[0]
        chosen = np.sort(self.rng.choice(pool, size=min(count, len(pool)), replace=False))
        self.free[chosen] = False
        return chosen


def _count(n: int) -> int:
    return max(1, round(n * RATE))


def _shift_days(iso: str, days: int) -> str:
    return date.fromordinal(date.fromisoformat(iso).toordinal() + days).isoformat()


Columns = dict[str, np.ndarray]  # one table: column name -> object array of its text values


class _Faults:
    """Collects faults as (table, row in chunk, field, kind, quarantine, detail)."""

    def __init__(self) -> None:
        self.found: list[tuple[str, int, str, str, bool, str]] = []

    def add(self, table: str, row: int, field: str, kind: str, detail: str, *, quarantine: bool = True) -> None:
        self.found.append((table, int(row), field, kind, quarantine, detail))


def inject(
    rng: np.random.Generator, frames: dict[str, pd.DataFrame], offsets: dict[str, int], as_of: date
) -> tuple[dict[str, pd.DataFrame], list[Fault]]:
    """Faults in one chunk's frames (returned as new frames); ``offsets``: rows of each table written before."""
    tables: dict[str, Columns] = {
        name: {c: frame[c].to_numpy(dtype=object).copy() for c in frame.columns} for name, frame in frames.items()
    }
    out = _Faults()
    bad_patients = _patient_faults(rng, tables, out, offsets, as_of)
    birth_of = dict(zip(tables["patients"]["national_id"], tables["patients"]["date_of_birth"], strict=True))
    never_issued = [
        make_national_id(
            date(1900 + int(rng.integers(0, 24)), 1 + int(rng.integers(0, 12)), 1 + int(rng.integers(0, 28))),
            int(rng.integers(0, 1000)),
        )
        for _ in range(64)
    ]
    for table in ("diagnoses", "phenotypes", "encounters"):
        cols = tables[table]
        ids = cols["national_id"]
        of_bad = np.isin(ids, list(bad_patients))
        for i in np.nonzero(of_bad)[0]:
            out.add(table, i, "national_id", "patient_quarantined", f"its patient has {bad_patients[ids[i]]}")
        pick = _Picker(rng, len(ids), eligible=~of_bad)
        m = len(ids)
        for i in pick.take(_count(m)):
            ids[i] = never_issued[int(rng.integers(0, len(never_issued)))]
            out.add(table, i, "national_id", "unknown_patient", "no such patient in the export")
        if table == "diagnoses":
            _diagnosis_faults(rng, cols, pick, out, birth_of)
        elif table == "phenotypes":
            for i in pick.take(_count(m)):
                cols["hpo_code"][i] = f"HP:{9_900_000 + int(rng.integers(0, 99_999)):07d}"
                out.add(table, i, "hpo_code", "unknown_code", "HPO term does not exist")
            for i in pick.take(_count(m)):
                cols["hpo_code"][i] = ""
                out.add(table, i, "hpo_code", "missing_mandatory", "hpo_code left empty")
        else:
            for i in pick.take(_count(m)):
                cols["encounter_date"][i] = UNPARSEABLE[int(rng.integers(0, len(UNPARSEABLE)))]
                out.add(table, i, "encounter_date", "unparseable_date", "not a date")
            for i in pick.take(_count(m)):
                cols["encounter_date"][i] = _far_future(rng, cols["encounter_date"][i], as_of)
                out.add(table, i, "encounter_date", "future_date", "date after the export")

    faults = [Fault(t, int(offsets[t] + i + 1), fld, kind, q, detail) for t, i, fld, kind, q, detail in out.found]
    faults.sort(key=lambda x: (x.table, x.row or 0))
    return {name: pd.DataFrame(cols) for name, cols in tables.items()}, faults


UNPARSEABLE = ("unknown", "n/a", "??/??/????", "32.01.2020", "2020/1/1/1", "-", "14-03-1985")


def _far_future(rng: np.random.Generator, iso: str, as_of: date) -> str:
    # A typist's slip in the year sends the date decades past the export.
    return f"{as_of.year + 60 + int(rng.integers(0, 20))}{iso[4:]}".replace("-02-29", "-02-28")


def _patient_faults(
    rng: np.random.Generator, tables: dict[str, Columns], out: _Faults, offsets: dict[str, int], as_of: date
) -> dict[str, str]:
    """Faults in patient rows; returns national ID (as it now stands) -> kind, for rows to quarantine."""
    pat = tables["patients"]
    n = len(pat["national_id"])
    pick = _Picker(rng, n)
    bad: dict[str, str] = {}

    def mark(i: int, field: str, kind: str, detail: str) -> None:
        bad[pat["national_id"][i]] = kind
        out.add("patients", i, field, kind, detail)

    for i in pick.take(_count(n)):
        old = pat["national_id"][i]
        new = old[:12] + str((int(old[12]) + 1 + int(rng.integers(0, 9))) % 10)
        pat["national_id"][i] = new
        for child in ("diagnoses", "phenotypes", "encounters"):  # the slip is in the master record
            ids = tables[child]["national_id"]
            ids[ids == old] = new
        mark(i, "national_id", "bad_check_digit", "check digit altered")
    for i in pick.take(_count(n)):
        field = ("sex", "date_of_birth", "vital_status")[int(rng.integers(0, 3))]
        pat[field][i] = ""
        mark(i, field, "missing_mandatory", f"{field} left empty")
    for i in pick.take(_count(n)):
        pat["date_of_birth"][i] = UNPARSEABLE[int(rng.integers(0, len(UNPARSEABLE)))]
        mark(i, "date_of_birth", "unparseable_date", "not a date")
    for i in pick.take(_count(n)):
        pat["first_contact_date"][i] = f"{pat['date_of_birth'][i][:4]}-02-30"
        mark(i, "first_contact_date", "impossible_date", "no such day")
    for i in pick.take(_count(n)):
        pat["vital_status"][i] = "dead"
        pat["date_of_death"][i] = _shift_days(pat["date_of_birth"][i], -int(rng.integers(30, 4000)))
        mark(i, "date_of_death", "death_before_birth", "death dated before birth")
    for i in pick.take(_count(n)):
        pat["first_contact_date"][i] = _far_future(rng, pat["first_contact_date"][i], as_of)
        mark(i, "first_contact_date", "future_date", "date after the export")
    for i in pick.take(_count(n) * 3):
        field = ("first_name", "sex", "vital_status", "canton")[int(rng.integers(0, 4))]
        pat[field][i] = f"  {pat[field][i].upper()} " if pat[field][i] else " "
        out.add("patients", i, field, "whitespace_case", "stray spaces and upper case", quarantine=False)
    dups = pick.take(_count(n))
    for name, values in pat.items():
        pat[name] = np.concatenate([values, values[dups]])
    for j, original in enumerate(dups):
        out.add(
            "patients", n + j, "national_id", "duplicate_patient", f"repeats row {offsets['patients'] + original + 1}"
        )
    return bad


def _not_icd10(rng: np.random.Generator) -> str:
    """A well-shaped ICD-10 code that WHO does not have and that extends no WHO code (a national modification
    one level below an undivided WHO code is accepted as unlisted, so it would be no fault)."""
    while True:
        code = f"{chr(65 + int(rng.integers(0, 26)))}{int(rng.integers(0, 100)):02d}.{int(rng.integers(0, 10))}"
        if check_code(code, "ICD10").status == INVALID:
            return code


def _diagnosis_faults(
    rng: np.random.Generator, cols: Columns, pick: _Picker, out: _Faults, birth_of: dict[str, str]
) -> None:
    m = len(cols["national_id"])
    for i in pick.take(_count(m)):
        # A typo in the prefix: not a code of any system (a well-formed ORPHA number missing from the offline list
        # is accepted and counted as not checked, so it is no fault).
        cols["orpha_code"][i] = f"ORPH:{1 + int(rng.integers(0, 99_999))}"
        out.add("diagnoses", i, "orpha_code", "unknown_code", "ORPHA code with a misspelt prefix")
    for i in pick.take(_count(m), where=cols["icd10_code"] != "R69"):
        cols["icd10_code"][i] = _not_icd10(rng)
        out.add("diagnoses", i, "icd10_code", "unknown_code", "ICD-10 code does not exist")
    for i in pick.take(_count(m), where=cols["onset_date"] < cols["diagnosis_date"]):
        cols["onset_date"][i], cols["diagnosis_date"][i] = cols["diagnosis_date"][i], cols["onset_date"][i]
        out.add("diagnoses", i, "onset_date", "onset_after_diagnosis", "onset and diagnosis dates swapped")
    for i in pick.take(_count(m)):
        cols["onset_date"][i] = _shift_days(birth_of[cols["national_id"][i]], -int(rng.integers(20, 2000)))
        out.add("diagnoses", i, "onset_date", "onset_before_birth", "onset dated before birth")
    for i in pick.take(_count(m)):
        field = ("code", "status")[int(rng.integers(0, 2))]
        for column in ("orpha_code", "icd10_code") if field == "code" else (field,):
            cols[column][i] = ""
        out.add("diagnoses", i, field, "missing_mandatory", f"{field} left empty")
    for i in pick.take(_count(m)):
        cols["status"][i] = f" {cols['status'][i].capitalize()}  "
        out.add("diagnoses", i, "status", "whitespace_case", "stray spaces and capitals", quarantine=False)
