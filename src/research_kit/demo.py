"""``research-kit demo``: the whole flow on a simulated registry, with the same functions the CLI uses.

Each step of the flow adds itself here as it is built. Today: a workspace, a
simulated identifiable export (clean) and a second one with injected faults
(the ingest test oracle), and a check of the audit chain.
"""

from __future__ import annotations

from rich.console import Console
from rich.rule import Rule

from research_kit import audit, reports
from research_kit.errors import IntegrityError
from research_kit.registry.export import SimulationSpec
from research_kit.registry.raw import simulate_raw_export
from research_kit.workspace import init_workspace

FAULTY_SHARE = 10  # the faulty export is this many times smaller than the clean one


def run_demo(console: Console, *, patients: int, seed: int) -> None:
    console.print(Rule("1. workspace"))
    ws, created = init_workspace()
    reports.print_init(console, ws, created)

    console.print(Rule("2. a simulated raw export (identifiable, as clinical systems deliver it)"))
    spec = SimulationSpec(patients=patients, seed=seed, format="parquet")
    with reports.patient_progress(console, patients) as advance:
        export_id, result = simulate_raw_export(ws, spec, name="demo", replace=True, progress=advance)
    reports.print_simulation(console, export_id, result)

    console.print(Rule("3. the same kind of export with realistic faults (CSV, one file in Latin-1)"))
    small = max(patients // FAULTY_SHARE, 100)
    faulty = SimulationSpec(patients=small, seed=seed + 1, format="csv", faults=True)
    with reports.patient_progress(console, small) as advance:
        faulty_id, faulty_result = simulate_raw_export(ws, faulty, name="demo-faults", replace=True, progress=advance)
    console.print(
        f"{faulty_id}: {faulty_result.rows['patients']:,} patient rows, {faulty_result.faults:,} faults "
        f"listed in {faulty_result.path / 'faults.json'}"
    )

    console.print(Rule("4. audit log"))
    with ws.catalog() as conn:
        verdict = audit.verify(conn, ws.audit_path)
    if not verdict.ok:
        raise IntegrityError(f"{ws.audit_path}: {verdict.problem}")
    console.print(f"audit log intact: {verdict.entries} entries")

    console.print(Rule("where to look"))
    console.print(f"workspace     {ws.root}")
    console.print(f"policy        {ws.policy_path}")
    console.print(f"raw exports   {ws.raw_dir}  (identifiable: never leaves the workspace)")
    console.print("audit log     research-kit audit show   |   research-kit audit verify")
