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
import hmac
import json
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from research_kit.core import audit
from research_kit.core.catalog import transaction
from research_kit.core.config import SynthPolicy
from research_kit.core.errors import BadInput, PolicyRefusal
from research_kit.core.extracts import Extract, check_current, get_extract
from research_kit.core.faults import fault
from research_kit.core.locks import hold
from research_kit.core.workspace import Workspace, check_name
from research_kit.dp import ledger
from research_kit.dp.accounting import epsilon_of, rho_from, to_picorho
from research_kit.synth import constraints, dp_twin, evaluate, fidelity, profiles
from research_kit.synth import report as report_mod
from research_kit.synth.model import TwinModel
from research_kit.synth.rare import TooRare, patients_per_value
from research_kit.synth.synthesizers import check_model
from research_kit.synth.tables import KEY, Granularity, Tables, content_hash, patient_index, read_tables, write_tables
from research_kit.tiers import STAGING, TWIN_MANIFEST, finish_publications, place_twin, published_twins

CONTROL_SHARE = 0.2  # real patients held out of training, as anonymeter's control set
CATEGORIES = (
    "patients.sex",
    "patients.vital_status",
    "patients.canton",
    "patients.country",
    "diagnoses.orpha_code",
    "diagnoses.icd10_code",
    "diagnoses.status",
    "diagnoses.gene_symbol",
    "diagnoses.variant_hgvs",
    "phenotypes.hpo_code",
    "encounters.centre_code",
    "encounters.centre_country",
    "encounters.encounter_type",
)
FRESH = ("diagnoses.variant_hgvs",)  # never a real value at all: drawn fresh
Step = Callable[[str], None]
# What would lift a refused figure, said with the refusal (never by loosening the policy's threshold).
LIFTS = {
    "quality": "more patients lift it: the report's column shapes and pairs say which columns pull it down",
    "dcr_baseline_protection": "another --seed; if it persists, a DP twin (--model mst)",
    "dcr_overfitting_protection": "another --seed; if it persists, a DP twin (--model mst)",
    "new_row_copies": "another --seed",
    "singling_out_risk": "another --seed (anonymeter varies between runs); if it persists, a DP twin",
    "linkability_risk": "another --seed; if it persists, a DP twin",
    "inference_risk": "another --seed; if it persists, a DP twin",
    "constraint_violations": "a defect of the twin model: the report counts each rule",
    "rare_values": "a defect of the twin model: the report names the columns",
}
DP_SUFFIX = "@dp"  # a DP twin's id: the extract's and this (no extract or study name holds an '@')


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
    twin_id: str = ""
    fidelity: dict[str, float] = field(default_factory=dict)  # raw and coarsened SDV scores, TSTR and TRTR
    guarantee: dict[str, Any] = field(default_factory=dict)  # a DP twin's: mechanism, rho, epsilon, delta


def reports_dir(ws: Workspace, twin_id: str) -> Path:
    """Where the steward finds the latest report of a twin (``ID`` or ``ID@dp``), published or refused."""
    return ws.root / "reports" / "synth" / twin_id


