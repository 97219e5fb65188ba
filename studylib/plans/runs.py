"""Run identity: one cell of the grid (``RunParams``), its folder name built and parsed here only, and the plan.

The plan (``plan.json``) is the record of what a study runs; a run folder's name is ``run_id`` of its cell and
``parse_run_id`` reads it back, so no other module splits a folder name.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from ..ingest.cohort import Cohort, load_cohort
from ..ingest.modalities import MODALITY_CHANNELS
from .profiles import Profile, load_profile
from .results_folder import CACHE, PLAN, PROFILE_SNAPSHOT, RUNS, SPLITS

PATH_FIELDS = ("cohort", "cache_dir", "profile", "splits", "run_dir")
SEPARATOR = "__"  # never inside a cohort identifier, a label or a modality name (cohort.is_safe_identifier)


def results_root(run_dir: str | os.PathLike) -> Path:
    """The results folder of a run folder (``<results>/runs/<run_id>``)."""
    return Path(run_dir).resolve().parent.parent


@dataclass(frozen=True)
class RunCell:
    """The grid cell a run folder name stands for."""

    modality: str
    label: str
    fold: int
    seed: int
    background_fraction: float = 0.0


def run_id(modality: str, label: str, fold: int, seed: int, background_fraction: float = 0.0) -> str:
    """Canonical run folder name (a background suffix only when lesion-free slices are added)."""
    suffix = f"{SEPARATOR}bg{round(100 * background_fraction)}" if background_fraction else ""
    return SEPARATOR.join([modality, label, f"fold{fold}", f"seed{seed}"]) + suffix


# The model family of the study's own runs; scored predictions of other models (``score``) name their own family.
OWN_FAMILY = "unet"


def external_id(family: str, modality: str, label: str, fold: int) -> str:
    """Folder name of another model family's scored predictions for one target, input and fold."""
    return SEPARATOR.join([family, modality, label, f"fold{fold}"])


def parse_run_id(name: str) -> RunCell:
    """The grid cell of a run folder name written by ``run_id`` (ValueError for any other name)."""
    parts = name.split(SEPARATOR)
    if len(parts) not in (4, 5) or not parts[2].startswith("fold") or not parts[3].startswith("seed") or (
            len(parts) == 5 and not parts[4].startswith("bg")):
        raise ValueError(f"{name!r} is not a run folder name (modality__label__foldF__seedS[__bgB])")
    try:
        cell = RunCell(parts[0], parts[1], int(parts[2].removeprefix("fold")), int(parts[3].removeprefix("seed")),
                       int(parts[4].removeprefix("bg")) / 100 if len(parts) == 5 else 0.0)
    except ValueError as err:
        raise ValueError(f"{name!r} is not a run folder name (modality__label__foldF__seedS[__bgB])") from err
    if run_id(**asdict(cell)) != name:
        raise ValueError(f"{name!r} is not a canonical run folder name (expected {run_id(**asdict(cell))!r})")
    return cell


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

        def digest(path: str) -> str:
            return hashlib.sha1(Path(path).read_bytes()).hexdigest()[:16]

        return {"modality": self.modality, "label": self.label, "fold": self.fold, "seed": self.seed,
                "background_fraction": self.background_fraction,
                "profile": digest(self.profile), "cohort": digest(self.cohort), "splits": digest(self.splits)}


def plan_runs(profile: Profile, cohort: Cohort, out: Path, cache_dir: Path, splits_path: Path,
              threads: int | None) -> list[RunParams]:
    """The grid: modalities x training labels x folds x seeds."""
    labels = profile.study.labels or cohort.train_labels
    modalities = [m for m in profile.study.modalities if all(cohort.has_channel(c) for c in MODALITY_CHANNELS[m])]
    return [RunParams(cohort=str(cohort.path), cache_dir=str(cache_dir), profile=profile.path, splits=str(splits_path),
                      modality=m, label=label, fold=fold, seed=seed,
                      run_dir=str(out / RUNS / run_id(m, label, fold, seed, bg)), threads=threads,
                      background_fraction=bg)
            for bg in profile.study.background_fractions for fold in range(profile.study.folds)
            for seed in profile.study.seeds for label in labels for m in modalities]


def plan_record(runs: list[RunParams], cohort: Cohort, out: Path, primary_background_fraction: float) -> dict:
    """What ``plan.json`` holds: the cohort (relative to the results folder), the planned run ids, the primary
    background setting."""
    return {"cohort": os.path.relpath(cohort.path, out), "runs": [r.run_id for r in runs],
            "primary_background_fraction": primary_background_fraction}


def read_plan(results: str | os.PathLike) -> dict:
    """A prepared results folder's ``plan.json`` (FileNotFoundError naming the command that writes it)."""
    plan = Path(results) / PLAN
    if not plan.exists():
        raise FileNotFoundError(f"{results} is not prepared (no {PLAN}): run `python -m studylib prepare` first")
    return json.loads(plan.read_text())


def planned_params(out: Path, threads: int | None) -> list[RunParams]:
    """The RunParams of a prepared study's plan."""
    plan = read_plan(out)
    profile = load_profile(out / PROFILE_SNAPSHOT)
    cohort_obj = load_cohort(out / plan["cohort"])
    return plan_runs(profile, cohort_obj, out, out / CACHE, out / SPLITS, threads)
