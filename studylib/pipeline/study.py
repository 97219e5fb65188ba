"""The study as stages with files between them: prepare (cache), splits, runs (papermill), aggregate."""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
import traceback
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm import tqdm  # plain text bars: the same in a terminal, a log and a notebook

from ..evaluation.metrics import agreement, nsd_tolerance, patient_metrics
from ..inference.volume import probability_volume, write_prediction
from ..ingest.cohort import Cohort, load_cohort
from ..ingest.modalities import MODALITY_CHANNELS
from ..plans.profiles import Profile, load_profile, write_profile_snapshot
from ..plans.results_lock import results_lock
from ..plans.splits import load_or_make_splits
from ..preprocessing.cache import cache_patient, load_cached, load_native, select_training_slices
from ..preprocessing.parallel import map_in_processes
from ..training.models import CONDITIONED, build_run_model, count_parameters, with_style_planes
from ..training.trainer import convergence, load_checkpoint, numerics_record, resolve_device, train_model
from .executors import EXECUTOR_ENV, RUNS_PER_GPU_ENV, Executor, LocalExecutor

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO_ROOT / "notebooks"


def git_commit() -> str:
    """The repository's HEAD commit (with '-dirty' for uncommitted changes), or 'unknown'."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True,
                               text=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


def environment_record() -> dict:
    """Git commit, Python and package versions, device: recorded in every run folder."""
    import importlib.metadata as md

    versions = {}
    for pkg in ("torch", "torchvision", "segmentation-models-pytorch", "SimpleITK", "numpy", "scipy", "pandas",
                "scikit-learn", "papermill"):
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    device = "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    return {"git_commit": git_commit(), "python": platform.python_version(), "platform": platform.platform(),
            "packages": versions, "device": device, "torch_threads": torch.get_num_threads()}


def _cache_one(args) -> dict:
    record, preprocess, cache_dir, seed, derived, readers = args
    cached = cache_patient(record, preprocess, cache_dir, seed, derived, readers)
    # the time it took to build the cache (not to find it again), so a resumed study keeps the first figures
    return {"patient_id": record.patient_id, "seconds": cached.meta.get("preprocess_seconds"), **{
        f"registration_{k}": v for k, v in cached.meta["registration"].items() if k in ("mode", "metric_before", "metric_after")}}


def write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` atomically unless the file already holds it (a finished study rewrites nothing)."""
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def prepare_cache(cohort: Cohort, profile: Profile, cache_dir: Path, jobs: int = 1, progress: bool = True) -> pd.DataFrame:
    """Stage 1: preprocess every patient into the slice cache (parallel over patients)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    derived, readers = profile.derived_targets(cohort)
    tasks = [(cohort.patient(pid), profile.preprocess, cache_dir, 0, derived, readers) for pid in cohort.patient_ids]
    return pd.DataFrame(map_in_processes(_cache_one, tasks, jobs, "preprocess", progress))


def rater_agreement(cohort: Cohort, cache_dir: Path, label_a: str, label_b: str) -> pd.DataFrame:
    """Per-patient agreement of two labels on the CT grid (Dice, kappa, volumes)."""
    rows = []
    for pid in cohort.patient_ids:
        labels, body = load_native(cache_dir, pid)
        spacing = load_cached(cache_dir, pid).geometry.spacing_zyx
        rows.append({"patient_id": pid, **agreement(labels[label_a], labels[label_b], spacing, body)})
    return pd.DataFrame(rows)


PATH_FIELDS = ("cohort", "cache_dir", "profile", "splits", "run_dir")


def results_root(run_dir: str | os.PathLike) -> Path:
    """The results folder of a run folder (``<results>/runs/<run_id>``)."""
    return Path(run_dir).resolve().parent.parent


@dataclass
class RunParams:
    """One run of the grid: (cohort, modality, training label, fold, seed, profile)."""

    cohort: str
    cache_dir: str
    profile: str
    splits: str
    modality: str
    label: str
    fold: int
    seed: int
    run_dir: str
    threads: int | None = None
    background_fraction: float = 0.0

    def __post_init__(self) -> None:
        # a profile given by name (the notebook's default) is recorded as the file it names
        self.profile = load_profile(self.profile).path

    def record(self) -> dict:
        """The parameters with every path relative to the results folder (what params.json holds)."""
        root = results_root(self.run_dir)
        return {**asdict(self), **{f: os.path.relpath(Path(getattr(self, f)).resolve(), root) for f in PATH_FIELDS}}

    @classmethod
    def from_record(cls, params_json: str | os.PathLike) -> RunParams:
        """Read a run's ``params.json``; its relative paths resolve against the results folder that holds it."""
        params_json = Path(params_json).resolve()
        root = results_root(params_json.parent)
        data = json.loads(params_json.read_text())
        return cls(**{**data, **{f: str((root / data[f]).resolve()) for f in PATH_FIELDS}})

    @property
    def run_id(self) -> str:
        """Folder name of the run."""
        return run_id(self.modality, self.label, self.fold, self.seed, self.background_fraction)

    def identity(self) -> dict:
        """What decides a run's result: the grid cell, and the contents (not the paths) of its profile, cohort
        description and splits, so a moved results folder is still recognised as done."""
        import hashlib

        def digest(path: str) -> str:
            return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:16]

        return {"modality": self.modality, "label": self.label, "fold": self.fold, "seed": self.seed,
                "background_fraction": self.background_fraction,
                "profile": digest(self.profile), "cohort": digest(self.cohort), "splits": digest(self.splits)}


