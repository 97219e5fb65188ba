"""One conditioned network against K decoupled ones (one per reader): non-inferiority on own-reader Dice, paired over
test patients, and the training cost of each, from the runs' training logs."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd

from ...evaluation.statistics import non_inferiority
from ...plans.results_folder import AGGREGATE, CONDITIONED_COST, CONDITIONED_NONINFERIORITY, RUN_TRAINING_LOG
from ...training.models import CONDITIONED, conditioned_output

NONINFERIORITY_MARGIN = 0.02  # Dice; fixed before the numbers
NONINFERIORITY_LEVEL = 0.95  # one-sided
NONINFERIORITY_RULE = (
    f"Rule (fixed before the numbers): per test patient, the conditioned model's own-reader Dice (each style against "
    f"its reader) minus the decoupled model of that reader, averaged over the readers; the conditioned network is "
    f"non-inferior when the lower bound of the one-sided {100 * NONINFERIORITY_LEVEL:.0f} % bootstrap interval of the "
    f"mean difference over patients lies above -{NONINFERIORITY_MARGIN} Dice. The same rule per reader is shown "
    f"beside it.")


def own_reader_differences(per_patient: pd.DataFrame, readers: list[str]) -> pd.DataFrame:
    """Per (modality, patient, reader): own-reader Dice of the conditioned style minus the decoupled model's
    (``per_patient``: primary rows, seeds averaged; patients where both exist)."""
    rows = []
    for reader in readers:
        own = per_patient[per_patient.ground_truth == reader]
        conditioned = own[own.train_label == conditioned_output(reader)].set_index(["modality", "patient_id"]).dsc
        decoupled = own[own.train_label == reader].set_index(["modality", "patient_id"]).dsc
        joined = pd.concat([conditioned.rename("conditioned"), decoupled.rename("decoupled")], axis=1, join="inner")
        for (modality, pid), r in joined.iterrows():
            rows.append({"modality": modality, "patient_id": pid, "reader": reader, "conditioned": r.conditioned,
                         "decoupled": r.decoupled, "difference": r.conditioned - r.decoupled})
    return pd.DataFrame(rows)


def training_seconds(run: Path) -> float:
    """Seconds a run spent training (every epoch's training and validation), from its training log."""
    path = run / RUN_TRAINING_LOG
    return float(pd.read_csv(path).seconds.sum()) if path.exists() else float("nan")


def write_conditioned_tables(results: str | os.PathLike, per_patient: pd.DataFrame, readers: list[str],
                             cells) -> dict:
    """``conditioned_noninferiority.csv`` (pooled over readers, and per reader) and ``conditioned_cost.csv`` (per
    modality and fold: the conditioned run's training seconds beside the sum of the K decoupled runs') in
    ``aggregate/``; ``cells``: (run folder, grid cell) of the planned runs. Nothing without a conditioned model."""
    out = Path(results) / AGGREGATE
    differences = own_reader_differences(per_patient, readers) if len(readers) >= 2 else pd.DataFrame()
    if differences.empty:
        return {}
    rows = []
    for modality, g in differences.groupby("modality"):
        pooled = g.groupby("patient_id").difference.mean()
        rows.append({"modality": modality, "reader": "all (mean over readers)",
                     **non_inferiority(pooled.to_numpy(), NONINFERIORITY_MARGIN, NONINFERIORITY_LEVEL)})
        for reader, r in g.groupby("reader", sort=False):
            rows.append({"modality": modality, "reader": reader,
                         **non_inferiority(r.difference.to_numpy(), NONINFERIORITY_MARGIN, NONINFERIORITY_LEVEL)})
    pd.DataFrame(rows).to_csv(out / CONDITIONED_NONINFERIORITY, index=False)
    cost = []
    runs = {(c.modality, c.label, c.fold, c.seed, c.background_fraction): run for run, c in cells}
    for (modality, label, fold, seed, background), run in runs.items():
        if label != CONDITIONED:
            continue
        decoupled = [runs.get((modality, r, fold, seed, background)) for r in readers]
        if any(d is None for d in decoupled):
            continue
        cost.append({"modality": modality, "fold": fold, "seed": seed, "conditioned_seconds": training_seconds(run),
                     "decoupled_seconds": sum(training_seconds(d) for d in decoupled), "decoupled_runs": len(decoupled)})
    pd.DataFrame(cost).to_csv(out / CONDITIONED_COST, index=False)
    return {"comparisons": len(rows), "cost_rows": len(cost)}
