"""``research-kit synth``: fit, sample, check, evaluate and (if the policy allows) publish an extract's twin.

Steps: read the extract; hold out a seeded 20% of its patients as the
control set (never trained on: anonymeter measures against it); fit the twin
model on the rest; sample as many synthetic patients as the extract has and
write them (in the extract's schema) to a staging folder, then read them
back: what is measured is exactly what would be published; count constraint
violations and rare values (both must be zero); evaluate quality and
privacy; gate every figure on the workspace policy.

Published means: the four tables, ``twin.json``, ``metadata.json`` (SDV
metadata written from the schema, no values) and the reports, written into
``synthetic/.staging/`` and renamed to ``synthetic/ID/`` in one step, with an
audit entry in the same catalog transaction. A refused twin publishes
nothing: its report (figures only) goes to ``reports/synth/ID/`` for the
steward, the refusal is audited, and :class:`PolicyRefusal` names the
figure. A twin already published is replaced only when asked
(``replace=True``), by an atomic exchange of the two folders where the
filesystem offers one.

What is written to disk or the audit log holds no real row, identifier or
value held by fewer than k real patients.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from research_kit.core import audit
from research_kit.core.catalog import transaction
from research_kit.core.config import SynthPolicy
from research_kit.core.errors import BadInput, PolicyRefusal
from research_kit.core.extracts import Extract, get_extract
from research_kit.core.faults import fault
from research_kit.core.locks import hold
from research_kit.core.workspace import Workspace, check_name
from research_kit.synth import constraints, evaluate, profiles
from research_kit.synth import report as report_mod
from research_kit.synth.model import SampleStats, TwinModel
from research_kit.synth.rare import TooRare, patients_per_value
from research_kit.synth.synthesizers import check_model
from research_kit.synth.tables import KEY, Granularity, Tables, content_hash, patient_index, read_tables, write_tables
from research_kit.tiers import STAGING, TWIN_MANIFEST, finish_publications, place_twin

CONTROL_SHARE = 0.2  # real patients held out of training, as anonymeter's control set
CATEGORIES = (
    "patients.sex", "patients.vital_status", "patients.canton", "patients.country", "diagnoses.orpha_code",
    "diagnoses.icd10_code", "diagnoses.status", "diagnoses.gene_symbol", "diagnoses.variant_hgvs",
    "phenotypes.hpo_code", "encounters.centre_code", "encounters.centre_country", "encounters.encounter_type",
)  # fmt: skip
FRESH = ("diagnoses.variant_hgvs",)  # never a real value at all: drawn fresh
Step = Callable[[str], None]


@dataclass(frozen=True)
class TwinResult:
    extract_id: str
    path: Path  # the published folder
    report: Path  # its report.html
    content_hash: str  # the twin's own hash (never the extract's)
    rows: dict[str, int]
    figures: dict[str, evaluate.Figure]
    timings: dict[str, float]
    model: str
    seed: int


def reports_dir(ws: Workspace, extract_id: str) -> Path:
    """Where the steward finds the latest report of an extract's twin, published or refused."""
    return ws.root / "reports" / "synth" / extract_id