def run_id(modality: str, label: str, fold: int, seed: int, background_fraction: float = 0.0) -> str:
    """Canonical run folder name (a background suffix only when lesion-free slices are added)."""
    suffix = f"__bg{round(100 * background_fraction)}" if background_fraction else ""
    return f"{modality}__{label}__fold{fold}__seed{seed}{suffix}"


def training_slices(cache_dir: Path, patients: list[str], labels: list[str], background: float,
                    seed: int) -> list[tuple[str, list[int]]]:
    """(patient, slice indices) of the training set: slices holding any of ``labels`` plus background slices."""
    rng = np.random.default_rng(seed)
    chosen = [(pid, select_training_slices(load_cached(cache_dir, pid), labels, background, rng).tolist())
              for pid in patients]
    if not any(idx for _, idx in chosen):
        raise RuntimeError(f"no training slices with any of {labels} among {patients}")
    return chosen


def slices_digest(selection: list[tuple[str, list[int]]]) -> str:
    """A short digest of a slice selection (equal digests: identical training inputs)."""
    import hashlib

    return hashlib.sha1(json.dumps(selection).encode()).hexdigest()[:16]


def stack_slices(cache_dir: Path, selection: list[tuple[str, list[int]]], channels: list[str],
                 label: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n, C, S, S) and masks (n, 1, S, S) of the selected slices for one training label."""
    xs, ys = [], []
    for pid, idx in selection:
        if not idx:
            continue
        cached = load_cached(cache_dir, pid)
        xs.append(np.asarray(cached.images[idx][:, cached.channel_index(channels)]))
        ys.append(np.asarray(cached.labels[idx][:, [cached.label_names.index(label)]]))
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


def validation_volumes(cache_dir: Path, patients: list[str], channels: list[str],
                       label: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every slice of each validation patient: validation looks like the test."""
    return [stack_slices(cache_dir, [(pid, list(range(len(load_cached(cache_dir, pid).images))))],
                         channels, label) for pid in patients]


def lesion_extent(masks: list[np.ndarray]) -> slice:
    """Axial slices within the z-extent of the union of ``masks`` (all of them when the union is empty)."""
    union = np.any([m.any(axis=(1, 2)) for m in masks], axis=0)
    if not union.any():
        return slice(None)
    z = np.flatnonzero(union)
    return slice(int(z[0]), int(z[-1]) + 1)


