"""``research-kit risk``: the re-identification risk of a registered extract, on disk as JSON and a plot.

One record per patient: the policy's quasi-identifiers from the extract's
patients table, the patient's first diagnosis (ORPHA code) as the sensitive
attribute for l-diversity, and the age band on the reference date for the
journalist risk against Luxembourg's population. Reports go to
``reports/risk/`` in the workspace (extracts themselves are immutable).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import polars as pl

from research_kit.core.config import RiskPolicy
from research_kit.core.errors import BadInput
from research_kit.core.extracts import Extract, get_extract
from research_kit.core.workspace import Workspace
from research_kit.model.extract_schema import conform
from research_kit.model.facts import first_diagnoses
from research_kit.model.tables import CODE_COLUMNS
from research_kit.pseudonymise.population import SOURCE, age_band, load_population
from research_kit.pseudonymise.risk import Enforcement, RiskReport, assess, enforce_k

SENSITIVE = "diagnosis"
POPULATION_KEYS = ("canton", "sex", "age_band")


@dataclass(frozen=True)
class Assessment:
    extract_id: str
    report: RiskReport
    enforcement: Enforcement | None
    json_path: Path
    plot_path: Path
    max_suppression: float = 1.0  # the policy's [risk].max_suppression when this was measured
    without_dates: RiskReport | None = None  # the patients of sources without dates, beside dated ones

    @property
    def over_suppression(self) -> bool:
        """Whether enforcing k suppressed a larger share of the records than the policy allows."""
        enforced = self.enforcement
        return enforced is not None and enforced.rows_suppressed / self.report.records > self.max_suppression


def risk_records(extract: Extract, as_of: date) -> pl.DataFrame:
    """One row per patient: quasi-identifier candidates, first diagnosis, age band on ``as_of``.

    The first diagnosis is written in its preferred code (ORPHA, else OMIM, ICD-10, ICD-11, MONDO) as
    ``diagnosis`` (the sensitive attribute) and as ``disease`` (a quasi-identifier for sources without dates:
    a published case's disease is public). ``age_band_last_record`` is the band of the age at the last record,
    what a source with ages only gives.
    """
    patients = conform("patients", pl.read_parquet(extract.table_path("patients")))
    diagnoses = conform("diagnoses", pl.scan_parquet(extract.table_path("diagnoses")))
    preferred = pl.coalesce(*(pl.col(c) for c in CODE_COLUMNS.values()))
    first = first_diagnoses(diagnoses).select("pseudonym", preferred.alias(SENSITIVE)).collect()
    age = pl.lit(as_of.year) - pl.col("birth_year").cast(pl.Int32)
    # With the birth month known, a birthday not yet reached this year takes one year off.
    age = age - pl.when(pl.col("birth_month").cast(pl.Int32) > as_of.month).then(1).otherwise(0)
    return patients.join(first, on="pseudonym", how="left").with_columns(
        age_band(age).alias("age_band"),
        age_band(pl.col("age_at_last_record_years")).alias("age_band_last_record"),
        pl.col(SENSITIVE).alias("disease"),
    )


def quasi_identifiers(records: pl.DataFrame, policy: RiskPolicy, *, dated: bool | None = None) -> list[str]:
    """The quasi-identifiers that apply: the policy's, or for patients of sources without dates (no birth
    year) the policy's set for such sources. Refused when the records carry none of them: a table of
    nulls would show no risk at all, which is not the same as no risk."""
    if dated is None:
        dated = records.height == 0 or records["birth_year"].null_count() < records.height
    chosen = list(policy.quasi_identifiers if dated else policy.quasi_identifiers_without_dates)
    key = "quasi_identifiers" if dated else "quasi_identifiers_without_dates"
    unknown = [q for q in chosen if q not in records.columns]
    if unknown:
        raise BadInput(f"research-kit.toml: [risk].{key} names columns not in the extract: {', '.join(unknown)}")
    if records.height and all(records[q].null_count() == records.height for q in chosen):
        raise BadInput(
            f"the extract carries none of [risk].{key} ({', '.join(chosen)}): every patient's value is empty, "
            "so no risk can be measured; set the quasi-identifiers an attacker could know for this source"
        )
    return chosen


def assess_extract(
    ws: Workspace, extract_id: str, *, enforce: int | None = None, as_of: date | None = None
) -> Assessment:
    """Measure (and with ``enforce``, enforce k on a copy of) the risk of extract ``extract_id``; write the report."""
    policy = ws.policy().risk
    extract = get_extract(ws, extract_id)
    everyone = risk_records(extract, as_of or date.today())
    # Patients without a birth year (sources with ages only) beside dated ones: on the dated quasi-identifiers
    # they would share one class of nulls and look safe; they are measured apart, on their own set.
    undated = everyone.filter(pl.col("birth_year").is_null())
    records = everyone if undated.height == everyone.height else everyone.filter(pl.col("birth_year").is_not_null())
    chosen = quasi_identifiers(records, policy)
    without_dates = None
    if 0 < undated.height < everyone.height:
        alone = quasi_identifiers(undated, policy, dated=False)
        without_dates = assess(
            undated, quasi_identifiers=alone, sensitive=SENSITIVE, risk_threshold=policy.risk_threshold,
            k_target=policy.k_anonymity,
        )  # fmt: skip
    common: dict[str, Any] = {
        "quasi_identifiers": chosen,
        "sensitive": SENSITIVE,
        "risk_threshold": policy.risk_threshold,
    }
    report = assess(
        records,
        k_target=policy.k_anonymity,
        population=load_population(),
        population_keys=POPULATION_KEYS,
        **common,
    )
    enforcement = None
    if enforce is not None:
        if enforce < 1:
            raise BadInput(f"--enforce-k must be at least 1, got {enforce}")
        enforcement = enforce_k(records, k_target=enforce, max_suppression=policy.max_suppression, **common)
    out = ws.root / "reports" / "risk"
    out.mkdir(mode=0o700, parents=True, exist_ok=True)
    stem = extract_id if enforce is None else f"{extract_id}-k{enforce}"
    document = {
        "extract": extract_id,
        "content_hash": extract.content_hash,
        "as_of": (as_of or date.today()).isoformat(),
        "risk": report.to_dict(),
        "without_dates": None if without_dates is None else without_dates.to_dict(),
        "population_source": SOURCE,
        "enforce_k": None
        if enforcement is None
        else {
            "k": enforce,
            "levels": enforcement.levels,
            "rows_suppressed": enforcement.rows_suppressed,
            "share_suppressed": enforcement.rows_suppressed / report.records,
            "precision_lost": enforcement.precision_lost,
            "within_max_suppression": enforcement.rows_suppressed / report.records <= policy.max_suppression,
            "risk": enforcement.report.to_dict(),
        },
    }
    json_path = out / f"{stem}.json"
    _write(json_path, json.dumps(document, indent=2).encode())
    plot_path = out / f"{stem}.png"
    _write(plot_path, _plot(report, enforcement))
    ws.audit(
        "extract.risk",
        extract=extract_id,
        k=report.k,
        prosecutor_at_risk=round(report.prosecutor_at_risk, 4),
        enforce_k=enforce,
        rows_suppressed=None if enforcement is None else enforcement.rows_suppressed,
    )
    return Assessment(extract_id, report, enforcement, json_path, plot_path, policy.max_suppression, without_dates)


def _write(path: Path, content: bytes) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_bytes(content)
    os.replace(tmp, path)


def _plot(report: RiskReport, enforcement: Enforcement | None) -> bytes:
    """Share of records in classes of at most a given size: its height at k is the share at risk."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5), dpi=110)
    series = [("as extracted", report)]
    if enforcement is not None:
        series.append((f"after enforcing k={enforcement.report.k_target}", enforcement.report))
    for label, rep in series:
        sizes = sorted(rep.class_sizes)
        running, shares = 0, []
        for size in sizes:
            running += size * rep.class_sizes[size]
            shares.append(100 * running / rep.records)
        ax.step([1, *sizes], [0, *shares], where="post", label=label)
    ax.axvline(report.k_target, color="grey", linestyle="--", label=f"policy k = {report.k_target}")
    ax.set_xscale("log")
    ax.set_xlabel("equivalence class size (patients sharing the quasi-identifiers)")
    ax.set_ylabel("% of records in classes of at most that size")
    ax.set_ylim(0, 100)
    ax.set_title(f"Re-identification risk on {', '.join(report.quasi_identifiers)}")
    ax.legend()
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()
