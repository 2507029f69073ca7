"""Jupyter kernels for the runner: IPC transport, one runtime directory per run, a chosen environment.

Kernels talk to the runner over Unix sockets in a private directory (mode
0700) instead of TCP ports on the host: many kernels can start at once
without ``Address already in use``, and no other user of the machine can
connect to them. Papermill passes the class to nbclient, which makes one
manager per notebook.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager, KernelManager


def kernel_manager_class(
    runtime_dir: Path, cwd: Path, argv: list[str], on_start: Callable[[int], None], log: Path
) -> type[KernelManager]:
    """A ``KernelManager`` subclass bound to ``runtime_dir`` (sockets, connection file), ``cwd`` and ``argv``.

    ``argv`` starts the kernel (in its sandbox: see
    :mod:`research_kit.sandbox.launch`); it is started with an empty
    environment, so nothing of the runner's reaches the notebook but what the
    sandbox's plan names. ``on_start`` gets the started process's id (for the
    limits' watcher). The kernel's own output goes to ``log``, which must lie
    outside every folder the sandbox can write (a symlink planted there would
    be followed by whoever reads the log).
    """
    runtime = str(runtime_dir)
    workdir = str(cwd)
    command = list(argv)
    log_path = str(log)

    # The asynchronous manager: its client awaits messages, so nbclient notices a kernel killed for a limit.
    class RunKernelManager(AsyncKernelManager):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.transport = "ipc"
            # With IPC the "ip" is the sockets' path prefix: <runtime>/kernel-<port>.
            self.ip = os.path.join(runtime, "kernel")
            self.connection_file = os.path.join(runtime, "kernel.json")

        @property
        def kernel_spec(self) -> KernelSpec:
            # This interpreter, whatever kernels the user has installed: the environment the cache key names.
            return KernelSpec(argv=command, display_name="research-kit runner", language="python", resource_dir=runtime)

        async def _async_start_kernel(self, **kw: Any) -> None:
            kw["env"] = {}
            kw["cwd"] = workdir
            # The kernel's own chatter (shutdown notices, warnings) goes to a log, not the runner's terminal.
            with open(log_path, "ab") as out:
                kw["stdout"] = kw["stderr"] = out
                await super()._async_start_kernel(**kw)
            process = getattr(self.provisioner, "process", None)
            if process is not None:
                on_start(process.pid)

        start_kernel = _async_start_kernel

    return RunKernelManager
