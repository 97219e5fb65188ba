"""Scoring one patient, the same way for a study run and for ``predict``: the mask at the one threshold, every
label, both evaluation regions, the study's NSD tolerance."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from ..inference.volume import foreground
from ..ingest.cohort import Cohort
from ..plans.profiles import Profile
from ..preprocessing.cache import load_cached, load_native
from .metrics import agreement, nsd_tolerance, patient_metrics

SUMMARY_METRICS = ("dsc", "iou", "sensitivity", "specificity", "specificity_body", "hd95", "nsd", "fp_volume_ml",
                   "fn_volume_ml", "lesion_f1")


def lesion_extent(masks: list[np.ndarray]) -> slice:
    """Axial slices within the z-extent of the union of ``masks`` (all of them when the union is empty)."""
    union = np.any([m.any(axis=(1, 2)) for m in masks], axis=0)
    if not union.any():
        return slice(None)
    z = np.flatnonzero(union)
    return slice(int(z[0]), int(z[-1]) + 1)


def score_patient(probabilities: np.ndarray, labels: dict[str, np.ndarray], body: np.ndarray, spacing_zyx,
                  extent_labels: Sequence[str], nsd_tolerance_mm: float) -> list[dict]:
    """Metrics of one predicted probability volume (its ``foreground`` mask) against every label, in both regions.

    ``full``: every slice (primary). ``lesion_extent``, ground-truth-informed: the slices within the z-extent of
    the union of the patient's ``extent_labels`` (the study's mask targets, ``Profile.mask_targets``: the same
    whichever label is scored; the reference chooses them).
    """
    prediction = foreground(probabilities)
    extent = lesion_extent([labels[k] for k in extent_labels if k in labels])
    rows = []
    for region, z in (("full", slice(None)), ("lesion_extent", extent)):
        for gt_name, gt in labels.items():
            rows.append({"ground_truth": gt_name, "region": region,
                         **patient_metrics(prediction[z], gt[z], spacing_zyx, body[z], nsd_tolerance_mm)})
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
                 for m in SUMMARY_METRICS}
            for gt, g in full.groupby("ground_truth")}


def rater_agreement(cohort: Cohort, cache_dir: Path, label_a: str, label_b: str) -> pd.DataFrame:
    """Per-patient agreement of two labels on the CT grid (Dice, kappa, volumes)."""
    rows = []
    for pid in cohort.patient_ids:
        labels, body = load_native(cache_dir, pid)
        spacing = load_cached(cache_dir, pid).geometry.spacing_zyx
        rows.append({"patient_id": pid, **agreement(labels[label_a], labels[label_b], spacing, body)})
    return pd.DataFrame(rows)
