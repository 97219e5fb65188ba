"""The study as stages with files between them: prepare (cache), splits, runs (papermill), aggregate."""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import pandas as pd
from tqdm import tqdm  # plain text bars: the same in a terminal, a log and a notebook

from ..evaluation.scoring import cohort_nsd_tolerance
from ..ingest.cohort import COHORT_FILE, Cohort, load_cohort
from ..plans.profiles import Profile, load_profile, write_profile_snapshot
from ..plans.provenance import environment_record, git_commit
from ..plans.results_folder import (
    CACHE,
    COHORT_QA,
    FAILURES,
    NOTEBOOKS,
    PLAN,
    PREPROCESS_RECORD,
    PROFILE_SNAPSHOT,
    RUN_LOG,
    SPLITS,
    STUDY_RECORD,
    results_folder,
    write_if_changed,
)
from ..plans.results_lock import results_lock
from ..plans.runs import plan_record, plan_runs, planned_params, read_plan
from ..plans.splits import load_or_make_splits
from ..preprocessing.cache import cache_patient
from ..preprocessing.parallel import map_in_processes
from .executors import Executor, LocalExecutor
from .notebooks import AGGREGATE_NOTEBOOK, COHORT_NOTEBOOK, execute_notebook
from .run import execute_notebook_run, run_is_finished


def _cache_one(args) -> dict:
    record, preprocess, cache_dir, seed, derived, reader_labels = args
    cached = cache_patient(record, preprocess, cache_dir, seed, derived, reader_labels)
    # the time it took to build the cache (not to find it again), so a resumed study keeps the first figures
    return {"patient_id": record.patient_id, "seconds": cached.meta.get("preprocess_seconds"), **{
        f"registration_{k}": v for k, v in cached.meta["registration"].items() if k in ("mode", "metric_before", "metric_after")}}


def prepare_cache(cohort: Cohort, profile: Profile, cache_dir: Path, jobs: int = 1, progress: bool = True) -> pd.DataFrame:
    """Stage 1: preprocess every patient into the slice cache (parallel over patients)."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    derived, reader_labels = profile.derived_targets(cohort)
    tasks = [(cohort.patient(pid), profile.preprocess, cache_dir, 0, derived, reader_labels) for pid in cohort.patient_ids]
    return pd.DataFrame(map_in_processes(_cache_one, tasks, jobs, "preprocess", progress))


def ensure_cohort(profile: Profile, cohort: str | None, out: Path) -> Path:
    """The cohort to study: the given one, or the profile's synthetic cohort (generated once under ``out``)."""
    if cohort:
        return Path(cohort)
    from ..synthetic import generate_cohort

    target = out / "cohort"
    c = profile.cohort
    if not (target / COHORT_FILE).exists():
        generate_cohort(target, c.patients, c.seed, c.scale, c.with_mri, overwrite=True, reader_count=c.reader_count)
    check_synthetic_cohort(target / COHORT_FILE, profile)
    return target


def check_synthetic_cohort(cohort_json: Path, profile: Profile) -> None:
    """Refuse a synthetic cohort left in a results folder by another generator version or another profile: the
    runs would silently study a cohort the code no longer makes."""
    from ..synthetic.generate import GENERATOR_VERSION, generator_settings

    made = generator_settings(json.loads(cohort_json.read_text()))
    c = profile.cohort
    wanted = {"generator_version": GENERATOR_VERSION, "seed": c.seed, "patients": c.patients, "scale": c.scale,
              "reader_count": c.reader_count}
    found = {key: made.get(key) for key in wanted}
    if found != wanted:
        differ = ", ".join(f"{key} {found[key]} (the profile and this code: {wanted[key]})"
                           for key in wanted if found[key] != wanted[key])
        raise ValueError(f"{cohort_json} was generated with {differ}; its results would not be this study's: "
                         f"use a new --out, or delete {cohort_json.parent.parent} to start over")


def prepare_study(profile_name: str, out: str | os.PathLike, cohort: str | None = None, jobs: int = 1,
                  progress: bool = True) -> Path:
    """Stage 1 (``prepare``): profile snapshot, cohort, slice cache, splits, the plan, the cohort QA notebook."""
    out = results_folder(out, cohort)
    with results_lock(out):
        return _prepare(profile_name, out, cohort, jobs, progress)


