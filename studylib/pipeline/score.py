"""Score another model's predictions (``score``): a folder of NIfTI masks of one fold's test patients, scored per
patient in 3D against every label by ``evaluation.scoring.score_patient`` (the function our runs score with), so
that aggregation adds the model as another family to Tables 1-2 and judges the paper's claims for it too.

The naming rule: one file per test patient of the fold, ``<patient_id>.nii.gz`` (nnU-Net's predictions are named
so). Other files in the folder (nnU-Net's ``plans.json``, ``dataset.json``) are ignored; a ``.nii.gz`` file of
another patient is an error.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from ..evaluation.scoring import cohort_nsd_tolerance, score_patient
from ..inference.volume import PREDICTION_SUFFIX
from ..ingest.cohort import check_identifier, load_cohort
from ..ingest.imageio import ImageGeometry, image_from_array, read_image, same_grid
from ..ingest.modalities import MODALITY_CHANNELS
from ..plans.profiles import load_profile
from ..plans.results_folder import (
    CACHE,
    EXTERNAL,
    EXTERNAL_RECORD,
    PROFILE_SNAPSHOT,
    RUN_PER_PATIENT,
    SPLITS,
    write_if_changed,
)
from ..plans.results_lock import results_lock
from ..plans.runs import OWN_FAMILY, external_id, read_plan
from ..preprocessing.cache import load_cached, load_native
from ..training.models import MASK_THRESHOLD


class PredictionError(ValueError):
    """A prediction folder or file that cannot be scored as it is (the message names the file)."""


@dataclass(frozen=True)
class ScoreRequest:
    """What ``score`` scores: whose predictions, standing for which training target, input and fold."""

    predictions: Path
    family: str
    target: str
    fold: int
    modality: str = "dual"
    resample_nearest: bool = False  # a prediction on another grid: nearest neighbour onto the CT grid, else an error


def prediction_files(folder: Path, test_patients: list[str], train_val: set[str]) -> dict[str, Path]:
    """``<patient_id>.nii.gz`` of every test patient; an error naming the missing and the extra patients."""
    if not folder.is_dir():
        raise PredictionError(f"{folder}: no such folder of predictions")
    found = {p.name.removesuffix(PREDICTION_SUFFIX): p for p in sorted(folder.glob(f"*{PREDICTION_SUFFIX}"))}
    missing = sorted(set(test_patients) - set(found))
    extra = sorted(set(found) - set(test_patients))
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing {', '.join(f'{p}{PREDICTION_SUFFIX}' for p in missing)}")
        if extra:
            leak = sorted(set(extra) & train_val)
            parts.append(f"not test patients of the fold: {', '.join(f'{p}{PREDICTION_SUFFIX}' for p in extra)}"
                         + (f" ({', '.join(leak)} trained or validated this fold)" if leak else ""))
        raise PredictionError(f"{folder}: the predictions must be exactly the fold's {len(test_patients)} test patients "
                              f"({', '.join(test_patients)}), one {PREDICTION_SUFFIX} each named by patient id: "
                              + "; ".join(parts))
    return {pid: found[pid] for pid in test_patients}


def describe_grid(geometry: ImageGeometry) -> str:
    """'size 96x96x40, spacing 1.00x1.00x2.00 mm, origin (0.0, 0.0, 0.0)' (ITK order x, y, z)."""
    return (f"size {'x'.join(str(n) for n in geometry.size)}, spacing {'x'.join(f'{v:.3g}' for v in geometry.spacing)} "
            f"mm, origin ({', '.join(f'{v:.1f}' for v in geometry.origin)})")


def on_ct_grid(image: sitk.Image, ct: ImageGeometry, path: Path, resample_nearest: bool) -> tuple[np.ndarray, str]:
    """The prediction as a (z, y, x) array on the CT grid, and the conversion made ('' when none)."""
    reference = image_from_array(np.zeros(ct.shape_zyx, np.uint8), ct)
    if same_grid(image, reference):
        return sitk.GetArrayFromImage(image), ""
    if not resample_nearest:
        raise PredictionError(f"{path} is not on the CT grid of its patient (prediction: "
                              f"{describe_grid(ImageGeometry.of_image(image))}; CT: {describe_grid(ct)}): write it on "
                              "the CT grid, or pass --resample-nearest to resample it onto the CT grid (nearest "
                              "neighbour)")
    resampled = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkNearestNeighbor, 0.0, image.GetPixelID())
    return sitk.GetArrayFromImage(resampled), "resampled onto the CT grid (nearest neighbour)"


def as_probabilities(values: np.ndarray, path: Path) -> tuple[np.ndarray, str]:
    """The volume ``score_patient`` takes (foreground: >= MASK_THRESHOLD), and the conversion made ('' when none).

    A binary mask (0/1, integer or float) is scored as it is; a float map within [0, 1] that is not binary counts as
    probabilities, thresholded at ``MASK_THRESHOLD`` like our models'; anything else is an error naming the file.
    """
    if values.dtype == bool:
        return values.astype(np.float32), ""
    if np.issubdtype(values.dtype, np.integer):
        present = np.unique(values)
        if not set(present.tolist()) <= {0, 1}:
            shown = ", ".join(str(v) for v in present[:6]) + (", ..." if len(present) > 6 else "")
            raise PredictionError(f"{path}: integer labels {shown}: a prediction must be a binary mask (0 background, "
                                  "1 lesion); write the lesion class as 1 and every other class as 0")
        return values.astype(np.float32), ""
    if not np.isfinite(values).all():
        raise PredictionError(f"{path}: holds NaN or infinite values")
    low, high = float(values.min()), float(values.max())
    if low < 0 or high > 1:
        raise PredictionError(f"{path}: float values from {low:.3g} to {high:.3g}, outside [0, 1]: neither a binary "
                              "mask nor probabilities (logits? apply a sigmoid or softmax first)")
    if np.isin(values, (0.0, 1.0)).all():
        return values.astype(np.float32), ""
    return values.astype(np.float32), f"probabilities thresholded at {MASK_THRESHOLD} (foreground: >= {MASK_THRESHOLD})"


def read_prediction(path: Path, patient_id: str, ct: ImageGeometry, resample_nearest: bool) -> tuple[np.ndarray, list[str]]:
    """One patient's prediction on its CT grid, ready for ``score_patient``, and the conversions made."""
    image = read_image(path, patient_id)
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise PredictionError(f"{path}: {image.GetNumberOfComponentsPerPixel()} components per voxel; a prediction "
                              "is one mask")
    values, regridded = on_ct_grid(image, ct, path, resample_nearest)
    probabilities, converted = as_probabilities(values, path)
    return probabilities, [c for c in (regridded, converted) if c]


