"""How a process that runs researcher code is started: which folders it sees, its environment, its limits.

A :class:`Sandbox` is built for one action (or one lab) from its mounts: the
folders it may read, the one folder it may write, the sockets it may reach.
:meth:`Sandbox.write_plan` turns it into the launcher's plan and
:meth:`Sandbox.command` into the argument list that starts a command under
it. In ``bwrap`` mode the process sees a small file system of its own:

- read-only: the system's ``/usr`` (and the ``/bin``, ``/lib`` links), a few
  files of ``/etc``, the Python environment (base prefix, virtual
  environment, research-kit's source) and the mounts named read-only;
- writable: the mounts named writable, and a private ``/tmp`` (a tmpfs of the
  work folder's size);
- absent: everything else: the workspace, the key, the user's home, other
  studies, the network (a new network namespace with only its own loopback),
  the machine's processes (a new PID namespace), every capability, further
  user namespaces.

In ``container`` and ``off`` mode there is no namespace: the command runs
with the same clean environment and limits, and sees host paths.
"""

from __future__ import annotations

import json
import os
import site
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from research_kit.sandbox.limits import Limits

MODES = ("bwrap", "container", "off")
LAUNCHER = Path(__file__).with_name("launch.py")
SANDBOX_UID = 1000  # the uid inside; mapped to the caller's own uid outside
# Variables passed from the caller to confined code when set: numeric settings only, never a path.
PASSED_ENV = ("LANG", "LC_ALL", "TZ", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
ETC_FILES = ("ld.so.cache", "localtime", "fonts", "alternatives", "mime.types")


@dataclass(frozen=True)
class Mount:
    name: str  # how callers refer to it ("work", "view", ...)
    host: Path
    inside: str  # where it appears in bwrap mode
    writable: bool = False


@dataclass
class Sandbox:
    mode: str
    limits: Limits
    mounts: list[Mount] = field(default_factory=list)
    cwd: str = "work"  # the mount the process starts in
    bwrap: str = ""  # path of the bwrap binary (bwrap mode)
    cgroup: str = ""  # a cgroup v2 folder the launcher joins
    scratch: str = ""  # without bwrap: a private host folder for HOME and TMPDIR (bwrap gives a private /tmp)

    def add(self, name: str, host: Path, inside: str, *, writable: bool = False) -> None:
        self.mounts.append(Mount(name, Path(host), inside, writable))

    def path(self, name: str) -> str:
        """Where mount ``name`` appears to the confined process."""
        mount = next(m for m in self.mounts if m.name == name)
        return mount.inside if self.mode == "bwrap" else str(mount.host)

    def environment(self, extra: dict[str, str]) -> dict[str, str]:
        """The confined process's whole environment: a home in its private /tmp, its PATH, ``extra``."""
        # Never the work folder: IPython's history, caches and temp files would land among the outputs.
        tmp = "/tmp" if self.mode == "bwrap" else (self.scratch or tempfile.gettempdir())
        env = {name: os.environ[name] for name in PASSED_ENV if name in os.environ}
        env |= {
            "PATH": f"{Path(sys.executable).parent}:/usr/local/bin:/usr/bin:/bin",
            "HOME": tmp,
            "TMPDIR": tmp,
            "USER": "researcher",
            "LOGNAME": "researcher",
            "MPLBACKEND": "Agg",
            "MPLCONFIGDIR": f"{tmp}/.matplotlib",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        return env | extra

    def bwrap_args(self) -> list[str]:
        args = [
            "--unshare-all", "--unshare-user", "--disable-userns", "--uid", str(SANDBOX_UID), "--gid",
            str(SANDBOX_UID), "--die-with-parent", "--new-session", "--hostname", "sandbox",
        ]  # fmt: skip
        if os.geteuid() == 0:
            args += ["--cap-drop", "ALL"]  # as root bwrap keeps capabilities unless told
        # The private /tmp first: whatever is bound below it later (an environment or a workspace that lives
        # in the host's /tmp) is mounted on top of it instead of being hidden by it.
        size = str(self.limits.work_bytes)
        args += ["--proc", "/proc", "--dev", "/dev", "--size", size, "--tmpfs", "/dev/shm", "--size", size]
        args += ["--tmpfs", "/tmp"]
        args += ["--ro-bind", "/usr", "/usr"]
        for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
            top = Path("/") / name
            if top.is_symlink():
                args += ["--symlink", os.readlink(top), str(top)]
            elif top.is_dir():
                args += ["--ro-bind", str(top), str(top)]
        for name in ETC_FILES:
            if (Path("/etc") / name).exists():
                args += ["--ro-bind", f"/etc/{name}", f"/etc/{name}"]
        for folder in python_folders():
            args += ["--ro-bind", str(folder), str(folder)]
        for m in self.mounts:
            args += ["--bind" if m.writable else "--ro-bind", str(m.host), m.inside]
        # Nothing else writable: bwrap's own root and /dev are tmpfs without a size (memory no watcher sees).
        args += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", self.path(self.cwd)]
        return args

    def write_plan(self, path: Path, argv: list[str], env: dict[str, str]) -> Path:
        """Write the launcher's plan for ``argv`` (readable by its owner only) and return its path."""
        plan: dict[str, object] = {
            "argv": argv,
            "env": env,
            "rlimits": self.limits.rlimits(),
            "cgroup": self.cgroup or None,
        }
        if self.mode == "bwrap":
            plan |= {"bwrap": self.bwrap, "bwrap_args": self.bwrap_args()}
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(plan, fh)
        return path

    def command(self, plan: Path, *extra: str) -> list[str]:
        """The argument list that runs the plan (``extra``: the launcher's connection-file argument)."""
        return [sys.executable, "-I", "-S", str(LAUNCHER), str(plan), *extra]


def python_folders() -> list[Path]:
    """The folders the Python environment needs (stdlib, site-packages, research-kit's source), outermost only."""
    import research_kit

    candidates = {Path(sys.base_prefix), Path(sys.prefix), Path(research_kit.__file__).resolve().parent.parent}
    candidates |= {Path(p) for p in site.getsitepackages()}
    resolved = sorted({c.resolve() for c in candidates if c.exists()}, key=lambda p: len(p.parts))
    outermost: list[Path] = []
    for path in resolved:
        if not any(path.is_relative_to(o) for o in outermost):
            outermost.append(path)
    # The venv's own path (not resolved) too, when it is a symlink farm pointing elsewhere.
    for path in (Path(sys.prefix), Path(sys.executable).parent.parent):
        if path.exists() and not any(path.is_relative_to(o) for o in outermost):
            outermost.append(path)
    return outermost
