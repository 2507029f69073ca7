"""``research-kit demo``: the whole flow on a simulated registry, with the same functions the CLI uses.

Each step of the flow adds itself here as it is built. Today: a workspace, a
simulated identifiable export (clean) and a second one with injected faults
(the ingest test oracle), the pseudonymisation key, both exports ingested
(every run adds a new extract version), the risk report of the clean
extract, its synthetic twin (published if the policy's figures hold), DP
queries charged to a study's budget, the example study pipeline run on the
new extract (and again, reused), its outputs checked into a review request,
web passwords for the demo users, and a check of the audit chain; it ends by
saying how to start the review web app and whom to sign in as.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.rule import Rule

from research_kit import audit, reports
from research_kit.errors import IntegrityError, MissingData
from research_kit.extracts import list_extracts
from research_kit.ingest.pipeline import ingest
from research_kit.pseudonymise.assessment import assess_extract
from research_kit.pseudonymise.keys import Key, key_path, load_key, new_key
from research_kit.registry.export import SimulationSpec
from research_kit.registry.raw import simulate_raw_export
from research_kit.workspace import Workspace, init_workspace

FAULTY_SHARE = 10  # the faulty export is this many times smaller than the clean one ...
FAULTY_MIN = 1_000  # ... but large enough that its fault rates are those of a real export


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
    small = max(patients // FAULTY_SHARE, FAULTY_MIN)
    faulty = SimulationSpec(patients=small, seed=seed + 1, format="csv", faults=True)
    with reports.patient_progress(console, small) as advance:
        faulty_id, faulty_result = simulate_raw_export(ws, faulty, name="demo-faults", replace=True, progress=advance)
    console.print(
        f"{faulty_id}: {faulty_result.rows['patients']:,} patient rows, {faulty_result.faults:,} faults "
        f"listed in {faulty_result.path / 'faults.json'}"
    )

    console.print(Rule("4. the pseudonymisation key (outside the workspace)"))
    key = _demo_key(console, ws)

    console.print(Rule("5. ingest: validate, quarantine, pseudonymise"))
    version = _next_version(ws)
    with reports.steps(console, "ingest") as step:
        extract = ingest(ws, [result.path], f"demo-{version}", key, step=step)
    reports.print_ingest(console, extract)
    console.print(Rule("   ... and the export with faults"))
    with reports.steps(console, "ingest") as step:
        faulty_ingest = ingest(ws, [faulty_result.path], f"demo-faults-{version}", key, step=step)
    reports.print_ingest(console, faulty_ingest)

    console.print(Rule("6. re-identification risk of the extract"))
    reports.print_risk(console, assess_extract(ws, extract.extract_id, enforce=ws.policy().risk.k_anonymity))

    console.print(Rule("7. the synthetic twin researchers' notebooks run on"))
    _twin(console, ws, extract.extract_id)

    console.print(Rule("8. differential privacy: the committee grants a budget, a study asks"))
    _dp_queries(console, ws, extract.extract_id)

    console.print(Rule("9. study pipelines: the example study's notebooks run on the extract"))
    _demo_users(console, ws)
    with acting_as(RESEARCHER):
        request = _pipelines(console, ws, extract.extract_id)

    console.print(Rule("10. output checking: gates and SDC checks, then the committee's review"))
    _outputs(console, ws, request)

    console.print(Rule("11. four studies: registry overview, diagnostic delay, survival, phenotype prediction"))
    _studies(console, ws, extract.extract_id)

    console.print(Rule("12. the committee's review web app"))
    demo_logins = _web_passwords(console, ws)

    console.print(Rule("13. audit log"))
    with ws.catalog() as conn:
        verdict = audit.verify(conn, ws.audit_path)
    if not verdict.ok:
        raise IntegrityError(f"{ws.audit_path}: {verdict.problem}")
    console.print(f"audit log intact: {verdict.entries} entries")

    console.print(Rule("where to look"))
    console.print(f"workspace     {ws.root}")
    console.print(f"policy        {ws.policy_path}")
    console.print(f"raw exports   {ws.raw_dir}  (identifiable: never leaves the workspace)")
    console.print(f"extracts      {ws.extracts_dir}  (research-kit extracts)")
    console.print(f"quarantine    {ws.quarantine_dir}  (rows refused at ingest, with reasons)")
    console.print(f"risk reports  {ws.root / 'reports' / 'risk'}")
    console.print(f"twins         {ws.synthetic_dir}  (with report.html)   |   research-kit synth --help")
    console.print(f"key           {key_path().resolve()}  (fingerprint {key.fingerprint}; back it up)")
    console.print("budgets       research-kit budget show   |   research-kit query --help")
    console.print(f"study runs    {ws.root / 'studies'}   |   research-kit run pipelines/example.yaml")
    console.print("audit log     research-kit audit show   |   research-kit audit verify")
    console.print(Rule("review the outputs in the browser"))
    console.print(
        "start the committee's review app:   .venv/bin/research-kit serve   (then open http://127.0.0.1:8765/)"
    )
    console.print(f"sign in as one of these demo users (also in {ws.root / DEMO_LOGINS}):")
    for name, role, password in demo_logins:
        console.print(f"  {name:<6} {role:<11} {password}")
    console.print(
        f"two committee members ({' and '.join(COMMITTEE)}) approve, one releases; {RESEARCHER} sees her own requests"
    )


def _twin(console: Console, ws: Workspace, extract_id: str) -> None:
    """Build and publish the extract's twin; a refusal by the policy is shown, not raised."""
    from research_kit.errors import PolicyRefusal
    from research_kit.synth import build_twin
    from research_kit.synth.display import print_twin

    try:
        with reports.steps(console, f"synthetic twin of {extract_id}") as step:
            result = build_twin(ws, extract_id, progress=step)
    except PolicyRefusal as refusal:
        console.print(f"[yellow]{escape(str(refusal))}[/yellow]")
        return
    print_twin(console, result)


