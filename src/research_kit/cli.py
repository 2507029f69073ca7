"""The ``research-kit`` command: parses arguments, calls the library, maps errors to exit codes.

No rule lives here. A :class:`~research_kit.errors.UserError` becomes one line
on stderr and its exit code; anything else keeps its traceback (without local
variables, which could hold registry rows).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from research_kit import __version__
from research_kit.errors import UserError

app = typer.Typer(
    name="research-kit",
    help="A research workspace for a national rare-disease registry.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
audit_app = typer.Typer(help="The tamper-evident audit log.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")
key_app = typer.Typer(help="The pseudonymisation key (kept outside the workspace).", no_args_is_help=True)
app.add_typer(key_app, name="key")

console = Console(highlight=False)


def _version(value: bool) -> None:
    if value:
        print(f"research-kit {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version and exit.")
    ] = False,
) -> None:
    """A research workspace for a national rare-disease registry.

    The workspace is ./.workspace unless RESEARCH_KIT_HOME names another folder.
    """


@app.command()
def init(
    path: Annotated[
        Path | None, typer.Argument(help="Folder of the new workspace [default: $RESEARCH_KIT_HOME or .workspace]")
    ] = None,
) -> None:
    """Create a workspace: policy file, catalog and audit log (an existing one is brought up to date)."""
    from research_kit import reports
    from research_kit.workspace import init_workspace

    ws, created = init_workspace(path)
    reports.print_init(console, ws, created)


@app.command()
def simulate(
    patients: Annotated[int, typer.Option(help="Number of patients.")] = 30_000,
    seed: Annotated[int, typer.Option(help="Random seed: the same seed gives the same export.")] = 1,
    fmt: Annotated[str, typer.Option("--format", help="File format: parquet or csv.")] = "parquet",
    faults: Annotated[
        bool, typer.Option("--faults", help="Inject realistic faults; list them in faults.json.")
    ] = False,
    name: Annotated[str | None, typer.Option(help="Export name [default: sim-n<patients>-s<seed>].")] = None,
    out: Annotated[Path | None, typer.Option(help="Write here instead of the workspace's raw/ folder.")] = None,
    replace: Annotated[bool, typer.Option("--replace", help="Replace an existing export of that name.")] = False,
) -> None:
    """Simulate an identifiable raw export of the registry (patients, diagnoses, phenotypes, encounters)."""
    from research_kit import reports
    from research_kit.registry.export import SimulationSpec
    from research_kit.registry.raw import simulate_raw_export
    from research_kit.workspace import open_workspace

    spec = SimulationSpec(patients=patients, seed=seed, format=fmt, faults=faults)
    ws = open_workspace()
    with reports.patient_progress(console, patients) as advance:
        export_id, result = simulate_raw_export(ws, spec, name=name, out=out, replace=replace, progress=advance)
    reports.print_simulation(console, export_id, result)


@key_app.command("new")
def key_new(
    path: Annotated[
        Path | None, typer.Option(help="Key file [default: $RESEARCH_KIT_KEY_FILE or .secrets/pseudonymisation.key]")
    ] = None,
) -> None:
    """Write a new 256-bit random key (mode 0600). An existing key is never overwritten."""
    from research_kit.pseudonymise.keys import new_key
    from research_kit.workspace import default_root

    target, fingerprint = new_key(path, workspace_root=default_root())
    console.print(f"new key written: {target} (mode 0600), fingerprint {fingerprint}")
    console.print("Back it up somewhere safe: without it, later extracts will not link to earlier ones.")


@key_app.command("show")
def key_show(
    path: Annotated[
        Path | None, typer.Option(help="Key file [default: $RESEARCH_KIT_KEY_FILE or .secrets/...]")
    ] = None,
) -> None:
    """Check the key and show its fingerprint (never the key)."""
    from research_kit.pseudonymise.keys import key_path, load_key

    key = load_key(path)
    console.print(f"{key_path(path)}: fingerprint {key.fingerprint}")


@app.command()
def ingest(
    raw: Annotated[list[Path], typer.Argument(help="The raw export: a folder, or its table files.")],
    extract: Annotated[str, typer.Option("--extract", help="Id of the new extract (e.g. 2026-11).")],
    key: Annotated[Path | None, typer.Option(help="Key file [default: $RESEARCH_KIT_KEY_FILE or .secrets/...]")] = None,
) -> None:
    """Validate, quarantine and pseudonymise a raw export into a new, immutable extract."""
    from research_kit import reports
    from research_kit.ingest.pipeline import ingest as run_ingest
    from research_kit.pseudonymise.keys import load_key
    from research_kit.workspace import open_workspace

    ws = open_workspace()
    loaded = load_key(key)
    with reports.steps(console, "ingest") as step:
        result = run_ingest(ws, raw, extract, loaded, step=step)
    reports.print_ingest(console, result)


@app.command()
def risk(
    extract: Annotated[str, typer.Argument(help="Id of the extract.")],
    enforce_k: Annotated[
        int | None, typer.Option("--enforce-k", help="Also generalise/suppress until k holds; report the cost.")
    ] = None,
) -> None:
    """Re-identification risk of an extract on the policy's quasi-identifiers (table on screen, JSON on disk)."""
    from research_kit import reports
    from research_kit.pseudonymise.assessment import assess_extract
    from research_kit.workspace import open_workspace

    reports.print_risk(console, assess_extract(open_workspace(), extract, enforce=enforce_k))


@app.command()
def extracts() -> None:
    """List the registered extracts."""
    from research_kit import reports
    from research_kit.extracts import list_extracts
    from research_kit.workspace import open_workspace

    reports.print_extracts(console, list_extracts(open_workspace()))


@app.command()
def demo(
    patients: Annotated[int, typer.Option(help="Number of simulated patients.")] = 30_000,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1,
) -> None:
    """The whole flow on a simulated registry, in the workspace ($RESEARCH_KIT_HOME or .workspace)."""
    from research_kit.demo import run_demo

    run_demo(console, patients=patients, seed=seed)


@audit_app.command("verify")
def audit_verify() -> None:
    """Check every entry of the audit log; exit 0 only when the chain is intact."""
    from research_kit import audit
    from research_kit.errors import IntegrityError
    from research_kit.workspace import open_workspace

    ws = open_workspace()
    with ws.catalog() as conn:
        verdict = audit.verify(conn, ws.audit_path)
    if not verdict.ok:
        raise IntegrityError(f"{ws.audit_path}: {verdict.problem}")
    console.print(f"audit log intact: {verdict.entries} entries, chain and anchor verified")


@audit_app.command("show")
def audit_show(last: Annotated[int, typer.Option(help="How many of the latest entries.")] = 20) -> None:
    """List the latest audit entries (who did what, when)."""
    from research_kit import audit, reports
    from research_kit.workspace import open_workspace

    ws = open_workspace()
    reports.print_audit(console, audit.read_entries(ws.audit_path)[-last:] if last > 0 else [])


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; a user's mistake exits with one line, never a traceback."""
    try:
        app(args=argv, prog_name="research-kit")
    except UserError as exc:
        print(f"research-kit: {exc.label}: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
