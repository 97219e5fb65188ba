"""Re-run one finished run from its own folder and say, file by file, whether the results are identical."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..plans.results_folder import RUN_BEST_CHECKPOINT, RUN_PARAMS, RUN_PER_PATIENT, RUN_SUMMARY
from ..plans.results_lock import results_lock
from ..plans.runs import RunParams
from ..training.trainer import load_checkpoint
from .run import execute_notebook_run


def compare_per_patient(original: Path, rerun: Path) -> dict:
    """Byte equality of two runs' per-patient tables and, where they differ, the largest metric difference."""
    same_bytes = original.read_bytes() == rerun.read_bytes()
    out = {"file": original.name, "identical": same_bytes, "max_abs_difference": 0.0, "worst_column": ""}
    if not same_bytes:
        a, b = pd.read_csv(original), pd.read_csv(rerun)
        if a.shape != b.shape or list(a.columns) != list(b.columns):
            return {**out, "max_abs_difference": float("inf"), "worst_column": "shape or columns differ"}
        numeric = a.select_dtypes("number").columns
        diffs = (a[numeric] - b[numeric]).abs().max()
        out.update(max_abs_difference=float(diffs.max()), worst_column=str(diffs.idxmax()))
    return out


def compare_checkpoints(original: Path, rerun: Path) -> dict:
    """Tensor-by-tensor equality of two checkpoints' weights."""
    a, b = load_checkpoint(original)["model"], load_checkpoint(rerun)["model"]
    if set(a) != set(b):
        return {"file": original.name, "identical": False, "max_abs_difference": float("inf"),
                "worst_column": "different tensors"}
    worst, name = 0.0, ""
    for key in a:
        if a[key].shape != b[key].shape:
            return {"file": original.name, "identical": False, "max_abs_difference": float("inf"), "worst_column": key}
        d = float((a[key].double() - b[key].double()).abs().max()) if a[key].numel() else 0.0
        if d > worst:
            worst, name = d, key
    return {"file": original.name, "identical": all(torch.equal(a[k], b[k]) for k in a), "max_abs_difference": worst,
            "worst_column": name}


def rerun(run_dir: str | os.PathLike, out: str | os.PathLike | None = None, threads: int | None = None) -> pd.DataFrame:
    """Re-execute ``run_dir``'s notebook with exactly its recorded parameters into ``out`` and compare.

    The thread count recorded with the run is used unless ``threads`` is given; a different count is allowed
    (CPU results may then differ in the last bits) and is reported in the table's ``note``.
    """
    run_dir = Path(run_dir).resolve()
    if not (run_dir / RUN_PARAMS).exists() or not (run_dir / RUN_SUMMARY).exists():
        raise FileNotFoundError(f"{run_dir} is not a finished run ({RUN_PARAMS} and {RUN_SUMMARY} needed)")
    params = RunParams.from_record(run_dir / RUN_PARAMS)
    target = Path(out).resolve() if out else run_dir.parent.parent / "reruns" / run_dir.name
    if (target / RUN_SUMMARY).exists():
        raise FileExistsError(f"{target} already holds a run; pass another --out")
    note = f"threads {params.threads} as recorded"
    if threads is not None and threads != params.threads:
        note = f"threads {threads} instead of the recorded {params.threads}: CPU results may differ"
        params = dataclasses.replace(params, threads=threads)
    params = dataclasses.replace(params, run_dir=str(target))
    env = {"OMP_NUM_THREADS": str(params.threads), "MKL_NUM_THREADS": str(params.threads)} if params.threads else {}
    target.parent.parent.mkdir(parents=True, exist_ok=True)
    with results_lock(target.parent.parent):  # the folder that holds the re-run's runs/
        execute_notebook_run(params, env)
    rows = [compare_per_patient(run_dir / RUN_PER_PATIENT, target / RUN_PER_PATIENT),
            compare_checkpoints(run_dir / RUN_BEST_CHECKPOINT, target / RUN_BEST_CHECKPOINT)]
    table = pd.DataFrame(rows)
    table["note"] = note
    table["rerun"] = str(target)
    return table


def matched(table: pd.DataFrame) -> bool:
    """True when every compared file is identical."""
    return bool(np.all(table["identical"]))
