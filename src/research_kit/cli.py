"""The ``research-kit`` command: parses arguments, calls the library, maps errors to exit codes.

No rule lives here. A :class:`~research_kit.errors.UserError` becomes one line
on stderr and its exit code; anything else keeps its traceback (without local
variables, which could hold registry rows).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape

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

pipeline_app = typer.Typer(help="Study pipelines (pipelines/*.yaml).", no_args_is_help=True)
app.add_typer(pipeline_app, name="pipeline")
budget_app = typer.Typer(help="Privacy budgets: the committee grants, anyone reads.", no_args_is_help=True)
app.add_typer(budget_app, name="budget")
users_app = typer.Typer(help="The workspace's users and their roles.", no_args_is_help=True)
app.add_typer(users_app, name="users")
outputs_app = typer.Typer(help="A study's outputs: checks, submission, mitigations.", no_args_is_help=True)
app.add_typer(outputs_app, name="outputs")
review_app = typer.Typer(help="The committee's review of submitted outputs.", no_args_is_help=True)
app.add_typer(review_app, name="review")
sandbox_app = typer.Typer(help="The sandbox researcher code runs in (docs/security.md).", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")

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
    acting_as: Annotated[
        str | None, typer.Option("--as", help="Act as this workspace user [default: $RESEARCH_KIT_USER or login]")
    ] = None,
) -> None:
    """A research workspace for a national rare-disease registry.

    The workspace is ./.workspace unless RESEARCH_KIT_HOME names another folder.
    """
    if acting_as is not None:
        import os

        from research_kit.audit import ACTOR_ENV

        os.environ[ACTOR_ENV] = acting_as


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
def synth(
    extract: Annotated[str, typer.Argument(help="Id of the extract.")],
    model: Annotated[
        str, typer.Option(help="Patients' model: gaussian_copula, ctgan, tvae or copulagan.")
    ] = "gaussian_copula",
    seed: Annotated[int, typer.Option(help="The same extract and seed give the same twin.")] = 0,
    replace: Annotated[bool, typer.Option("--replace", help="Replace the extract's published twin.")] = False,
) -> None:
    """Build an extract's synthetic twin; publish it to synthetic/ID/ only if every policy figure holds."""
    from research_kit import reports
    from research_kit.synth import build_twin
    from research_kit.synth.display import print_twin
    from research_kit.workspace import open_workspace

    ws = open_workspace()
    with reports.steps(console, f"synthetic twin of {extract}") as step:
        result = build_twin(ws, extract, model=model, seed=seed, progress=step, replace=replace)
    print_twin(console, result)


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


@budget_app.command("grant")
def budget_grant(
    study: Annotated[str, typer.Argument(help="The study (its pipeline's id).")],
    rho: Annotated[float | None, typer.Option("--rho", help="Budget to add, in rho (zCDP).")] = None,
    epsilon: Annotated[float | None, typer.Option("--epsilon", help="... or in epsilon, at --delta.")] = None,
    delta: Annotated[float | None, typer.Option("--delta", help="Delta for --epsilon [default: [dp].delta].")] = None,
    note: Annotated[str, typer.Option(help="The committee's reference for the decision.")] = "",
) -> None:
    """Grant a study privacy budget (added to what it has); recorded in the audit log."""
    from research_kit.dp import display, ledger
    from research_kit.dp.accounting import rho_of
    from research_kit.errors import BadInput
    from research_kit.workspace import open_workspace

    ws = open_workspace()
    policy = ws.policy().dp
    if (rho is None) == (epsilon is None):
        raise BadInput("give the grant as --rho R or as --epsilon E [--delta D]")
    if delta is not None and epsilon is None:
        raise BadInput("--delta goes with --epsilon")
    if epsilon is not None:
        try:
            rho = rho_of(epsilon, delta if delta is not None else policy.delta)
        except ValueError as exc:
            raise BadInput(str(exc)) from None
    assert rho is not None
    balance = ledger.grant(ws, study, rho, note=note)
    display.print_balances(console, [balance], policy.delta)


