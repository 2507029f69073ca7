"""The sandbox of one study action: its view, its work folder, its broker, its limits.

Made by the process that executes the action (the runner's thread, or a Dask
worker on another node), outside the sandbox. Inside, the kernel sees::

    /rk/work      the work folder (writable; its outputs and scratch files)
    /rk/view      the input view (read-only; see :mod:`research_kit.sandbox.views`), with the study's pseudonyms
    /rk/broker    the broker's socket (its one way to the platform)
    /rk/cache     the code systems' cache file (read-only; public code lists)
    /tmp          private, of the work folder's size; the kernel's runtime folder is bound in it
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from pathlib import Path

from research_kit.core import permits
from research_kit.core.audit import RUNNER
from research_kit.core.errors import PolicyRefusal
from research_kit.sandbox.broker import Broker, Grant
from research_kit.sandbox.confine import Sandbox
from research_kit.sandbox.limits import Cgroup, Limits, Watcher, cgroup_v2_parent
from research_kit.sandbox.modes import FIX, find_bwrap, probe
from research_kit.sandbox.views import Projection, StudyPseudonyms, build_view
from research_kit.studies.tasks import ActionTask

KERNEL_ARGV = ["-m", "ipykernel_launcher", "-f", "{connection_file}"]
STUDY_VIEWS = "study-views"  # cache/study-views/FINGERPRINT/: each study's tables with its pseudonyms


class ActionSandbox:
    def __init__(self, task: ActionTask, work_root: Path, base: Sandbox, broker: Broker, broker_dir: Path) -> None:
        self.task = task
        self.work_root = work_root
        self.work = work_root / "work"
        self.base = base
        self.broker = broker
        self.broker_dir = broker_dir
        self._watcher: Watcher | None = None
        self._cgroup: Cgroup | None = None
        self._box = base
        self._reason = ""

    @classmethod
    def prepare(cls, task: ActionTask, work_root: Path) -> ActionSandbox:
        """Build the view and start the broker; refuse when the confinement asked for cannot be had here."""
        from research_kit.core.workspace import open_workspace
        from research_kit.model.codes import cache_file, load_code_systems
        from research_kit.pseudonymise.study_secrets import require_secret
        from research_kit.tiers import newest_twin, real_source

        ws = open_workspace(Path(task.workspace))
        limits = Limits.from_policy(ws.policy().runner)
        bwrap = ""
        if task.sandbox == "bwrap":
            bwrap = find_bwrap()
            problem = probe(bwrap)
            if problem:
                raise PolicyRefusal(f"cannot confine researcher code ({problem}): {FIX}")
        source = real_source(ws, task.extract)
        twin = newest_twin(ws, "default")  # rk.load(twin=True): the default twin, as in the lab
        # rk.load(twin="dp"): the DP twin of this extract, else the newest one (the lab's twin="dp")
        dp_twin = newest_twin(ws, "dp", extract=source.name) or newest_twin(ws, "dp")
        with ws.catalog() as conn:  # the study's secret (its run made it), never the pseudonymisation key
            # The view holds what the study's permit covers, no more: a table it does not cover is absent.
            permit = permits.check(conn, task.study, task.actor.removeprefix(RUNNER), tier="real",
                                   extract=source.name, doing="running an action")  # fmt: skip
            line = permits.pseudonym_line(conn, task.study)
            pseudonyms = StudyPseudonyms(require_secret(conn, line), ws.cache_dir / STUDY_VIEWS)
        projection = Projection() if permit.data is None else Projection(dict(permit.data))
        view = build_view(
            work_root / "view",
            source=source,
            policy_file=ws.policy_path,
            pseudonyms=pseudonyms,
            upstream=task.inputs,
            twin=twin,
            dp_twin=dp_twin,
            projection=projection,
        )
        box = Sandbox(mode=task.sandbox, limits=limits, bwrap=bwrap)
        box.add("work", work_root / "work", "/rk/work", writable=True)
        box.add("view", view.folder, "/rk/view")
        for i, stored in enumerate(view.bound):
            box.add(f"stored-{i}", stored, str(stored))
        codes = cache_file()
        if not codes.is_file():
            load_code_systems()  # built once per machine (~15 s): notebooks may read the code lists
        box.add("codes", codes, f"/rk/cache/{codes.name}")
        broker_dir = Path(tempfile.mkdtemp(prefix="rk-broker-"))
        box.add("broker", broker_dir, "/rk/broker")
        grant = Grant(str(ws.root), task.study, task.extract, task.actor)
        return cls(task, work_root, box, Broker(broker_dir / "broker.sock", grant), broker_dir)

    def reset_work(self) -> None:
        """An empty work folder holding only the needs' outputs, as links into the view."""
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(mode=0o700)
        view = self.base.path("view")
        for relative, _ in self.task.inputs:
            link = self.work / relative
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(f"{view}/upstream/{relative}")

    def start(self, runtime: Path) -> Watcher:
        """The sandbox of one kernel start (its runtime folder bound in), watched from now on."""
        self._box = Sandbox(
            mode=self.base.mode, limits=self.base.limits, mounts=list(self.base.mounts), bwrap=self.base.bwrap
        )
        self._box.add("runtime", runtime, str(runtime), writable=True)
        if self.base.mode != "bwrap":
            (runtime / "home").mkdir(mode=0o700)
            self._box.scratch = str(runtime / "home")
        parent, _ = cgroup_v2_parent()
        if parent is not None:
            self._cgroup = Cgroup(parent, f"rk-{uuid.uuid4().hex[:12]}", self.base.limits)
            self._box.cgroup = str(self._cgroup.path)
        self._reason = ""
        self._watcher = Watcher(self.base.limits, self.work, self._cgroup, also=(runtime,))
        return self._watcher

    def launch(self, runtime: Path) -> list[str]:
        """The kernel's command line (``{connection_file}`` left for Jupyter to fill in)."""
        import sys

        box = self._box
        env = box.environment(
            self.task.env
            | {
                "RESEARCH_KIT_VIEW": box.path("view"),
                "RESEARCH_KIT_BROKER": f"{box.path('broker')}/broker.sock",
                "RESEARCH_KIT_CACHE": str(Path(box.path("codes")).parent),
                "JUPYTER_RUNTIME_DIR": str(runtime),
            }
        )
        plan = box.write_plan(self.work_root / f"plan-{runtime.name}.json", [sys.executable, *KERNEL_ARGV], env)
        return box.command(plan, "{connection_file}")

    def stop(self) -> str:
        """Stop watching (and remove the cgroup); the limit that was exceeded, or ''."""
        if self._watcher is not None:
            self._reason = self._watcher.stop() or self._reason
            self._watcher = None
        if self._cgroup is not None:
            self._cgroup.close()
            self._cgroup = None
        return self._reason

    def close(self) -> None:
        self.stop()
        self.broker.close()
        shutil.rmtree(self.broker_dir, ignore_errors=True)
