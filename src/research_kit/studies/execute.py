"""Execute one action: its notebook through Papermill, in a fresh folder, keeping only declared outputs.

This is the unit of work every executor runs (a thread here, a Dask worker
elsewhere): it takes an :class:`ActionTask`, touches nothing but the task's
folders and returns an :class:`ActionResult`. The catalog and the audit log
are written by the runner that submitted it, never by a worker.

1. The outputs of the action's ``needs`` are linked, read-only, into an empty
   working folder at their declared paths; the kernel starts there.
2. Papermill runs the notebook with the parameters injected, on a kernel
   with IPC sockets in a private runtime folder and an environment that
   points ``rk.load()`` at the real extract and holds no key.
3. The declared outputs move into a new result folder (written beside it,
   then renamed into place) with the executed notebook and its provenance;
   everything else the notebook wrote is deleted with the working folder.
   A failed notebook is kept where the runner said, and the error names
   the cell and the exception.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from research_kit.checksums import file_sha256
from research_kit.outputs.sidecar import sidecar_path

KERNEL_NAME = "python3"
RETRIES_ON_DEAD_KERNEL = 1


@dataclass(frozen=True)
class ActionTask:
    study: str
    action: str
    notebook: str  # absolute path
    parameters: dict[str, Any]
    cache_key: str
    outputs: list[tuple[str, str, str]]  # (name, relative path, sensitivity)
    inputs: list[tuple[str, str]]  # (relative path in the working folder, stored file)
    work_dir: str  # scratch folder of this execution (deleted at the end)
    result_dir: str  # where the result folder goes when the action succeeds
    failed_notebook: str  # where the executed notebook goes when it fails
    env: dict[str, str] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class OutputFile:
    name: str
    path: str
    sensitivity: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class ActionResult:
    action: str
    ok: bool
    started_at: str
    finished_at: str
    seconds: float
    outputs: list[OutputFile] = field(default_factory=list)
    error: str = ""
    notebook: str = ""  # the executed notebook (result folder, or the failed one's place)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def execute_action(task: ActionTask) -> ActionResult:
    """Run one action to completion; never raises for a notebook's own failure."""
    started, clock = _now(), time.perf_counter()
    work_root = Path(task.work_dir)
    try:
        error, notebook = _execute(task, work_root)
        outputs: list[OutputFile] = []
        if not error:
            outputs = _publish(task, work_root)
            notebook = str(Path(task.result_dir) / "notebook.ipynb")
    except _ActionFailed as exc:
        error, notebook, outputs = str(exc), "", []
    finally:
        shutil.rmtree(work_root, ignore_errors=True)
        _close_thread_loop()
    return ActionResult(
        task.action, not error, started, _now(), round(time.perf_counter() - clock, 3), outputs, error, notebook
    )


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
    pass


def _execute(task: ActionTask, work_root: Path) -> tuple[str, str]:
    """Run the notebook; return (error, kept notebook) with error empty on success."""
    import papermill
    from nbclient.exceptions import DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    from research_kit.studies.kernels import kernel_manager_class

    work = work_root / "work"
    if work_root.exists():
        shutil.rmtree(work_root)
    work.mkdir(parents=True, mode=0o700)
    for relative, stored in task.inputs:
        target = work / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(stored, target)
        except OSError:
            shutil.copyfile(stored, target)
    executed = work_root / "notebook.ipynb"
    for attempt in range(RETRIES_ON_DEAD_KERNEL + 1):
        # Unix socket paths are short (108 bytes): the runtime folder lives in the system's temp folder.
        runtime = Path(tempfile.mkdtemp(prefix="rk-kernel-"))
        env = {**kernel_base_env(), **task.env, "JUPYTER_RUNTIME_DIR": str(runtime)}
        try:
            papermill.execute_notebook(
                task.notebook,
                str(executed),
                parameters=task.parameters,
                kernel_name=KERNEL_NAME,
                kernel_manager_class=kernel_manager_class(runtime, work, env),
                progress_bar=False,
                log_output=False,
                request_save_on_cell_execute=False,
            )
            return "", str(executed)
        except PapermillExecutionError as exc:
            return _cell_error(executed, exc), _keep(executed, Path(task.failed_notebook))
        except DeadKernelError as exc:
            if attempt == RETRIES_ON_DEAD_KERNEL:
                log = runtime / "kernel.log"
                last = log.read_text(errors="replace").strip().splitlines()[-1:] if log.is_file() else []
                detail = f"; its last words: {last[0][:200]}" if last else ""
                return f"the kernel died ({exc}){detail}", _keep(executed, Path(task.failed_notebook))
        except Exception as exc:  # noqa: BLE001 - a kernel that cannot start, a notebook papermill refuses, ...
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            return f"{type(exc).__name__}: {first}"[:300], _keep(executed, Path(task.failed_notebook))
        finally:
            shutil.rmtree(runtime, ignore_errors=True)
    raise AssertionError("unreachable")


def kernel_base_env() -> dict[str, str]:
    """This process's environment without any research-kit setting (the task adds its own) or key file."""
    return {k: v for k, v in os.environ.items() if not k.startswith("RESEARCH_KIT_")} | {"MPLBACKEND": "Agg"}


def _cell_error(executed: Path, exc: Any) -> str:
    """'cell 4 (`df = load(...)`): KeyError: 'x'', numbered as in the source notebook (from 1)."""
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
    value = " ".join(str(exc.evalue).split())
    if len(value) > 200:
        value = value[:197] + "..."
    return f"cell {index + 1} (`{first_line}`): {exc.ename}: {value}"


def _keep(executed: Path, target: Path) -> str:
    if not executed.is_file():
        return ""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(executed, target)
    return str(target)


def _publish(task: ActionTask, work_root: Path) -> list[OutputFile]:
    """Move the declared outputs and the executed notebook into the result folder (atomically)."""
    work = work_root / "work"
    missing = [f"{name} ({path})" for name, path, _ in task.outputs if not (work / path).is_file()]
    if missing:
        kept = _keep(work_root / "notebook.ipynb", Path(task.failed_notebook))
        raise _ActionFailed(
            f"declared output{'s' if len(missing) > 1 else ''} not written: {', '.join(missing)}"
            + (f" (notebook kept: {kept})" if kept else "")
        )
    result = Path(task.result_dir)
    staging = result.parent / f".tmp-{result.name}-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    (staging / "outputs").mkdir(parents=True)
    files = []
    for name, path, sensitivity in task.outputs:
        target = staging / "outputs" / path
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(work / path, target)
        target.chmod(0o444)
        sidecar = sidecar_path(work / path)  # what rk.outputs wrote about it: the checks read it
        if sidecar.is_file():
            shutil.move(sidecar, sidecar_path(target))
            sidecar_path(target).chmod(0o444)
        files.append(OutputFile(name, path, sensitivity, file_sha256(target), target.stat().st_size))
    shutil.move(work_root / "notebook.ipynb", staging / "notebook.ipynb")
    provenance = {**task.provenance, "outputs": [f.__dict__ for f in files]}
    (staging / "provenance.json").write_text(json.dumps(provenance, indent=2, sort_keys=True, default=str) + "\n")
    if result.exists():  # the same key finished elsewhere meanwhile: identical inputs, keep the first
        shutil.rmtree(staging)
        stored = json.loads((result / "provenance.json").read_text(encoding="utf-8"))
        return [OutputFile(**f) for f in stored["outputs"]]
    staging.rename(result)
    return files
