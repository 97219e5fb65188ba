"""Where the grid's runs execute: worker slots on this machine (``local``) or tasks on a Ray cluster (``ray``).

Both execute the same function on each run (``run.execute_notebook_run``: the run notebook, papermill) and
write into the same results folder layout, so resuming, aggregation and the report do not depend on the executor.
The ``ray`` executor needs the results folder on storage that every node mounts at the same path, and
petct-study installed on every node (``pip install 'petct-study[ray]'``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, Protocol

# environment variables a run reads to record how it was executed (summary.json: "execution")
EXECUTOR_ENV = "STUDYLIB_EXECUTOR"
RUNS_PER_GPU_ENV = "STUDYLIB_RUNS_PER_GPU"

RunFunction = Callable[[Any, dict], None]  # (RunParams, environment) -> None; raises on failure
Outcome = tuple[Any, BaseException | None]  # (RunParams, the error or None)


class Executor(Protocol):
    """Executes grid runs; yields each run with its error (None on success) as it finishes."""

    name: str
    threads: int  # CPU threads each run gets (recorded in the run's parameters)

    def record(self) -> dict:
        """What the study records about the execution (kind, slots, GPU sharing)."""

    def execute(self, runs: Sequence[Any], run_one: RunFunction) -> Iterator[Outcome]:
        """Run ``run_one(params, env)`` for every run; yield ``(params, error)`` in completion order."""


def thread_environment(threads: int) -> dict[str, str]:
    """Environment that limits a run's BLAS/OpenMP threads (torch reads it at start-up)."""
    return {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}


def local_gpu_count() -> int:
    """CUDA devices visible to this process (0 without torch's CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


@dataclass
class LocalExecutor:
    """``jobs`` runs at once on this machine, each in its own process; with GPUs, runs share them round-robin."""

    jobs: int = 1
    gpus: int | None = None  # None: count them
    name: str = "local"

    def __post_init__(self) -> None:
        self.jobs = max(1, int(self.jobs))
        if self.gpus is None:
            self.gpus = local_gpu_count()
        self.threads = max(1, (os.cpu_count() or 1) // self.jobs)

    @property
    def runs_per_gpu(self) -> int:
        """How many concurrent runs share one GPU (0 on a CPU-only machine)."""
        return math.ceil(self.jobs / self.gpus) if self.gpus else 0

    def record(self) -> dict:
        return {"executor": self.name, "jobs": self.jobs, "threads_per_run": self.threads, "gpus": self.gpus,
                "runs_per_gpu": self.runs_per_gpu}

    def environment(self, slot: int) -> dict[str, str]:
        """The environment of the run in worker ``slot``: its threads, its GPU, how many runs share that GPU."""
        env = {**thread_environment(self.threads), EXECUTOR_ENV: self.name, RUNS_PER_GPU_ENV: str(self.runs_per_gpu)}
        if self.gpus and self.gpus > 1:
            env["CUDA_VISIBLE_DEVICES"] = str(slot % self.gpus)
        return env

    def execute(self, runs: Sequence[Any], run_one: RunFunction) -> Iterator[Outcome]:
        with ThreadPoolExecutor(self.jobs) as pool:  # threads only wait on the run subprocesses
            futures = {pool.submit(run_one, params, self.environment(i)): params for i, params in enumerate(runs)}
            for future in as_completed(futures):
                yield futures[future], future.exception()


@dataclass
class RayExecutor:
    """One Ray task per run on an existing cluster (``address``: ``host:port``, or ``auto`` on a cluster node).

    Each task asks for ``threads`` CPUs and, on a cluster with GPUs, ``1 / runs_per_gpu`` of a GPU, so that
    ``runs_per_gpu`` runs share each GPU; Ray sets each task's ``CUDA_VISIBLE_DEVICES``.
    """

    address: str = "auto"
    threads: int = 1
    runs_per_gpu: int = 4
    name: str = "ray"

    def __post_init__(self) -> None:
        if self.threads < 1 or self.runs_per_gpu < 1:
            raise ValueError("ray executor: threads and runs_per_gpu must be at least 1")

    def _connect(self):
        try:
            import ray
        except ImportError as err:
            raise RuntimeError("the ray executor needs Ray: pip install 'petct-study[ray]'") from err
        if not ray.is_initialized():
            ray.init(address=self.address, log_to_driver=False, configure_logging=False)
        return ray

    def cluster_gpus(self) -> float:
        """GPUs the connected cluster offers."""
        return float(self._connect().cluster_resources().get("GPU", 0))

    def record(self) -> dict:
        gpus = self.cluster_gpus()
        return {"executor": self.name, "address": self.address, "threads_per_run": self.threads, "gpus": gpus,
                "runs_per_gpu": self.runs_per_gpu if gpus else 0}

    def execute(self, runs: Sequence[Any], run_one: RunFunction) -> Iterator[Outcome]:
        ray = self._connect()
        gpus = self.cluster_gpus()
        task = ray.remote(num_cpus=self.threads, num_gpus=1 / self.runs_per_gpu if gpus else 0,
                          max_retries=0)(run_one)
        env = {**thread_environment(self.threads), EXECUTOR_ENV: self.name,
               RUNS_PER_GPU_ENV: str(self.runs_per_gpu if gpus else 0)}
        pending = {task.remote(params, env): params for params in runs}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                params = pending.pop(ref)
                try:
                    ray.get(ref)
                    yield params, None
                except Exception as err:  # a RayTaskError wraps the run's own error
                    yield params, RuntimeError(str(getattr(err, "cause", None) or err))


def make_executor(kind: str = "local", jobs: int = 1, address: str | None = None, threads: int | None = None,
                  runs_per_gpu: int = 4) -> Executor:
    """The executor named ``kind`` ('local' or 'ray') from the command-line options."""
    if kind == "local":
        return LocalExecutor(jobs)
    if kind == "ray":
        return RayExecutor(address or "auto", threads or 1, runs_per_gpu)
    raise ValueError(f"unknown executor {kind!r}: choose 'local' or 'ray'")