@budget_app.command("show")
def budget_show(
    study: Annotated[str | None, typer.Argument(help="One study, with its spend history [default: all].")] = None,
    sandbox: Annotated[bool, typer.Option("--sandbox", help="The synthetic twin's sandbox ledger.")] = False,
) -> None:
    """Granted, spent, reserved and remaining budget; with a study, its spend history."""
    from research_kit.dp import display, ledger
    from research_kit.tiers import Tier
    from research_kit.workspace import open_workspace

    ws = open_workspace()
    delta = ws.policy().dp.delta
    tier: Tier = "sandbox" if sandbox else "real"
    names = [study] if study else ledger.studies(ws)
    display.print_balances(console, [ledger.balance(ws, s, tier) for s in names], delta)
    if study:
        display.print_history(console, ledger.history(ws, study, tier), delta)


@budget_app.command("reset-sandbox")
def budget_reset_sandbox(study: Annotated[str, typer.Argument(help="The study.")]) -> None:
    """Forget a study's sandbox spends (the twin's ledger only; the real ledger is never reset)."""
    from research_kit.dp import ledger
    from research_kit.workspace import open_workspace

    n = ledger.reset_sandbox(open_workspace(), study)
    console.print(f"sandbox ledger of {study}: {n} spends forgotten")


def _numbers(text: str | None, what: str) -> list[float] | None:
    from research_kit.errors import BadInput

    if text is None:
        return None
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise BadInput(f"{what}: give numbers separated by commas, not {text!r}") from None


