"""Our trainer beside nnU-Net v2 on the same folds, the same test patients and the same machine: Dice on the own
label, training time, inference time per patient and peak memory, each as a ratio nnU-Net / ours.

    python benchmarks/nnunet_side_by_side.py --results results/quick [--train --configuration 2d
        --trainer nnUNetTrainer_5epochs --iterations 20 --device cpu --fold 0 --target label_a --no-mirroring]

``--results`` is a finished study (``make study`` or ``python -m studylib study``). With ``--train`` nnU-Net is
trained, predicted and scored first (``python -m studylib nnunet`` with the same options; a fold already scored with
the same settings is not trained again); without it, the nnU-Net folds already scored in the folder are compared.
Our side is every seed of the planned run of that input, target and fold (mean of the seeds); nnU-Net trains one
model per fold. Ours records its time and memory in each run's ``summary.json``, nnU-Net's in the fold's
``score.json`` (``training``), both measured the same way: training including validation, prediction per test
patient without writing or scoring, peak resident memory of the process (and peak CUDA memory). A CPU budget of a
few epochs says nothing about nnU-Net's accuracy at its default budget (1000 epochs of 250 iterations): the table
prints the budgets beside the numbers.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pandas as pd

from studylib.pipeline.nnunet_baseline import CONFIGURATIONS, NnunetSettings, run_nnunet
from studylib.plans.results_folder import EXTERNAL, EXTERNAL_RECORD, RUN_PER_PATIENT, RUN_SUMMARY, RUNS
from studylib.plans.runs import SEPARATOR, read_plan

COST_KEYS = ("train_seconds", "predict_seconds_per_patient", "peak_rss_mb", "peak_gpu_mb")


def own_label_dice(per_patient: Path) -> float:
    """Mean Dice over the test patients against the label the model was trained on (whole scan)."""
    rows = pd.read_csv(per_patient)
    rows = rows[(rows.region == "full") & (rows.ground_truth == rows.train_label)]
    return float(rows.dsc.mean())


def our_side(results: Path, modality: str, target: str, fold: int) -> dict | None:
    """Our planned runs of one input, target and fold (every seed, primary background): mean Dice, cost, epochs."""
    plan = read_plan(results)
    prefix = SEPARATOR.join([modality, target, f"fold{fold}", ""])
    runs = [results / RUNS / r for r in plan["runs"] if r.startswith(prefix)
            and (results / RUNS / r / RUN_SUMMARY).exists()]
    if not runs:
        return None
    summaries = [json.loads((r / RUN_SUMMARY).read_text()) for r in runs]
    if any("train_seconds" not in s for s in summaries):
        return None  # trained before runs recorded their cost
    row = {"seeds": len(runs), "dice": sum(own_label_dice(r / RUN_PER_PATIENT) for r in runs) / len(runs),
           "budget": f"{summaries[0]['epochs_run']} epochs x {summaries[0]['steps_per_epoch']} steps"}
    for key in COST_KEYS:
        row[key] = sum(s[key] for s in summaries) / len(summaries)
    return row


def nnunet_side(folder: Path, training: dict) -> dict:
    """nnU-Net's scored fold (``external/<id>``, its ``score.json``'s ``training``): Dice, cost and budget."""
    return {"dice": own_label_dice(folder / RUN_PER_PATIENT),
            "budget": f"{training['epochs']} epochs x {training['iterations_per_epoch']} iterations"
                      f"{'' if training['test_time_mirroring'] else ', no mirroring'}",
            **{key: training[key] for key in COST_KEYS}}


def ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator, NaN when the denominator is 0 (no GPU memory on a CPU)."""
    return numerator / denominator if denominator else float("nan")


def side_by_side(results: Path, family: str, modality: str) -> pd.DataFrame:
    """One row per target and fold that both sides have."""
    rows = []
    for record in sorted((results / EXTERNAL).glob(f"{family}{SEPARATOR}{modality}{SEPARATOR}*/{EXTERNAL_RECORD}")):
        scored = json.loads(record.read_text())
        target, fold = scored["train_label"], int(scored["fold"])
        ours = our_side(results, modality, target, fold)
        if ours is None:
            continue
        theirs = nnunet_side(record.parent, scored["training"])
        rows.append({"target": target, "fold": fold, "our_seeds": ours["seeds"], "our_budget": ours["budget"],
                     "nnunet_budget": theirs["budget"], "our_dice": ours["dice"], "nnunet_dice": theirs["dice"],
                     "dice_difference": theirs["dice"] - ours["dice"],
                     **{f"{key}_ratio": ratio(theirs[key], ours[key]) for key in COST_KEYS},
                     **{f"our_{key}": ours[key] for key in COST_KEYS},
                     **{f"nnunet_{key}": theirs[key] for key in COST_KEYS}})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, required=True)
    parser.add_argument("--modality", default="dual")
    parser.add_argument("--configuration", default="2d", choices=CONFIGURATIONS)
    parser.add_argument("--train", action="store_true", help="train, predict and score nnU-Net first")
    parser.add_argument("--trainer", default="nnUNetTrainer")
    parser.add_argument("--epochs", type=int)
    parser.add_argument("--iterations", type=int)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--fold", type=int, action="append")
    parser.add_argument("--target", action="append")
    parser.add_argument("--data-workers", type=int, default=2)
    parser.add_argument("--no-mirroring", action="store_true")
    parser.add_argument("--memory-target-gb", type=float, help="nnU-Net's -gpu_memory_target (default: its 8 GB)")
    parser.add_argument("--csv", type=Path, help="also write the table here")
    args = parser.parse_args()
    settings = NnunetSettings(configuration=args.configuration, trainer=args.trainer, epochs=args.epochs,
                              iterations_per_epoch=args.iterations, device=args.device, modality=args.modality,
                              data_workers=args.data_workers, mirroring=not args.no_mirroring,
                              memory_target_gb=args.memory_target_gb)
    if args.train:
        run_nnunet(args.results, settings, args.fold, args.target)
    table = side_by_side(args.results.resolve(), settings.family(), args.modality)
    if table.empty:
        raise SystemExit(f"{args.results}: no fold scored by both {settings.family()} and our runs that record their "
                         "cost (train with --train, or re-run our runs with this version)")
    shown = ["target", "fold", "our_budget", "nnunet_budget", "our_dice", "nnunet_dice", "dice_difference",
             *[f"{key}_ratio" for key in COST_KEYS]]
    with pd.option_context("display.width", 200, "display.max_columns", 20, "display.precision", 3):
        print(table[shown].to_string(index=False))
        print("\nratios are nnU-Net / ours; ours averages", int(table.our_seeds.iloc[0]), "seed(s) per fold")
        print(table[[f"{key}_ratio" for key in COST_KEYS]].median().rename("median ratio").to_string())
    if args.csv:
        table.to_csv(args.csv, index=False)


if __name__ == "__main__":
    main()
