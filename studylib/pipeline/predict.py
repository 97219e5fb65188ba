"""Apply a trained run's model to a new cohort or single patients (the clinician-team use of models A and B)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..evaluation.scoring import score_patient
from ..inference.volume import foreground, predict_styles, prediction_stem, write_prediction
from ..ingest.cohort import CohortError, load_cohort
from ..ingest.dicom import choose_series
from ..ingest.modalities import MODALITY_CHANNELS
from ..ingest.seg import write_seg
from ..plans.profiles import Profile, load_profile
from ..plans.results_folder import (
    CACHE,
    PREDICTION_METRICS,
    PREDICTIONS,
    RUN_BEST_CHECKPOINT,
    RUN_PARAMS,
    RUN_SUMMARY,
)
from ..plans.runs import RunParams
from ..preprocessing.cache import cache_patient, load_cached, load_native
from ..training.models import CONDITIONED, build_run_model
from ..training.trainer import load_checkpoint, resolve_device


def package_version() -> str:
    """The installed petct-study version (recorded in DICOM objects it writes)."""
    import importlib.metadata as md

    try:
        return md.version("petct-study")
    except md.PackageNotFoundError:
        return "unknown"


def recorded_scoring(model_dir: Path, params: RunParams, profile: Profile) -> tuple[list[str], float]:
    """(the labels whose z-extent is the lesion_extent region, the NSD tolerance) a run scored with, so a new
    cohort is scored as the study scored its test patients.

    Runs from before the mask targets were recorded: the run's profile over the run's own cohort (what the study
    computed then). Runs from before the tolerance was recorded scored with the profile's value, whose default was
    then 2 mm.
    """
    summary = model_dir / RUN_SUMMARY
    recorded = json.loads(summary.read_text()) if summary.exists() else {}
    mask_targets = recorded.get("mask_targets") or profile.mask_targets(load_cohort(params.cohort))
    return mask_targets, recorded.get("nsd_tolerance_mm") or profile.study.nsd_tolerance_mm or 2.0


def predict_cohort(model_dir: str | os.PathLike, cohort: str | os.PathLike, out: str | os.PathLike,
                   patients: list[str] | None = None, save_probabilities: bool = False,
                   dicom_seg: bool = False) -> pd.DataFrame | None:
    """Predict every (or the listed) patient; write NIfTI masks on the CT grid and, where labels exist, metrics.

    ``dicom_seg`` also writes each prediction as ``predictions/<id>.seg.dcm``, a DICOM SEG that references the
    patient's CT series (the CT must be a DICOM folder); its segment is named after the run's training label.
    """
    model_dir, out = Path(model_dir), Path(out)
    params = RunParams.from_record(model_dir / RUN_PARAMS)
    profile = load_profile(params.profile)
    channels = MODALITY_CHANNELS[params.modality]
    # a style-conditioned model produces one prediction per style of the readers it was trained on
    styles = profile.reader_labels(load_cohort(params.cohort).train_labels) if params.label == CONDITIONED else []
    model = build_run_model(profile.model, len(channels), len(styles))
    model.load_state_dict(load_checkpoint(model_dir / RUN_BEST_CHECKPOINT)["model"])
    cohort_obj = load_cohort(cohort)
    cache_dir = out / CACHE
    device = resolve_device(profile.train.device)
    chosen = patients or cohort_obj.patient_ids
    if dicom_seg:
        not_dicom = [pid for pid in chosen if not Path(cohort_obj.patient(pid).images["ct"]).is_dir()]
        if not_dicom:
            raise CohortError(f"a DICOM SEG references a DICOM CT series, but the CT of {', '.join(not_dicom)} is "
                              f"not a DICOM folder ({cohort_obj.patient(not_dicom[0]).images['ct']})")
    derived, reader_labels = profile.derived_targets(cohort_obj)
    extent_labels, tolerance = recorded_scoring(model_dir, params, profile)
    rows = []
    for pid in chosen:
        record = cohort_obj.patient(pid)
        scored = set(reader_labels) <= set(record.labels)  # a patient without the readers' labels is predicted, not scored
        cache_patient(record, profile.preprocess, cache_dir, 0, derived if scored else [], reader_labels if scored else [])
        cached = load_cached(cache_dir, pid)
        geometry = cached.geometry
        labels, body = load_native(cache_dir, pid)
        ct_files = choose_series(record.images["ct"], "CT", pid) if dicom_seg else []
        for name, probs in predict_styles(model, cached, channels, params.label, styles, device,
                                          profile.train.precision):
            stem = prediction_stem(pid, name, bool(styles))
            write_prediction(probs, geometry, out / PREDICTIONS, stem, save_probabilities=save_probabilities)
            if dicom_seg:
                write_seg(foreground(probs).astype(np.uint8), ct_files, out / PREDICTIONS / f"{stem}.seg.dcm",
                          segment_label=name, algorithm=f"petct-study {params.modality} {name}",
                          version=package_version())
            if labels:  # scored as in a study run: score_patient with the run's mask targets and NSD tolerance
                for row in score_patient(probs, labels, body, cached.geometry.spacing_zyx, extent_labels, tolerance):
                    rows.append({"patient_id": pid, "model": model_dir.name, "style": name, **row})
    if not rows:
        return None
    table = pd.DataFrame(rows)
    table.to_csv(out / PREDICTION_METRICS, index=False)
    return table
