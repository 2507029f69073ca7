"""The shape of a simulated registry, gathered chunk by chunk in bounded memory.

Aggregates only (counts per disease, a histogram of delays): no row and no
identifier is kept, so the summary may be printed.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

MAX_DELAY_DAYS = 60 * 366


@dataclass
class Shape:
    patients: int = 0
    cross_border: int = 0
    dead: int = 0
    childhood_onset: int = 0  # primary diagnosis with onset before age 16
    per_disease: Counter[str] = field(default_factory=Counter)  # ORPHA code -> patients
    delay_hist: np.ndarray = field(default_factory=lambda: np.zeros(MAX_DELAY_DAYS + 1, dtype=np.int64))

    def update(self, frames: dict[str, pd.DataFrame]) -> None:
        pat, dia = frames["patients"], frames["diagnoses"]
        self.patients += len(pat)
        self.cross_border += int((pat["cross_border_insured"] == "yes").sum())
        self.dead += int((pat["vital_status"] == "dead").sum())
        diagnosed = dia[dia["status"] != "undiagnosed"]
        self.per_disease.update(diagnosed.drop_duplicates(["national_id", "orpha_code"])["orpha_code"].to_numpy())
        primary = dia.drop_duplicates("national_id").merge(pat[["national_id", "date_of_birth"]], on="national_id")
        onset = pd.to_datetime(primary["onset_date"])
        delay = (pd.to_datetime(primary["diagnosis_date"]) - onset).dt.days.to_numpy()
        self.delay_hist += np.bincount(np.clip(delay, 0, MAX_DELAY_DAYS), minlength=MAX_DELAY_DAYS + 1)
        age = (onset - pd.to_datetime(primary["date_of_birth"])).dt.days / 365.25
        self.childhood_onset += int((age < 16).sum())

    def delay_years(self, q: float) -> float:
        cum = np.cumsum(self.delay_hist)
        return float(np.searchsorted(cum, q * cum[-1]) / 365.25) if cum[-1] else 0.0

    def mean_delay_years(self) -> float:
        total = self.delay_hist.sum()
        return float((np.arange(len(self.delay_hist)) * self.delay_hist).sum() / total / 365.25) if total else 0.0

    def summary(self, names: dict[str, str]) -> dict[str, object]:
        counts = np.array(list(self.per_disease.values()))
        return {
            "patients": self.patients,
            "distinct_diseases": len(self.per_disease),
            "diseases_with_1_or_2_patients": int((counts <= 2).sum()),
            "diseases_with_100_or_more": int((counts >= 100).sum()),
            "top_diseases": [
                {"orpha": code, "name": names.get(code, ""), "patients": n}
                for code, n in self.per_disease.most_common(5)
            ],
            "diagnostic_delay_years": {
                "mean": round(self.mean_delay_years(), 2),
                "median": round(self.delay_years(0.5), 2),
                "p90": round(self.delay_years(0.9), 2),
            },
            "childhood_onset_share": round(self.childhood_onset / self.patients, 3) if self.patients else 0.0,
            "cross_border_share": round(self.cross_border / self.patients, 3) if self.patients else 0.0,
            "deaths": self.dead,
        }
