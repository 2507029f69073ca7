"""A workspace, its key, a simulated export, an ingest, the extracts and their risk, on the terminal (the key
and the extracts as JSON too).

Only aggregates, hashes and paths are shown, never a registry row, an identifier or key material.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from research_kit.console.output import print_table
from research_kit.core import catalog
from research_kit.core.workspace import Workspace

if TYPE_CHECKING:
    from research_kit.core.extracts import Extract
    from research_kit.ingest.pipeline import IngestResult
    from research_kit.pseudonymise.assessment import Assessment
    from research_kit.pseudonymise.risk import RiskReport
    from research_kit.simulator.export import SimulationResult


def print_init(console: Console, ws: Workspace, created: bool) -> None:
    with ws.catalog() as conn:
        version = catalog.schema_version(conn)
    verb = "created" if created else "already initialised; brought up to date"
    console.print(f"workspace {verb}: {ws.root}")
    console.print(f"  policy   {ws.policy_path}  (every threshold the platform applies)")
    console.print(f"  catalog  {ws.catalog_path}  (schema version {version})")
    console.print(f"  audit    {ws.audit_path}  (hash-chained; check with 'research-kit audit verify')")


def print_key(console: Console, path: Path, fingerprint: str) -> None:
    console.print(f"{path}: fingerprint {fingerprint}")


def key_json(path: Path, fingerprint: str) -> dict[str, Any]:
    """``key show --json``: the key file's ``path`` and the key's ``fingerprint``; never the key itself."""
    return {"path": str(path), "fingerprint": fingerprint}


def print_simulation(console: Console, export_id: str, result: SimulationResult) -> None:
    table = Table(title=f"raw export {export_id} (identifiable: stays in the workspace)")
    table.add_column("table")
    table.add_column("rows", justify="right")
    table.add_column("file")
    for name, rows in result.rows.items():
        table.add_row(name, f"{rows:,}", str(result.path / result.files[name]))
    print_table(console, table)
    print_shape(console, result.shape)
    if result.spec.faults:
        console.print(f"faults injected: {result.faults:,}, listed in {result.path / 'faults.json'}")


def print_shape(console: Console, shape: dict[str, Any]) -> None:
    delay = shape["diagnostic_delay_years"]
    console.print(
        f"{shape['patients']:,} patients with {shape['distinct_diseases']:,} distinct diagnosed diseases: "
        f"{shape['diseases_with_100_or_more']} held by 100 or more patients, "
        f"{shape['diseases_with_1_or_2_patients']:,} by only one or two."
    )
    console.print(
        f"diagnostic delay: mean {delay['mean']} years, median {delay['median']}, 90th percentile {delay['p90']}; "
        f"onset in childhood: {shape['childhood_onset_share']:.0%}; "
        f"cross-border insured: {shape['cross_border_share']:.0%}"
    )
    top = Table(title="most frequent diseases")
    top.add_column("ORPHA")
    top.add_column("disease")
    top.add_column("patients", justify="right")
    for row in shape["top_diseases"]:
        top.add_row(row["orpha"], row["name"], f"{row['patients']:,}")
    print_table(console, top)


def print_ingest(console: Console, result: IngestResult) -> None:
    table = Table(title=f"reconciliation of extract {result.extract_id}: rows in = accepted + quarantined + withheld")
    for col in ("table", "rows in", "accepted", "quarantined", "withheld", "balanced"):
        table.add_column(col, justify="left" if col == "table" else "right")
    for name, c in result.counts.items():
        table.add_row(
            name, f"{c.rows_in:,}", f"{c.accepted:,}", f"{c.quarantined:,}", f"{c.withheld:,}",
            "yes" if c.balanced else "[red]NO[/red]",
        )  # fmt: skip
    print_table(console, table)
    _print_withheld(console, result)
    reasons = Table(title="quarantine reasons (a row may have several)")
    for col in ("table", "field: reason", "rows"):
        reasons.add_column(col, justify="right" if col == "rows" else "left")
    for name, c in result.counts.items():
        for reason, n in sorted(c.reasons.items(), key=lambda kv: -kv[1]):
            reasons.add_row(name, reason.replace(":", ": "), f"{n:,}")
    if reasons.row_count:
        print_table(console, reasons)
    normalised = [f"{name}.{field} ({n:,})" for name, c in result.counts.items() for field, n in c.normalised.items()]
    if normalised:
        console.print("whitespace or case normalised (not quarantined): " + ", ".join(normalised))
    _print_sources(console, result.reconciliation or {})
    console.print(f"extract {result.extract_id}: {result.path}  (content hash {result.content_hash[:16]})")
    console.print(f"quarantine (steward only, holds raw values): {result.quarantine}")


def _print_withheld(console: Console, result: IngestResult) -> None:
    """Why patients were withheld (each for one reason), and the opt-outs the export holds but the register not."""
    patients = result.counts.get("patients")
    why = patients.withheld_reasons if patients is not None else {}
    if why:
        console.print("patients withheld: " + ", ".join(f"{reason} {n:,}" for reason, n in why.items()))
    register = (result.reconciliation or {}).get("optout_register") or {}
    if register:
        console.print(f"built against opt-out register version {register['version']} ({register['count']:,} people)")
    missing = int(register.get("export_opted_out_not_in_register") or 0)
    if missing:
        console.print(
            f"[yellow]{missing:,} patients the export marks opted out are not in the opt-out register[/yellow] "
            "(withheld all the same): record them with 'research-kit optout add' or 'optout import'"
        )


def _print_sources(console: Console, rec: dict[str, Any]) -> None:
    """Per source: records in = converted + refused; phenotypes observed and excluded; codes not checked; merges."""
    sources = rec.get("sources") or {}
    if sources:
        table = Table(title="sources: records in = converted + refused (whole records a reader could not read)")
        for col in ("source", "kind", "records in", "converted", "refused", "balanced"):
            table.add_column(col, justify="left" if col in ("source", "kind") else "right")
        for name, s in sources.items():
            table.add_row(
                name, s["kind"], f"{s['records_in']:,}", f"{s['converted']:,}", f"{s['refused']:,}",
                "yes" if s["balanced"] else "[red]NO[/red]",
            )  # fmt: skip
        print_table(console, table)
    kinds = (rec.get("phenotypes") or {}).get("by_kind") or {}
    if kinds.get("excluded", {}).get("in"):
        parts = [
            f"{kind} {k['in']:,} in = {k['accepted']:,} accepted + {k['quarantined']:,} quarantined + "
            f"{k['refused']:,} refused + {k['withheld']:,} withheld"
            for kind, k in kinds.items()
        ]
        console.print("phenotypes: " + "; ".join(parts))
    unchecked = (rec.get("diagnoses") or {}).get("unchecked_codes") or {}
    if unchecked:
        listed = ", ".join(f"{system} {n:,}" for system, n in sorted(unchecked.items()))
        console.print(f"diagnosis codes accepted but not checked against a list (no full offline list): {listed}")
    merge = rec.get("merge") or {}
    if merge.get("rows_merged"):
        merged = ", ".join(f"{t} {n:,}" for t, n in merge["rows_merged"].items())
        conflicts = ", ".join(f"{f} {n:,}" for f, n in sorted(merge.get("conflicts", {}).items())) or "none"
        console.print(
            f"rows several sources held, merged into one (rows in counts them once): {merged}; "
            f"fields where the sources disagreed (precedence decided): {conflicts}"
        )


def print_quality(console: Console, done: Any) -> None:
    """The quality report's table: per common data element, completeness and validity."""
    report = json.loads(done.json.read_text(encoding="utf-8"))
    table = Table(title=f"EU common data set: coverage and quality of extract {done.extract}")
    for col in ("#", "element", "completeness", "validity", "from"):
        table.add_column(col, justify="right" if col in ("#", "completeness", "validity") else "left")
    for e in report["elements"]:
        validity = e.get("validity")
        table.add_row(
            str(e["number"]), e["name"], f"{e['completeness']:.0%}",
            "" if validity is None else f"{validity:.0%}", ", ".join(e.get("columns", [])),
        )  # fmt: skip
    print_table(console, table)
    console.print(f"report: {done.html}  (JSON: {done.json})")