@app.command()
def query(
    kind: Annotated[str, typer.Argument(help="count, sum, mean, quantile, median, histogram or crosstab.")],
    table: Annotated[str, typer.Argument(help="patients, diagnoses, phenotypes or encounters.")],
    study: Annotated[str, typer.Option("--study", help="The study whose budget pays.")],
    by: Annotated[list[str] | None, typer.Option("--by", help="Group by this column (repeat for more).")] = None,
    where: Annotated[
        list[str] | None, typer.Option("--where", help="Cohort filter, e.g. 'sex = female' (repeat to AND).")
    ] = None,
    column: Annotated[str | None, typer.Option("--column", help="The numeric column (sum, mean, ...).")] = None,
    bounds: Annotated[str | None, typer.Option("--bounds", help="LOWER,UPPER clipping bounds.")] = None,
    q: Annotated[float | None, typer.Option("--q", help="Quantile level (0.5 = median).")] = None,
    candidates: Annotated[
        str | None, typer.Option("--candidates", help="Quantile candidates, comma-separated.")
    ] = None,
    bins: Annotated[str | None, typer.Option("--bins", help="Histogram edges, comma-separated.")] = None,
    per_group: Annotated[int, typer.Option("--per-group", help="Rows a patient may add to a group.")] = 1,
    max_groups: Annotated[int | None, typer.Option("--max-groups", help="Groups a patient may count in.")] = None,
    clamp: Annotated[bool, typer.Option("--clamp", help="Clamp counts at zero (default: signed).")] = False,
    rho: Annotated[float | None, typer.Option("--rho", help="Cost [default: [dp].default_query_rho].")] = None,
    epsilon: Annotated[float | None, typer.Option("--epsilon", help="... or the cost in epsilon.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the interval and the cost; spend nothing.")] = False,
    reuse: Annotated[bool, typer.Option("--reuse", help="Reuse this query's answer from an earlier extract.")] = False,
    extract: Annotated[str | None, typer.Option("--extract", help="Extract id [default: the newest].")] = None,
    sandbox: Annotated[bool, typer.Option("--sandbox", help="Ask the synthetic twin (sandbox ledger).")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """A differentially private query on the real extract (or the twin), charged to the study's budget."""
    from research_kit import dp
    from research_kit.dp import display
    from research_kit.errors import BadInput

    common: dict[str, Any] = dict(
        where=where, study=study, rho=rho, epsilon=epsilon, preview=dry_run, reuse=reuse, extract=extract,
        tier="sandbox" if sandbox else "real",
    )  # fmt: skip
    lohi = _numbers(bounds, "--bounds")
    if lohi is not None and len(lohi) != 2:
        raise BadInput("--bounds: give LOWER,UPPER")
    bound_pair = (lohi[0], lohi[1]) if lohi else None
    needs_column = kind in ("sum", "mean", "quantile", "median", "histogram")
    if needs_column and column is None:
        raise BadInput(f"a {kind} needs --column")
    if kind == "count":
        answer = dp.count(table, by=by, per_group=per_group, max_groups=max_groups, clamp=clamp, **common)
    elif kind == "crosstab":
        if not by or len(by) != 2:
            raise BadInput("a crosstab needs two --by columns")
        answer = dp.crosstab(table, by[0], by[1], per_group=per_group, max_groups=max_groups, clamp=clamp, **common)
    elif kind in ("sum", "mean"):
        fn = dp.sum if kind == "sum" else dp.mean
        answer = fn(table, str(column), bounds=bound_pair, by=by, per_group=per_group, max_groups=max_groups, **common)
    elif kind in ("quantile", "median"):
        level = 0.5 if kind == "median" else q
        if level is None:
            raise BadInput("a quantile needs --q (0.5 for the median)")
        answer = dp.quantile(
            table, str(column), level, bounds=bound_pair, candidates=_numbers(candidates, "--candidates"), by=by,
            per_group=per_group, max_groups=max_groups, **common,
        )  # fmt: skip
    elif kind == "histogram":
        edges = _numbers(bins, "--bins")
        if not edges:
            raise BadInput("a histogram needs --bins EDGE,EDGE,...")
        answer = dp.histogram(
            table, str(column), edges, by=by, per_group=per_group, max_groups=max_groups, clamp=clamp, **common
        )
    else:
        raise BadInput(f"no query kind {kind!r}: use count, crosstab, sum, mean, quantile, median or histogram")
    if as_json:
        print(display.answer_json(answer))
    else:
        display.print_answer(console, answer)


@pipeline_app.command("check")
def pipeline_check(
    files: Annotated[list[Path], typer.Argument(help="Pipeline files (YAML).")],
) -> None:
    """Validate pipeline files (keys, graph, notebooks, parameters) and show the order their actions run in."""
    from rich.table import Table

    from research_kit.studies.spec import load_pipeline

    for path in files:
        pipeline = load_pipeline(path)
        table = Table(title=f"{pipeline.study}: {pipeline.title} ({path})")
        for name in ("step", "action", "notebook", "needs", "outputs"):
            table.add_column(name)
        for step, level in enumerate(pipeline.levels(), start=1):
            for name in level:
                action = pipeline.actions[name]
                outputs = ", ".join(f"{o.path} ({o.sensitivity.split('_')[0]})" for o in action.outputs)
                table.add_row(str(step), name, action.notebook.name, ", ".join(action.needs), outputs)
        console.print(table)
        budget = ", ".join(f"{k} {v:g}" for k, v in sorted(pipeline.budget.items()))
        console.print(f"valid; requests budget {budget}; actions of one step can run at the same time")


class _RunProgress:
    """Rich progress for a run: a bar over the actions, one line per finished action."""

    def __init__(self, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        )
        self.task = self.progress.add_task("actions", total=total)
        self.running: set[str] = set()

    def __call__(self, action: str, event: str, detail: str) -> None:
        if event == "started":
            self.running.add(action)
        else:
            self.running.discard(action)
            style = {"ran": "green", "cached": "cyan", "failed": "red", "skipped": "yellow"}[event]
            line = f"  [{style}]{event:>7}[/] {action}" + (f"  {escape(detail)}" if detail else "")
            self.progress.console.print(line, soft_wrap=True)
            self.progress.advance(self.task)
        running = ", ".join(sorted(self.running))
        self.progress.update(self.task, description=f"running {running}" if running else "actions")


@app.command()
def run(
    pipeline_file: Annotated[Path, typer.Argument(metavar="PIPELINE", help="The pipeline file (YAML).")],
    extract: Annotated[str | None, typer.Option(help="The extract to run on (default: the newest).")] = None,
    action: Annotated[str | None, typer.Option(help="Run only this action (and what it needs).")] = None,
    executor: Annotated[str, typer.Option(help="local, dask (a LocalCluster or --scheduler) or slurm.")] = "local",
    workers: Annotated[
        int | None, typer.Option(min=1, help="Actions at once (local, dask) or Slurm jobs (slurm).")
    ] = None,
    scheduler: Annotated[str | None, typer.Option(help="A running Dask scheduler's address (tcp://...).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Run every action even if its inputs did not change.")] = False,
) -> None:
    """Run a study's pipeline on a real extract: unchanged actions are reused, outputs queue for review."""
    from research_kit import reports
    from research_kit.studies.runner import run_pipeline, selected_actions
    from research_kit.studies.spec import load_pipeline
    from research_kit.workspace import open_workspace

    ws = open_workspace()
    pipeline = load_pipeline(pipeline_file)
    show = _RunProgress(len(selected_actions(pipeline, action)))
    with show.progress:
        report = run_pipeline(
            ws,
            pipeline,
            extract=extract,
            action=action,
            executor=executor,
            workers=workers,
            scheduler=scheduler,
            force=force,
            listener=show,
        )
    reports.print_run(console, report, table=False)
    if report.outcome != "succeeded":
        raise typer.Exit(1)


@app.command()
def rerun(
    extract: Annotated[str, typer.Option(help="The new extract every registered study reruns on.")],
    executor: Annotated[str, typer.Option(help="local, dask or slurm.")] = "local",
    workers: Annotated[int | None, typer.Option(min=1, help="Actions at once.")] = None,
    scheduler: Annotated[str | None, typer.Option(help="A running Dask scheduler's address.")] = None,
) -> None:
    """Rerun every registered study on a new extract (safe from cron: one at a time, idempotent, resumable)."""
    from research_kit import reports
    from research_kit.locks import Busy
    from research_kit.studies.rerun import rerun_all
    from research_kit.workspace import open_workspace

    ws = open_workspace()
    try:
        report = rerun_all(
            ws,
            extract,
            executor=executor,
            workers=workers,
            scheduler=scheduler,
            on_study=lambda study, _e, path: console.print(f"[bold]{study}[/] ({path})"),
        )
    except Busy as exc:
        console.print(f"nothing done: {exc}")
        return
    if report.already_done:
        console.print(f"every registered study already reran on {extract}; nothing to do")
        return
    if report.resumed:
        console.print(f"resumed the rerun on {extract} where it stopped")
    for run_report in report.runs:
        reports.print_run(console, run_report, table=False)
    for study, problem in report.problems.items():
        console.print(f"[red]{study}: not rerun: {problem}[/]")
    if not report.runs and not report.problems:
        console.print("no study registered yet (a pipeline is registered by its first 'research-kit run')")
    if not report.ok:
        raise typer.Exit(1)


@pipeline_app.command("slurm-script")
def pipeline_slurm_script() -> None:
    """Show the sbatch script each Slurm job of '--executor slurm' runs (from [runner] in research-kit.toml)."""
    from research_kit.studies.executors import slurm_cluster
    from research_kit.workspace import open_workspace

    cluster = slurm_cluster(open_workspace().policy())
    try:
        print(cluster.job_script())
    finally:
        cluster.close()


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="The user's name (letters, digits, '.', '_', '-').")],
    role: Annotated[str, typer.Option(help="researcher, committee or steward.")],
) -> None:
    """Add a user (a steward does; the first steward may be added by anyone)."""
    from research_kit.outputs import users
    from research_kit.workspace import open_workspace

    user = users.add(open_workspace(), name, role)
    console.print(f"user {escape(user.name)} added as {user.role}")


