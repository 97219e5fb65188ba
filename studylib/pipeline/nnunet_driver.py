"""nnU-Net v2's steps for one dataset and fold, run in nnU-Net's own interpreter (the ``[nnunet]`` extra, or any
Python with nnunetv2) by ``nnunet_baseline``: this file imports only the standard library and nnunetv2, so it runs
as a script (``python nnunet_driver.py plan|train-predict ...``) with the nnU-Net environment variables the caller
set for one results folder.

``plan`` runs ``nnUNetv2_plan_and_preprocess`` for one configuration and puts the exported ``splits_final.json``
(our training and validation patients) where nnU-Net's training reads its folds. ``train-predict`` trains one fold
with a trainer of nnU-Net (its class found by nnU-Net by name; the epoch and iteration budget overridden when
given) and validates it on the fold's validation patients as ``nnUNetv2_train`` does, then predicts the fold's test patients from ``checkpoint_final.pth`` and writes a JSON record (budget,
seconds, peak memory).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

BUDGET = "study_budget.json"  # beside nnU-Net's checkpoints: the budget they were trained with


def console_script(name: str) -> str:
    """An nnU-Net console script beside this interpreter (the one nnunetv2 is installed in)."""
    beside = Path(sys.executable).parent / name
    return str(beside) if beside.exists() else name


def plan(dataset_id: int, configuration: str, raw_dataset: Path, plans: str = "nnUNetPlans",
         memory_target_gb: float | None = None) -> None:
    """Fingerprint, plan and preprocess ``configuration`` as ``plans`` (with ``memory_target_gb``: nnU-Net's
    ``-gpu_memory_target``, under its own plans name); our folds as nnU-Net's ``splits_final.json``."""
    preprocessed = Path(os.environ["nnUNet_preprocessed"]) / raw_dataset.name
    # the caller's worker count for fingerprinting too: nnU-Net's default of 8 processes, each importing torch,
    # costs more than it saves on a small machine
    processes = os.environ.get("nnUNet_n_proc_DA", "1")
    if not (preprocessed / f"{plans}.json").exists() or not any(preprocessed.glob(f"{plans}_{configuration}")):
        command = [console_script("nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id), "-c", configuration,
                   "--verify_dataset_integrity", "-np", processes, "-npfp", processes]
        if memory_target_gb is not None:
            command += ["-gpu_memory_target", f"{memory_target_gb:g}", "-overwrite_plans_name", plans]
        subprocess.run(command, check=True)
    shutil.copyfile(raw_dataset / "splits_final.json", preprocessed / "splits_final.json")


def train_and_predict(dataset_id: int, configuration: str, fold: int, trainer: str, epochs: int | None,
                      iterations: int | None, device: str, test_images: Path, predictions: Path, record: Path,
                      mirroring: bool = True, plans: str = "nnUNetPlans") -> None:
    """Train one fold (resumed from its last checkpoint, skipped when final), predict the test patients."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
    from nnunetv2.run.run_training import get_trainer_from_args

    started = time.perf_counter()
    network_trainer = get_trainer_from_args(str(dataset_id), configuration, fold, trainer, plans,
                                            device=torch.device(device))
    if epochs is not None:
        network_trainer.num_epochs = epochs
    if iterations is not None:
        network_trainer.num_iterations_per_epoch = iterations
        network_trainer.num_val_iterations_per_epoch = max(1, iterations // 5)
    folder = Path(network_trainer.output_folder)
    budget = {"epochs": network_trainer.num_epochs, "iterations_per_epoch": network_trainer.num_iterations_per_epoch}
    if (folder / BUDGET).exists() and json.loads((folder / BUDGET).read_text()) != budget:
        shutil.rmtree(folder)  # trained with another budget: its checkpoints are not this run's
    folder.mkdir(parents=True, exist_ok=True)
    (folder / BUDGET).write_text(json.dumps(budget))
    if not (folder / "checkpoint_final.pth").exists():
        if (folder / "checkpoint_latest.pth").exists():
            network_trainer.load_checkpoint(str(folder / "checkpoint_latest.pth"))
        network_trainer.run_training()
    if not (folder / "validation" / "summary.json").exists():  # as nnUNetv2_train: the fold's val patients
        if not network_trainer.was_initialized:
            network_trainer.initialize()
            network_trainer.load_checkpoint(str(folder / "checkpoint_final.pth"))
        if not mirroring:  # no test-time mirroring (4 passes per 2D patch, 8 per 3D one): a CPU smoke test's budget
            network_trainer.inference_allowed_mirroring_axes = None
        network_trainer.perform_actual_validation(False)
    trained = time.perf_counter()
    predictor = nnUNetPredictor(use_mirroring=mirroring, device=torch.device(device), verbose=False, allow_tqdm=False)
    predictor.initialize_from_trained_model_folder(str(folder.parent), use_folds=(fold,),
                                                   checkpoint_name="checkpoint_final.pth")
    predictions.mkdir(parents=True, exist_ok=True)
    if os.environ.get("nnUNet_n_proc_DA") == "0":  # no worker processes asked for: predict in this one
        predictor.predict_from_files_sequential(str(test_images), str(predictions), save_probabilities=False,
                                                overwrite=True)
    else:
        predictor.predict_from_files(str(test_images), str(predictions), save_probabilities=False, overwrite=True,
                                     num_processes_preprocessing=1, num_processes_segmentation_export=1)
    cases = sorted(predictions.glob("*.nii.gz"))
    record.write_text(json.dumps({
        "trainer": trainer, "configuration": configuration, "fold": fold, "device": device,
        "epochs": network_trainer.num_epochs, "iterations_per_epoch": network_trainer.num_iterations_per_epoch,
        "val_iterations_per_epoch": network_trainer.num_val_iterations_per_epoch, "test_time_mirroring": mirroring,
        "plans": plans, "batch_size": int(network_trainer.configuration_manager.batch_size),
        "patch_size": [int(v) for v in network_trainer.configuration_manager.patch_size],
        "train_seconds": trained - started,
        "predict_seconds_per_patient": (time.perf_counter() - trained) / max(1, len(cases)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "peak_gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else 0.0,
        "nnunetv2": _version("nnunetv2"), "torch": torch.__version__,
    }, indent=1))


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def main(argv: list[str] | None = None) -> int:
    """``plan DATASET_ID CONFIGURATION RAW_DATASET`` or ``train-predict ...`` (see ``--help``)."""
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("plan")
    p.add_argument("dataset_id", type=int)
    p.add_argument("configuration")
    p.add_argument("raw_dataset", type=Path)
    p.add_argument("--plans", default="nnUNetPlans")
    p.add_argument("--memory-target-gb", type=float)
    t = sub.add_parser("train-predict")
    t.add_argument("dataset_id", type=int)
    t.add_argument("configuration")
    t.add_argument("fold", type=int)
    t.add_argument("--trainer", default="nnUNetTrainer")
    t.add_argument("--epochs", type=int)
    t.add_argument("--iterations", type=int)
    t.add_argument("--device", default="cuda")
    t.add_argument("--test-images", type=Path, required=True)
    t.add_argument("--predictions", type=Path, required=True)
    t.add_argument("--record", type=Path, required=True)
    t.add_argument("--plans", default="nnUNetPlans")
    t.add_argument("--no-mirroring", action="store_true", help="no test-time mirroring (validation and test)")
    args = parser.parse_args(argv)
    if args.step == "plan":
        plan(args.dataset_id, args.configuration, args.raw_dataset, args.plans, args.memory_target_gb)
    else:
        train_and_predict(args.dataset_id, args.configuration, args.fold, args.trainer, args.epochs, args.iterations,
                          args.device, args.test_images, args.predictions, args.record, not args.no_mirroring,
                          args.plans)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