class _Laps:
    """Wall-clock seconds per step."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._clock = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._clock, 2)
        self._clock = now


def build_twin(
    ws: Workspace,
    extract_id: str,
    *,
    model: str = "gaussian_copula",
    seed: int = 0,
    progress: Step | None = None,
    replace: bool = False,
) -> TwinResult:
    """Build the synthetic twin of extract ``extract_id`` and publish it to ``synthetic/ID/`` if the policy allows.

    Raises :class:`PolicyRefusal` (nothing published) when a figure misses its
    policy threshold, or when a twin of the extract exists and ``replace`` is false.
    ``progress`` is called with the name of each step.
    """
    say = progress or (lambda _message: None)
    check_name(extract_id, "extract id")
    check_model(model)
    if seed < 0:
        raise BadInput(f"--seed must be zero or more, got {seed}")
    policy = ws.policy().synth
    extract = get_extract(ws, extract_id)
    final = ws.synthetic_dir / extract_id
    with hold(ws.synthetic_dir / ".synth.lock", "a twin build", wait=True):
        if final.exists() and not replace:
            raise PolicyRefusal(
                f"a twin of extract {extract_id!r} is already published at {final}; replace it explicitly (--replace)"
            )
        lap = _Laps()
        say("reading the extract")
        tables, schemas = read_tables(extract.path)
        split, fitting, sampling = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
        ids = tables.patients[KEY].to_numpy()
        held_out = split.permutation(len(ids))[: round(len(ids) * CONTROL_SHARE)]
        control = tables.subset(pd.Index(ids[held_out]))
        train = tables.subset(pd.Index(np.delete(ids, held_out)))
        lap("read")

        say(f"fitting the twin model ({model})")
        twin_model = TwinModel(
            granularity=Granularity.of(extract.manifest), k=policy.rare_category_k, model=model, seed=seed
        )
        real_profiles = profiles.real_profiles(tables)
        try:
            twin_model.fit(train, fitting, real_variants=frozenset(tables.diagnoses["variant_hgvs"].dropna()))
            lap("fit")
            sampled, stats = twin_model.sample(len(ids), sampling, real_profiles, taken=set(ids), step=say)
        except TooRare as exc:
            ws.audit("synth.refuse", extract=extract_id, model=model, seed=seed, failed={"too_small": str(exc)})
            raise PolicyRefusal(
                f"twin of extract {extract_id!r} not published: {exc} (rare_category_k = {policy.rare_category_k}; "
                f"the extract has {len(ids):,} patients)"
            ) from None
        lap("sample")

        staging = _staging(ws, extract_id)
        try:
            file_hashes = write_tables(sampled, schemas, staging)
            twin, _ = read_tables(staging)  # what is measured is exactly what would be published
            lap("write")
            report, figures = _measure(
                policy, extract, twin_model, tables, train, control, twin, real_profiles, stats, seed, say, lap
            )
            say("writing the report")
            steward = reports_dir(ws, extract_id)
            report_mod.write(steward, report, train, twin, policy.rare_category_k)
            failed = [f for f in figures.values() if not f.passed]
            if failed:
                ws.audit(
                    "synth.refuse",
                    extract=extract_id,
                    model=model,
                    seed=seed,
                    failed={f.key: {"value": f.value, "limit": f.limit} for f in failed},
                    report=str(steward / "report.json"),
                )
                more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
                raise PolicyRefusal(
                    f"twin of extract {extract_id!r} not published: {failed[0].refusal()}{more}; "
                    f"report: {steward / 'report.html'}"
                )
            say("publishing")
            twin_hash = _publish(ws, extract, staging, file_hashes, report, train, twin, policy.rare_category_k)
            lap("publish")
        finally:
            shutil.rmtree(staging, ignore_errors=True)  # published: renamed away already
    return TwinResult(
        extract_id=extract_id,
        path=final,
        report=final / "report.html",
        content_hash=twin_hash,
        rows=twin.rows(),
        figures=figures,
        timings=lap.seconds,
        model=model,
        seed=seed,
    )


def _measure(
    policy: SynthPolicy,
    extract: Extract,
    twin_model: TwinModel,
    tables: Tables,
    train: Tables,
    control: Tables,
    twin: Tables,
    real_profiles: pd.DataFrame,
    stats: SampleStats,
    seed: int,
    say: Step,
    lap: _Laps,
) -> tuple[dict[str, Any], dict[str, evaluate.Figure]]:
    """Constraints, rare values, quality and privacy: the report and the gated figures."""
    say("checking constraints and rare values")
    pseudonymise = extract.manifest.get("policy", {}).get("pseudonymise", {})
    bounds = constraints.Bounds(
        granularity=twin_model.granularity,
        horizon=twin_model.horizon,
        counts=twin_model.count_bounds(),
        max_shift_days=int(pseudonymise.get("max_shift_days", 0)),
    )
    violations = constraints.check(twin, bounds)
    allowed, forbidden = _category_rule(train, tables, policy.rare_category_k)
    rare = constraints.rare_values(twin, allowed, forbidden)
    lap("checks")
    say("evaluating quality (SDV)")
    quality = evaluate.quality(train, twin, seed=seed)
    lap("quality")
    twin_profiles = profiles.real_profiles(twin)
    privacy = evaluate.privacy(
        profiles.real_profiles(train),
        profiles.real_profiles(control),
        twin_profiles,
        copies_all=int(profiles.copies(real_profiles, twin_profiles).sum()),
        seed=seed,
        step=say,
    )
    lap("privacy")
    figures = _figures(policy, quality, privacy, violations, rare)
    report = {
        "extract": extract.id,
        "extract_content_hash": extract.content_hash,
        "published": all(f.passed for f in figures.values()),
        "model": {
            "name": twin_model.model, "seed": seed, "rare_category_k": policy.rare_category_k,
            "control_patients": len(control.patients), "training_patients": len(train.patients),
            "sampling": stats.__dict__, "granularity": twin_model.granularity.__dict__,
        },
        "gate": {key: f.as_dict() for key, f in figures.items()},
        "quality": quality,
        "privacy": privacy,
        "constraint_violations": violations,
        "rare_values_in_twin": rare,
        "rare_share_of_real_rows": _rare_shares(train, allowed),
        "timings_s": dict(lap.seconds),
    }  # fmt: skip
    return report, figures


def _category_rule(train: Tables, real: Tables, k: int) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Per categorical column: values held by at least k training patients, and every real value that is not."""
    allowed: dict[str, set[str]] = {}
    forbidden: dict[str, set[str]] = {}
    for key in CATEGORIES:
        table, column = key.split(".")
        frame = train.as_dict()[table]
        held = patients_per_value(frame[column].astype(object).to_numpy(), patient_index(frame, train.patients))
        common = {str(v) for v in held.index[held >= k]}
        everything = {str(v) for v in real.as_dict()[table][column].dropna().unique()}
        if key not in FRESH:
            allowed[key] = common
        forbidden[key] = everything - common if key not in FRESH else everything
    return allowed, forbidden