@users_app.command("list")
def users_list() -> None:
    """List the users and their roles."""
    from research_kit.outputs import display, users
    from research_kit.workspace import open_workspace

    display.print_users(console, users.all_users(open_workspace()))


@users_app.command("disable")
def users_disable(name: Annotated[str, typer.Argument(help="The user to disable.")]) -> None:
    """Disable a user (a steward does); their past votes and entries stay."""
    from research_kit.outputs import users
    from research_kit.workspace import open_workspace

    users.disable(open_workspace(), name)
    console.print(f"user {escape(name)} disabled")


@users_app.command("password")
def users_password(
    name: Annotated[str, typer.Argument(help="The user who will sign in to the web app with it.")],
    stdin: Annotated[bool, typer.Option("--stdin", help="Read the password from the first line of stdin.")] = False,
) -> None:
    """Set a user's password for the review web app (a steward does); their open sessions end."""
    from research_kit.errors import BadInput
    from research_kit.outputs import users
    from research_kit.workspace import open_workspace

    if stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = typer.prompt(f"new password for {name}", hide_input=True, confirmation_prompt=True)
    else:
        raise BadInput("no terminal to ask the password on: pipe it in with --stdin")
    users.set_password(open_workspace(), name, password)
    console.print(f"password set for {escape(name)}; they sign in at 'research-kit serve'")


@outputs_app.command("list")
def outputs_list(
    study: Annotated[str | None, typer.Option(help="Only this study's requests.")] = None,
    state: Annotated[list[str] | None, typer.Option(help="Only requests in this state (repeatable).")] = None,
) -> None:
    """Review requests and how their outputs fared in the checks."""
    from research_kit.outputs import display, review
    from research_kit.workspace import open_workspace

    display.print_requests(console, review.all_requests(open_workspace(), states=tuple(state or ()), study=study))