def print_extracts(console: Console, extracts: list[Extract]) -> None:
    table = Table(title="extracts")
    for col in ("id", "created (UTC)", "patients", "content hash", "key fingerprint"):
        table.add_column(col)
    for e in extracts:
        table.add_row(e.id, e.created_at, f"{e.patients:,}", e.content_hash[:16], e.key_fingerprint)
    print_table(console, table)


def extracts_json(extracts: list[Extract]) -> list[dict[str, Any]]:
    """``extracts --json``: per extract ``id``, ``created_at``, ``patients`` (how many), ``content_hash`` (whole)
    and ``key_fingerprint`` (of the key that pseudonymised it)."""
    return [
        {
            "id": e.id,
            "created_at": e.created_at,
            "patients": e.patients,
            "content_hash": e.content_hash,
            "key_fingerprint": e.key_fingerprint,
        }
        for e in extracts
    ]


def _risk_rows(r: RiskReport) -> list[tuple[str, str]]:
    def share(x: float | None) -> str:
        return "n/a" if x is None else f"{x:.1%}"

    return [
        ("records (patients)", f"{r.records:,}"),
        ("equivalence classes", f"{r.classes:,}"),
        (f"k-anonymity (policy k = {r.k_target})", f"{r.k:,}"),
        (
            f"records in classes smaller than {r.k_target}",
            f"{r.records_below_k:,} ({r.records_below_k / r.records:.1%})",
        ),
        ("distinct l-diversity of the diagnosis", f"{r.l_diversity:,}"),
        ("prosecutor risk: highest", share(r.prosecutor_highest)),
        ("prosecutor risk: average", share(r.prosecutor_average)),
        (f"prosecutor risk: records above {r.risk_threshold:.0%}", share(r.prosecutor_at_risk)),
        ("marketer risk", share(r.marketer)),
        ("journalist risk: highest", share(r.journalist_highest)),
        ("journalist risk: average", share(r.journalist_average)),
        (f"journalist risk: records above {r.risk_threshold:.0%}", share(r.journalist_at_risk)),
        ("records outside the population table", f"{r.outside_population:,}"),
    ]


