"""Resource limits of confined code: what the policy allows, and how each is enforced on this machine.

Each limit from ``[runner]`` is enforced from outside the sandbox, where the
code inside cannot lift it:

- **CPU time**: ``RLIMIT_CPU`` on every process (set by the launcher before
  exec), and the whole process tree's CPU time watched;
- **file size**: ``RLIMIT_FSIZE`` at the work folder's cap (one write past it
  fails with ``File too large``), and the work folder's size on disk watched;
- **memory** and **processes**: cgroup v2 ``memory.max`` and ``pids.max``
  where the machine delegates a cgroup to us; otherwise the tree's resident
  memory and its processes and threads are watched and the tree is killed
  when it goes over (no ``RLIMIT_AS``: it breaks numpy and torch, which
  reserve far more address space than they use);
- **wall time**: watched.

The :class:`Watcher` polls every quarter second; what it finds is the reason
the action fails ("its memory limit, 4096 MiB").
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from research_kit.core.config import RunnerPolicy

MIB = 1024 * 1024
POLL_SECONDS = 0.25
OPEN_FILES = 4096
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class Limits:
    memory_bytes: int
    cpu_seconds: int
    wall_seconds: int
    work_bytes: int
    max_processes: int
    max_files: int = 100_000

    @classmethod
    def from_policy(cls, runner: RunnerPolicy) -> Limits:
        return cls(
            memory_bytes=runner.memory_mb * MIB,
            cpu_seconds=runner.cpu_seconds,
            wall_seconds=runner.wall_seconds,
            work_bytes=runner.work_mb * MIB,
            max_processes=runner.max_processes,
            max_files=runner.max_files,
        )

    def rlimits(self) -> dict[str, tuple[int, int]]:
        """What the launcher sets with setrlimit (soft, hard), a backstop behind the watcher.

        A process's own CPU limit sits 2 s past the tree's, so the watcher
        (which can name the reason) acts first; the hard limit kills what
        ignores SIGXCPU.
        """
        return {
            "cpu": (self.cpu_seconds + 2, self.cpu_seconds + 5),
            "fsize": (self.work_bytes, self.work_bytes),
            "core": (0, 0),
            "nofile": (OPEN_FILES, OPEN_FILES),  # memory-backed files (memfd) escape the resident-memory watch
        }

    def describe(self) -> str:
        return (
            f"memory {self.memory_bytes // MIB} MiB, CPU {self.cpu_seconds} s, wall {self.wall_seconds} s, "
            f"work folder {self.work_bytes // MIB} MiB and {self.max_files} files, {self.max_processes} processes"
        )


def cgroup_v2_parent() -> tuple[Path | None, str]:
    """(the cgroup v2 folder under which this process may make child cgroups with memory and pids, why not)."""
    controllers = CGROUP_ROOT / "cgroup.controllers"
    if not controllers.is_file():
        hierarchy = "cgroup v1" if (CGROUP_ROOT / "memory").is_dir() else "no cgroup v2"
        return None, f"cgroup v2 is not mounted at {CGROUP_ROOT} ({hierarchy} hierarchy)"
    try:
        own = next(
            line.split("::", 1)[1].strip()
            for line in Path("/proc/self/cgroup").read_text().splitlines()
            if line.startswith("0::")
        )
    except (OSError, StopIteration):
        return None, "this process's cgroup v2 is unknown"
    parent = CGROUP_ROOT / own.lstrip("/")
    try:
        enabled = set((parent / "cgroup.subtree_control").read_text().split())
    except OSError:
        return None, f"{parent} cannot be read"
    missing = {"memory", "pids"} - enabled
    if missing:
        return None, f"the {', '.join(sorted(missing))} controller is not delegated to {parent}"
    if not os.access(parent, os.W_OK):
        return None, f"{parent} is not writable by this user"
    return parent, ""


class Cgroup:
    """A child cgroup v2 with ``memory.max`` and ``pids.max``, removed on :meth:`close`."""

    def __init__(self, parent: Path, name: str, limits: Limits) -> None:
        self.path = parent / name
        self.path.mkdir()
        (self.path / "memory.max").write_text(str(limits.memory_bytes))
        (self.path / "pids.max").write_text(str(limits.max_processes))
        swap = self.path / "memory.swap.max"
        if swap.exists():
            swap.write_text("0")

    def oom_killed(self) -> bool:
        try:
            events = dict(line.split() for line in (self.path / "memory.events").read_text().splitlines())
        except (OSError, ValueError):
            return False
        return int(events.get("oom_kill", "0")) > 0

    def kill(self) -> None:
        kill = self.path / "cgroup.kill"
        if kill.exists():
            kill.write_text("1")

    def close(self) -> None:
        self.kill()
        for _ in range(40):  # the kernel removes the processes asynchronously
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.05)


def folder_usage(folder: Path) -> tuple[int, int]:
    """(disk space used, entries) under ``folder``: blocks, so a sparse file counts what it holds; every file,
    folder and link is an entry (empty files hold no block but use an inode)."""
    total, count = 0, 0
    stack = [folder]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except OSError:
                        continue
                    total += st.st_blocks * 512
                    count += 1
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
        except OSError:
            continue
    return total, count


class Watcher:
    """Polls a confined process tree and its work folder; kills the tree at the first limit it finds exceeded."""

    def __init__(
        self, limits: Limits, work: Path, cgroup: Cgroup | None = None, *, also: tuple[Path, ...] = ()
    ) -> None:
        self.limits = limits
        self.work = work
        self.folders = (work, *also)  # every host folder the confined code can write, under one cap
        self.cgroup = cgroup
        self.reason = ""
        self._pid: int | None = None
        self._started = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rk-watcher", daemon=True)
        self._thread.start()

    def attach(self, pid: int) -> None:
        """Watch the tree under ``pid`` (the launcher, then bwrap)."""
        self._pid = pid

    def check_work_folder(self) -> str:
        """The reason the work folder is over its cap, or ''. Called again before outputs are collected."""
        usage = [folder_usage(folder) for folder in self.folders]
        used, files = sum(u[0] for u in usage), sum(u[1] for u in usage)
        if used > self.limits.work_bytes:
            return f"its work folder limit, {self.limits.work_bytes // MIB} MiB ({used // MIB} MiB written)"
        if files > self.limits.max_files:
            return f"its limit of {self.limits.max_files} files in its work folder"
        return ""

    def stop(self) -> str:
        self._stop.set()
        self._thread.join(timeout=5)
        if not self.reason and self.cgroup is not None and self.cgroup.oom_killed():
            self.reason = f"its memory limit, {self.limits.memory_bytes // MIB} MiB"
        return self.reason

    def _run(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            reason = self._exceeded()
            if reason:
                self.reason = reason
                self._kill()
                return

    def _exceeded(self) -> str:
        limits = self.limits
        if time.monotonic() - self._started > limits.wall_seconds:
            return f"its wall-time limit, {limits.wall_seconds} s"
        reason = self.check_work_folder()
        if reason or self._pid is None:
            return reason
        rss, cpu, tasks = _tree_usage(self._pid)
        if rss > limits.memory_bytes:
            return f"its memory limit, {limits.memory_bytes // MIB} MiB"
        if cpu > limits.cpu_seconds:
            return f"its CPU-time limit, {limits.cpu_seconds} s"
        if tasks > limits.max_processes:
            return f"its limit of {limits.max_processes} processes and threads"
        return ""

    def _kill(self) -> None:
        if self.cgroup is not None:
            self.cgroup.kill()
        if self._pid is not None:
            kill_tree(self._pid)


def _tree_usage(pid: int) -> tuple[int, float, int]:
    """(resident bytes, CPU seconds, processes and threads) of ``pid`` and everything under it."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0, 0.0, 0
    rss, cpu, tasks = 0, 0.0, 0
    for proc in procs:
        try:
            with proc.oneshot():
                rss += proc.memory_info().rss
                t = proc.cpu_times()
                cpu += t.user + t.system + t.children_user + t.children_system
                tasks += proc.num_threads()
        except psutil.Error:
            continue
    return rss, cpu, tasks


def kill_tree(pid: int) -> None:
    """SIGKILL ``pid`` and every process under it (children first found, then the root)."""
    import psutil

    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True), root]
    except psutil.Error:
        return
    for proc in procs:
        try:
            proc.kill()
        except psutil.Error:
            continue


def in_tree(pid: int, root: int) -> bool:
    """Whether ``pid`` is ``root`` or runs under it."""
    import psutil

    try:
        return pid == root or any(p.pid == pid for p in psutil.Process(root).children(recursive=True))
    except psutil.Error:
        return False