@outputs_app.command("check")
def outputs_check(request: Annotated[int, typer.Argument(help="The request's number.")]) -> None:
    """Run every automatic check on a request's outputs again and show each flag with its reason."""
    from research_kit.audit import current_actor
    from research_kit.outputs import display, review
    from research_kit.workspace import open_workspace

    ws = open_workspace()
    review.recheck(ws, request)
    display.print_request(console, review.get(ws, request, viewer=current_actor()))


@outputs_app.command("submit")
def outputs_submit(request: Annotated[int, typer.Argument(help="The request's number.")]) -> None:
    """Submit a request to the committee (its author does; gated outputs stay out of review)."""
    from research_kit.outputs import review
    from research_kit.workspace import open_workspace

    done = review.submit(open_workspace(), request)
    counts = done.counts()
    console.print(
        f"request {done.id} submitted: {len(done.reviewable)} outputs for review ({counts['fail']} flagged by the "
        f"checks), {counts['gated']} gated"
    )


@outputs_app.command("mitigate")
def outputs_mitigate(
    request: Annotated[int, typer.Argument(help="The request's number.")],
    output: Annotated[str, typer.Argument(help="The output: ACTION/NAME, or NAME when unique.")],
    method: Annotated[str, typer.Option(help="suppress, round, midpoint6 or roll-up.")],
    column: Annotated[str | None, typer.Option(help="With roll-up: the ICD-10 column.")] = None,
) -> None:
    """Apply a disclosure-control mitigation to a table: a new version (its votes start again), recorded."""
    from research_kit.outputs import review
    from research_kit.workspace import open_workspace

    done = review.mitigate(open_workspace(), request, output, method, column=column)
    console.print(f"{done.key}: {method} applied; new version {done.path}; checks: {done.status}")


@review_app.command("list")
def review_list(
    all_states: Annotated[bool, typer.Option("--all", help="Every request, not only those awaiting review.")] = False,
) -> None:
    """Requests awaiting the committee (submitted), or all of them."""
    from research_kit.outputs import display, review
    from research_kit.workspace import open_workspace

    states = () if all_states else ("submitted",)
    display.print_requests(console, review.all_requests(open_workspace(), states=states))


@review_app.command("show")
def review_show(request: Annotated[int, typer.Argument(help="The request's number.")]) -> None:
    """A request's outputs with their checks, flags and reasons, provenance, votes and comments."""
    from research_kit.audit import current_actor
    from research_kit.outputs import display, review
    from research_kit.workspace import open_workspace

    ws = open_workspace()
    found = review.get(ws, request, viewer=current_actor())
    provenance = {o.key: review.provenance(ws, o) for o in found.outputs}
    display.print_request(console, found, provenance=provenance)


def _vote(request: int, decision: str, outputs: list[str] | None, comment: str | None, private: bool) -> None:
    from research_kit.outputs import review
    from research_kit.workspace import open_workspace

    done = review.vote(
        open_workspace(), request, decision, outputs=tuple(outputs or ()), comment=comment, private=private
    )
    console.print(f"request {done.id}: {decision} recorded; the request is {done.state}")


@review_app.command("approve")
def review_approve(
    request: Annotated[int, typer.Argument(help="The request's number.")],
    output: Annotated[list[str] | None, typer.Option(help="Only this output (repeatable) [default: all].")] = None,
    comment: Annotated[str | None, typer.Option(help="Why (required for outputs the checks flag).")] = None,
    private: Annotated[bool, typer.Option("--private", help="The comment is for the committee only.")] = False,
) -> None:
    """Approve a request's outputs (a committee member who is not their author)."""
    _vote(request, "approve", output, comment, private)


@review_app.command("reject")
def review_reject(
    request: Annotated[int, typer.Argument(help="The request's number.")],
    comment: Annotated[str, typer.Option(help="Why (the researcher reads it unless --private).")],
    private: Annotated[bool, typer.Option("--private", help="The comment is for the committee only.")] = False,
) -> None:
    """Reject a request: it is closed."""
    _vote(request, "reject", None, comment, private)


