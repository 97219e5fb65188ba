"""Running independent per-patient tasks in worker processes with a progress bar."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def map_in_processes(function: Callable[[Any], Any], tasks: Sequence, jobs: int, desc: str,
                     progress: bool = True) -> list:
    """``[function(t) for t in tasks]`` in ``jobs`` worker processes (in this process when ``jobs`` is 1), in order."""
    from tqdm import tqdm  # plain text bars: the same in a terminal, a log and a notebook

    if jobs <= 1 or len(tasks) <= 1:
        return [function(t) for t in tqdm(tasks, desc=desc, disable=not progress)]
    # spawn, not fork: forking a process whose torch/OpenMP threads already run can deadlock the child
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(tqdm(pool.map(function, tasks), total=len(tasks), desc=desc, disable=not progress))
