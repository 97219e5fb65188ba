"""Calibration against reader disagreement, per test patient on the CT grid (``evaluation.calibration``): each model
family's mean probability against the readers' vote fraction (ECE, Brier, reliability diagram), and the family's
uncertainty as a detector of the voxels where readers disagree (AUROC per patient and pooled, ROC figure).

Families: the decoupled models (one per reader) averaged, the conditioned model's styles averaged, the vote-fraction
model. The voxels scored are those of one box per patient, the same for every family: the bounding box of the
readers' masks and every family's predicted masks, grown by ``targets.STAPLE_MARGIN`` voxels (the rest of the scan is
background that every reader and model agrees on, and would make any model look calibrated). Primary seed and
background setting, as the disagreement maps.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ...evaluation.calibration import (
    CALIBRATION_BINS,
    SortedScores,
    binary_entropy,
    brier_score,
    disagreement_auroc,
    ece_from_sums,
    member_spread,
    readers_disagree,
    reliability_sums,
)
from ...inference.volume import foreground, prediction_file, prediction_stem, probability_stem
from ...plans.results_folder import (
    AGGREGATE,
    CALIBRATION,
    CALIBRATION_BINS_TABLE,
    CALIBRATION_SUMMARY,
    PREDICTIONS,
    RUNS,
)
from ...plans.runs import run_id
from ...preprocessing.targets import STAPLE_MARGIN, VOTE_FRACTION, staple_box, vote_fraction
from ...training.models import CONDITIONED, MIN_READERS_FOR_PROBABILITIES, conditioned_output
from .disagreement import reader_study

FAMILIES = {"decoupled": "decoupled models, averaged", "conditioned": "conditioned model's styles, averaged",
            VOTE_FRACTION: "vote-fraction model"}
ROC_POINTS = 1000  # thresholds drawn per ROC curve
RELIABILITY_FIGURE, ROC_FIGURE = "reliability_diagram", "disagreement_roc"  # figure stems in aggregate/
SCORES = {"entropy": "entropy of the mean probability", "spread": "SD of the members' probabilities"}


def family_files(results: Path, modality: str, fold: int, seed: int, readers: list[str], background: float,
                 pid: str) -> dict[str, list[Path]]:
    """Probability maps of one test patient per family (complete families only)."""

    def prob(run: str, stem: str) -> Path:
        return prediction_file(results / RUNS / run / PREDICTIONS, probability_stem(stem))

    families = {
        "decoupled": [prob(run_id(modality, r, fold, seed, background), pid) for r in readers],
        "conditioned": [prob(run_id(modality, CONDITIONED, fold, seed, background),
                             prediction_stem(pid, conditioned_output(r), True)) for r in readers],
        VOTE_FRACTION: [prob(run_id(modality, VOTE_FRACTION, fold, seed, background), pid)],
    }
    return {family: files for family, files in families.items() if all(f.exists() for f in files)}


def family_row(members: list[np.ndarray], fraction: np.ndarray) -> tuple[dict, np.ndarray, dict[str, np.ndarray]]:
    """One family on one patient's box: (ECE, Brier, AUROCs and counts; reliability sums; detector scores)."""
    mean = np.mean(members, axis=0)
    disagree = readers_disagree(fraction)
    scores = {"entropy": binary_entropy(mean)}
    if len(members) > 1:
        scores["spread"] = member_spread(members)
    sums = reliability_sums(mean, fraction)
    row = {"voxels": int(mean.size), "reader_disagreement_voxels": int(disagree.sum()), "members": len(members),
           "ece": ece_from_sums(sums), "brier": brier_score(mean, fraction),
           **{f"auroc_{name}": disagreement_auroc(score, disagree) for name, score in scores.items()}}
    return row, sums, scores


