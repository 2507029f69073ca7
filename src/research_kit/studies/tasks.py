"""What an executor is handed and hands back: one action's task, its result and its output files.

Plain frozen data, so a task pickles to a Dask worker on another node and its result comes back.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


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
    workspace: str = ""  # the workspace root (the broker's and the view's, never the kernel's)
    extract: str = ""
    actor: str = ""  # whom the broker charges DP queries as
    sandbox: str = "bwrap"  # the confinement the runner chose: bwrap | container | off
    env: dict[str, str] = field(default_factory=dict)  # extra variables for the kernel (never a path or a key)
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
    dropped: list[str] = field(default_factory=list)  # what the notebook wrote that was not kept, and why
