"""The nnU-Net v2 baseline on the study's own folds: export the results folder (``nnunet_export``), plan and
preprocess, train each fold on our training patients (nnU-Net validates on our validation patients), predict the
fold's test patients and score them with ``score`` as the family ``nnunet_<configuration>``.

nnU-Net runs in its own processes (``nnunet_driver.py``, in the interpreter that has nnunetv2: the ``[nnunet]``
extra installs it beside petct-study), with ``nnUNet_raw``, ``nnUNet_preprocessed`` and ``nnUNet_results`` set
for this results folder in the child's environment only, never in ours. A fold already scored with the same
settings is skipped; an interrupted fold resumes from nnU-Net's last checkpoint. The folds run on the study's
executors (``pipeline.executors``: local slots or Ray tasks), planning before them on this machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from ..plans.results_folder import EXTERNAL, EXTERNAL_RECORD, NNUNET, NNUNET_SPLITS
from ..plans.runs import external_id
from .executors import Executor, LocalExecutor
from .nnunet_export import DEFAULT_DATASET_ID, export_nnunet
from .score import ScoreRequest, score_predictions

CONFIGURATIONS = ("2d", "3d_fullres")
DRIVER = Path(__file__).with_name("nnunet_driver.py")


@dataclass(frozen=True)
class NnunetSettings:
    """How nnU-Net is run; recorded with its scores (``score.json``: ``training``)."""

    configuration: str = "2d"  # the paper's setting; or 3d_fullres
    trainer: str = "nnUNetTrainer"  # a trainer class of nnU-Net, found by name (nnUNetTrainer_1epoch, ...)
    epochs: int | None = None  # None: the trainer's own (nnUNetTrainer: 1000)
    iterations_per_epoch: int | None = None  # None: the trainer's own (250); fewer for a CPU smoke test
    device: str = "cuda"
    modality: str = "dual"
    pet_normalisation: str = "CT"
    python: str = sys.executable  # the interpreter with nnunetv2
    data_workers: int = 2  # nnU-Net's augmentation processes (nnUNet_n_proc_DA); 0: training and prediction in one process
    mirroring: bool = True  # nnU-Net's test-time mirroring in validation and prediction (off: a CPU smoke test)
    memory_target_gb: float | None = None  # nnU-Net's -gpu_memory_target: smaller patches and batches (None: its 8 GB)

    def plans(self) -> str:
        """The plans' name: nnU-Net's default, or one named after the memory target (its own preprocessed data)."""
        return "nnUNetPlans" if self.memory_target_gb is None else f"nnUNetPlans_{self.memory_target_gb:g}GB"

    def family(self) -> str:
        """The model family its scores are aggregated under: ``nnunet_2d``, ``nnunet_3d_fullres``."""
        return f"nnunet_{self.configuration}"


def nnunet_environment(results: Path, settings: NnunetSettings) -> dict[str, str]:
    """The child process's environment: nnU-Net's three folders inside this results folder."""
    base = results / NNUNET
    return {**os.environ, "nnUNet_raw": str(base / "raw"), "nnUNet_preprocessed": str(base / "preprocessed"),
            "nnUNet_results": str(base / "results"), "nnUNet_n_proc_DA": str(settings.data_workers),
            "nnUNet_compile": "f" if settings.device == "cpu" else os.environ.get("nnUNet_compile", "t")}


def drive(settings: NnunetSettings, env: dict[str, str], *args: str) -> None:
    """Run one step of ``nnunet_driver.py`` in nnU-Net's interpreter (``-P``: this folder is not on its path)."""
    subprocess.run([settings.python, "-P", str(DRIVER), *args], env=env, check=True)


def nnunet_available(python: str = sys.executable) -> bool:
    """Whether ``python`` can import nnunetv2."""
    return subprocess.run([python, "-c", "import nnunetv2"], capture_output=True).returncode == 0


@dataclass(frozen=True)
class NnunetFold:
    """One training target and fold of the baseline: what an executor runs (picklable, for Ray)."""

    results: str
    settings: NnunetSettings
    dataset_id: int
    dataset: str  # the raw dataset folder
    target: str
    fold: int

    @property
    def run_id(self) -> str:
        """The scored folder's name (``external/<run_id>``), by which failures are reported."""
        return external_id(self.settings.family(), self.settings.modality, self.target, self.fold)