def _dp_queries(console: Console, ws: Workspace, extract_id: str) -> None:
    from research_kit.dp import display, engine, ledger
    from research_kit.dp.query import make_query
    from research_kit.tiers import real_source

    study = f"demo-overview-{extract_id}"
    policy = ws.policy().dp
    ledger.grant(ws, study, policy.default_study_rho, note="demo")
    source = real_source(ws, extract_id)
    queries = [
        make_query("count", "diagnoses", rho=0.05, by="disease_group"),
        make_query("count", "patients", rho=0.05, by=["sex", "age_band"], where="canton != abroad"),
        make_query("quantile", "diagnoses", rho=0.05, column_name="diagnostic_delay_years", alpha=0.5,
                   bounds=(0, 30), where="genetic = yes"),
        make_query("mean", "diagnoses", rho=0.05, column_name="onset_age_years", bounds=(0, 90), by="sex"),
    ]  # fmt: skip
    preview = engine.run(ws, queries[0], study=study, source=source, preview=True)
    console.print(f"preview (spends nothing): {preview.description}: ± {preview.half_width:g} at {preview.rho:g} rho")
    for query in queries:
        display.print_answer(console, engine.run(ws, query, study=study, source=source), max_rows=12)
    replay = engine.run(ws, queries[0], study=study, source=source)
    console.print(f"asked again: {'replayed from the ledger, nothing spent' if replay.replayed else 'spent again'}")
    display.print_balances(console, [ledger.balance(ws, study)], policy.delta)


STUDIES = ("registry_overview", "diagnostic_delay", "survival", "phenotype_prediction")  # pipelines/NAME.yaml


def example_pipeline(name: str = "example") -> Path:
    """pipelines/NAME.yaml of this project (the current folder, else the source tree's)."""
    here = Path.cwd() / "pipelines" / f"{name}.yaml"
    return here if here.is_file() else Path(__file__).resolve().parents[2] / "pipelines" / f"{name}.yaml"


def _studies(console: Console, ws: Workspace, extract_id: str) -> None:
    """Run the four example studies on the extract (the committee grants what each asks) and submit their outputs."""
    from research_kit.dp import ledger
    from research_kit.dp.accounting import to_picorho
    from research_kit.outputs import display, review
    from research_kit.studies.runner import run_pipeline
    from research_kit.studies.spec import load_pipeline
    from research_kit.tiers import published_twins

    for name in STUDIES:
        pipeline = load_pipeline(example_pipeline(name))
        if name == "phenotype_prediction" and not published_twins(ws):
            console.print(f"[yellow]{pipeline.study}: skipped: it trains on the synthetic twin, and none is "
                          "published for this registry[/yellow]")  # fmt: skip
            continue
        asked = pipeline.budget.get("rho")
        if asked and ledger.balance(ws, pipeline.study).granted < to_picorho(asked, round_up=False):
            with acting_as(COMMITTEE[0]):
                ledger.grant(ws, pipeline.study, asked, note=f"requested in {pipeline.path.name}")
            console.print(f"{COMMITTEE[0]} (committee) granted {pipeline.study} the rho {asked:g} it asks for")
        with acting_as(RESEARCHER), reports.steps(console, "pipeline") as step:
            step(f"{pipeline.study}: {len(pipeline.actions)} action(s) on {extract_id}")
            report = run_pipeline(ws, pipeline, extract=extract_id)
        reports.print_run(console, report, table=False)
        if report.request is None:
            continue
        request = review.get(ws, report.request, viewer=RESEARCHER)
        if request.state in ("pending", "returned") and request.reviewable:
            with acting_as(RESEARCHER):
                request = review.submit(ws, request.id)
        display.print_request_summary(console, request)


