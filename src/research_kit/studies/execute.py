"""Execute one action: its notebook through Papermill, confined to its inputs, keeping only declared outputs.

This is the unit of work every executor runs (a thread here, a Dask worker
elsewhere): it takes an :class:`ActionTask`, touches nothing but the task's
folders and returns an :class:`ActionResult`. The catalog and the audit log
are written by the runner that submitted it; the only other writer is the
broker, which charges the study's DP queries to the ledger.

1. The action's input view is built outside the sandbox: its extract's
   tables, the published twin and its needs' declared outputs, hard-linked
   into a folder the kernel sees read-only (:mod:`research_kit.sandbox.views`).
   The needs' outputs also appear in the empty work folder, at their declared
   paths, as links into the view.
2. Papermill runs the notebook with the parameters injected, on a kernel
   started in the sandbox (:mod:`research_kit.sandbox`): IPC sockets in a
   private runtime folder, the work folder its one writable place, the
   broker's socket its one way to the platform, watched for its limits.
3. The declared outputs (regular files inside the work folder, nothing
   else) move into a new result folder (written beside it, then renamed into
   place) with the executed notebook and its provenance; everything else the
   notebook wrote is dropped, reported, and deleted with the working folder.
   A failed notebook is kept where only the workspace's owner can read it,
   and the error names the cell and the exception, without its message
   unless research-kit wrote it (a message can quote data).
"""

from __future__ import annotations

import asyncio
import builtins
import json
import os
import shutil
import stat
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from research_kit.core.checksums import file_sha256
from research_kit.core.errors import UserError
from research_kit.outputs.sidecar import sidecar_path
from research_kit.studies.sandboxed import ActionSandbox
from research_kit.studies.tasks import ActionResult, ActionTask, OutputFile

KERNEL_NAME = "python3"
RETRIES_ON_DEAD_KERNEL = 1
# Exception names the console may show: the kernel chooses an exception's name (a class can be named after a
# patient), so only well-known ones are repeated; any other is "an exception". Messages are never repeated.
KNOWN_ERRORS = frozenset(
    {n for n, v in vars(builtins).items() if isinstance(v, type) and issubclass(v, BaseException)}
    | {"BadInput", "MissingData", "PolicyRefusal", "IntegrityError", "UserError", "DeadKernelError"}
)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def execute_action(task: ActionTask) -> ActionResult:
    """Run one action to completion; never raises for a notebook's own failure."""
    started, clock = _now(), time.perf_counter()
    work_root = Path(task.work_dir)
    dropped: list[str] = []
    try:
        error, notebook = _execute(task, work_root)
        outputs: list[OutputFile] = []
        if not error:
            outputs = _publish(task, work_root, dropped)
            notebook = str(Path(task.result_dir) / "notebook.ipynb")
    except _ActionFailed as exc:
        error, notebook, outputs = str(exc), exc.notebook, []
    finally:
        shutil.rmtree(work_root, ignore_errors=True)
        _close_thread_loop()
    return ActionResult(
        task.action, not error, started, _now(), round(time.perf_counter() - clock, 3), outputs, error, notebook,
        dropped,
    )  # fmt: skip


def _close_thread_loop() -> None:
    """Close the event loop nbclient left on this worker thread (it never closes it itself)."""
    if threading.current_thread() is threading.main_thread():
        return
    policy = asyncio.get_event_loop_policy()
    try:
        loop = policy.get_event_loop()
    except RuntimeError:
        return
    if not loop.is_running():
        loop.close()
        policy.set_event_loop(None)


class _ActionFailed(Exception):
    def __init__(self, message: str, notebook: str = "") -> None:
        super().__init__(message)
        self.notebook = notebook