def _prepare(profile_name: str, out: Path, cohort: str | None, jobs: int, progress: bool) -> Path:
    """The prepare stage's work, under the results folder's lock."""
    profile = load_profile(write_profile_snapshot(profile_name, out / PROFILE_SNAPSHOT))
    cohort_obj = load_cohort(ensure_cohort(profile, cohort, out))
    cache_dir = out / CACHE
    write_if_changed(out / PREPROCESS_RECORD, prepare_cache(cohort_obj, profile, cache_dir, jobs, progress).to_csv(index=False))
    strata = {pid: str(cohort_obj.patient(pid).read_meta().get("implant") or "none") for pid in cohort_obj.patient_ids}
    load_or_make_splits(out, cohort_obj.patient_ids, profile.study.folds, seed=profile.cohort.seed, strata=strata,
                        val_patients=profile.study.val_patients)
    cohort_nsd_tolerance(profile, cache_dir, cohort_obj.patient_ids)  # a tolerance below the voxel size: refused now
    runs = plan_runs(profile, cohort_obj, out, cache_dir, out / SPLITS, None)
    # the plan says what belongs to this study: aggregation reads it, never whatever run folders exist
    write_if_changed(out / PLAN, json.dumps(plan_record(runs, cohort_obj, out,
                                                           profile.study.background_fractions[0]), indent=1))
    cohort_nb = out / NOTEBOOKS / COHORT_NOTEBOOK
    cohort_done = cohort_nb.with_suffix(".done")  # written only after the notebook ran to the end
    if not cohort_done.exists():
        execute_notebook(COHORT_NOTEBOOK, cohort_nb, {"cohort": os.path.relpath(cohort_obj.path, out),
                                                        "cache_dir": CACHE, "out_dir": COHORT_QA}, cwd=out)
        cohort_done.write_text(git_commit())
    return out


def run_grid(out: str | os.PathLike, jobs: int = 1, progress: bool = True, executor: Executor | None = None) -> dict:
    """Stage 2 (``run``): every planned run not finished yet, as papermill notebooks; failures are recorded.

    ``executor`` decides where the runs execute (default: ``jobs`` local worker processes).
    """
    out = Path(out).resolve()
    with results_lock(out):
        return _run_grid(out, progress, executor or LocalExecutor(jobs))


def _run_grid(out: Path, progress: bool, executor: Executor) -> dict:
    """The run stage's work, under the results folder's lock."""
    runs = planned_params(out, executor.threads)
    todo = [r for r in runs if not run_is_finished(r)]
    failures = []
    with tqdm(total=len(runs), initial=len(runs) - len(todo), desc="study runs", disable=not progress) as bar:
        for params, error in executor.execute(todo, execute_notebook_run) if todo else ():
            if error is not None:  # one failing run must not lose the others
                failures.append({"run_id": params.run_id, "error": str(error),
                                 "log": os.path.relpath(Path(params.run_dir) / RUN_LOG, out),
                                 "traceback": "".join(traceback.format_exception(error, limit=2))})
            bar.update(1)
            bar.set_postfix(failed=len(failures))
    for f in failures:  # first, so that they are said even when the disk is full
        print(f"FAILED {f['run_id']}: {f['error']}", file=sys.stderr)
    write_if_changed(out / FAILURES, json.dumps(failures, indent=1))
    return {"runs": len(runs), "finished": sum(run_is_finished(r) for r in runs), "skipped_as_done": len(runs) - len(todo),
            "failed": failures, "execution": executor.record()}


def aggregate_study(out: str | os.PathLike) -> None:
    """Stage 3 (``aggregate``): tables, tests and figures of the finished planned runs (notebook 03)."""
    out = Path(out).resolve()
    read_plan(out)  # refuses a folder that was not prepared
    with results_lock(out):
        execute_notebook(AGGREGATE_NOTEBOOK, out / NOTEBOOKS / AGGREGATE_NOTEBOOK,
                         {"results": ".", "profile": PROFILE_SNAPSHOT}, cwd=out)


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
        plan = read_plan(out)
        record = {"profile": load_profile(out / PROFILE_SNAPSHOT).name, "cohort": plan["cohort"], **record,
                  "planned_runs": plan["runs"], "wall_seconds": time.perf_counter() - started,
                  "command": " ".join(["python -m studylib", *sys.argv[1:]]), "environment": environment_record()}
        write_if_changed(out / STUDY_RECORD, json.dumps(record, indent=1))
    return record
