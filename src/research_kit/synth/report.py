"""A twin's report: ``report.json`` and a self-contained ``report.html`` (matplotlib plots as embedded PNGs).

What may appear: scores, sizes, column names, timings, and shares of values
held by at least k real patients. Real shares are drawn only for such common
values; numeric columns are compared by their 5th to 95th percentiles, never
their extremes. No value held by fewer than k real patients is written here.
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from research_kit.synth.tables import Tables

PERCENTILES = np.arange(5, 96, 5)
NUMERIC_PLOTS = (
    ("patients", "birth_year"),
    ("diagnoses", "onset_age_years"),
    ("diagnoses", "diagnostic_delay_days"),
)
CATEGORY_PLOTS = (
    ("patients", "sex"),
    ("patients", "vital_status"),
    ("patients", "canton"),
    ("diagnoses", "status"),
    ("encounters", "centre_country"),
    ("encounters", "encounter_type"),
)


def _png(fig: Any) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def _figures(report: dict[str, Any], real: Tables, twin: Tables, k: int, *, real_plots: bool) -> list[tuple[str, str]]:
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt

    out: list[tuple[str, str]] = []
    gate = report["gate"]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(gate) + 1))
    labels = [g["label"] for g in gate.values()]
    values = [g["value"] for g in gate.values()]
    colours = ["tab:green" if g["passed"] else "tab:red" for g in gate.values()]
    ax.barh(labels, values, color=colours)
    for i, g in enumerate(gate.values()):
        ax.plot([g["limit"], g["limit"]], [i - 0.4, i + 0.4], color="black", linewidth=2)
    ax.set_xlabel("value (black: the policy's limit)")
    ax.invert_yaxis()
    out.append(("Gate: every figure against its policy limit", _png(fig)))
    plt.close(fig)

    fidelity = {report.get("twin", report["extract"]): report.get("fidelity", {})} | {
        name: figures for name, figures in report.get("beside", {}).items()
    }
    measures = ("quality_raw", "quality_coarsened", "tstr_accuracy", "trtr_accuracy")
    if any(fidelity.values()):
        fig, ax = plt.subplots(figsize=(8, 3.2))
        x = np.arange(len(measures))
        width = 0.8 / len(fidelity)
        for i, (name, figures) in enumerate(fidelity.items()):
            ax.bar(x + i * width, [float(figures.get(m) or 0) for m in measures], width, label=name)
        ax.set_xticks(x + 0.4 - width / 2, ["SDV raw", "SDV coarsened", "TSTR accuracy", "TRTR accuracy"])
        ax.set_ylim(0, 1)
        ax.legend(fontsize=8)
        out.append(("Quality measured fairly: this twin beside the extract's other twins", _png(fig)))
        plt.close(fig)

    if not real_plots:  # a DP twin's published report: scores only, no statistic of the real extract
        return out
    shapes = report["quality"]["column_shapes"]
    rows = [(f"{t}.{c}", v) for t, cols in shapes.items() for c, v in cols.items()]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(rows) + 1))
    ax.barh([r[0] for r in rows], [r[1] for r in rows], color="tab:blue")
    ax.set_xlim(0, 1)
    ax.set_xlabel("SDV column shape score (1 = same distribution)")
    ax.invert_yaxis()
    out.append(("Column shapes, per table", _png(fig)))
    plt.close(fig)

    fig, axes = plt.subplots(1, len(NUMERIC_PLOTS), figsize=(4 * len(NUMERIC_PLOTS), 3.6))
    for ax, (table, column) in zip(np.atleast_1d(axes), NUMERIC_PLOTS, strict=True):
        r = pd.to_numeric(real.as_dict()[table][column], errors="coerce").dropna()
        s = pd.to_numeric(twin.as_dict()[table][column], errors="coerce").dropna()
        if len(r) >= 2 * k and len(s):
            qr, qs = np.percentile(r, PERCENTILES), np.percentile(s, PERCENTILES)
            ax.plot(qr, qs, "o-", markersize=3)
            lo, hi = min(qr[0], qs[0]), max(qr[-1], qs[-1])
            ax.plot([lo, hi], [lo, hi], color="grey", linewidth=1)
        ax.set_title(f"{table}.{column}", fontsize=9)
        ax.set_xlabel("real percentile (5th to 95th)")
        ax.set_ylabel("twin percentile")
    out.append(("Numeric columns: twin against real percentiles", _png(fig)))
    plt.close(fig)

    fig, axes = plt.subplots(2, 3, figsize=(12, 6.5))
    for ax, (table, column) in zip(np.ravel(axes), CATEGORY_PLOTS, strict=True):
        r_frame, s_frame = real.as_dict()[table], twin.as_dict()[table]
        held = r_frame.dropna(subset=[column]).groupby(column)["pseudonym"].nunique()
        common = sorted(str(v) for v in held.index[held >= k])
        r = r_frame[column].astype(str).value_counts(normalize=True).reindex(common).fillna(0)
        s = s_frame[column].astype(str).value_counts(normalize=True).reindex(common).fillna(0)
        x = np.arange(len(common))
        ax.bar(x - 0.2, r.to_numpy(), 0.4, label="real")
        ax.bar(x + 0.2, s.to_numpy(), 0.4, label="twin")
        ax.set_xticks(x, common, rotation=60, ha="right", fontsize=7)
        ax.set_title(f"{table}.{column}", fontsize=9)
    np.ravel(axes)[0].legend(fontsize=8)
    fig.tight_layout()
    out.append((f"Shares of values held by at least {k} real patients", _png(fig)))
    plt.close(fig)
    return out


PUBLIC_KEYS = ("extract", "twin", "kind", "published", "gate", "fidelity", "beside", "constraint_violations",
               "rare_values_in_twin", "timings_s")  # fmt: skip
PRIVATE_FACTS = ("control_patients", "training_patients", "sampling")  # exact real counts


def public(report: dict[str, Any]) -> dict[str, Any]:
    """A DP twin's published report: its scores and the guarantee, no statistic of the real extract (the
    steward's copy in reports/synth/ holds everything)."""
    out = {key: report[key] for key in PUBLIC_KEYS if key in report}
    out["model"] = {key: value for key, value in report["model"].items() if key not in PRIVATE_FACTS}
    return out


