"""What ``research-kit synth`` shows: the gate's figures against the policy, the tables' sizes, where to look.

Scores, sizes and paths only: never a value of the twin or of the extract.
"""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from research_kit.console.output import print_table
from research_kit.synth.publish import TwinResult


def print_twin(console: Console, result: TwinResult) -> None:
    name = result.twin_id or result.extract_id
    table = Table(title=f"synthetic twin {name} of extract {result.extract_id} ({result.model}, seed {result.seed})")
    for column in ("figure", "value", "policy", ""):
        table.add_column(column, justify="left" if column == "figure" else "right")
    for figure in result.figures.values():
        side = ">=" if figure.at_least else "<="
        verdict = "pass" if figure.passed else "[red]FAIL[/red]"
        table.add_row(figure.label, f"{figure.value:g}", f"{side} {figure.limit:g}", verdict)
    print_table(console, table)
    rows = ", ".join(f"{name} {n:,}" for name, n in result.rows.items())
    timings = ", ".join(f"{step} {seconds:.1f} s" for step, seconds in result.timings.items())
    console.print(f"rows: {rows}")
    if result.fidelity:
        f = result.fidelity
        console.print(
            f"quality: SDV {f['quality_raw']:g} raw, {f['quality_coarsened']:g} coarsened as the twin is; "
            f"train on the twin, test on held-out patients: accuracy {f['tstr_accuracy']:g} "
            f"(trained on real patients: {f['trtr_accuracy']:g})"
        )
    if result.guarantee:
        g = result.guarantee
        console.print(
            f"differential privacy: {g['mechanism']}, rho {g['rho']:.6g} (epsilon {g['epsilon']:g} at delta "
            f"{g['delta']:.0e}) charged to the registry's DP-twin budget; domain from public lists only"
        )
    console.print(f"time: {timings}")
    console.print(f"published: {result.path}  (content hash {result.content_hash[:16]})")
    console.print(f"report: {result.report}")
