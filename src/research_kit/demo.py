"""``research-kit demo``: the whole flow on a simulated registry, with the same functions the CLI uses.

Each step of the flow adds itself here as it is built. Today: a workspace, a
simulated identifiable export (clean) and a second one with injected faults
(the ingest test oracle), the pseudonymisation key, a few opt-outs recorded
in the register, both exports ingested
(every run adds a new extract version), the risk report of the clean
extract, its synthetic twin (published if the policy's figures hold), DP
queries charged to a study's budget, the example study pipeline run on the
new extract (and again, reused), its outputs checked into a review request,
web passwords for the demo users, and a check of the audit chain; it ends by
saying how to start the review web app and whom to sign in as.
"""

from __future__ import annotations

import os
import secrets
import shutil
from datetime import date, timedelta
from pathlib import Path

from rich.console import Console
from rich.markup import escape
from rich.rule import Rule

from research_kit.actions import (
    budget,
    catalogue,
    extracts,
    optouts,
    people,
    permits,
    pipelines,
    query,
    records,
    review,
    runs,
    setup,
    simulation,
    transparency,
    twin,
)
from research_kit.actions.confinement import check as sandbox_check
from research_kit.console import extracts as show
from research_kit.console.budget import print_answer, print_balances
from research_kit.console.progress import patient_progress, steps
from research_kit.console.review import print_protection, print_request, print_request_summary
from research_kit.console.runs import print_run
from research_kit.console.twin import print_twin
from research_kit.core import identity
from research_kit.core.errors import MissingData, PolicyRefusal
from research_kit.core.workspace import Workspace
from research_kit.dp.accounting import rho_of, to_picorho
from research_kit.pseudonymise.keys import Key, key_path, load_key
from research_kit.review.requests import OPEN, Request
from research_kit.simulator.export import SimulationSpec
from research_kit.studies.records import queued_by_run
from research_kit.tiers import newest_twin, published_twins

FAULTY_SHARE = 10  # the faulty export is this many times smaller than the clean one ...
FAULTY_MIN = 1_000  # ... but large enough that its fault rates are those of a real export


