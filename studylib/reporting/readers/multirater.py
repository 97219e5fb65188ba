"""The multi-rater field's metric suite (``evaluation.multirater``) per test patient, method and input, on the CT
grid: ``aggregate/multirater_metrics.csv`` (one row per patient, method and metric) and its summary.

A method is a set of predictions scored against the set of the readers' masks: the decoupled models (one per
reader, in reader order), the conditioned model's styles (one per reader), and each consensus-target model (STAPLE
consensus, union, intersection) as a single prediction. Primary seed and background setting, every test patient
of every fold, as the disagreement maps (``reporting.readers.disagreement``), whose loading this reuses.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from ...evaluation.multirater import multirater_suite, union_box
from ...inference.volume import prediction_file
from ...plans.results_folder import (
    AGGREGATE,
    MULTIRATER_METRICS,
    MULTIRATER_SUMMARY,
    PREDICTIONS,
    RUNS,
)
from ...plans.runs import run_id
from ...preprocessing.targets import DERIVED_TARGETS
from .disagreement import reader_study, style_predictions

BOX_MARGIN = 8  # voxels around the union of every mask (S_NCC's domain; see evaluation.multirater)
METRIC_ORDER = ("ged_v", "ged_u", "hm_iou", "dice_max", "dice_max_reverse", "dice_match", "dice_each", "dice_soft",
                "s_ncc")


def method_predictions(results: Path, modality: str, fold: int, seed: int, readers: list[str], background: float,
                       pid: str) -> dict[str, tuple[list[Path], bool]]:
    """{method: (prediction files, whether file i is reader i's style)} of one test patient (complete sets only)."""
    methods = {family: (files, True)
               for family, files in style_predictions(results, modality, fold, seed, readers, background, pid).items()}
    for target in DERIVED_TARGETS:
        path = prediction_file(results / RUNS / run_id(modality, target, fold, seed, background) / PREDICTIONS, pid)
        if path.exists():
            methods[target] = ([path], False)
    return methods


def suite_rows(keys: dict, predictions: np.ndarray, readers: np.ndarray, styles_of_readers: bool) -> list[dict]:
    """One row per metric of the suite for one patient and method, inside the union box of every mask."""
    box = (slice(None), *union_box([predictions, readers], BOX_MARGIN))
    suite = multirater_suite(predictions[box], readers[box], styles_of_readers)
    return [{**keys, "metric": metric, "value": value} for metric, value in suite.items()]


def write_multirater_metrics(results: str | os.PathLike) -> pd.DataFrame:
    """``aggregate/multirater_metrics.csv`` and ``aggregate/multirater_summary.csv`` (studies with two or more
    readers; nothing is written otherwise)."""
    import SimpleITK as sitk

    results = Path(results)
    study = reader_study(results)
    readers = study.readers
    rows: list[dict] = []
    if len(readers) < 2:
        return pd.DataFrame(rows)
    for fold, pid, masks in study.test_patients():
        reader_masks = np.stack([m.astype(bool) for m in masks])
        for modality in study.modalities:
            for method, (files, styles) in method_predictions(results, modality, fold, study.seed, readers,
                                                              study.background, pid).items():
                predictions = np.stack([sitk.GetArrayFromImage(sitk.ReadImage(str(f))).astype(bool) for f in files])
                keys = {"patient_id": pid, "fold": fold, "modality": modality, "method": method,
                        "predictions": len(files), "readers": len(readers)}
                rows += suite_rows(keys, predictions, reader_masks, styles)
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    (results / AGGREGATE).mkdir(parents=True, exist_ok=True)
    table.to_csv(results / AGGREGATE / MULTIRATER_METRICS, index=False)
    multirater_summary(table).to_csv(results / AGGREGATE / MULTIRATER_SUMMARY, index=False)
    return table


def multirater_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per input, method and metric: patients with a defined value, their mean and SD, and 'mean ± SD' (3 decimals)."""
    rows = []
    for (modality, method, metric), g in table.groupby(["modality", "method", "metric"], sort=False):
        values = g.value.dropna().to_numpy()
        mean = float(np.mean(values)) if len(values) else float("nan")
        sd = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0  # as evaluation.statistics.summarise
        rows.append({"modality": modality, "method": method, "metric": metric, "n_patients": len(values),
                     "n_undefined": int(g.value.isna().sum()), "mean": mean, "sd": sd,
                     "text": f"{mean:.3f} ± {sd:.3f}" if len(values) else "undefined"})
    return pd.DataFrame(rows)