def styled_training_set(cache_dir: Path, selection: list[tuple[str, list[int]]], channels: list[str],
                        styles: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The training set of a style-conditioned model: the selected slices once per style, with style planes."""
    pairs = [styled(stack_slices(cache_dir, selection, channels, style), i, len(styles)) for i, style in enumerate(styles)]
    return torch.cat([x for x, _ in pairs]), torch.cat([y for _, y in pairs])


def styled(volume: tuple[torch.Tensor, torch.Tensor], style: int, styles: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with the style planes of ``style`` appended (``models.with_style_planes``), masks unchanged."""
    images, masks = volume
    return torch.from_numpy(with_style_planes(images.numpy(), style, styles)), masks


def predict_styles(model: torch.nn.Module, cached, channels: list[str], label: str, styles: list[str], device,
                   precision: str) -> list[tuple[str, np.ndarray]]:
    """(model name, 3D probabilities on the CT grid) of a test patient: one map named ``label``, or one per style
    of a style-conditioned model (named ``conditioned_<style>``)."""
    index = cached.channel_index(channels)
    geometry = cached.meta["ct_geometry"]
    if not styles:
        return [(label, probability_volume(model, cached.images, index, geometry, device=device, fit=cached.fit,
                                          precision=precision))]
    images = np.asarray(cached.images[:, index])
    return [(f"{CONDITIONED}_{style}",
             probability_volume(model, with_style_planes(images, i, len(styles)), list(range(len(index) + len(styles))),
                                geometry, device=device, fit=cached.fit, precision=precision))
            for i, style in enumerate(styles)]


def evaluate_patient(pred: np.ndarray, labels: dict[str, np.ndarray], body: np.ndarray, spacing, train_labels: list[str],
                     nsd_tolerance_mm: float) -> list[dict]:
    """Metrics of one predicted volume against every label, in both evaluation regions.

    ``full``: every slice (primary). ``lesion_extent``, ground-truth-informed: the slices within the z-extent of
    the union of the patient's training labels (the same whichever label is scored; the reference chooses them).
    """
    extent = lesion_extent([labels[k] for k in train_labels if k in labels])
    rows = []
    for region, z in (("full", slice(None)), ("lesion_extent", extent)):
        for gt_name, gt in labels.items():
            rows.append({"ground_truth": gt_name, "region": region,
                         **patient_metrics(pred[z], gt[z], spacing, body[z], nsd_tolerance_mm)})
    return rows


def cohort_nsd_tolerance(profile: Profile, cache_dir: Path, patients: list[str]) -> float:
    """The study's NSD tolerance for its patients' CT grids (``metrics.nsd_tolerance``; error names the profile)."""
    try:
        return nsd_tolerance(profile.study.nsd_tolerance_mm, [load_cached(cache_dir, p).geometry.spacing for p in patients])
    except ValueError as err:
        raise ValueError(f"{profile.path}: {err}") from err


def metric_summary(full: pd.DataFrame) -> dict:
    """Mean and SD of the main metrics per ground truth (the run's ``summary.json``)."""
    return {gt: {m: {"mean": float(g[m].mean()), "sd": float(g[m].std(ddof=1)) if len(g) > 1 else 0.0}
                 for m in ("dsc", "iou", "sensitivity", "specificity", "specificity_body", "hd95", "nsd",
                           "fp_volume_ml", "fn_volume_ml", "lesion_f1")}
            for gt, g in full.groupby("ground_truth")}


def execute_run(params: RunParams, progress: bool = True) -> dict:
    """Train one model, predict every test patient in 3D, evaluate against every label; write the run folder."""
    started = time.perf_counter()
    run_dir = Path(params.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "params.json").write_text(json.dumps(params.record(), indent=1))
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
    styles = profile.readers(cohort.train_labels) if params.label == CONDITIONED else []
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
    result = train_model(model, tx, ty, val, train, run_dir, progress=progress)
    state = load_checkpoint(run_dir / "best.pt")
    model.load_state_dict(state["model"])
    device = resolve_device(train.device)
    tolerance = cohort_nsd_tolerance(profile, cache_dir, sorted({p for part in fold.values() for p in part}))
    rows = []
    pred_dir = run_dir / "predictions"
    cell = {"run_id": params.run_id, "modality": params.modality, "train_label": params.label, "fold": params.fold,
            "seed": params.seed, "background_fraction": params.background_fraction}
    for pid in fold["test"]:
        cached = load_cached(cache_dir, pid)
        labels, body = load_native(cache_dir, pid)
        for model_name, probs in predict_styles(model, cached, channels, params.label, styles, device,
                                                train.precision):
            name = f"{pid}__{model_name}" if styles else pid
            write_prediction(probs, cached.meta["ct_geometry"], pred_dir, name)
            for row in evaluate_patient(probs >= 0.5, labels, body, cached.geometry.spacing_zyx, select,
                                        tolerance):
                rows.append({**cell, "train_label": model_name, "patient_id": pid, **row})
    per_patient = pd.DataFrame(rows)
    per_patient.to_csv(run_dir / "per_patient.csv", index=False)
    full = per_patient[per_patient.region == "full"]
    summary = {
        "params": params.identity(), "run_id": params.run_id, "profile": profile.name,
        "n_train_slices": int(len(tx)), "train_slices_digest": slices_digest(selection),
        "n_val_slices": int(sum(len(x) for x, _ in val)), "n_parameters": count_parameters(model),
        "epochs_planned": train.epochs_for(len(tx)), "steps_per_epoch": train.steps_per_epoch(len(tx)),
        "threads": params.threads, "background_fraction": params.background_fraction,
        "nsd_tolerance_mm": tolerance, "monitor": train.monitor, "best_epoch": result.best_epoch, "best_score": result.best_score,
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
        "wall_seconds": time.perf_counter() - started,
    }
    write_if_changed(run_dir / "summary.json", json.dumps(summary, indent=1))
    return summary


def run_is_finished(params: RunParams) -> bool:
    """A run is finished when its summary exists and was made with the same parameters."""
    path = Path(params.run_dir) / "summary.json"
    if not path.exists():
        return False
    try:
        return json.loads(path.read_text()).get("params") == params.identity()
    except json.JSONDecodeError:
        return False


def execute_notebook_run(params: RunParams, env: dict | None = None) -> None:
    """Execute ``02_train_eval.ipynb`` for one run with papermill in a subprocess (its own kernel)."""
    run_dir = Path(params.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    # run from the results folder with relative paths: the executed notebook names no absolute path
    root = results_root(run_dir)
    cmd = [sys.executable, "-m", "papermill", os.path.relpath(NOTEBOOKS / "02_train_eval.ipynb", root),
           os.path.relpath(run_dir / "run.ipynb", root), "--kernel", "python3", "--no-progress-bar",
           "-y", json.dumps({**params.record(), "progress": False})]
    with open(run_dir / "run.log", "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, cwd=root)
    if proc.returncode != 0:
        raise RuntimeError(f"run {params.run_id} failed (log: runs/{params.run_id}/run.log)")


def execute_notebook(notebook: str, output: Path, parameters: dict, cwd: Path | None = None) -> None:
    """Execute a study notebook with papermill in a subprocess (in ``cwd``, where relative parameters resolve)."""
    output.parent.mkdir(parents=True, exist_ok=True)
    cwd = Path(cwd or Path.cwd())
    cmd = [sys.executable, "-m", "papermill", os.path.relpath(NOTEBOOKS / notebook, cwd), os.path.relpath(output, cwd),
           "--kernel", "python3", "--no-progress-bar", "-y", json.dumps(parameters)]
    with open(output.with_suffix(".log"), "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=cwd)
    if proc.returncode != 0:
        raise RuntimeError(f"notebook {notebook} failed (log: {os.path.relpath(output.with_suffix('.log'), cwd)})")


def ensure_cohort(profile: Profile, cohort: str | None, out: Path) -> Path:
    """The cohort to study: the given one, or the profile's synthetic cohort (generated once under ``out``)."""
    if cohort:
        return Path(cohort)
    from ..synthetic import generate_cohort

    target = out / "cohort"
    c = profile.cohort
    if not (target / "cohort.json").exists():
        generate_cohort(target, c.patients, c.seed, c.scale, c.with_mri, overwrite=True, readers=c.readers)
    check_synthetic_cohort(target / "cohort.json", profile)
    return target


def check_synthetic_cohort(cohort_json: Path, profile: Profile) -> None:
    """Refuse a synthetic cohort left in a results folder by another generator version or another profile: the
    runs would silently study a cohort the code no longer makes."""
    from ..synthetic.generate import GENERATOR_VERSION

    made = {"generator_version": 1, **json.loads(cohort_json.read_text()).get("synthetic", {})}  # 1: unversioned
    c = profile.cohort
    wanted = {"generator_version": GENERATOR_VERSION, "seed": c.seed, "patients": c.patients, "scale": c.scale,
              "readers": c.readers}
    found = {key: made.get(key) for key in wanted}
    if found != wanted:
        differ = ", ".join(f"{key} {found[key]} (the profile and this code: {wanted[key]})"
                           for key in wanted if found[key] != wanted[key])
        raise ValueError(f"{cohort_json} was generated with {differ}; its results would not be this study's: "
                         f"use a new --out, or delete {cohort_json.parent.parent} to start over")


def plan_runs(profile: Profile, cohort: Cohort, out: Path, cache_dir: Path, splits_path: Path,
              threads: int | None) -> list[RunParams]:
    """The grid: modalities x training labels x folds x seeds."""
    labels = profile.study.labels or cohort.train_labels
    modalities = [m for m in profile.study.modalities if all(cohort.has_channel(c) for c in MODALITY_CHANNELS[m])]
    return [RunParams(str(cohort.path), str(cache_dir), profile.path, str(splits_path), m, label, fold, seed,
                      str(out / "runs" / run_id(m, label, fold, seed, bg)), threads, bg)
            for bg in profile.study.background_fractions for fold in range(profile.study.folds)
            for seed in profile.study.seeds for label in labels for m in modalities]


def prepare_study(profile_name: str, out: str | os.PathLike, cohort: str | None = None, jobs: int = 1,
                  progress: bool = True) -> Path:
    """Stage 1 (``prepare``): profile snapshot, cohort, slice cache, splits, the plan, the cohort QA notebook."""
    out = results_folder(out, cohort)
    with results_lock(out):
        return _prepare(profile_name, out, cohort, jobs, progress)


def results_folder(out: str | os.PathLike, cohort: str | None) -> Path:
    """The results folder, created once the given cohort has been read: a bad cohort (an id such as '../x') is
    refused before anything is written."""
    if cohort:
        load_cohort(cohort)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    return out


def _prepare(profile_name: str, out: Path, cohort: str | None, jobs: int, progress: bool) -> Path:
    """The prepare stage's work, under the results folder's lock."""
    profile = load_profile(write_profile_snapshot(profile_name, out / "profile.yaml"))
    cohort_obj = load_cohort(ensure_cohort(profile, cohort, out))
    cache_dir = out / "cache"
    write_if_changed(out / "preprocess.csv", prepare_cache(cohort_obj, profile, cache_dir, jobs, progress).to_csv(index=False))
    strata = {pid: str(cohort_obj.patient(pid).read_meta().get("implant") or "none") for pid in cohort_obj.patient_ids}
    load_or_make_splits(out, cohort_obj.patient_ids, profile.study.folds, seed=profile.cohort.seed, strata=strata,
                        val_patients=profile.study.val_patients)
    cohort_nsd_tolerance(profile, cache_dir, cohort_obj.patient_ids)  # a tolerance below the voxel size: refused now
    runs = plan_runs(profile, cohort_obj, out, cache_dir, out / "splits.json", None)
    # the plan says what belongs to this study: aggregation reads it, never whatever run folders exist
    write_if_changed(out / "plan.json", json.dumps({
        "cohort": os.path.relpath(cohort_obj.path, out), "runs": [r.run_id for r in runs],
        "primary_background_fraction": profile.study.background_fractions[0]}, indent=1))
    cohort_nb = out / "notebooks" / "01_cohort.ipynb"
    cohort_done = cohort_nb.with_suffix(".done")  # written only after the notebook ran to the end
    if not cohort_done.exists():
        execute_notebook("01_cohort.ipynb", cohort_nb, {"cohort": os.path.relpath(cohort_obj.path, out),
                                                        "cache_dir": "cache", "out_dir": "cohort_qa"}, cwd=out)
        cohort_done.write_text(git_commit())
    return out


def planned_params(out: Path, threads: int | None) -> list[RunParams]:
    """The RunParams of a prepared study's plan."""
    plan = out / "plan.json"
    if not plan.exists():
        raise FileNotFoundError(f"{out} is not prepared (no plan.json): run `python -m studylib prepare` first")
    profile = load_profile(out / "profile.yaml")
    cohort_obj = load_cohort(out / json.loads(plan.read_text())["cohort"])
    return plan_runs(profile, cohort_obj, out, out / "cache", out / "splits.json", threads)


def run_grid(out: str | os.PathLike, jobs: int = 1, progress: bool = True, executor: Executor | None = None) -> dict:
    """Stage 2 (``run``): every planned run not finished yet, as papermill notebooks; failures are recorded.

    ``executor`` decides where the runs execute (default: ``jobs`` local worker processes).
    """
    out = Path(out).resolve()
    with results_lock(out):
        return _run_grid(out, jobs, progress, executor or LocalExecutor(jobs))


def _run_grid(out: Path, jobs: int, progress: bool, executor: Executor) -> dict:
    """The run stage's work, under the results folder's lock."""
    runs = planned_params(out, executor.threads)
    todo = [r for r in runs if not run_is_finished(r)]
    failures = []
    with tqdm(total=len(runs), initial=len(runs) - len(todo), desc="study runs", disable=not progress) as bar:
        for params, error in executor.execute(todo, execute_notebook_run) if todo else ():
            if error is not None:  # one failing run must not lose the others
                failures.append({"run_id": params.run_id, "error": str(error),
                                 "log": os.path.relpath(Path(params.run_dir) / "run.log", out),
                                 "traceback": "".join(traceback.format_exception(error, limit=2))})
            bar.update(1)
            bar.set_postfix(failed=len(failures))
    for f in failures:  # first, so that they are said even when the disk is full
        print(f"FAILED {f['run_id']}: {f['error']}", file=sys.stderr)
    write_if_changed(out / "failures.json", json.dumps(failures, indent=1))
    return {"runs": len(runs), "finished": sum(run_is_finished(r) for r in runs), "skipped_as_done": len(runs) - len(todo),
            "failed": failures, "execution": executor.record()}


def aggregate_study(out: str | os.PathLike) -> None:
    """Stage 3 (``aggregate``): tables, tests and figures of the finished planned runs (notebook 03)."""
    out = Path(out).resolve()
    if not (out / "plan.json").exists():
        raise FileNotFoundError(f"{out} is not prepared (no plan.json): run `python -m studylib prepare` first")
    with results_lock(out):
        execute_notebook("03_aggregate.ipynb", out / "notebooks" / "03_aggregate.ipynb",
                         {"results": ".", "profile": "profile.yaml"}, cwd=out)


def run_study(profile_name: str, out: str | os.PathLike, cohort: str | None = None, jobs: int = 1,
              progress: bool = True, executor: Executor | None = None) -> dict:
    """The whole study: ``prepare``, ``run`` and ``aggregate``, then ``study.json`` (resumable at every stage)."""
    started = time.perf_counter()
    out = results_folder(out, cohort)
    with results_lock(out):  # one lock over all three stages: no other writer between them
        _prepare(profile_name, out, cohort, jobs, progress)
        record = run_grid(out, jobs, progress, executor)
        if record["finished"]:
            aggregate_study(out)
        plan = json.loads((out / "plan.json").read_text())
        record = {"profile": load_profile(out / "profile.yaml").name, "cohort": plan["cohort"], **record,
                  "planned_runs": plan["runs"], "wall_seconds": time.perf_counter() - started,
                  "command": " ".join(["python -m studylib", *sys.argv[1:]]), "environment": environment_record()}
        write_if_changed(out / "study.json", json.dumps(record, indent=1))
    return record
