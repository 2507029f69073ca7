"""``make bench``: every benchmark case beside its baseline, measured in this run.

    python -m benchmarks.run [--repeats N] [--only NAME] [--quick]

Prints a table (name, ours, baseline, ratio) and writes benchmarks/results.json.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from benchmarks.harness import Case, Side, machine, run_side, summarise

RESULTS = Path(__file__).with_name("results.json")


def cases(quick: bool) -> list[Case]:
    patients = 100_000 if quick else 1_000_000
    packets = 10_000 if quick else 100_000
    label = f"{patients // 1000:,}k" if patients < 1_000_000 else f"{patients // 1_000_000}M"
    return [
        Case(
            name="CLI start-up, 5 everyday commands",
            description=(
                "users list, audit show, extracts, budget show and pipeline check --help, each a fresh process: "
                "research-kit loads only the module of the command's group, against the same CLI made to load "
                "every command group first (as a CLI with all its imports at the top would)."
            ),
            ours=Side("command groups on first use", "benchmarks.cases_cli:lazy"),
            baseline=Side("every command group loaded", "benchmarks.cases_cli:eager"),
            throughput_unit="commands/s",
            goal="at least 2x faster",
        ),
        Case(
            name="CLI sign-in check, 5 everyday commands",
            description=(
                "The same five commands, each acting as the user signed in with 'research-kit login' (the token "
                "file read, its session looked up in the catalog), against the same workspace in demo mode, "
                "where --as is believed unverified. What knowing who acts costs each command."
            ),
            ours=Side("signed in (token looked up)", "benchmarks.cases_cli:lazy"),
            baseline=Side("demo mode (--as unverified)", "benchmarks.cases_cli:unverified"),
            throughput_unit="commands/s",
            goal="within 10% of the unverified commands (ratio at least 0.9)",
        ),
        Case(
            name=f"simulate {label} patients",
            description=(
                "research-kit simulate: chunks of 50,000 patients written as they are made (Parquet), against "
                "the same generator holding the whole registry in memory (one chunk)."
            ),
            ours=Side("chunked", "benchmarks.cases_simulate:simulate", {"patients": patients, "chunk_size": 50_000}),
            baseline=Side(
                "all in memory", "benchmarks.cases_simulate:simulate", {"patients": patients, "chunk_size": patients}
            ),
            throughput_unit="patients/s",
            goal="minutes for 1M patients; peak memory flat in the number of patients",
        ),
        Case(
            name=f"simulate memory, {label} vs {label}/10 patients",
            description="Peak memory of the chunked simulator at full size against a tenth of it: flat means bounded.",
            ours=Side(
                "chunked, full", "benchmarks.cases_simulate:simulate", {"patients": patients, "chunk_size": 50_000}
            ),
            baseline=Side(
                "chunked, a tenth",
                "benchmarks.cases_simulate:simulate",
                {"patients": patients // 10, "chunk_size": 50_000},
            ),
            throughput_unit="patients/s",
            goal="peak memory ratio close to 1",
        ),
        Case(
            name=f"ingest + pseudonymise {label} patients",
            description=(
                "research-kit ingest (validate every row, quarantine, pseudonymise, write the extract) of a "
                "simulated CSV export, against plain pandas: read_csv, an HMAC per row via apply, to_parquet."
            ),
            ours=Side("research-kit ingest", "benchmarks.cases_ingest:ours", {"patients": patients}),
            baseline=Side(
                "pandas read_csv/apply/to_parquet", "benchmarks.cases_ingest:baseline", {"patients": patients}
            ),
            throughput_unit="patients/s",
            goal="at least 3x faster than the baseline",
        ),
        Case(
            name=f"DP query latency, {label}-patient extract",
            description=(
                "Median latency of 20 mixed DP queries (counts, crosstabs, sums, means, medians, histograms) "
                "through research-kit (scale calibrated once per query shape, ledger and audit included), against "
                "straightforward OpenDP Context use (query, summarize, release) at the same noise scales."
            ),
            ours=Side("research-kit dp", "benchmarks.cases_dp:ours", {"patients": patients}),
            baseline=Side("OpenDP Context", "benchmarks.cases_dp:baseline", {"patients": patients}),
            throughput_unit="queries/s",
            goal="at least 20x faster (median latency)",
        ),
        Case(
            name="pipeline of 20 actions, cold",
            description=(
                "research-kit run (2 workers, IPC kernels, provenance and audit included) of a 20-action pipeline "
                "with mixed dependencies on a 2,000-patient extract, against one 'papermill' command per notebook "
                "in dependency order."
            ),
            ours=Side("research-kit run", "benchmarks.cases_pipeline:ours_cold"),
            baseline=Side("sequential papermill", "benchmarks.cases_pipeline:papermill_sequential"),
            throughput_unit="actions/s",
            goal="at least 1.7x faster on 2 cores",
        ),
        Case(
            name="pipeline of 20 actions, cold, sandboxed",
            description=(
                "The same cold research-kit run with every action in its bubblewrap sandbox (input view, broker, "
                "limits watched) against the same run with [runner].sandbox = 'off', in the same session."
            ),
            ours=Side("research-kit run, sandboxed", "benchmarks.cases_pipeline:ours_cold"),
            baseline=Side("research-kit run, sandbox off", "benchmarks.cases_pipeline:ours_unsandboxed_cold"),
            throughput_unit="actions/s",
            goal="at most 5% slower (time ratio at least 0.95)",
        ),
        Case(
            name="pipeline of 20 actions, no-change rerun",
            description=(
                "research-kit run a second time with nothing changed (every action reused by its content key), "
                "against the sequential papermill commands, which have no cache."
            ),
            ours=Side("research-kit run, nothing changed", "benchmarks.cases_pipeline:ours_rerun"),
            baseline=Side("sequential papermill", "benchmarks.cases_pipeline:papermill_sequential"),
            throughput_unit="actions/s",
            goal="at least 20x faster",
        ),
        Case(
            name="synthetic twin, 2,000 patients",
            description=(
                "Fit + sample of research-kit's twin model (a seeded SDV GaussianCopula on patient profiles, "
                "children conditioned on synthetic patients, rare codes withheld) against SDV's default "
                "multi-table synthesizer (HMASynthesizer on detected metadata), on the same 2,000 patients of "
                "the demo extract; the same SDV quality report scores both."
            ),
            ours=Side("research-kit twin model", "benchmarks.cases_synth:ours", {"patients": 2_000}),
            baseline=Side("SDV HMASynthesizer", "benchmarks.cases_synth:baseline", {"patients": 2_000}),
            throughput_unit="patients/s",
            goal="quality at least HMA's, zero constraint violations and rare codes",
            repeats=1,
        ),
        Case(
            name="synthetic twin of the 30,000-patient demo extract",
            description=(
                "research-kit synth on the demo extract under the default policy (fit, sample, checks, quality "
                "and privacy evaluation, gate, publish), against SDV's HMASynthesizer fit + sample on the same "
                "tables, stopped after 15 minutes."
            ),
            ours=Side("research-kit synth", "benchmarks.cases_synth:build"),
            baseline=Side(
                "SDV HMASynthesizer", "benchmarks.cases_synth:baseline", {"patients": 30_000, "limit_s": 900}
            ),
            throughput_unit="patients/s",
            goal="under 60 s on 2 cores, quality >= 0.85, every privacy threshold met",
            large=True,
        ),
        *(
            Case(
                name=f"DP twin, {mechanism.upper()} at epsilon {epsilon}, {patients:,} patients",
                description=(
                    f"research-kit synth --model {mechanism} --epsilon {epsilon} (OpenDP's {mechanism.upper()} on "
                    "the patient table, Gaussian histograms of the codes, gates, report) against the default "
                    "twin model on the same extract: time, SDV quality raw and coarsened, TSTR and TRTR accuracy."
                ),
                ours=Side(
                    f"DP twin ({mechanism.upper()}, epsilon {epsilon})",
                    "benchmarks.cases_dp_twin:dp",
                    {"patients": patients, "mechanism": mechanism, "epsilon": epsilon},
                ),
                baseline=Side("default twin model", "benchmarks.cases_dp_twin:default", {"patients": patients}),
                throughput_unit="patients/s",
                goal="at epsilon 4 on 30,000 patients: TSTR within 0.05 of the default's; the faster under 120 s",
                repeats=1,
                large=patients > 3_000,
            )
            for patients in (3_000, 30_000)
            for mechanism in ("mst", "aim")
            # epsilon 8 once: where MST on 30,000 patients comes within 0.05 of the default's TSTR
            for epsilon in ((1, 4, 8) if (patients, mechanism) == (30_000, "mst") else (1, 4))
        ),
        Case(
            name="suppression of a 20 x 20 x 10 table",
            description=(
                "Protected secondary suppression (research-kit suppress: line pairing, exact intervals, hypercubes) "
                "of a seeded "
                "20 x 20 x 10 count table with every margin (4,851 cells, ~15% of interior cells primary), against "
                "naive suppression (each line with one suppressed cell loses its smallest other cell) repaired "
                "after attack.audit until every interval reaches the same width. Time: the protection (the naive "
                "side's repair audits included); the final full audit is timed apart (audit_s)."
            ),
            ours=Side("protected suppression", "benchmarks.cases_suppression:ours"),
            baseline=Side("naive + audit-driven repair", "benchmarks.cases_suppression:baseline"),
            throughput_unit="cells/s",
            goal="no interval below the protection width; protected under 10 s on 2 cores; fewer cells lost than "
            "naive + repair",
        ),
        Case(
            name=f"ingest memory, {label} x 10 vs {label} patients",
            description="Peak memory of research-kit ingest at ten times the size against the size above.",
            ours=Side("ingest, 10x", "benchmarks.cases_ingest:ours", {"patients": patients * 10}),
            baseline=Side("ingest, 1x", "benchmarks.cases_ingest:ours", {"patients": patients}),
            throughput_unit="patients/s",
            goal="under 8 GB peak at 10M patients",
            large=True,
        ),
        *(
            Case(
                name=f"ingest of {packets:,} phenopackets, {label}",
                description=(
                    "research-kit read_phenopackets (every record validated with the phenopackets package through "
                    "json_format, by skeletons remembered across records; rows read from the JSON; one process per "
                    "core) writing the raw tables to Parquet, against json_format.Parse of each record into a "
                    "list, then one pandas DataFrame per table written to Parquet (issue 23, part 9)."
                ),
                ours=Side(
                    "research-kit read_phenopackets",
                    "benchmarks.cases_phenopackets:ours",
                    {"packets": packets, "layout": layout},
                ),
                baseline=Side(
                    "json_format.Parse + pandas",
                    "benchmarks.cases_phenopackets:baseline",
                    {"packets": packets, "layout": layout},
                ),
                throughput_unit="packets/s",
                goal="at least 3x faster than the baseline, peak memory under 2 GB, every record validated",
            )
            for layout, label in (("files", "one file each"), ("jsonl", "as JSON lines"))
        ),
        Case(
            name=f"whole ingest of {packets:,} phenopackets, as JSON lines",
            description=(
                "research-kit ingest with a phenopackets mapping: read and validated as above, then every row "
                "checked by the registry's rules, pseudonymised and registered as an extract (quarantine, "
                "manifest, reconciliation), against the same baseline, which does none of that after parsing."
            ),
            ours=Side(
                "research-kit ingest --mapping",
                "benchmarks.cases_phenopackets:whole_ingest",
                {"packets": packets, "layout": "jsonl"},
            ),
            baseline=Side(
                "json_format.Parse + pandas",
                "benchmarks.cases_phenopackets:baseline",
                {"packets": packets, "layout": "jsonl"},
            ),
            throughput_unit="packets/s",
            goal="at least 3x faster than the baseline, peak memory under 2 GB",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=int(os.environ.get("BENCH_REPEATS", "3")))
    parser.add_argument("--only", help="run only the cases whose name contains this")
    parser.add_argument("--quick", action="store_true", help="one tenth of the sizes, for a smoke run")
    parser.add_argument("--large", action="store_true", help="also the large cases (10x sizes), run once")
    args = parser.parse_args()
    console = Console(width=max(Console().width, 160))
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="rk-bench-") as tmp:
        for case in cases(args.quick):
            if (args.only and args.only not in case.name) or (case.large and not args.large):
                continue
            repeats = 1 if case.large else min(args.repeats, case.repeats or args.repeats)
            entry: dict[str, Any] = {
                "name": case.name,
                "description": case.description,
                "goal": case.goal,
                "repeats": repeats,
                "measured": machine()["when"],
            }
            for key, side in (("ours", case.ours), ("baseline", case.baseline)):
                runs = []
                for i in range(repeats):
                    console.print(f"[dim]{case.name}: {side.label}, run {i + 1}/{repeats}[/dim]")
                    runs.append(run_side(side, Path(tmp) / key))
                entry[key] = {"label": side.label, **summarise(runs, case.throughput_unit)}
            entry["time_ratio"] = round(entry["baseline"]["median_s"] / entry["ours"]["median_s"], 2)
            entry["memory_ratio"] = round(entry["baseline"]["peak_mb"] / entry["ours"]["peak_mb"], 2)
            results.append(entry)
    show(console, results)
    for entry in results:
        if entry["name"].startswith("suppression"):
            from benchmarks.cases_suppression import goal_lines

            for line in goal_lines(entry):
                console.print(f"{entry['name']}: {line}")
    RESULTS.write_text(json.dumps({"machine": machine(), "results": merged(results)}, indent=2))
    console.print(f"written: {RESULTS}")


def merged(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """This run's results, plus earlier ones of cases it did not run (--only, --large)."""
    try:
        earlier = json.loads(RESULTS.read_text())["results"]
    except (OSError, ValueError, KeyError):
        earlier = []
    names = {r["name"] for r in results}
    return [r for r in earlier if r["name"] not in names] + results


def side_text(side: dict[str, Any]) -> str:
    text = (
        f"{side['label']}: {side['median_s']:.2f} s, peak {side['peak_mb']:,.0f} MB "
        f"(anonymous {side['peak_anon_mb']:,.0f} MB)"
    )
    if "throughput" in side:
        text += f", {side['throughput']:,.0f} {side['throughput_unit']}"
    return text


def show(console: Console, results: list[dict[str, Any]]) -> None:
    table = Table(title="benchmarks (median of repeats; each side in a fresh process)")
    for col in ("name", "ours", "baseline", "time ratio (baseline/ours)", "memory ratio (baseline/ours)"):
        table.add_column(col)
    for r in results:
        table.add_row(
            r["name"], side_text(r["ours"]), side_text(r["baseline"]), f"{r['time_ratio']}x", f"{r['memory_ratio']}x"
        )
    console.print(table)


if __name__ == "__main__":
    main()