def _distinct_shares(value: float, limit: float) -> tuple[str, str]:
    """Two shares as percentages, with as many decimals as it takes for a larger value not to read as equal."""
    for decimals in range(1, 5):
        shown = f"{value:.{decimals}%}", f"{limit:.{decimals}%}"
        if shown[0] != shown[1]:
            return shown
    return f"{value:.4%}", f"{limit:.4%}"


def print_risk(console: Console, assessment: Assessment) -> None:
    r = assessment.report
    enforced = assessment.enforcement
    table = Table(
        title=f"re-identification risk of extract {assessment.extract_id} on {', '.join(r.quasi_identifiers)}"
    )
    table.add_column("measure")
    table.add_column("as extracted", justify="right")
    if enforced is not None:
        table.add_column(f"after enforcing k = {enforced.report.k_target}", justify="right")
        for (name, before), (_, after) in zip(_risk_rows(r), _risk_rows(enforced.report), strict=True):
            table.add_row(name, before, after)
    else:
        for name, value in _risk_rows(r):
            table.add_row(name, value)
    print_table(console, table)
    if enforced is not None:
        levels = ", ".join(f"{qi} level {level}" for qi, level in enforced.levels.items())
        console.print(
            f"cost of k = {enforced.report.k_target}: {enforced.rows_suppressed:,} records suppressed "
            f"({enforced.rows_suppressed / r.records:.1%}), precision lost {enforced.precision_lost:.0%} ({levels})"
        )
        if assessment.over_suppression:
            share, limit = _distinct_shares(enforced.rows_suppressed / r.records, assessment.max_suppression)
            warning = (
                f"warning: enforcing k = {enforced.report.k_target} suppresses {enforced.rows_suppressed:,} of "
                f"{r.records:,} records ({share}), more than the policy allows ([risk].max_suppression = {limit}); "
                "no generalisation of the quasi-identifiers keeps within it"
            )
            console.print(f"[yellow]{escape(warning)}[/]", soft_wrap=True)
    apart = assessment.without_dates
    if apart is not None:
        table = Table(
            title=f"... and its {apart.records:,} patients of sources without dates, on "
            f"{', '.join(apart.quasi_identifiers)}"
        )
        table.add_column("measure")
        table.add_column("as extracted", justify="right")
        for name, value in _risk_rows(apart):
            table.add_row(name, value)
        print_table(console, table)
    console.print(f"report: {assessment.json_path}  plot: {assessment.plot_path}")