def run_demo(console: Console, *, patients: int, seed: int) -> None:
    console.print(Rule("1. workspace (demo mode: identities not verified) and its people"))
    ws, created = setup.init(demo=True)
    show.print_init(console, ws, created)
    if not identity.demo_mode(ws):
        raise PolicyRefusal(
            f"{ws.root}: this workspace checks who is acting ([auth].mode = '{ws.policy().auth.mode}'), and the "
            "demo acts as its demo users without signing in: run it in a new workspace (RESEARCH_KIT_HOME=...)"
        )
    console.print(f"[yellow]{escape(identity.DEMO_WARNING)}[/yellow]")
    _demo_users(console, ws)
    operator = STEWARD  # the steward does the registry staff's steps

    console.print(Rule("2. a simulated raw export (identifiable, as clinical systems deliver it)"))
    spec = SimulationSpec(patients=patients, seed=seed, format="parquet")
    with patient_progress(console, patients) as advance:
        export_id, result = simulation.simulate(
            ws, actor=operator, spec=spec, name="demo", replace=True, progress=advance
        )
    show.print_simulation(console, export_id, result)

    console.print(Rule("3. the same kind of export with realistic faults (CSV, one file in Latin-1)"))
    small = max(patients // FAULTY_SHARE, FAULTY_MIN)
    faulty = SimulationSpec(patients=small, seed=seed + 1, format="csv", faults=True)
    with patient_progress(console, small) as advance:
        faulty_id, faulty_result = simulation.simulate(
            ws, actor=operator, spec=faulty, name="demo-faults", replace=True, progress=advance
        )
    console.print(
        f"{faulty_id}: {faulty_result.rows['patients']:,} patient rows, {faulty_result.faults:,} faults "
        f"listed in {faulty_result.path / 'faults.json'}"
    )

    console.print(Rule("4. the pseudonymisation key (outside the workspace)"))
    key = _demo_key(console, ws)

    console.print(Rule("   ... and the opt-out register: people who opted out of secondary use"))
    _optouts(console, ws, result.path)

    console.print(Rule("5. ingest: validate, quarantine, pseudonymise"))
    version = _next_version(ws)
    with steps(console, "ingest") as step:
        extract = extracts.ingest(ws, actor=operator, raw=[result.path], extract=f"demo-{version}", step=step)
    show.print_ingest(console, extract)
    console.print(Rule("   ... and the export with faults"))
    with steps(console, "ingest") as step:
        faulty_ingest = extracts.ingest(
            ws, actor=operator, raw=[faulty_result.path], extract=f"demo-faults-{version}", step=step
        )
    show.print_ingest(console, faulty_ingest)

    console.print(Rule("   ... and two other kinds of source in one extract: a hospital's CSV (mapped), phenopackets"))
    sources_extract = _sources(console, ws, operator, seed=seed + 2, patients=small, version=version)

    console.print(Rule("6. re-identification risk of the extract, and its EU common data set quality"))
    k = ws.policy().risk.k_anonymity
    show.print_risk(console, extracts.risk(ws, actor=operator, extract=extract.extract_id, enforce_k=k))
    for extract_id in (extract.extract_id, sources_extract):
        show.print_quality(console, extracts.quality(ws, actor=operator, extract=extract_id))

    console.print(Rule("7. the synthetic twin researchers' notebooks run on"))
    _twin(console, ws, operator, extract.extract_id)
    _export_twin(console, ws, extract.extract_id)
    console.print(Rule("   ... and a differentially private twin beside it, charged to the registry's DP-twin budget"))
    _dp_twin(console, ws, operator, extract.extract_id)

    console.print(Rule("8. differential privacy: the committee grants a budget, a study asks"))
    _dp_queries(console, ws, extract.extract_id)

    console.print(Rule("9. study pipelines: the example study's notebooks run on the extract"))
    request = _pipelines(console, ws, extract.extract_id)

    console.print(Rule("10. output checking: gates and SDC checks, then the committee's review"))
    _outputs(console, ws, request)

    console.print(Rule("11. four studies: registry overview, diagnostic delay, survival, phenotype prediction"))
    _studies(console, ws, extract.extract_id)

    console.print(Rule("12. the committee's review web app"))
    demo_logins = _web_passwords(console, ws)

    console.print(Rule("13. transparency: the public register, a resident's letter, the dataset catalogue"))
    public = _transparency(console, ws, result.path)

    console.print(Rule("14. audit log"))
    verdict = records.verify(ws)
    console.print(f"audit log intact: {verdict.entries} entries")

    console.print(Rule("where to look"))
    console.print(f"workspace     {ws.root}")
    console.print(f"policy        {ws.policy_path}")
    console.print(f"raw exports   {ws.raw_dir}  (identifiable: never leaves the workspace)")
    console.print(f"extracts      {ws.extracts_dir}  (research-kit extracts)")
    console.print(f"quarantine    {ws.quarantine_dir}  (rows refused at ingest, with reasons)")
    console.print(f"risk reports  {ws.root / 'reports' / 'risk'}")
    console.print(f"quality       {ws.root / 'reports' / 'quality'}  (EU common data set; research-kit quality ID)")
    console.print("sources       research-kit mapping draft SOURCE   |   research-kit ingest SOURCE --mapping M.toml")
    console.print(f"twins         {ws.synthetic_dir}  (with report.html)   |   research-kit synth --help")
    console.print(f"key           {key_path().resolve()}  (fingerprint {key.fingerprint}; back it up)")
    console.print("budgets       research-kit budget show   |   research-kit query --help")
    console.print(f"study runs    {ws.root / 'studies'}   |   research-kit run pipelines/example.yaml")
    console.print("audit log     research-kit audit show   |   research-kit audit verify")
    console.print(f"public        {public['register'] / 'index.html'}  (the transparency register: anyone may read it)")
    console.print(f"catalogue     {public['catalogue']}  (HealthDCAT-AP, for the national Health Data Hub)")
    console.print(f"letter        {public['letter']}  (one resident's 'where was my data used?', in French)")
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
    console.print(
        f"on the command line, demo mode believes --as NAME (research-kit --as {COMMITTEE[0]} review list); "
        "a workspace for real data sets \\[auth].mode = 'embedded' or 'service', and people sign in "
        "(research-kit login NAME)"
    )


def _twin(console: Console, ws: Workspace, operator: str, extract_id: str) -> None:
    """Build and publish the extract's twin; a refusal by the policy is shown, not raised."""
    try:
        with steps(console, f"synthetic twin of {extract_id}") as step:
            result = twin.twin(ws, actor=operator, extract=extract_id, progress=step)
    except PolicyRefusal as refusal:
        console.print(f"[yellow]{escape(str(refusal))}[/yellow]")
        return
    print_twin(console, result)


DP_TWIN_EPSILON = 4  # the demo's DP twin: MST at epsilon 4 (at the policy's delta)
DP_TWIN_GRANT = 1.0  # rho the committee grants the registry's DP-twin budget (several twins' worth)


def _dp_twin(console: Console, ws: Workspace, operator: str, extract_id: str) -> None:
    """A committee member grants the DP-twin budget (once); the steward builds the DP twin (MST) beside the
    default one; a refusal by a gate is shown, not raised (its spend stays recorded)."""
    delta = ws.policy().dp.delta
    if budget.twin_shown(ws, actor=COMMITTEE[0]).remaining < to_picorho(rho_of(DP_TWIN_EPSILON, delta), round_up=True):
        budget.grant_twin(ws, actor=COMMITTEE[0], rho=str(DP_TWIN_GRANT), note="demo", owners=(operator,))
        console.print(f"{COMMITTEE[0]} (committee) granted the registry's DP-twin budget rho {DP_TWIN_GRANT:g}")
    try:
        with steps(console, f"DP twin of {extract_id} (MST, epsilon {DP_TWIN_EPSILON})") as step:
            result = twin.twin(
                ws, actor=operator, extract=extract_id, model="mst", epsilon=str(DP_TWIN_EPSILON), replace=True,
                progress=step,
            )  # fmt: skip
    except PolicyRefusal as refusal:
        console.print(f"[yellow]{escape(str(refusal))}[/yellow]")
        return
    print_twin(console, result)
    console.print("researchers read it with rk.load(twin='dp'), or in JupyterLab with research-kit lab --twin dp")


def _sources(console: Console, ws: Workspace, operator: str, *, seed: int, patients: int, version: int) -> str:
    """A hospital's export in its own layout (French columns, DD/MM/YYYY dates, Latin-1) read through its mapping,
    and the same patients as a folder of GA4GH phenopackets: one extract, each patient once."""
    from research_kit.simulator.phenopackets import write_phenopackets
    from research_kit.simulator.reshaped import write_reshaped

    spec = SimulationSpec(patients=patients, seed=seed, format="csv")
    with patient_progress(console, patients) as advance:
        _, base = simulation.simulate(
            ws, actor=operator, spec=spec, name="demo-sources", replace=True, progress=advance
        )
    mapped, packets = ws.raw_dir / "demo-sources-mapped", ws.raw_dir / "demo-phenopackets"
    for folder in (mapped, packets):
        shutil.rmtree(folder, ignore_errors=True)
    hospital = write_reshaped(base.path, mapped)["hospital-csv"]
    written = write_phenopackets(base.path, packets, layout="files")
    console.print(
        f"hospital export: {hospital.with_suffix('')} read through {hospital} (research-kit mapping draft proposes "
        f"one); {written:,} phenopackets in {packets} (the mapping's default: subject.id holds the national ID)"
    )
    mapping = packets.with_name("demo-phenopackets.toml")
    draft = extracts.draft_mapping(ws, actor=operator, source=packets, kind="phenopackets", show_values=[])
    # The steward's edit of the draft: these patients are the hospital's, whose export says where they live.
    kept = [line for line in draft.splitlines() if not line.startswith("country =") and "set the country" not in line]
    mapping.write_text("\n".join(kept) + "\n", encoding="utf-8")
    with steps(console, "ingest") as step:
        done = extracts.ingest(
            ws, actor=operator, raw=[hospital.with_suffix(""), packets], extract=f"demo-sources-{version}",
            mappings=[hospital, mapping], step=step,
        )  # fmt: skip
    show.print_ingest(console, done)
    return done.extract_id


def _export_twin(console: Console, ws: Workspace, extract_id: str) -> None:
    """The published twin as phenopackets, for the field's tools (the shareable tier)."""
    if extract_id not in dict(published_twins(ws)):
        return
    out = ws.root / "exports" / f"{extract_id}-phenopackets"
    shutil.rmtree(out, ignore_errors=True)
    out.parent.mkdir(mode=0o700, exist_ok=True)
    done = twin.export(ws, actor=RESEARCHER, twin_id=extract_id, out=out)
    console.print(f"the twin as GA4GH phenopackets: {done.count:,} files in {done.folder} (research-kit export)")


def _dp_queries(console: Console, ws: Workspace, extract_id: str) -> None:
    """A committee member grants a study (owned by the researcher) a budget; the researcher asks."""
    study = f"demo-overview-{extract_id}"
    policy = ws.policy().dp
    budget.grant(ws, actor=COMMITTEE[0], study=study, rho=policy.default_study_rho, note="demo", owners=[RESEARCHER])
    console.print(f"{COMMITTEE[0]} (committee) granted {study} rho {policy.default_study_rho:g}, owned by {RESEARCHER}")
    common = {"actor": RESEARCHER, "study": study, "extract": extract_id, "rho": 0.05}
    asked = [
        {"kind": "count", "table": "diagnoses", "by": ["disease_group"]},
        {"kind": "count", "table": "patients", "by": ["sex", "age_band"], "where": ["canton != abroad"]},
        {"kind": "median", "table": "diagnoses", "column": "diagnostic_delay_years", "bounds": (0, 30),
         "where": ["genetic = yes"]},
        {"kind": "mean", "table": "diagnoses", "column": "onset_age_years", "bounds": (0, 90), "by": ["sex"]},
    ]  # fmt: skip
    preview = query.query(ws, **common, **asked[0], preview=True)  # type: ignore[arg-type]
    console.print(f"preview (spends nothing): {preview.description}: ± {preview.half_width:g} at {preview.rho:g} rho")
    for one in asked:
        print_answer(console, query.query(ws, **common, **one), max_rows=12)  # type: ignore[arg-type]
    replay = query.query(ws, **common, **asked[0])  # type: ignore[arg-type]
    console.print(f"asked again: {'replayed from the ledger, nothing spent' if replay.replayed else 'spent again'}")
    print_balances(console, budget.balances(ws, study=study), policy.delta)


STUDIES = ("registry_overview", "diagnostic_delay", "survival", "phenotype_prediction")  # pipelines/NAME.yaml


def example_pipeline(name: str = "example") -> Path:
    """pipelines/NAME.yaml of this project (the current folder, else the source tree's)."""
    here = Path.cwd() / "pipelines" / f"{name}.yaml"
    return here if here.is_file() else Path(__file__).resolve().parents[2] / "pipelines" / f"{name}.yaml"


def _studies(console: Console, ws: Workspace, extract_id: str) -> None:
    """Run the four example studies on the extract (the committee grants what each asks) and submit their outputs."""
    for name in STUDIES:
        pipeline = pipelines.check_pipeline(example_pipeline(name))
        if name == "phenotype_prediction" and newest_twin(ws, "default") is None:
            console.print(f"[yellow]{pipeline.study}: skipped: it trains on the synthetic twin, and none is "
                          "published for this registry[/yellow]")  # fmt: skip
            continue
        asked = pipeline.budget.get("rho")
        if not any(p.in_force() for p in permits.listed(ws, actor=COMMITTEE[0], study=pipeline.study)):
            _apply_and_grant(console, ws, pipeline.study, pipeline.title, asked)
        granted = budget.balances(ws, study=pipeline.study)[0].granted
        if asked and granted < to_picorho(asked, round_up=False):
            budget.grant(ws, actor=COMMITTEE[0], study=pipeline.study, rho=asked,
                         note=f"requested in {pipeline.path.name}", owners=[RESEARCHER])  # fmt: skip
            console.print(f"{COMMITTEE[0]} (committee) granted {pipeline.study} the rho {asked:g} it asks for")
        with steps(console, "pipeline") as step:
            step(f"{pipeline.study}: {len(pipeline.actions)} action(s) on {extract_id}")
            report = runs.run(ws, actor=RESEARCHER, pipeline=pipeline, extract=extract_id)
        print_run(console, report, table=False)
        if report.request is None:
            continue
        request, _ = review.show(ws, actor=RESEARCHER, request=report.request)
        if request.state in ("pending", "returned") and request.reviewable:
            request = review.submit(ws, actor=RESEARCHER, request=request.id)
        print_request_summary(console, request)


DEMO_HOLDER = "Luxembourg Institute of Health (demo)"  # a permit goes to a legal person
PERMIT_DAYS = 365


def _apply_and_grant(console: Console, ws: Workspace, study: str, title: str, rho: float | None) -> None:
    """The researcher applies for the study's data permit; a committee member grants it with the budget asked."""
    until = str(date.today() + timedelta(days=PERMIT_DAYS))
    applied = permits.apply(ws, actor=RESEARCHER, study=study, holder=DEMO_HOLDER, purpose=title,
                            category="scientific-research", tier="real", tables="all", until=until,
                            rho=str(rho) if rho else None)  # fmt: skip
    permits.decide(ws, actor=COMMITTEE[0], permit_id=applied.id, rho=str(rho) if rho else None,
                   legal_basis="demo: the data-access committee's decision under the national EHDS law")  # fmt: skip
    asked = f" with the rho {rho:g} it asks for" if rho else ""
    console.print(f"{RESEARCHER} applied for permit {applied.id} (study {study}, real tier, every table, until "
                  f"{until}); {COMMITTEE[0]} (committee) granted it{asked}")  # fmt: skip


OPTED_OUT = 3  # people of the simulated registry who opted out before its first extract


def _optouts(console: Console, ws: Workspace, export: Path) -> None:
    """The steward records a few people's opt-outs (in real use, national IDs on standard input from the
    register's letters): every extract from now on leaves them out."""
    import polars as pl

    from research_kit.model.national_id import is_valid

    ids = pl.read_parquet(export / "patients.parquet", columns=["national_id"])["national_id"].to_list()
    chosen = [i for i in ids if is_valid(str(i))][:OPTED_OUT]
    done = optouts.add(ws, actor=STEWARD, lines=chosen)
    console.print(f"{STEWARD} (steward) recorded {done.recorded} opt-out(s) ({done.already} already in the register): "
                  f"the register holds {done.register.count} (version {done.register.version}); ingest leaves "
                  "them out of every extract")  # fmt: skip


def _pipelines(console: Console, ws: Workspace, extract_id: str) -> int | None:
    pipeline = pipelines.check_pipeline(example_pipeline())
    confined, _ = sandbox_check(ws)
    console.print(
        f"each action runs in the {confined.mode} sandbox: its input view read-only, one writable work folder, "
        "no network, DP queries through the broker (docs/security.md)",
        soft_wrap=True,
    )
    if not any(p.in_force() for p in permits.listed(ws, actor=COMMITTEE[0], study=pipeline.study)):
        _apply_and_grant(console, ws, pipeline.study, pipeline.title, pipeline.budget.get("rho"))
    with steps(console, "pipeline") as step:
        step(f"{pipeline.study}: {len(pipeline.actions)} actions on {extract_id}")
        report = runs.run(ws, actor=RESEARCHER, pipeline=pipeline, extract=extract_id)
    print_run(console, report)
    again = runs.run(ws, actor=RESEARCHER, pipeline=pipeline, extract=extract_id)
    console.print(
        f"run again with nothing changed: {again.count('cached')} of {len(again.actions)} actions reused "
        f"in {again.seconds:.2f} s"
    )
    with ws.catalog() as conn:
        queued = queued_by_run(conn, report.run_id)
    for action, name, diff in queued:
        if diff is None:
            change = "first version"
        elif diff["kind"] == "table":
            change = (
                f"{diff['cells_changed']} cells changed (largest by {diff['largest_change']:g}), "
                f"{diff['rows_added']} rows added, {diff['rows_removed']} removed, against {diff['against']}"
            )
        else:
            change = f"{'changed' if diff['changed'] else 'unchanged'} against {diff['against']}"
        console.print(f"queued for review: {action}/{name}: {change}")
    return report.request


STEWARD, RESEARCHER, COMMITTEE = "sam", "rita", ("carla", "chen")
DEMO_LOGINS = "demo-logins.tsv"  # the demo users' web passwords (mode 0600, in the workspace)


def _demo_users(console: Console, ws: Workspace) -> None:
    known = {u.name for u in people.list_users(ws)}
    roles = [(STEWARD, "steward"), (RESEARCHER, "researcher"), *((c, "committee") for c in COMMITTEE)]
    for name, role in roles:
        if name not in known:
            people.add(ws, actor=STEWARD, name=name, role=role)
            console.print(f"user {name} added as {role}")


def _web_passwords(console: Console, ws: Workspace) -> list[tuple[str, str, str]]:
    """New random passwords for the demo users, to sign in to ``research-kit serve``: (name, role, password).

    The file (mode 0600, in the workspace) exists for the demo only: real users get their password from a
    steward (``research-kit users password NAME``) and no file keeps it.
    """
    path = ws.root / DEMO_LOGINS
    order = {"committee": 0, "researcher": 1, "steward": 2}
    logins = []
    for user in sorted(people.list_users(ws), key=lambda u: (order.get(u.role, 9), u.name)):
        if user.name in (STEWARD, RESEARCHER, *COMMITTEE) and user.active:
            password = secrets.token_urlsafe(12)
            people.set_password(ws, actor=STEWARD, name=user.name, password=password)
            logins.append((user.name, user.role, password))
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        out.writelines(f"{name}\t{role}\t{password}\n" for name, role, password in logins)
    os.replace(tmp, path)
    console.print(f"web passwords set for {len(logins)} demo users (argon2id hashes in the catalog; also in {path})")
    return logins


def _outputs(console: Console, ws: Workspace, request_id: int | None) -> None:
    if request_id is None:
        open_requests = review.list_requests(ws, actor=RESEARCHER, states=OPEN)
        if not open_requests:
            console.print("no outputs waiting")
            return
        request_id = open_requests[-1].id
    request, _ = review.show(ws, actor=RESEARCHER, request=request_id)
    print_request(console, request)
    if request.state in ("pending", "returned"):
        _suppress_failing_tables(console, ws, request)
        request = review.submit(ws, actor=RESEARCHER, request=request_id)
        console.print(
            f"\n{RESEARCHER} (the researcher) submitted request {request_id}: it waits for two committee members"
        )
    console.print(
        f"review it:   research-kit --as {COMMITTEE[0]} review show {request_id}\n"
        f"             research-kit --as {COMMITTEE[0]} review approve {request_id} --comment '...'   "
        f"(then --as {COMMITTEE[1]})\n"
        f"release it:  research-kit --as {COMMITTEE[0]} release {request_id}"
    )


def _suppress_failing_tables(console: Console, ws: Workspace, request: Request) -> None:
    """The researcher suppresses the small cells of each failing table; the checks attack the result with a solver."""
    for output in request.outputs:
        if output.status != "fail" or output.path.suffix.lower() != ".csv":
            continue
        try:
            done = review.mitigate(ws, actor=RESEARCHER, request=request.id, output=output.key, method="suppress")
        except PolicyRefusal as refusal:
            console.print(f"\n{output.key}: suppression refused: {escape(str(refusal))}")
            done = review.mitigate(ws, actor=RESEARCHER, request=request.id, output=output.key, method="round")
            console.print(f"{RESEARCHER} rounded {output.key} instead: new version, checks {done.status}")
            continue
        console.print(
            f"\n{RESEARCHER} suppressed the small cells of {output.key} (research-kit outputs mitigate "
            f"{request.id} {output.key} --method suppress): new version, checks {done.status}"
        )
        print_protection(console, done.checks.protection)


def _demo_key(console: Console, ws: Workspace) -> Key:
    try:
        key = load_key()
        console.print(f"using the key at {key_path()} (fingerprint {key.fingerprint})")
    except MissingData:
        path, fingerprint = setup.make_key()
        console.print(f"new key written: {path} (mode 0600), fingerprint {fingerprint}")
        key = load_key(path)
    return key


def _transparency(console: Console, ws: Workspace, export: Path) -> dict[str, Path]:
    """A committee member publishes the transparency register; the steward answers one resident (the first of
    the simulated export not opted out) with the letter of where their data was used, in French; the steward
    writes the registry's HealthDCAT-AP description. Where each went."""
    import polars as pl

    from research_kit.model.national_id import is_valid

    folder, letters = ws.root / "public", ws.root / "reports" / "letters"
    for made in (folder, letters):
        made.mkdir(mode=0o700 if made == letters else 0o755, parents=True, exist_ok=True)
    published = transparency.publish(ws, actor=COMMITTEE[0], out=folder / "register")
    console.print(
        f"{COMMITTEE[0]} (committee) published the transparency register ({published.permits} permits, "
        f"{published.releases} releases, {', '.join(published.languages)}): {published.out / 'index.html'}"
    )
    ids = [i for i in pl.read_parquet(export / "patients.parquet", columns=["national_id"])["national_id"]
           if is_valid(str(i))]  # fmt: skip
    letter = transparency.person(
        ws, actor=STEWARD, lines=[ids[OPTED_OUT]], out=letters / "resident.html", lang="fr",
        key_file=key_path(),
    )  # fmt: skip
    console.print(
        f"{STEWARD} (steward) answered a resident's request: {letter.extracts} extract version(s) hold them; "
        f"the letter ({letter.lang}) is {letter.out}"
    )
    written = catalogue.write(ws, actor=STEWARD, out=folder / "catalogue")
    console.print(
        f"{STEWARD} (steward) wrote the registry's HealthDCAT-AP description ({written.triples} statements, checked "
        f"against the DCAT-AP 3 and HealthDCAT-AP shapes): {', '.join(f.name for f in written.files)} in "
        f"{written.folder}"
    )
    return {"register": published.out, "catalogue": written.folder, "letter": letter.out}


def _next_version(ws: Workspace) -> int:
    taken = {e.id for e in extracts.list_extracts(ws)}
    version = 1
    while f"demo-{version}" in taken or f"demo-faults-{version}" in taken:
        version += 1
    return version