def _rare_shares(train: Tables, allowed: dict[str, set[str]]) -> dict[str, float]:
    """Share of real training rows whose value the rule keeps out of the twin (a ceiling on fidelity)."""
    out = {}
    for key, values in allowed.items():
        table, column = key.split(".")
        series = train.as_dict()[table][column].dropna().astype(str)
        out[key] = round(float((~series.isin(values)).mean()), 4) if len(series) else 0.0
    return out


def _figures(
    policy: SynthPolicy,
    quality: dict[str, Any],
    privacy: dict[str, Any],
    violations: dict[str, int],
    rare: dict[str, int],
) -> dict[str, evaluate.Figure]:
    F = evaluate.Figure
    figures = [
        F("quality", "SDV quality score", quality["score"], policy.min_quality, True),
        F("dcr_baseline_protection", "SDMetrics DCR baseline protection",
          privacy["dcr_baseline_protection"]["value"], policy.min_dcr_baseline_protection, True),
        F("dcr_overfitting_protection", "SDMetrics DCR overfitting protection",
          privacy["dcr_overfitting_protection"]["value"], policy.min_dcr_overfitting_protection, True),
        F("new_row_copies", "share of twin profiles copying a real one (new-row synthesis)",
          privacy["new_row_copies"]["value"], policy.max_new_row_copies, False),
        F("singling_out_risk", "anonymeter singling-out risk", privacy["singling_out_risk"]["value"],
          policy.max_singling_out_risk, False),
        F("linkability_risk", "anonymeter linkability risk", privacy["linkability_risk"]["value"],
          policy.max_linkability_risk, False),
        F("inference_risk", "anonymeter inference risk", privacy["inference_risk"]["value"],
          policy.max_inference_risk, False),
        F("constraint_violations", "constraint violations", float(sum(violations.values())), 0.0, False),
        F("rare_values", "values held by fewer than k real patients", float(sum(rare.values())), 0.0, False),
    ]  # fmt: skip
    return {f.key: f for f in figures}


def _staging(ws: Workspace, extract_id: str) -> Path:
    """A fresh folder under ``synthetic/.staging/`` (never listed as a twin: no twin.json at its top)."""
    root = ws.synthetic_dir / STAGING
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    finish_publications(ws)  # a publication a kill left staged after it committed is finished, not removed
    for leftover in root.iterdir():  # under the lock: leftovers of an interrupted run
        shutil.rmtree(leftover, ignore_errors=True)
    folder = root / f"{extract_id}-{secrets.token_hex(4)}"
    folder.mkdir(mode=0o700)
    return folder


def _publish(
    ws: Workspace,
    extract: Extract,
    staging: Path,
    file_hashes: dict[str, str],
    report: dict[str, Any],
    train: Tables,
    twin: Tables,
    k: int,
) -> str:
    """Complete the staged twin, then audit and move it into place in one catalog transaction; its hash."""
    final = ws.synthetic_dir / extract.id
    twin_hash = content_hash(file_hashes)
    (staging / "metadata.json").write_text(json.dumps(evaluate.metadata_dict(twin), indent=2, sort_keys=True))
    report_mod.write(staging, report, train, twin, k)
    manifest = {
        "extract": extract.id,
        "content_hash": twin_hash,
        "extract_content_hash": extract.content_hash,
        "reference_year": datetime.fromisoformat(extract.created_at).year,
        "published_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "model": report["model"]["name"],
        "seed": report["model"]["seed"],
        "rare_category_k": k,
        "rows": twin.rows(),
        "files": file_hashes,
        "figures": {key: g["value"] for key, g in report["gate"].items()},
    }
    (staging / TWIN_MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    with ws.catalog() as conn, transaction(conn):
        audit.append(
            conn,
            ws.audit_path,
            "synth.publish",
            {
                "extract": extract.id,
                "extract_content_hash": extract.content_hash,
                "twin_content_hash": twin_hash,
                "model": manifest["model"],
                "seed": manifest["seed"],
                "replaced": final.exists(),
                "figures": manifest["figures"],
            },
        )
    # Committed: now the folder moves into place. A kill in between leaves the publication committed and the
    # twin staged: the next command that reads twins (or the next synth) finishes it (tiers.finish_publications).
    fault("synth.after_commit")
    with contextlib.suppress(FileNotFoundError):  # a reader finished it first
        place_twin(staging, final)
    return twin_hash