def _execute(task: ActionTask, work_root: Path) -> tuple[str, str]:
    """Run the notebook in its sandbox; return (error, kept notebook) with error empty on success."""
    import papermill
    from nbclient.exceptions import DeadKernelError

    from research_kit.studies.kernels import kernel_manager_class

    if work_root.exists():
        shutil.rmtree(work_root)
    work_root.mkdir(parents=True, mode=0o700)
    executed = work_root / "notebook.ipynb"
    failed = Path(task.failed_notebook)
    try:
        box = ActionSandbox.prepare(task, work_root)
    except UserError as exc:  # no sandbox, no run: the action fails with the reason (research-kit's own words)
        raise _ActionFailed(f"its sandbox could not be made: {exc}") from None
    try:
        for attempt in range(RETRIES_ON_DEAD_KERNEL + 1):
            box.reset_work()
            # Unix socket paths are short (108 bytes): the runtime folder lives in the system's temp folder.
            runtime = Path(tempfile.mkdtemp(prefix="rk-kernel-"))
            try:
                watcher = box.start(runtime)
                papermill.execute_notebook(
                    task.notebook,
                    str(executed),
                    parameters=task.parameters,
                    kernel_name=KERNEL_NAME,
                    kernel_manager_class=kernel_manager_class(
                        runtime, box.work, box.launch(runtime), watcher.attach, work_root / "kernel.log"
                    ),
                    progress_bar=False,
                    log_output=False,
                    request_save_on_cell_execute=True,  # a killed kernel leaves the cells run so far
                )
                reason = box.stop() or watcher.check_work_folder()
                if reason:
                    return f"it exceeded {reason}", _keep(executed, failed)
                return "", str(executed)
            except Exception as exc:  # noqa: BLE001 - a failing cell, a dead kernel, one that cannot start, ...
                reason = box.stop()
                if reason:  # the watcher stopped it: whatever papermill then raised, this is why
                    return f"it exceeded {reason}", _keep(executed, failed)
                if isinstance(exc, DeadKernelError) and attempt < RETRIES_ON_DEAD_KERNEL:
                    continue
                return _failure(exc, executed, work_root, failed), _keep(executed, failed)
            finally:
                box.stop()
                shutil.rmtree(runtime, ignore_errors=True)
    finally:
        box.close()
    raise AssertionError("unreachable")


def _failure(exc: Exception, executed: Path, work_root: Path, failed: Path) -> str:
    """The console's line for a failed execution; what the kernel wrote is kept beside the notebook, not shown."""
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    if isinstance(exc, PapermillExecutionError):
        return _cell_error(executed, exc)
    if isinstance(exc, DeadKernelError):
        _keep(work_root / "kernel.log", failed.with_suffix(".kernel.log"))
        return "the kernel died (its output is kept beside the notebook)"
    # Its text can quote what the kernel sent (papermill validates kernel messages): kept, not shown.
    with open(work_root / "kernel.log", "a", encoding="utf-8") as log:
        log.write(f"\n{type(exc).__name__}: {exc}\n")
    _keep(work_root / "kernel.log", failed.with_suffix(".kernel.log"))
    name = type(exc).__name__ if type(exc).__name__ in KNOWN_ERRORS else "an error"
    return f"{name} (details kept beside the notebook)"


def _cell_error(executed: Path, exc: Any) -> str:
    """'cell 4 (`df = load(...)`): KeyError (message withheld ...)', numbered as in the source notebook (from 1).

    The cell's first line is the author's code (from the notebook file, not
    from the kernel); the exception's name is repeated only when it is a
    well-known one, and its message never: both come from code that ran on
    real data.
    """
    index = int(exc.cell_index)
    try:
        cells = json.loads(executed.read_text(encoding="utf-8"))["cells"]
        # Papermill's 'injected-parameters' cell (when there are parameters) is not the author's.
        index -= sum(1 for c in cells[:index] if "injected-parameters" in c.get("metadata", {}).get("tags", []))
    except (OSError, ValueError, KeyError):
        pass
    first_line = next((line.strip() for line in str(exc.source).splitlines() if line.strip()), "")
    if len(first_line) > 60:
        first_line = first_line[:57] + "..."
    name = exc.ename if exc.ename in KNOWN_ERRORS else "an exception"
    return f"cell {index + 1} (`{first_line}`): {name} (message withheld: it may quote data)"


def _keep(executed: Path, target: Path) -> str:
    """Keep a failed action's executed notebook (it holds real-data output) readable by the workspace's owner only."""
    try:
        if not stat.S_ISREG(executed.lstat().st_mode):  # never a symlink: it would be followed below
            return ""
    except OSError:
        return ""
    target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    target.parent.chmod(0o700)
    shutil.move(executed, target)
    target.chmod(0o600)
    return str(target)