def _pipelines(console: Console, ws: Workspace, extract_id: str) -> int | None:
    import json

    from research_kit.sandbox.modes import confinement
    from research_kit.studies.runner import run_pipeline
    from research_kit.studies.spec import load_pipeline

    path = example_pipeline()
    pipeline = load_pipeline(path)
    confined = confinement(ws)
    console.print(
        f"each action runs in the {confined.mode} sandbox: its input view read-only, one writable work folder, "
        "no network, DP queries through the broker (docs/security.md)",
        soft_wrap=True,
    )
    with reports.steps(console, "pipeline") as step:
        step(f"{pipeline.study}: {len(pipeline.actions)} actions on {extract_id}")
        report = run_pipeline(ws, pipeline, extract=extract_id)
    reports.print_run(console, report)
    again = run_pipeline(ws, pipeline, extract=extract_id)
    console.print(
        f"run again with nothing changed: {again.count('cached')} of {len(again.actions)} actions reused "
        f"in {again.seconds:.2f} s"
    )
    with ws.catalog() as conn:
        queued = conn.execute(
            "SELECT action, name, diff FROM review_queue WHERE run_id = ? ORDER BY id", (report.run_id,)
        ).fetchall()
    for row in queued:
        diff = json.loads(row["diff"]) if row["diff"] else None
        if diff is None:
            change = "first version"
        elif diff["kind"] == "table":
            change = (
                f"{diff['cells_changed']} cells changed (largest by {diff['largest_change']:g}), "
                f"{diff['rows_added']} rows added, {diff['rows_removed']} removed, against {diff['against']}"
            )
        else:
            change = f"{'changed' if diff['changed'] else 'unchanged'} against {diff['against']}"
        console.print(f"queued for review: {row['action']}/{row['name']}: {change}")
    return report.request


STEWARD, RESEARCHER, COMMITTEE = "sam", "rita", ("carla", "chen")
DEMO_LOGINS = "demo-logins.tsv"  # the demo users' web passwords (mode 0600, in the workspace)


@contextmanager
def acting_as(name: str) -> Iterator[None]:
    """Record what the block does as ``name`` (the demo plays each role in turn)."""
    before = os.environ.get(audit.ACTOR_ENV)
    os.environ[audit.ACTOR_ENV] = name
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(audit.ACTOR_ENV, None)
        else:
            os.environ[audit.ACTOR_ENV] = before


def _demo_users(console: Console, ws: Workspace) -> None:
    from research_kit.outputs import users

    known = {u.name for u in users.all_users(ws)}
    with acting_as(STEWARD):
        roles = [(STEWARD, "steward"), (RESEARCHER, "researcher"), *((c, "committee") for c in COMMITTEE)]
        for name, role in roles:
            if name not in known:
                users.add(ws, name, role)
                console.print(f"user {name} added as {role}")


def _web_passwords(console: Console, ws: Workspace) -> list[tuple[str, str, str]]:
    """New random passwords for the demo users, to sign in to ``research-kit serve``: (name, role, password).

    The file (mode 0600, in the workspace) exists for the demo only: real users get their password from a
    steward (``research-kit users password NAME``) and no file keeps it.
    """
    import secrets

    from research_kit.outputs import users

    path = ws.root / DEMO_LOGINS
    order = {"committee": 0, "researcher": 1, "steward": 2}
    logins = []
    with acting_as(STEWARD):
        for user in sorted(users.all_users(ws), key=lambda u: (order.get(u.role, 9), u.name)):
            if user.name in (STEWARD, RESEARCHER, *COMMITTEE) and user.active:
                password = secrets.token_urlsafe(12)
                users.set_password(ws, user.name, password)
                logins.append((user.name, user.role, password))
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.writelines(f"{name}\t{role}\t{password}\n" for name, role, password in logins)
    os.replace(tmp, path)
    console.print(f"web passwords set for {len(logins)} demo users (argon2id hashes in the catalog; also in {path})")
    return logins


def _outputs(console: Console, ws: Workspace, request_id: int | None) -> None:
    from research_kit.outputs import display, review

    if request_id is None:
        open_requests = review.all_requests(ws, states=("pending", "submitted", "returned", "approved"))
        if not open_requests:
            console.print("no outputs waiting")
            return
        request_id = open_requests[-1].id
    request = review.get(ws, request_id, viewer=RESEARCHER)
    display.print_request(console, request)
    if request.state in ("pending", "returned"):
        with acting_as(RESEARCHER):
            request = review.submit(ws, request_id)
        console.print(
            f"\n{RESEARCHER} (the researcher) submitted request {request_id}: it waits for two committee members"
        )
    console.print(
        f"review it:   research-kit --as {COMMITTEE[0]} review show {request_id}\n"
        f"             research-kit --as {COMMITTEE[0]} review approve {request_id} --comment '...'   "
        f"(then --as {COMMITTEE[1]})\n"
        f"release it:  research-kit --as {COMMITTEE[0]} release {request_id}"
    )


def _demo_key(console: Console, ws: Workspace) -> Key:
    try:
        key = load_key()
        console.print(f"using the key at {key_path()} (fingerprint {key.fingerprint})")
    except MissingData:
        path, fingerprint = new_key(workspace_root=ws.root)
        console.print(f"new key written: {path} (mode 0600), fingerprint {fingerprint}")
        key = load_key(path)
    return key


def _next_version(ws: Workspace) -> int:
    taken = {e.id for e in list_extracts(ws)}
    version = 1
    while f"demo-{version}" in taken or f"demo-faults-{version}" in taken:
        version += 1
    return version