@review_app.command("return")
def review_return(
    request: Annotated[int, typer.Argument(help="The request's number.")],
    comment: Annotated[str, typer.Option(help="What to change (the researcher reads it unless --private).")],
    private: Annotated[bool, typer.Option("--private", help="The comment is for the committee only.")] = False,
) -> None:
    """Return a request to its author for changes."""
    _vote(request, "return", None, comment, private)


@review_app.command("comment")
def review_comment(
    request: Annotated[int, typer.Argument(help="The request's number.")],
    text: Annotated[str, typer.Argument(help="The comment.")],
    output: Annotated[str | None, typer.Option(help="About this output.")] = None,
    private: Annotated[bool, typer.Option("--private", help="For the committee only.")] = False,
) -> None:
    """Comment on a request: committee members (private or not) and its author."""
    from research_kit.outputs import review
    from research_kit.workspace import open_workspace

    review.comment(open_workspace(), request, text, private=private, output_name=output)
    console.print(f"comment added to request {request}")


@app.command()
def release(request: Annotated[int, typer.Argument(help="The approved request's number.")]) -> None:
    """Release an approved request: a zip of its outputs with checksums, a summary and ACRO's results.json."""
    from research_kit.outputs.release import release as make_release
    from research_kit.workspace import open_workspace

    path = make_release(open_workspace(), request)
    console.print(f"released: {path}")


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback unless a TLS proxy sits in front).")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8765,
) -> None:
    """The committee's review web app: requests, flagged cells, votes, releases, budgets, the audit log."""
    from research_kit.web.server import serve as run_server
    from research_kit.workspace import open_workspace

    run_server(open_workspace(), host=host, port=port, console=console)


@app.command()
def lab(
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.", min=1, max=65535)] = 8888,
    notebooks: Annotated[
        Path, typer.Option(help="Folder of notebooks JupyterLab opens (writable in its sandbox).")
    ] = Path("notebooks"),
    home: Annotated[
        Path, typer.Option(help="The lab's own workspace: twins, policy, sandbox ledger (outside the real one).")
    ] = Path(".lab"),
    open_browser: Annotated[bool, typer.Option("--open/--no-open", help="Open a browser tab.")] = False,
) -> None:
    """JupyterLab for researchers on the synthetic twin, server and kernels in a sandbox reached on loopback."""
    from research_kit.lab import run_lab
    from research_kit.workspace import open_workspace

    run_lab(open_workspace(), home=home, port=port, notebooks=notebooks, console=console, open_browser=open_browser)


@sandbox_app.command("check")
def sandbox_check() -> None:
    """Say how researcher code would be confined here, with which limits; exit 5 if it cannot be."""
    from research_kit.sandbox.limits import Limits
    from research_kit.sandbox.modes import confinement
    from research_kit.workspace import open_workspace

    ws = open_workspace()
    confined = confinement(ws)
    where = f" ({confined.bwrap})" if confined.bwrap else ""
    console.print(f"sandbox: {confined.mode}{where}: works here", soft_wrap=True)
    console.print(f"limits per action: {Limits.from_policy(ws.policy().runner).describe()}", soft_wrap=True)
    for notice in confined.notices:
        console.print(f"[yellow]{escape(notice)}[/]", soft_wrap=True)


@sandbox_app.command("waive")
def sandbox_waive(
    reason: Annotated[str, typer.Option(help="Why researcher code may run unconfined on this workspace's real data.")],
) -> None:
    """Let [runner].sandbox = 'off' run on real data (a steward; audited). Prefer 'container' where it applies."""
    from research_kit.sandbox.modes import waive
    from research_kit.workspace import open_workspace

    waive(open_workspace(), reason=reason)
    console.print("sandbox waived for this workspace's real data (recorded in the audit log)")


@sandbox_app.command("unwaive")
def sandbox_unwaive() -> None:
    """Revoke the waiver: 'off' is refused again on real data (a steward; audited)."""
    from research_kit.sandbox.modes import unwaive
    from research_kit.workspace import open_workspace

    revoked = unwaive(open_workspace())
    console.print(f"{revoked} waiver(s) revoked" if revoked else "no waiver was in force")


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; a user's mistake exits with one line, never a traceback."""
    try:
        app(args=argv, prog_name="research-kit")
    except UserError as exc:
        print(f"research-kit: {exc.label}: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:  # Ctrl-C: what was under way has recorded itself as interrupted
        print("research-kit: interrupted", file=sys.stderr)
        sys.exit(130)