def folder_reference(folder: Path, results: Path) -> str:
    """A folder as a record names it: relative to the results folder when inside it (the folder travels), else
    absolute."""
    folder, results = Path(folder).resolve(), Path(results).resolve()
    return os.path.relpath(folder, results) if folder.is_relative_to(results) else str(folder)


def score_predictions(results: str | os.PathLike, request: ScoreRequest, training: dict | None = None) -> Path:
    """Score ``request``'s predictions into ``<results>/external/<id>/`` (``per_patient.csv``, ``score.json``).

    ``training`` (how the family was trained: trainer, configuration, epochs) is recorded with the scores.
    """
    results = Path(results).resolve()
    with results_lock(results):
        return _score(results, request, training or {})


def _score(results: Path, request: ScoreRequest, training: dict) -> Path:
    """The work of ``score_predictions``, under the results folder's lock."""
    plan = read_plan(results)
    profile = load_profile(results / PROFILE_SNAPSHOT)
    cohort = load_cohort(results / plan["cohort"])
    check_identifier(request.family, "model family", "score --family")
    if request.family == OWN_FAMILY:
        raise PredictionError(f"model family '{OWN_FAMILY}' is the study's own U-Net; name the other model otherwise")
    if request.modality not in MODALITY_CHANNELS:
        raise PredictionError(f"unknown modality '{request.modality}' (one of {', '.join(MODALITY_CHANNELS)})")
    targets = profile.mask_targets(cohort)
    if request.target not in targets:
        raise PredictionError(f"training target '{request.target}' is not one the study trains on "
                              f"({', '.join(targets)})")
    splits = json.loads((results / SPLITS).read_text())
    if not 0 <= request.fold < len(splits):
        raise PredictionError(f"fold {request.fold}: the study has folds 0-{len(splits) - 1}")
    fold = splits[request.fold]
    files = prediction_files(request.predictions, fold["test"], set(fold["train"]) | set(fold["val"]))
    cache_dir = results / CACHE
    select = profile.mask_targets(cohort)
    # as run.py: the tolerance over the fold's patients, the lesion-extent region over the study's mask targets
    tolerance = cohort_nsd_tolerance(profile, cache_dir, sorted({p for part in fold.values() for p in part}))
    ident = external_id(request.family, request.modality, request.target, request.fold)
    cell = {"run_id": ident, "model_family": request.family, "modality": request.modality,
            "train_label": request.target, "fold": request.fold, "seed": 0,
            # the rows belong to the primary analysis (the background setting of our runs they are set beside)
            "background_fraction": plan.get("primary_background_fraction", 0.0)}
    rows, conversions = [], {}
    for pid, path in files.items():
        geometry = load_cached(cache_dir, pid).geometry
        labels, body = load_native(cache_dir, pid)
        probabilities, made = read_prediction(path, pid, geometry, request.resample_nearest)
        if made:
            conversions[pid] = made
        for row in score_patient(probabilities, labels, body, geometry.spacing_zyx, select, tolerance):
            rows.append({**cell, "patient_id": pid, **row})
    out = results / EXTERNAL / ident
    out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(out / RUN_PER_PATIENT, index=False)
    record = {"external_id": ident, "model_family": request.family, "train_label": request.target,
              "modality": request.modality, "fold": request.fold, "patients": list(files),
              "predictions": folder_reference(request.predictions, results), "naming": f"<patient_id>{PREDICTION_SUFFIX}",
              "mask_threshold": MASK_THRESHOLD, "resample_nearest": request.resample_nearest,
              "conversions": conversions, "nsd_tolerance_mm": tolerance, "mask_targets": select,
              "training": training}
    write_if_changed(out / EXTERNAL_RECORD, json.dumps(record, indent=1))
    return out