def run_nnunet(results: str | os.PathLike, settings: NnunetSettings, folds: list[int] | None = None,
               targets: list[str] | None = None, dataset_id: int = DEFAULT_DATASET_ID,
               executor: Executor | None = None) -> list[Path]:
    """Train, predict and score nnU-Net for every (or the given) training target and fold; the scored folders.

    Planning runs here, one dataset after the other; the folds then run on ``executor`` (default: one at a time on
    this machine), as the study's runs do."""
    results = Path(results).resolve()
    if settings.configuration not in CONFIGURATIONS:
        raise ValueError(f"nnU-Net configuration '{settings.configuration}': one of {', '.join(CONFIGURATIONS)}")
    if settings.memory_target_gb is not None and not settings.memory_target_gb > 0:
        raise ValueError(f"nnU-Net memory target {settings.memory_target_gb:g} GB: must be a positive number of GB")
    if not nnunet_available(settings.python):
        raise RuntimeError(f"{settings.python} cannot import nnunetv2: pip install -e '.[nnunet]' (or pass the "
                           "Python of an environment that has it)")
    # planning calls torch.set_num_threads(nnUNet_n_proc_DA), which refuses 0
    plan_env = {**nnunet_environment(results, settings), "nnUNet_n_proc_DA": str(max(1, settings.data_workers))}
    datasets = export_nnunet(results, results / NNUNET / "raw", settings.modality, dataset_id,
                             settings.pet_normalisation)
    splits = json.loads((datasets[0] / NNUNET_SPLITS).read_text())
    items = []
    for i, dataset in enumerate(datasets, start=1):
        target = json.loads((dataset / "dataset.json").read_text())["labels"]
        target = next(name for name, value in target.items() if value == 1)
        if targets and target not in targets:
            continue
        plan = ["plan", str(dataset_id + i), settings.configuration, str(dataset), "--plans", settings.plans()]
        if settings.memory_target_gb is not None:
            plan += ["--memory-target-gb", f"{settings.memory_target_gb:g}"]
        drive(settings, plan_env, *plan)
        items += [NnunetFold(str(results), settings, dataset_id + i, str(dataset), target, fold)
                  for fold in (folds if folds is not None else range(len(splits)))]
    failures = {item.run_id: error for item, error in (executor or LocalExecutor(1)).execute(items, train_fold)
                if error is not None}
    if failures:  # after every fold ran: one failing fold must not lose the others
        raise RuntimeError("nnU-Net folds failed: " + "; ".join(f"{k}: {v}" for k, v in sorted(failures.items())))
    return [results / EXTERNAL / item.run_id for item in items]


def train_fold(item: NnunetFold, executor_env: dict[str, str]) -> None:
    """An executor's task: one fold trained and predicted by the driver, in nnU-Net's environment with the
    executor's on top (its threads, its GPU), then scored by ``score`` (skipped when scored with these settings)."""
    results, settings, fold = Path(item.results), item.settings, item.fold
    done = results / EXTERNAL / item.run_id / EXTERNAL_RECORD
    wanted = {k: v for k, v in asdict(settings).items() if k not in ("python", "data_workers")}
    if done.exists() and json.loads(done.read_text()).get("training", {}).get("settings") == wanted:
        return
    predictions = results / NNUNET / "predictions" / settings.family() / item.target / f"fold{fold}"
    record = predictions.with_name(f"fold{fold}.json")
    args = ["train-predict", str(item.dataset_id), settings.configuration, str(fold), "--trainer", settings.trainer,
            "--device", settings.device, "--plans", settings.plans(), "--test-images", str(Path(item.dataset) / "imagesTs" / f"fold{fold}"),
            "--predictions", str(predictions), "--record", str(record)]
    if settings.epochs is not None:
        args += ["--epochs", str(settings.epochs)]
    if settings.iterations_per_epoch is not None:
        args += ["--iterations", str(settings.iterations_per_epoch)]
    if not settings.mirroring:
        args.append("--no-mirroring")
    predictions.parent.mkdir(parents=True, exist_ok=True)
    drive(settings, {**nnunet_environment(results, settings), **executor_env}, *args)
    training = {"settings": wanted, **json.loads(record.read_text())}
    score_predictions(results, ScoreRequest(predictions, settings.family(), item.target, fold, settings.modality),
                      training)
