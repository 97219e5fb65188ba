"""One run of the grid: train one model, predict every test patient in 3D, score it; the run folder it writes."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import torch

from ..evaluation.scoring import cohort_nsd_tolerance, metric_summary, score_patient
from ..inference.volume import predict_styles, prediction_stem, write_prediction
from ..ingest.cohort import load_cohort
from ..ingest.modalities import MODALITY_CHANNELS
from ..plans.profiles import load_profile
from ..plans.provenance import environment_record
from ..plans.results_folder import (
    PREDICTIONS,
    RUN_BEST_CHECKPOINT,
    RUN_LOG,
    RUN_NOTEBOOK_OUTPUT,
    RUN_PARAMS,
    RUN_PER_PATIENT,
    RUN_SUMMARY,
    RUNS,
    write_if_changed,
)
from ..plans.runs import RunParams, results_root
from ..preprocessing.cache import load_cached, load_native
from ..preprocessing.targets import SOFT_TARGETS
from ..training.data import (
    slices_digest,
    stack_slices,
    styled,
    styled_training_set,
    training_slices,
    validation_volumes,
)
from ..training.models import CONDITIONED, build_run_model, count_parameters, keeps_probabilities
from ..training.trainer import convergence, load_checkpoint, numerics_record, resolve_device, train_model
from .executors import EXECUTOR_ENV, RUNS_PER_GPU_ENV
from .notebooks import RUN_NOTEBOOK, execute_notebook


def execute_run(params: RunParams, progress: bool = True) -> dict:
    """Train one model, predict every test patient in 3D, evaluate against every label; write the run folder."""
    started = time.perf_counter()
    run_dir = Path(params.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / RUN_PARAMS).write_text(json.dumps(params.record(), indent=1))
    profile = load_profile(params.profile)
    cache_dir = Path(params.cache_dir)
    fold = json.loads(Path(params.splits).read_text())[params.fold]
    channels = MODALITY_CHANNELS[params.modality]
    train = profile.train
    train.seed = params.seed
    if params.threads:
        train.threads = params.threads
    cohort = load_cohort(params.cohort)
    select = profile.mask_targets(cohort)
    readers = profile.reader_labels(cohort.train_labels)
    styles = readers if params.label == CONDITIONED else []
    selection = training_slices(cache_dir, fold["train"], select, params.background_fraction, params.seed)
    if styles:  # every slice once per style, with that reader's mask
        tx, ty = styled_training_set(cache_dir, selection, channels, styles)
        val = [styled(volume, i, len(styles)) for i, style in enumerate(styles)
               for volume in validation_volumes(cache_dir, fold["val"], channels, style)]
    else:
        tx, ty = stack_slices(cache_dir, selection, channels, params.label)
        val = validation_volumes(cache_dir, fold["val"], channels, params.label)
    torch.manual_seed(params.seed)
    model = build_run_model(profile.model, len(channels), len(styles))
    training_started = time.perf_counter()
    result = train_model(model, tx, ty, val, train, run_dir, progress=progress, soft_target=params.label in SOFT_TARGETS)
    train_seconds = time.perf_counter() - training_started
    state = load_checkpoint(run_dir / RUN_BEST_CHECKPOINT)
    model.load_state_dict(state["model"])
    device = resolve_device(train.device)
    tolerance = cohort_nsd_tolerance(profile, cache_dir, sorted({p for part in fold.values() for p in part}))
    rows = []
    pred_dir = run_dir / PREDICTIONS
    cell = {"run_id": params.run_id, "modality": params.modality, "train_label": params.label, "fold": params.fold,
            "seed": params.seed, "background_fraction": params.background_fraction}
    predict_seconds = 0.0  # the forward passes and the restacking to the CT grid, not the files or the scoring
    for pid in fold["test"]:
        cached = load_cached(cache_dir, pid)
        labels, body = load_native(cache_dir, pid)
        tick = time.perf_counter()
        outputs = list(predict_styles(model, cached, channels, params.label, styles, device, train.precision))
        predict_seconds += time.perf_counter() - tick
        for model_name, probs in outputs:
            write_prediction(probs, cached.geometry, pred_dir, prediction_stem(pid, model_name, bool(styles)),
                             save_probabilities=keeps_probabilities(params.label, readers))
            for row in score_patient(probs, labels, body, cached.geometry.spacing_zyx, select, tolerance):
                rows.append({**cell, "train_label": model_name, "patient_id": pid, **row})
    per_patient = pd.DataFrame(rows)
    per_patient.to_csv(run_dir / RUN_PER_PATIENT, index=False)
    full = per_patient[per_patient.region == "full"]
    summary = {
        "params": params.identity(), "run_id": params.run_id, "profile": profile.name,
        "n_train_slices": int(len(tx)), "train_slices_digest": slices_digest(selection),
        "n_val_slices": int(sum(len(x) for x, _ in val)), "n_parameters": count_parameters(model),
        "epochs_planned": train.epochs_for(len(tx)), "steps_per_epoch": train.steps_per_epoch(len(tx)),
        "threads": params.threads, "background_fraction": params.background_fraction,
        "nsd_tolerance_mm": tolerance,
        # the labels whose z-extent is the lesion_extent region: predict scores a new cohort with the same ones
        "mask_targets": select,
        "monitor": train.monitor, "best_epoch": result.best_epoch, "best_score": result.best_score,
        "epochs_run": result.epochs_run, "stopped_early": result.stopped_early,
        **{k: v for k, v in convergence(result.log, train.monitor, result.stopped_early).items() if k != "epochs"},
        "final_train_loss": result.log[-1]["train_loss"] if result.log else None,
        # per ground truth (a conditioned run: per style, then per ground truth)
        "metrics": metric_summary(full) if not styles else {
            name: metric_summary(rows_of_style) for name, rows_of_style in full.groupby("train_label")},
        "environment": environment_record(),
        # how it was executed: by which executor, how many runs shared its GPU (0: no GPU), in which precision
        # (the profile's, with any departure of this machine), with denormals flushed or not, on which CPU
        "execution": {"executor": os.environ.get(EXECUTOR_ENV, "in-process"),
                      "runs_per_gpu": int(os.environ.get(RUNS_PER_GPU_ENV, "0")) if device.type == "cuda" else 0,
                      **numerics_record(device, train.precision)},
        # what a side-by-side comparison with another trainer needs (benchmarks/nnunet_side_by_side.py)
        "train_seconds": train_seconds, "predict_seconds_per_patient": predict_seconds / max(1, len(fold["test"])),
        **peak_memory_mb(device),
        "wall_seconds": time.perf_counter() - started,
    }
    write_if_changed(run_dir / RUN_SUMMARY, json.dumps(summary, indent=1))
    return summary


def peak_memory_mb(device: torch.device) -> dict[str, float]:
    """This process's peak resident memory and, on CUDA, the peak memory torch allocated (MiB)."""
    import resource

    rss_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    gpu = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else 0.0
    return {"peak_rss_mb": rss_kib / 1024, "peak_gpu_mb": gpu}


def run_is_finished(params: RunParams) -> bool:
    """A run is finished when its summary exists and was made with the same parameters."""
    path = Path(params.run_dir) / RUN_SUMMARY
    if not path.exists():
        return False
    try:
        return json.loads(path.read_text()).get("params") == params.identity()
    except json.JSONDecodeError:
        return False


def execute_notebook_run(params: RunParams, env: dict | None = None) -> None:
    """Execute the run notebook for one run in its own kernel (its executed copy and log in the run folder)."""
    run_dir = Path(params.run_dir)
    root = results_root(run_dir)
    try:
        execute_notebook(RUN_NOTEBOOK, run_dir / RUN_NOTEBOOK_OUTPUT, {**params.record(), "progress": False}, cwd=root,
                         log=run_dir / RUN_LOG, env=env)
    except RuntimeError:  # the run's own message: the executors report it per run
        raise RuntimeError(f"run {params.run_id} failed (log: {RUNS}/{params.run_id}/{RUN_LOG})") from None