def _publish(task: ActionTask, work_root: Path, dropped: list[str]) -> list[OutputFile]:
    """Move the declared outputs and the executed notebook into the result folder (atomically).

    A declared output must be a regular file inside the work folder (not a
    symlink, not under a linked folder); whatever else is there is dropped
    and listed in ``dropped``.
    """
    work = work_root / "work"
    keep: dict[str, Path] = {}
    missing, refused = [], []
    for name, path, _ in task.outputs:
        problem = _not_a_plain_file(work, path)
        if problem == "missing":
            missing.append(f"{name} ({path})")
        elif problem:
            refused.append(f"{name} ({path}): {problem}")
        else:
            keep[path] = work / path
            sidecar = sidecar_path(work / path)
            if not _not_a_plain_file(work, sidecar.relative_to(work).as_posix()):
                keep[sidecar.relative_to(work).as_posix()] = sidecar
    dropped += _undeclared(work, set(keep) | {relative for relative, _ in task.inputs})  # inputs: the runner's links
    if missing or refused:
        kept = _keep(work_root / "notebook.ipynb", Path(task.failed_notebook))
        message = "; ".join(
            ([f"declared output{'s' if len(missing) > 1 else ''} not written: {', '.join(missing)}"] if missing else [])
            + [f"declared output {r}" for r in refused]
        )
        raise _ActionFailed(message + (f" (notebook kept: {kept})" if kept else ""), kept)
    result = Path(task.result_dir)
    staging = result.parent / f".tmp-{result.name}-{os.getpid()}-{threading.get_ident()}"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "outputs").mkdir(parents=True)
    files = []
    for name, path, sensitivity in task.outputs:
        target = staging / "outputs" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(work / path, target)
        target.chmod(0o444)
        sidecar = sidecar_path(work / path)  # what rk.outputs wrote about it: the checks read it
        if sidecar.relative_to(work).as_posix() in keep:
            shutil.move(sidecar, sidecar_path(target))
            sidecar_path(target).chmod(0o444)
        files.append(OutputFile(name, path, sensitivity, file_sha256(target), target.stat().st_size))
    shutil.move(work_root / "notebook.ipynb", staging / "notebook.ipynb")
    provenance = {**task.provenance, "outputs": [f.__dict__ for f in files], "dropped": list(dropped)}
    (staging / "provenance.json").write_text(json.dumps(provenance, indent=2, sort_keys=True, default=str) + "\n")
    if result.exists():  # the same key finished elsewhere meanwhile: identical inputs, keep the first
        shutil.rmtree(staging)
        stored = json.loads((result / "provenance.json").read_text(encoding="utf-8"))
        return [OutputFile(**f) for f in stored["outputs"]]
    staging.rename(result)
    return files


def _not_a_plain_file(work: Path, relative: str) -> str:
    """'' when ``work/relative`` is a regular file reached without a symlink; else what it is."""
    current = work
    parts = Path(relative).parts
    for i, part in enumerate(parts):
        current = current / part
        try:
            st = current.lstat()
        except FileNotFoundError:
            return "missing"
        except OSError as exc:
            return exc.strerror or "unreadable"
        if stat.S_ISLNK(st.st_mode):
            return "a symbolic link (only files written in the work folder are kept)"
        last = i == len(parts) - 1
        if last and not stat.S_ISREG(st.st_mode):
            return "not a regular file"
        if not last and not stat.S_ISDIR(st.st_mode):
            return "missing"
    return ""


def _undeclared(work: Path, kept: set[str]) -> list[str]:
    """What the notebook left in ``work`` beyond ``kept`` (relative paths, with what each is when not a file)."""
    found = []
    for folder, dirs, files in os.walk(work):
        for name in sorted(dirs + files):
            path = Path(folder) / name
            relative = path.relative_to(work).as_posix()
            st = path.lstat()
            if stat.S_ISDIR(st.st_mode):
                continue
            if relative in kept:
                continue
            kind = "symlink" if stat.S_ISLNK(st.st_mode) else "file" if stat.S_ISREG(st.st_mode) else "special file"
            found.append(f"{relative} ({kind})")
    return found