def write(
    folder: Path, report: dict[str, Any], real: Tables, twin: Tables, k: int, *, real_plots: bool = True
) -> tuple[Path, Path]:
    """Write ``report.json`` and ``report.html`` into ``folder``; return their paths. ``real_plots`` false: no
    plot of the real extract's percentiles or shares (a DP twin's published report)."""
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    page = _html(report, _figures(report, real, twin, k, real_plots=real_plots))
    json_path, html_path = folder / "report.json", folder / "report.html"
    for path, text in ((json_path, json.dumps(report, indent=2, sort_keys=True)), (html_path, page)):
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # a reader never sees half a report
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    return json_path, html_path


def _html(report: dict[str, Any], figures: list[tuple[str, str]]) -> str:
    verdict = "published" if report["published"] else "refused"
    rows = "".join(
        f"<tr><td>{html.escape(g['label'])}</td><td>{g['value']:g}</td><td>{'&ge;' if g['at_least'] else '&le;'} "
        f"{g['limit']:g}</td><td>{'pass' if g['passed'] else '<b>FAIL</b>'}</td></tr>"
        for g in report["gate"].values()
    )
    timings = ", ".join(f"{html.escape(k)} {v:.1f} s" for k, v in report["timings_s"].items())
    plots = "".join(
        f"<h2>{html.escape(title)}</h2><img alt='{html.escape(title)}' src='data:image/png;base64,{png}'>"
        for title, png in figures
    )
    details = html.escape(
        json.dumps(
            {k: report[k] for k in ("fidelity", "beside", "quality", "privacy", "model") if k in report}, indent=1
        )
    )
    sizes = (
        f"{report['quality']['rows']['twin']['patients']:,} synthetic patients, trained on "
        f"{report['quality']['rows']['real']['patients']:,} real patients "
        f"({report['model']['control_patients']:,} held out as the control set)"
        if "quality" in report
        else "the extract's exact sizes are in the steward's copy of this report"
    )
    guarantee = _guarantee_html(report["model"].get("dp"))
    refusals = report.get("refusals_before", "(in the steward's copy)")
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Synthetic twin of {html.escape(report['extract'])}</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}td,th{padding:2px 10px}"
        "img{max-width:100%}pre{background:#f6f6f6;padding:1em;font-size:80%}</style></head><body>"
        f"<h1>Synthetic twin of extract {html.escape(report['extract'])}: {verdict}</h1>"
        f"<p>Model {html.escape(report['model']['name'])}, seed {report['model']['seed']}, {sizes}. "
        f"Timings: {timings}.</p>"
        f"{guarantee}<p>Gated on the coarsened SDV score (the extract as the rare-category rule leaves it); the "
        f"raw score and the train-on-twin, test-on-held-out-patients accuracy are reported. Earlier builds of this "
        f"twin refused by a gate: {refusals}.</p>"
        f"<table><tr><th>figure</th><th>value</th><th>policy</th><th></th></tr>{rows}</table>"
        f"{plots}<h2>Figures</h2><pre>{details}</pre></body></html>"
    )


def _guarantee_html(dp: dict[str, Any] | None) -> str:
    """The DP guarantee, stated where the steward and researchers read the report (nothing for a default twin)."""
    if not dp:
        return ""
    return (
        f"<p><b>Differential privacy:</b> {html.escape(str(dp['mechanism']))}, rho {dp['rho']:.6g} "
        f"(epsilon {dp['epsilon']:g} at delta {dp['delta']:.0e}), privacy unit {html.escape(dp['privacy_unit'])}. "
        f"Domain: {html.escape(dp['domain'])}. Outside the guarantee: {html.escape(dp['outside_the_guarantee'])} "
        "(a refusal tells the steward that some figure failed on the real extract).</p>"
    )
