"""Run a pipeline on a real extract: actions in dependency order, independent ones at once, unchanged ones reused.

For each action whose ``needs`` have succeeded, the runner computes its content
key (:mod:`~research_kit.studies.cache`). A stored result with that key is
reused as it is; otherwise the action goes to the executor. A failed action
stops its dependants only; the others go on. Every action's outcome, every
executed action's provenance and the run itself are recorded in the catalog
and the audit log, and each moderately_sensitive output enters the review
queue once, with its diff against the last version a reviewer saw.

Only the runner sets ``RESEARCH_KIT_TIER=real``: the notebook's ``rk.load()``
then reads the action's input view of the extract the run is for (its
patients under the study's pseudonyms, from the study's secret, which the
study's first run makes), and
``rk.dp`` asks the broker, which charges the study's real budget; the same
notebook in JupyterLab reads the synthetic twin. Every action runs in the
sandbox the policy asks for (:mod:`research_kit.sandbox`); a run that cannot
have it stops before anything runs.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from research_kit.core import permits
from research_kit.core.audit import RUNNER, current_actor
from research_kit.core.checksums import file_sha256
from research_kit.core.errors import BadInput
from research_kit.core.locks import hold
from research_kit.core.workspace import Workspace
from research_kit.pseudonymise.pseudonyms import study_fingerprint
from research_kit.pseudonymise.study_secrets import study_secret
from research_kit.sandbox.modes import Confinement, confinement
from research_kit.studies import cache, records
from research_kit.studies.executors import EXECUTORS, Executor, make_executor
from research_kit.studies.queueing import queue_new_outputs
from research_kit.studies.spec import Action, Pipeline, content_hash, project_root
from research_kit.studies.tasks import ActionResult, ActionTask, OutputFile
from research_kit.tiers import EXTRACT_ENV, STUDY_ENV, TIER_ENV, Source, real_source

Listener = Callable[[str, str, str], None]  # (action, event, detail): event is queued|started|ran|cached|failed|skipped


@dataclass
class ActionOutcome:
    action: str
    outcome: str  # ran | cached | failed | skipped
    seconds: float = 0.0
    cache_key: str | None = None
    error: str = ""
    notebook: str = ""
    folder: Path | None = None
    outputs: list[OutputFile] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)  # what the notebook wrote beyond its declared outputs


@dataclass
class RunReport:
    run_id: int
    study: str
    extract: str
    outcome: str
    seconds: float
    actions: dict[str, ActionOutcome]
    queued: int = 0
    request: int | None = None  # the review request the queued outputs went into (set by the run action)
    notices: tuple[str, ...] = ()  # what the run's confinement could not give, or was told not to

    def count(self, outcome: str) -> int:
        return sum(1 for a in self.actions.values() if a.outcome == outcome)


def studies_dir(ws: Workspace) -> Path:
    return ws.root / "studies"


def git_commit(root: Path) -> str:
    """The project's commit (with '-dirty' when files changed), or 'none' outside git."""
    try:
        done = subprocess.run(
            ["git", "-C", str(root), "describe", "--always", "--dirty", "--abbrev=40"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "none"
    return done.stdout.strip() if done.returncode == 0 and done.stdout.strip() else "none"


def selected_actions(pipeline: Pipeline, only: str | None) -> list[str]:
    order = [name for level in pipeline.levels() for name in level]
    if only is None:
        return order
    if only not in pipeline.actions:
        raise BadInput(f"{pipeline.path}: --action {only!r}: no such action (actions: {', '.join(order)})")
    wanted = {only}
    stack = [only]
    while stack:
        for need in pipeline.actions[stack.pop()].needs:
            if need not in wanted:
                wanted.add(need)
                stack.append(need)
    return [name for name in order if name in wanted]


class _Run:
    """The state of one run while it goes (kept off the public API)."""

    def __init__(
        self, ws: Workspace, pipeline: Pipeline, source: Source, force: bool, listener: Listener, confined: Confinement
    ) -> None:
        self.ws = ws
        self.confined = confined
        self.limits = ws.policy().runner
        self.pipeline = pipeline
        self.source = source
        self.force = force
        self.listener = listener
        self.env = cache.environment()
        self.root = project_root(pipeline.path.resolve())
        self.commit = git_commit(self.root)
        self.notebook_hashes: dict[Path, str] = {}
        self.outcomes: dict[str, ActionOutcome] = {}
        self.run_id = 0
        self.on_behalf_of = current_actor()  # whose study budget the action's queries spend (a rerun: the owner's)
        self.pseudonyms = ""  # the fingerprint of the study's pseudonyms (set once its secret is had)
        self.tables = "every table"  # what the study's data permit covers (its views hold no more)

    def notebook_hash(self, path: Path) -> str:
        if path not in self.notebook_hashes:
            self.notebook_hashes[path] = file_sha256(path)
        return self.notebook_hashes[path]

    def upstream(self, action: Action) -> dict[str, str]:
        return {f"{need}/{o.path}": o.sha256 for need in action.needs for o in self.outcomes[need].outputs}

    def provenance(self, action: Action, key: str) -> dict[str, Any]:
        try:
            notebook = action.notebook.relative_to(self.root).as_posix()
        except ValueError:
            notebook = str(action.notebook)
        return {
            "study": self.pipeline.study,
            "pipeline": str(self.pipeline.path),
            "run": self.run_id,
            "run_by": current_actor(),  # a researcher, or the service identity reruns act as
            "on_behalf_of": self.on_behalf_of,  # whose study budget the action's queries spend
            "action": action.name,
            "notebook": notebook,
            "notebook_hash": self.notebook_hash(action.notebook),
            "parameters": action.parameters,
            "extract": self.source.name,
            "extract_hash": self.source.content_hash,
            "upstream": self.upstream(action),
            "environment": self.env.hash,
            "packages": self.env.packages,
            "git_commit": self.commit,
            "cache_key": key,
            "folder": str(self.result_dir(action.name, key)),
            "sandbox": self.sandbox_settings(),
        }

    def sandbox_settings(self) -> dict[str, Any]:
        from research_kit.sandbox.limits import Limits

        return self.confined.settings(Limits.from_policy(self.limits))

    def result_dir(self, action: str, key: str) -> Path:
        return studies_dir(self.ws) / self.pipeline.study / "results" / action / key[:32]

    def task(self, action: Action, key: str, provenance: dict[str, Any]) -> ActionTask:
        inputs = [
            (o.path, str(self.outcomes[need].folder / "outputs" / o.path))  # type: ignore[operator]
            for need in action.needs
            for o in self.outcomes[need].outputs
        ]
        study_dir = studies_dir(self.ws) / self.pipeline.study
        result = self.result_dir(action.name, key)
        result.parent.mkdir(parents=True, exist_ok=True)
        return ActionTask(
            study=self.pipeline.study,
            action=action.name,
            notebook=str(action.notebook),
            parameters=dict(action.parameters),
            cache_key=key,
            outputs=[(o.name, o.path, o.sensitivity) for o in action.outputs],
            inputs=inputs,
            work_dir=str(self.ws.scratch_dir / "runs" / f"{self.pipeline.study}-{self.run_id}-{action.name}"),
            result_dir=str(result),
            failed_notebook=str(study_dir / "failed" / f"run-{self.run_id}" / f"{action.name}.ipynb"),
            workspace=str(self.ws.root),
            extract=self.source.name,
            actor=f"{RUNNER}{self.on_behalf_of}",
            sandbox=self.confined.mode,
            env={TIER_ENV: "real", EXTRACT_ENV: self.source.name, STUDY_ENV: self.pipeline.study},
            provenance=provenance,
        )


def run_pipeline(
    ws: Workspace,
    pipeline: Pipeline,
    *,
    extract: str | None = None,
    action: str | None = None,
    executor: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    force: bool = False,
    trigger: str = "run",
    listener: Listener | None = None,
) -> RunReport:
    """Run ``pipeline`` (or one ``action`` and what it needs) on ``extract`` (default: the newest)."""
    clock = time.perf_counter()
    if executor not in EXECUTORS:
        raise BadInput(f"--executor {executor!r}: use {', '.join(EXECUTORS)}")
    if scheduler and executor != "dask":
        raise BadInput("--scheduler goes with --executor dask")
    source = real_source(ws, extract)
    selected = selected_actions(pipeline, action)
    confined = confinement(ws)  # refuses, in one line, before anything runs
    study = pipeline.study
    with hold(studies_dir(ws) / study / ".lock", f"a run of study {study!r}"):
        run = _Run(ws, pipeline, source, force, listener or (lambda *_: None), confined)
        # Holding the study's lock: any scratch folder of this study was left by a killed run.
        for stale in (ws.scratch_dir / "runs").glob(f"{study}-*"):
            shutil.rmtree(stale, ignore_errors=True)
        with ws.catalog() as conn:
            records.ensure_environment(conn, run.env)
            pipeline_hash = hashlib.sha256(pipeline.path.read_bytes()).hexdigest()
            records.register_pipeline(
                conn, ws, study, pipeline.path.resolve(), pipeline.title, content_hash(pipeline),
                rerun=trigger == "rerun", extract=source.name,
            )  # fmt: skip
            if trigger == "rerun":  # the registered pipeline, unchanged: it runs for whoever registered it
                run.on_behalf_of = records.registered_by(conn, study) or run.on_behalf_of
            # The study's pseudonym secret, made by its first run: its actions' views show its pseudonyms only.
            line = permits.pseudonym_line(conn, study)  # the permit's pseudonyms (a continuation: its first's)
            run.pseudonyms = study_fingerprint(study_secret(conn, ws.audit_path, line))
            covered = permits.in_force(conn, study)  # in force: registering the pipeline checked it
            run.tables = covered.data_text() if covered is not None else run.tables
            run.run_id = records.start_run(
                conn,
                study=study,
                pipeline=str(pipeline.path.resolve()),
                pipeline_hash=pipeline_hash,
                extract=source.name,
                extract_hash=source.content_hash,
                git_commit=run.commit,
                executor=executor,
                trigger=trigger,
            )
            try:
                _schedule(
                    run,
                    conn,
                    selected,
                    lambda: make_executor(
                        executor,
                        ws.policy(),
                        workers=workers or ws.policy().runner.workers or None,
                        scheduler=scheduler,
                    ),
                )
            except BaseException:
                records.finish_run(conn, ws, run.run_id, "interrupted", _summary(run, executor))
                raise
            finished = [
                (name, o.cache_key, o.folder, o.outputs)
                for name, o in run.outcomes.items()
                if o.outcome in ("ran", "cached") and o.folder is not None and o.cache_key is not None
            ]
            queued = queue_new_outputs(conn, ws, study=study, extract=source.name, run_id=run.run_id, finished=finished)
            failed = any(o.outcome in ("failed", "skipped") for o in run.outcomes.values())
            outcome = "failed" if failed else "succeeded"
            records.finish_run(conn, ws, run.run_id, outcome, _summary(run, executor) | {"queued": queued})
    return RunReport(
        run.run_id, study, source.name, outcome, round(time.perf_counter() - clock, 3), run.outcomes, queued, None,
        confined.notices,
    )  # fmt: skip


def _summary(run: _Run, executor: str) -> dict[str, Any]:
    return {
        "study": run.pipeline.study,
        "extract": run.source.name,
        "extract_hash": run.source.content_hash,
        "git_commit": run.commit,
        "executor": executor,
        "sandbox": run.sandbox_settings(),
        "actions": {name: o.outcome for name, o in run.outcomes.items()},
    }


def _schedule(run: _Run, conn: Any, selected: list[str], start_executor: Callable[[], Executor]) -> None:
    pending = list(selected)
    running: dict[Any, tuple[Action, str, dict[str, Any]]] = {}
    executor: Executor | None = None
    try:
        while pending or running:
            progressed = True
            while progressed:
                progressed = False
                for name in list(pending):
                    action = run.pipeline.actions[name]
                    states = [run.outcomes.get(need) for need in action.needs]
                    if any(s is not None and s.outcome in ("failed", "skipped") for s in states):
                        pending.remove(name)
                        progressed = True
                        blocker = next(
                            n
                            for n, s in zip(action.needs, states, strict=True)
                            if s and s.outcome in ("failed", "skipped")
                        )
                        error = f"not run: {blocker} did not succeed"
                        run.outcomes[name] = ActionOutcome(name, "skipped", error=error)
                        records.record_action(
                            conn, run.ws, run.run_id, "skipped", name, cache_key=None, seconds=0.0, error=error
                        )
                        run.listener(name, "skipped", error)
                        continue
                    if not all(s is not None for s in states):
                        continue
                    pending.remove(name)
                    progressed = True
                    key = cache.action_key(
                        study=run.pipeline.study,
                        outputs=[(o.name, o.path, o.sensitivity) for o in action.outputs],
                        notebook_hash=run.notebook_hash(action.notebook),
                        parameters=action.parameters,
                        extract=run.source.name,
                        extract_hash=run.source.content_hash,
                        upstream=run.upstream(action),
                        environment_hash=run.env.hash,
                        pseudonyms=run.pseudonyms,
                        tables=run.tables,
                    )
                    stored = None if run.force else records.lookup(conn, key)
                    if stored is not None:
                        run.outcomes[name] = ActionOutcome(
                            name,
                            "cached",
                            0.0,
                            key,
                            folder=stored.folder,
                            outputs=stored.outputs,
                            notebook=str(stored.folder / "notebook.ipynb"),
                        )
                        records.record_action(conn, run.ws, run.run_id, "cached", name, cache_key=key, seconds=0.0)
                        run.listener(name, "cached", "")
                        continue
                    if executor is None:
                        executor = start_executor()
                    provenance = run.provenance(action, key)
                    future = executor.submit(run.task(action, key, provenance))
                    running[future] = (action, key, provenance)
                    run.listener(name, "started", "")
            if not running:
                continue
            for future in executor.wait_first(list(running)):  # type: ignore[union-attr]
                action, key, provenance = running.pop(future)
                _record(run, conn, action, key, provenance, executor, future)  # type: ignore[arg-type]
    finally:
        if executor is not None:
            executor.close()


def _record(
    run: _Run, conn: Any, action: Action, key: str, provenance: dict[str, Any], executor: Executor, future: Any
) -> None:
    try:
        result: ActionResult = executor.result(future)
    except Exception as exc:  # noqa: BLE001 - the executor lost the task (a worker died): the action fails, the run goes on
        message = f"the executor lost it ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        result = ActionResult(action.name, False, records.now(), records.now(), 0.0, error=message)
    name = action.name
    if result.ok:
        outcome = ActionOutcome(
            name, "ran", result.seconds, key, notebook=result.notebook, folder=Path(provenance["folder"]),
            outputs=result.outputs,
        )  # fmt: skip
        detail = f"{result.seconds:.1f} s"
    else:
        if result.error.startswith("cell "):
            error = f"action {name} failed at {result.error}"
        else:
            error = f"action {name} failed: {result.error}"
        if result.notebook:
            error += f" (executed notebook kept: {result.notebook})"
        outcome = ActionOutcome(name, "failed", result.seconds, key, error=error, notebook=result.notebook)
        detail = error
    outcome.dropped = list(result.dropped)
    run.outcomes[name] = outcome
    records.record_action(
        conn, run.ws, run.run_id, outcome.outcome, name, cache_key=key, seconds=result.seconds,
        result=result if result.ok else None, provenance=provenance, error=outcome.error, notebook=result.notebook,
    )  # fmt: skip
    run.listener(name, outcome.outcome, detail)
