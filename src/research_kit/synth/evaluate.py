"""How good and how private a twin is: SDV's quality and diagnostic reports, SDMetrics and anonymeter.

Quality: ``sdv.evaluation.evaluate_quality`` and ``run_diagnostic`` on the
four tables at once, with a metadata that declares the patient table's key
and the three relationships (column shapes, column-pair trends, cardinality
of children per patient, trends across relationships). The real side is the
training patients: what the model saw.

Privacy is measured on patient profiles (:mod:`research_kit.synth.profiles`):
SDMetrics' DCRBaselineProtection (and, as references that the policy does
not gate on, the same figure for held-out real patients and
DCROverfittingProtection) and NewRowSynthesis; anonymeter's singling-out,
linkability and inference risks, with the held-out patients as the control
set. The slow ones run on seeded subsamples whose sizes go into the report.

Only scores, column names and sizes come out of here: never a value.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from research_kit.synth import profiles
from research_kit.synth.synthesizers import library, seeded
from research_kit.synth.tables import CHILDREN, KEY, Tables

DCR_ROWS = 500  # DCR: real and synthetic rows compared per iteration (a pandas cross join: quadratic)
DCR_ITERATIONS = 1
NEW_ROW_SAMPLE = 250  # NewRowSynthesis: twin profiles checked by SDMetrics (row by row; all are checked by ours)
ATTACKS = 500  # anonymeter attacks per evaluator
ATTACK_ROWS = 5_000  # anonymeter: rows of the training, control and twin profiles (equal sizes)
# anonymeter's singling-out queries depend on the order Polars' group_by returns (not fixed), so one
# evaluation varies from run to run (measured: 0.05 to 0.11 on the same twin); the mean of a few is steadier.
SINGLING_OUT_REPEATS = 5
LINK_NEIGHBOURS = 10
# Secrets an attacker would want: the diagnosis and the genetic finding. Not vital status: with nine in ten
# patients alive, the control attack nearly always succeeds and anonymeter's residual risk, divided by
# (1 - control success), becomes noise (measured: 0.30 with a confidence interval of 0 to 0.61).
INFERENCE_SECRETS = ("orpha_code", "icd10_code", "gene_symbol")
DEMOGRAPHIC = ("birth_year", "birth_month", "sex", "canton", "country", "cross_border_insured", "first_contact_date")
CLINICAL = (
    "orpha_code", "icd10_code", "status", "onset_date", "diagnosis_date", "gene_symbol", "onset_age_years",
    "diagnostic_delay_days",
)  # fmt: skip
SDTYPES: dict[str, dict[str, str]] = {
    "patients": {
        "pseudonym": "id", "birth_year": "numerical", "birth_month": "numerical", "sex": "categorical",
        "vital_status": "categorical", "death_date": "datetime", "canton": "categorical", "country": "categorical",
        "cross_border_insured": "boolean", "first_contact_date": "datetime", "consent_reuse": "boolean",
        "agrees_to_contact": "boolean",
    },
    "diagnoses": {
        "pseudonym": "id", "orpha_code": "categorical", "icd10_code": "categorical", "status": "categorical",
        "onset_date": "datetime", "diagnosis_date": "datetime", "onset_age_years": "numerical",
        "diagnostic_delay_days": "numerical", "gene_symbol": "categorical", "variant_hgvs": "unknown",
    },
    "phenotypes": {"pseudonym": "id", "hpo_code": "categorical", "observed_date": "datetime"},
    "encounters": {
        "pseudonym": "id", "encounter_date": "datetime", "centre_code": "categorical",
        "centre_country": "categorical", "encounter_type": "categorical",
    },
}  # fmt: skip
Step = Callable[[str], None]


def metadata_dict(tables: Tables) -> dict[str, Any]:
    """SDV metadata of the four tables, written from the schema (it holds no value, unlike detected metadata).

    A column outside the schema (free text kept by the policy) is ``unknown``: never modelled nor evaluated.
    """
    out: dict[str, Any] = {"tables": {}, "relationships": []}
    for name, frame in tables.as_dict().items():
        known = SDTYPES[name]
        columns = {c: {"sdtype": known.get(c, "unknown")} for c in frame.columns}
        out["tables"][name] = {"columns": columns} | ({"primary_key": KEY} if name == "patients" else {})
    for child in CHILDREN:
        out["relationships"].append(
            {"parent_table_name": "patients", "parent_primary_key": KEY, "child_table_name": child,
             "child_foreign_key": KEY}
        )  # fmt: skip
    return out


@contextmanager
def _library_notices() -> Iterator[None]:
    """Warnings SDMetrics and anonymeter raise about their own internals, silenced narrowly."""
    with warnings.catch_warnings():
        # SDMetrics' reports call fillna on object columns (pandas deprecates the implied downcast).
        warnings.filterwarnings("ignore", message=r".*Downcasting.*", category=FutureWarning)
        # anonymeter: when no attack beats random guessing, the risk is 0 and it says so.
        warnings.filterwarnings("ignore", message=r"Attack is as good or worse as baseline", category=UserWarning)
        # anonymeter: a univariate singling-out query for a rare value that is a missing number (polars reads NaN
        # as null) compares with None, which polars warns matches no row: that query singles out no one.
        warnings.filterwarnings("ignore", message=r"Comparisons with None always result in null", category=UserWarning)
        yield


def _scores(frame: pd.DataFrame, key: str) -> dict[str, float]:
    frame = frame.dropna(subset=["Score"])
    return {str(k): round(float(v), 4) for k, v in frame.groupby(key)["Score"].mean().items()}


def quality(real: Tables, twin: Tables, *, seed: int) -> dict[str, Any]:
    """SDV quality and diagnostic reports over the four tables and their relationships."""
    sdv_evaluation = library("sdv.evaluation")
    evaluate_quality, run_diagnostic = sdv_evaluation.evaluate_quality, sdv_evaluation.run_diagnostic
    meta = library("sdv.metadata").Metadata.load_from_dict(metadata_dict(real))
    with seeded(seed), _library_notices():  # the reports subsample high-cardinality pairs with numpy's global state
        report = evaluate_quality(real.as_dict(), twin.as_dict(), meta, verbose=False)
        diagnostic = run_diagnostic(real.as_dict(), twin.as_dict(), meta, verbose=False)
    shapes = report.get_details("Column Shapes")
    pairs = report.get_details("Column Pair Trends")
    counted = pairs[pairs["Meets Threshold?"].fillna(False).astype(bool)]
    return {
        "score": round(float(report.get_score()), 4),
        "properties": {str(r["Property"]): round(float(r["Score"]), 4) for _, r in report.get_properties().iterrows()},
        "column_shapes": {
            table: _scores(shapes[shapes["Table"] == table], "Column") for table in shapes["Table"].unique()
        },
        "column_pairs": {
            "pairs": len(pairs),
            "counted": len(counted),
            "by_table": _scores(counted, "Table"),
        },
        "cardinality": _scores(report.get_details("Cardinality"), "Child Table"),
        "intertable": _scores(report.get_details("Intertable Trends"), "Child Table"),
        "diagnostic": {
            "score": round(float(diagnostic.get_score()), 4),
            "properties": {
                str(r["Property"]): round(float(r["Score"]), 4)
                for _, r in diagnostic.get_properties().iterrows()
                if pd.notna(r["Score"])
            },
        },
        "rows": {"real": real.rows(), "twin": twin.rows()},
    }


def _dates_as_days(frame: pd.DataFrame) -> pd.DataFrame:
    """The profiles with their dates as day numbers (float, NaN where missing)."""
    out = frame.copy()
    for column in profiles.DATETIME:
        stamps = out[column].to_numpy(dtype="datetime64[ns]")
        days = stamps.astype("datetime64[D]").astype(np.int64).astype(np.float64)
        days[np.isnat(stamps)] = np.nan
        out[column] = days
    return out


def _for_attacks(frame: pd.DataFrame) -> pd.DataFrame:
    """Profiles as anonymeter takes them: dates as day numbers, missing categories as their own value."""
    out = _dates_as_days(frame)
    for column in profiles.CATEGORICAL:
        out[column] = out[column].astype(object).where(out[column].notna(), "(none)")
    return out.reset_index(drop=True)


def _risk(result: Any) -> dict[str, Any]:
    return {"value": round(float(result.value), 4), "ci": [round(float(x), 4) for x in result.ci]}


def privacy(
    train: pd.DataFrame,
    control: pd.DataFrame,
    twin: pd.DataFrame,
    *,
    copies_all: int,
    seed: int,
    step: Step,
) -> dict[str, Any]:
    """Privacy figures of the twin's profiles against the training and held-out (control) profiles.

    ``copies_all``: twin profiles found to copy a real one when all of them were checked (ours).
    """
    evaluators = library("anonymeter.evaluators")
    metrics = library("sdmetrics.single_table")
    single_out, linkability, inference = (
        evaluators.SinglingOutEvaluator,
        evaluators.LinkabilityEvaluator,
        evaluators.InferenceEvaluator,
    )
    # Dates as day numbers, declared numerical: SDMetrics scales a distance by the range of the reference rows it
    # sampled, and a sparse date (the date of death in a small extract) can be missing from all of them, a range
    # of NaT it cannot divide by. As a number the range is NaN and SDMetrics' own rule decides: distance 1 for a
    # value missing on one side, 0 on both. A column no training patient has a value in tells nothing apart and
    # gives the random baseline no range to draw from; it is left out.
    empty = {c for c in train.columns if not train[c].notna().any()}
    meta = profiles.metadata()
    meta["columns"] = {
        c: ({"sdtype": "numerical"} if c in profiles.DATETIME else v)
        for c, v in meta["columns"].items()  # type: ignore[attr-defined]
        if c not in empty
    }
    d_train, d_control, d_twin = (
        _dates_as_days(frame).drop(columns=sorted(empty & set(frame.columns))) for frame in (train, control, twin)
    )
    rows = min(DCR_ROWS, len(train), len(control), len(twin))
    dcr: Any = type("SeededDCR", (metrics.DCRBaselineProtection,), {"_seed": seed})
    out: dict[str, Any] = {}
    step("privacy: distance to closest record")
    with seeded(seed), _library_notices():
        baseline = dcr.compute_breakdown(
            d_train, d_twin, meta, None, num_rows_subsample=rows, num_iterations=DCR_ITERATIONS
        )
        holdout = dcr.compute_breakdown(
            d_train, d_control, meta, None, num_rows_subsample=rows, num_iterations=DCR_ITERATIONS
        )
        # Training and holdout sets of equal size, as DCROverfittingProtection expects.
        same = d_train.sample(n=min(len(train), len(control)), random_state=seed)
        overfitting = metrics.DCROverfittingProtection.compute_breakdown(
            same, d_twin, d_control, meta, None, num_rows_subsample=rows, num_iterations=DCR_ITERATIONS
        )
    out["dcr_baseline_protection"] = {
        "value": round(float(baseline["score"]), 4),
        "holdout_reference": round(float(holdout["score"]), 4),
        "rows": rows,
        "iterations": DCR_ITERATIONS,
    }
    out["dcr_overfitting_protection"] = {
        "value": round(float(overfitting["score"]), 4),
        "closer_to_training": round(float(overfitting["synthetic_data_percentages"]["closer_to_training"]), 4),
        "rows": rows,
    }
    step("privacy: new-row synthesis")
    sample = min(NEW_ROW_SAMPLE, len(twin))
    with seeded(seed), _library_notices():
        new_rows = metrics.NewRowSynthesis.compute_breakdown(d_train, d_twin, meta, None, synthetic_sample_size=sample)
    sampled_copies = 1.0 - float(new_rows["score"])
    out["new_row_copies"] = {
        "value": round(max(sampled_copies, copies_all / max(len(twin), 1)), 6),
        "sdmetrics_sample": sample,
        "sdmetrics_copies": round(sampled_copies, 6),
        "all_profiles_checked": len(twin),
        "all_profiles_copies": copies_all,
    }

    n = min(ATTACK_ROWS, len(control), len(train), len(twin))
    rng = np.random.default_rng(seed)
    ori = _for_attacks(train.iloc[np.sort(rng.choice(len(train), n, replace=False))])
    ctl = _for_attacks(control.iloc[np.sort(rng.choice(len(control), n, replace=False))])
    syn = _for_attacks(twin.iloc[np.sort(rng.choice(len(twin), n, replace=False))])
    attacks = min(ATTACKS, n)
    sizes = {"rows": n, "attacks": attacks}
    step("privacy: anonymeter singling out")
    with seeded(seed), _library_notices():
        single = {
            mode: [
                single_out(ori, syn, n_attacks=attacks, control=ctl, seed=seed + r, max_attempts=attacks * 200)
                .evaluate(mode=mode)
                .risk()
                for r in range(SINGLING_OUT_REPEATS)
            ]
            for mode in ("univariate", "multivariate")
        }
        step("privacy: anonymeter linkability")
        link = (
            linkability(
                ori,
                syn,
                aux_cols=(list(DEMOGRAPHIC), list(CLINICAL)),
                n_attacks=attacks,
                n_neighbors=LINK_NEIGHBOURS,
                control=ctl,
            )
            .evaluate(n_jobs=1)
            .risk()
        )
        step("privacy: anonymeter inference")
        inference = {
            secret: inference(
                ori,
                syn,
                aux_cols=[c for c in ori.columns if c != secret],
                secret=secret,
                n_attacks=attacks,
                control=ctl,
            )
            .evaluate(n_jobs=1)
            .risk()
            for secret in INFERENCE_SECRETS
        }
    means = {mode: round(float(np.mean([r.value for r in runs])), 4) for mode, runs in single.items()}
    worst_mode = max(means, key=lambda m: means[m])
    out["singling_out_risk"] = {
        "value": means[worst_mode],
        "by_mode": {mode: {"mean": means[mode], "runs": [_risk(r) for r in runs]} for mode, runs in single.items()},
        "repeats": SINGLING_OUT_REPEATS,
        **sizes,
    }
    out["linkability_risk"] = {**_risk(link), "neighbours": LINK_NEIGHBOURS, **sizes}
    worst_secret = max(inference, key=lambda s: inference[s].value)
    out["inference_risk"] = {
        **_risk(inference[worst_secret]),
        "by_secret": {s: _risk(r) for s, r in inference.items()},
        **sizes,
    }
    return out


@dataclass(frozen=True)
class Figure:
    """One gated figure: its value, the policy's limit, and which side of it passes."""

    key: str
    label: str
    value: float
    limit: float
    at_least: bool  # True: value must be >= limit; False: <= limit

    @property
    def passed(self) -> bool:
        return self.value >= self.limit if self.at_least else self.value <= self.limit

    def refusal(self) -> str:
        side = "below the policy's minimum" if self.at_least else "above the policy's maximum"
        return f"{self.label} {self.value:g} is {side} {self.limit:g}"

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "value": self.value, "limit": self.limit, "at_least": self.at_least,
                "passed": self.passed}  # fmt: skip
