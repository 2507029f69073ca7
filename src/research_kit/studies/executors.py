"""Where actions execute: threads of this process, or a Dask cluster (local, any scheduler, or Slurm).

Every executor runs the same function, :func:`~research_kit.studies.execute.execute_action`,
and hands back futures; the runner waits for the first to finish, records
it and submits what became ready. Kernels do the work in their own
processes, so a thread per running action is enough locally.
"""

from __future__ import annotations

import concurrent.futures as cf
import os
from collections.abc import Callable, Collection
from typing import Any, Protocol

from research_kit.core.config import Policy
from research_kit.core.errors import BadInput
from research_kit.studies.execute import execute_action
from research_kit.studies.tasks import ActionResult, ActionTask


class Executor(Protocol):
    name: str

    def submit(self, task: ActionTask) -> Any: ...

    def wait_first(self, futures: Collection[Any]) -> set[Any]: ...

    def result(self, future: Any) -> ActionResult: ...

    def close(self) -> None: ...


def default_workers() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class LocalExecutor:
    name = "local"

    def __init__(self, workers: int | None = None) -> None:
        self.workers = workers or default_workers()
        self._pool = cf.ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="rk-action")

    def submit(self, task: ActionTask) -> cf.Future[ActionResult]:
        return self._pool.submit(execute_action, task)

    def wait_first(self, futures: Collection[Any]) -> set[Any]:
        done, _ = cf.wait(futures, return_when=cf.FIRST_COMPLETED)
        return set(done)

    def result(self, future: Any) -> ActionResult:
        return future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True)


class DaskExecutor:
    """A Dask ``distributed`` client: a loopback ``LocalCluster``, a running scheduler, or a Slurm cluster."""

    name = "dask"

    def __init__(self, workers: int | None = None, scheduler: str | None = None, cluster: Any = None) -> None:
        from distributed import Client, LocalCluster

        self._cluster = None
        if scheduler:
            self.client = Client(scheduler, timeout="20s")
        else:
            if cluster is None:
                cluster = LocalCluster(
                    n_workers=workers or default_workers(),
                    threads_per_worker=1,
                    processes=True,
                    host="127.0.0.1",
                    dashboard_address=None,
                )
            self._cluster = cluster
            self.client = Client(cluster)

    def submit(self, task: ActionTask) -> Any:
        # pure=False: a rerun must execute again, never return a remembered result.
        return self.client.submit(
            execute_action,
            task,
            key=f"{task.study}-{task.action}-{task.cache_key[:16]}-{os.urandom(4).hex()}",
            pure=False,
        )

    def wait_first(self, futures: Collection[Any]) -> set[Any]:
        from distributed import wait

        done, _ = wait(list(futures), return_when="FIRST_COMPLETED")
        return set(done)

    def result(self, future: Any) -> ActionResult:
        return future.result()

    def close(self) -> None:
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def slurm_cluster(policy: Policy, *, jobs: int = 0, scheduler_host: str | None = None) -> Any:
    """A ``dask_jobqueue.SLURMCluster`` from ``[runner]`` in research-kit.toml (one worker process per job).

    Workers must see the workspace at the same path (a shared file system)
    and run the same environment; ``job_script()`` shows the sbatch script.
    The scheduler listens on this machine's network interface (compute nodes
    must reach it) unless ``scheduler_host`` names another address. Each
    action runs in the same sandbox on the node as it would here; with
    ``[runner].sandbox = 'bwrap'`` the job first checks that the node can
    make it, and ends at once when it cannot.
    """
    import sys

    from dask_jobqueue import SLURMCluster

    runner = policy.runner
    # One worker thread per job runs one action at a time; the job books the cores its kernel may use.
    return SLURMCluster(
        queue=runner.slurm_queue or None,
        account=runner.slurm_account or None,
        cores=1,
        processes=1,
        job_cpu=runner.slurm_cores,
        memory=runner.slurm_memory,
        walltime=runner.slurm_walltime,
        job_name="research-kit",
        python=sys.executable,
        scheduler_options={"dashboard_address": None} | ({"host": scheduler_host} if scheduler_host else {}),
        n_workers=jobs,
        job_script_prologue=[f"{sys.executable} -m research_kit.sandbox.modes || exit 1"]
        if runner.sandbox == "bwrap"
        else [],
    )


Factory = Callable[[Policy, int | None, str | None], Executor]  # (policy, workers, scheduler) -> executor

EXECUTORS: dict[str, Factory] = {
    "local": lambda policy, workers, scheduler: LocalExecutor(workers),
    "dask": lambda policy, workers, scheduler: DaskExecutor(workers, scheduler),
    "slurm": lambda policy, workers, scheduler: DaskExecutor(
        cluster=slurm_cluster(policy, jobs=workers or policy.runner.slurm_jobs)
    ),
}


def make_executor(name: str, policy: Policy, *, workers: int | None = None, scheduler: str | None = None) -> Executor:
    """The executor registered as ``name`` (:data:`EXECUTORS`), started."""
    factory = EXECUTORS.get(name)
    if factory is None:
        raise BadInput(f"--executor {name!r}: use {', '.join(EXECUTORS)}")
    return factory(policy, workers, scheduler)