def write_calibration(results: str | os.PathLike, figure_formats=("png", "svg")) -> dict:
    """``calibration.csv`` (per patient and family), ``calibration_bins.csv`` (pooled reliability bins) and
    ``calibration_summary.csv`` (pooled ECE, mean Brier, pooled and per-patient AUROC) in ``aggregate/``, with the
    reliability diagram and the pooled ROC curves of the first input. Nothing when the study has fewer than three
    readers or no probability maps."""
    import SimpleITK as sitk

    from ..figures import reliability_figure, roc_figure, saved

    results = Path(results)
    study = reader_study(results)
    readers = study.readers
    if len(readers) < MIN_READERS_FOR_PROBABILITIES:
        return {}
    rows, sums, pooled = [], {}, {}
    for fold, pid, readers_masks in study.test_patients():
        for modality in study.modalities:
            files = family_files(results, modality, fold, study.seed, readers, study.background, pid)
            if not files:
                continue
            maps = {family: [sitk.GetArrayFromImage(sitk.ReadImage(str(f))).astype(np.float32) for f in paths]
                    for family, paths in files.items()}
            masks = readers_masks + [foreground(m) for members in maps.values() for m in members]
            box = staple_box(masks, STAPLE_MARGIN)
            fraction = vote_fraction([m[box] for m in readers_masks])
            for family, members in maps.items():
                row, family_sums, scores = family_row([np.clip(m[box], 0, 1) for m in members], fraction)
                rows.append({"patient_id": pid, "fold": fold, "modality": modality, "family": family, **row})
                key = (modality, family)
                sums[key] = sums.get(key, 0) + family_sums
                pooled.setdefault(key, {"disagree": [], **{s: [] for s in scores}})
                pooled[key]["disagree"].append(readers_disagree(fraction).ravel())
                for name, score in scores.items():
                    pooled[key][name].append(score.ravel())
    if not rows:
        return {}
    table = pd.DataFrame(rows)
    out = results / AGGREGATE
    table.to_csv(out / CALIBRATION, index=False)
    bins, summary, curves = [], [], {}
    for (modality, family), family_sums in sums.items():
        edges = np.linspace(0, 1, CALIBRATION_BINS + 1)
        for k, (count, sum_p, sum_t) in enumerate(family_sums):
            bins.append({"modality": modality, "family": family, "bin_low": edges[k], "bin_high": edges[k + 1],
                         "voxels": int(count), "mean_probability": sum_p / count if count else float("nan"),
                         "mean_vote_fraction": sum_t / count if count else float("nan")})
        g = table[(table.modality == modality) & (table.family == family)]
        disagree = np.concatenate(pooled[(modality, family)]["disagree"])
        row = {"modality": modality, "family": family, "patients": int(g.patient_id.nunique()), "bins": CALIBRATION_BINS,
               "ece_pooled": ece_from_sums(family_sums), "ece_patient_mean": float(g.ece.mean()),
               "brier_patient_mean": float(g.brier.mean())}
        for name in SCORES:
            if name in pooled[(modality, family)]:
                score = np.concatenate(pooled[(modality, family)][name])
                ranked = SortedScores.of(score, disagree)  # one sort for the AUROC and the ROC curve
                row[f"auroc_{name}_pooled"] = ranked.auroc()
                row[f"auroc_{name}_patient_mean"] = float(g[f"auroc_{name}"].mean())
                if ranked.positives.size and ranked.negatives.size:  # both classes: a curve to draw
                    curves[(modality, family, name)] = (*ranked.roc(ROC_POINTS), row[f"auroc_{name}_pooled"])
        summary.append(row)
    pd.DataFrame(bins).to_csv(out / CALIBRATION_BINS_TABLE, index=False)
    pd.DataFrame(summary).to_csv(out / CALIBRATION_SUMMARY, index=False)
    bins = pd.DataFrame(bins)
    modality = bins.modality.iloc[0]
    written = {"patients": int(table.patient_id.nunique())}
    fig = reliability_figure(bins[bins.modality == modality], FAMILIES,
                             f"Reliability against the readers' vote fraction ({modality} input)")
    written["reliability_diagram"] = saved(fig, out / RELIABILITY_FIGURE, figure_formats, results)
    fig = roc_figure({f"{FAMILIES[f]}: {SCORES[name]}": curve for (m, f, name), curve in curves.items() if m == modality},
                     f"Model uncertainty as a detector of reader disagreement ({modality} input)")
    written["disagreement_roc"] = saved(fig, out / ROC_FIGURE, figure_formats, results)
    return written