class _Laps:
    """Wall-clock seconds per step."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._clock = time.perf_counter()

    def __call__(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = round(now - self._clock, 2)
        self._clock = now


def held_out_patients(pseudonyms: np.ndarray, seed: int) -> np.ndarray:
    """Which patients are held out as the control set: each decided by a keyed hash of their own pseudonym.

    One patient more or less changes the training set by that patient alone (a permutation of the whole list
    would reshuffle it), so a DP twin's guarantee, measured on the training patients, holds for the extract.
    """
    key = f"research-kit control set {seed}".encode()
    cut = int(CONTROL_SHARE * 2**64)
    return np.array(
        [int.from_bytes(hmac.digest(key, str(p).encode(), "sha256")[:8], "big") < cut for p in pseudonyms],
        dtype=bool,
    )


def twin_id_of(extract_id: str, model: str) -> str:
    """The id (and folder) of an extract's twin: the extract's id, or ``ID@dp`` for a DP twin (beside it)."""
    return f"{extract_id}{DP_SUFFIX}" if model in dp_twin.MECHANISMS else extract_id


def build_twin(
    ws: Workspace,
    extract_id: str,
    *,
    model: str = "gaussian_copula",
    seed: int = 0,
    progress: Step | None = None,
    replace: bool = False,
    rho: str | float | Decimal | None = None,
    epsilon: str | float | Decimal | None = None,
) -> TwinResult:
    """Build the synthetic twin of extract ``extract_id`` and publish it to ``synthetic/ID/`` if the policy allows.

    ``model`` ``aim`` or ``mst`` builds a differentially private twin (``synthetic/ID@dp/``) at ``rho`` (or
    ``epsilon`` at the policy's delta), charged to the registry's DP-twin budget when the mechanism runs.
    Raises :class:`PolicyRefusal` (nothing published) when a figure misses its policy threshold, or when the
    twin exists and ``replace`` is false. ``progress`` is called with the name of each step.
    """
    say = progress or (lambda _message: None)
    check_name(extract_id, "extract id")
    mechanism = model if model in dp_twin.MECHANISMS else None
    if mechanism is None:
        check_model(model)
        if rho is not None or epsilon is not None:
            raise BadInput("--rho and --epsilon go with a DP twin (--model aim or mst)")
    if seed < 0:
        raise BadInput(f"--seed must be zero or more, got {seed}")
    dp_rho = _dp_rho(ws, rho, epsilon) if mechanism else None
    policy = ws.policy().synth
    extract = get_extract(ws, extract_id)
    check_current(ws, extract)  # a twin made now holds no one who has opted out since the extract was built
    twin_id = twin_id_of(extract_id, model)
    final = ws.synthetic_dir / twin_id
    with hold(ws.synthetic_dir / ".synth.lock", "a twin build", wait=True):
        if final.exists() and not replace:
            raise PolicyRefusal(
                f"twin {twin_id!r} of extract {extract_id!r} is already published at {final}; "
                "replace it explicitly (--replace)"
            )
        cost = to_picorho(dp_rho, round_up=True) if dp_rho is not None else 0
        if mechanism:
            try:
                # before anything is spent
                ledger.check_twin_budget(ws, cost, spender=audit.current_actor(), extract=extract_id)
            except PolicyRefusal as exc:
                ws.audit("synth.refuse", extract=extract_id, twin=twin_id, model=model, seed=seed,
                         failed={"budget": str(exc)})  # fmt: skip
                raise
        lap = _Laps()
        say("reading the extract")
        tables, schemas = read_tables(extract.path)
        _, fitting, sampling = (np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3))
        ids = tables.patients[KEY].to_numpy()
        held_out = held_out_patients(ids, seed)
        control = tables.subset(pd.Index(ids[held_out]))
        train = tables.subset(pd.Index(ids[~held_out]))
        real_profiles = profiles.real_profiles(tables)
        lap("read")
        refuse = _refuser(ws, extract_id, twin_id, model, seed)
        facts: dict[str, Any]
        release: dp_twin.Release | None = None
        if mechanism and dp_rho is not None:
            release = _measure_dp(ws, extract, twin_id, mechanism, dp_rho, cost, train, policy.rare_category_k, say)
            lap("measure")
            say("generating the twin from the release")
            try:
                sampled = dp_twin.generate(release, None, seed=seed, taken=set(ids))
            except TooRare as exc:
                raise refuse({"too_small": str(exc)}, f"{exc} (the budget was spent: rho {float(dp_rho):g})") from None
            lap("sample")
            stats: dict[str, Any] = {}
            bounds = _dp_bounds(release, extract)
            facts = {"granularity": release.granularity.__dict__, "dp": _guarantee(release, ws.policy().dp.delta)}
        else:
            say(f"fitting the twin model ({model})")
            twin_model = TwinModel(
                granularity=Granularity.of(extract.manifest), k=policy.rare_category_k, model=model, seed=seed
            )
            try:
                twin_model.fit(train, fitting, real_variants=frozenset(tables.diagnoses["variant_hgvs"].dropna()))
                lap("fit")
                sampled, sample_stats = twin_model.sample(len(ids), sampling, real_profiles, taken=set(ids), step=say)
            except TooRare as exc:
                raise refuse(
                    {"too_small": str(exc)},
                    f"{exc} (rare_category_k = {policy.rare_category_k}; the extract has {len(ids):,} patients)",
                ) from None
            lap("sample")
            stats = sample_stats.__dict__
            bounds = _model_bounds(twin_model, extract)
            facts = {"granularity": twin_model.granularity.__dict__}
        facts = {"name": model, "seed": seed, "rare_category_k": policy.rare_category_k, **facts}

        staging = _staging(ws, twin_id)
        try:
            file_hashes = write_tables(sampled, schemas, staging)
            twin, _ = read_tables(staging)  # what is measured is exactly what would be published
            lap("write")
            facts |= {
                "control_patients": len(control.patients),
                "training_patients": len(train.patients),
                "sampling": stats,
            }
            possible = release.possible_values() if release is not None else None
            report, figures = _measure(
                ws,
                policy,
                extract,
                twin_id,
                facts,
                bounds,
                tables,
                train,
                control,
                twin,
                real_profiles,
                possible,
                seed,
                say,
                lap,
            )
            say("writing the report")
            steward = reports_dir(ws, twin_id)
            report_mod.write(steward, report, train, twin, policy.rare_category_k)
            failed = [f for f in figures.values() if not f.passed]
            if failed:
                more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
                raise refuse(
                    {f.key: {"value": f.value, "limit": f.limit} for f in failed},
                    f"{failed[0].refusal()}{more} ({LIFTS.get(failed[0].key, 'see the report')}); "
                    f"report: {steward / 'report.html'}",
                    report=str(steward / "report.json"),
                )
            say("publishing")
            twin_hash = _publish(
                ws, extract, twin_id, staging, file_hashes, report, train, twin, policy.rare_category_k
            )
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
        twin_id=twin_id,
        fidelity=report["fidelity"],
        guarantee=facts.get("dp", {}),
    )


def _refuser(ws: Workspace, extract_id: str, twin_id: str, model: str, seed: int) -> Callable[..., PolicyRefusal]:
    """A function that audits a refusal and gives the one-line error to raise."""

    def refuse(failed: dict[str, Any], why: str, **more: str) -> PolicyRefusal:
        ws.audit("synth.refuse", extract=extract_id, twin=twin_id, model=model, seed=seed, failed=failed, **more)
        name = f"DP twin {twin_id!r} of extract" if twin_id != extract_id else "twin of extract"
        return PolicyRefusal(f"{name} {extract_id!r} not published: {why}")

    return refuse


def _dp_rho(ws: Workspace, rho: str | float | Decimal | None, epsilon: str | float | Decimal | None) -> Decimal:
    """The DP twin's budget, given as rho or as epsilon at the policy's delta; checked before anything runs."""
    dp_twin.require_mbi()
    amount = rho_from(
        None if rho is None else str(rho), None if epsilon is None else str(epsilon), ws.policy().dp.delta
    )
    if amount is None or amount <= 0:
        raise BadInput("a DP twin needs its budget: --rho R or --epsilon E (more than zero)")
    return amount


def _measure_dp(
    ws: Workspace,
    extract: Extract,
    twin_id: str,
    mechanism: str,
    rho: Decimal,
    cost: int,
    train: Tables,
    k: int,
    say: Step,
) -> dp_twin.Release:
    """Reserve the cost, run the mechanism, record the spend (before any gate: the budget is spent once the
    mechanism has seen the data, whether or not the twin is published)."""
    delta = ws.policy().dp.delta
    spend = ledger.reserve_twin(
        ws,
        cost=cost,
        extract=extract.id,
        twin=twin_id,
        mechanism=mechanism,
        details={
            "rho": float(rho),
            "epsilon": round(epsilon_of(float(rho), delta), 6),
            "delta": delta,
            "extract_hash": extract.content_hash,
        },
    )
    reference = float(np.datetime64(extract.created_at[:10], "D").astype(np.int64))
    touched: list[bool] = []
    try:
        release = dp_twin.measure(
            train,
            mechanism=mechanism,
            rho=float(rho),
            k=k,
            reference_date=reference,
            granularity=Granularity.of(extract.manifest),
            step=say,
            touching=lambda: touched.append(True),
        )
    except BaseException as exc:
        if touched:  # a mechanism ran on the data: spent, whatever failed after (a failure may depend on data)
            ledger.commit(ws, spend, {"twin": twin_id, "failed": type(exc).__name__})
        else:  # nothing was measured yet: the reservation goes back
            ledger.cancel(ws, spend)
        raise
    ledger.commit(ws, spend, {"twin": twin_id, **release.summary()})
    return release


def _guarantee(release: dp_twin.Release, delta: float) -> dict[str, Any]:
    """What twin.json and the report state about the DP guarantee."""
    return {
        **release.summary(),
        "mechanism": release.mechanism.upper(),
        "rho": release.rho,
        "epsilon": round(epsilon_of(release.rho, delta), 4),
        "delta": delta,
        "privacy_unit": "one patient (all their rows)",
        "domain": "public lists and fixed bins (research_kit.synth.dp_domain), never values of the extract",
        "outside_the_guarantee": "the publication gates, which read the real extract and can only refuse",
    }


def _dp_bounds(release: dp_twin.Release, extract: Extract) -> constraints.Bounds:
    pseudonymise = extract.manifest.get("policy", {}).get("pseudonymise", {})
    return constraints.Bounds(
        granularity=release.granularity,
        horizon=release.horizon,
        counts=dp_twin.count_bounds(),
        max_shift_days=int(pseudonymise.get("max_shift_days", 0)),
    )


def _model_bounds(twin_model: TwinModel, extract: Extract) -> constraints.Bounds:
    pseudonymise = extract.manifest.get("policy", {}).get("pseudonymise", {})
    return constraints.Bounds(
        granularity=twin_model.granularity,
        horizon=twin_model.horizon,
        counts=twin_model.count_bounds(),
        max_shift_days=int(pseudonymise.get("max_shift_days", 0)),
    )


def _measure(
    ws: Workspace,
    policy: SynthPolicy,
    extract: Extract,
    twin_id: str,
    facts: dict[str, Any],
    bounds: constraints.Bounds,
    tables: Tables,
    train: Tables,
    control: Tables,
    twin: Tables,
    real_profiles: pd.DataFrame,
    possible: dict[str, set[str]] | None,
    seed: int,
    say: Step,
    lap: _Laps,
) -> tuple[dict[str, Any], dict[str, evaluate.Figure]]:
    """Constraints, rare values, quality and privacy: the report and the gated figures.

    ``possible``: per column, the values the twin could hold (a DP twin's release says); else the values the
    rare-category rule allows. The coarsened quality compares the twin against the training patients with
    every other value rolled up as the twin rolls it up.
    """
    say("checking constraints and rare values")
    violations = constraints.check(twin, bounds)
    allowed, forbidden = _category_rule(train, tables, policy.rare_category_k)
    rare = constraints.rare_values(twin, allowed, forbidden)
    lap("checks")
    say("evaluating quality (SDV, raw and coarsened)")
    quality = evaluate.quality(train, twin, seed=seed)
    reachable = (
        allowed if possible is None else {key: allowed.get(key, set()) & possible.get(key, set()) for key in allowed}
    )
    coarsened = evaluate.quality(fidelity.coarsen(train, reachable, seed=seed), twin, seed=seed)
    say("evaluating quality (train on the twin, test on held-out patients)")
    task = fidelity.tstr(train, control, twin, min_cell=ws.policy().sdc.min_cell_count, seed=seed)
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
    figures = _figures(policy, quality, coarsened, privacy, violations, rare)
    fairness = {
        "quality_raw": quality["score"],
        "quality_coarsened": coarsened["score"],
        "tstr_accuracy": task["accuracy"],
        "trtr_accuracy": task["trtr"]["accuracy"],
    }
    report = {
        "extract": extract.id,
        "twin": twin_id,
        "kind": "dp" if "dp" in facts else "default",
        "extract_content_hash": extract.content_hash,
        "published": all(f.passed for f in figures.values()),
        "model": facts,
        "gate": {key: f.as_dict() for key, f in figures.items()},
        "fidelity": fairness,
        "beside": _other_twins(ws, extract.id, twin_id),
        "refusals_before": _refusals(ws, twin_id),
        "quality": quality,
        "quality_coarsened": coarsened,
        "tstr": task,
        "privacy": privacy,
        "constraint_violations": violations,
        "rare_values_in_twin": rare,
        "rare_share_of_real_rows": _rare_shares(train, allowed),
        "timings_s": dict(lap.seconds),
    }
    return report, figures


def _other_twins(ws: Workspace, extract_id: str, twin_id: str) -> dict[str, dict[str, Any]]:
    """The fidelity figures of the extract's other published twins (the default one beside a DP one, ...)."""
    out: dict[str, dict[str, Any]] = {}
    for other, manifest in published_twins(ws):
        if other == twin_id or manifest.get("extract") != extract_id:
            continue
        path = ws.synthetic_dir / other / "report.json"
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            out[other] = {"model": data.get("model", {}).get("name"), **data.get("fidelity", {})}
    return out


def _refusals(ws: Workspace, twin_id: str) -> int:
    """How many builds of this twin the gates refused before (each a refusal a steward saw)."""
    return sum(
        1
        for entry in audit.read_entries(ws.audit_path)
        if entry.get("action") == "synth.refuse"
        and entry.get("details", {}).get("twin", entry.get("details", {}).get("extract")) == twin_id
    )


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
    coarsened: dict[str, Any],
    privacy: dict[str, Any],
    violations: dict[str, int],
    rare: dict[str, int],
) -> dict[str, evaluate.Figure]:
    F = evaluate.Figure
    figures = [
        # Gated on the extract as the rare-category rule leaves it (the raw score is reported beside it).
        F("quality", "SDV quality score (coarsened as the twin is)", coarsened["score"],
          policy.min_quality, True),
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


def _staging(ws: Workspace, twin_id: str) -> Path:
    """A fresh folder under ``synthetic/.staging/`` (never listed as a twin: no twin.json at its top)."""
    root = ws.synthetic_dir / STAGING
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    finish_publications(ws)  # a publication a kill left staged after it committed is finished, not removed
    for leftover in root.iterdir():  # under the lock: leftovers of an interrupted run
        shutil.rmtree(leftover, ignore_errors=True)
    folder = root / f"{twin_id}-{secrets.token_hex(4)}"
    folder.mkdir(mode=0o700)
    return folder


def _publish(
    ws: Workspace,
    extract: Extract,
    twin_id: str,
    staging: Path,
    file_hashes: dict[str, str],
    report: dict[str, Any],
    train: Tables,
    twin: Tables,
    k: int,
) -> str:
    """Complete the staged twin, then audit and move it into place in one catalog transaction; its hash."""
    final = ws.synthetic_dir / twin_id
    twin_hash = content_hash(file_hashes)
    (staging / "metadata.json").write_text(json.dumps(evaluate.metadata_dict(twin), indent=2, sort_keys=True))
    if report["kind"] == "dp":  # scores and the guarantee only: the steward's copy holds the rest
        report_mod.write(staging, report_mod.public(report), train, twin, k, real_plots=False)
    else:
        report_mod.write(staging, report, train, twin, k)
    manifest = {
        "extract": extract.id,
        "twin": twin_id,
        "kind": report["kind"],
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
        "fidelity": report["fidelity"],
    }
    if "dp" in report["model"]:
        manifest["dp"] = {
            key: report["model"]["dp"][key]
            for key in ("mechanism", "rho", "epsilon", "delta", "privacy_unit", "domain", "split")
        }
    (staging / TWIN_MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True), encoding="utf-8")
    with ws.catalog() as conn, transaction(conn):
        audit.append(
            conn,
            ws.audit_path,
            "synth.publish",
            {
                "extract": extract.id,
                "twin": twin_id,
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
