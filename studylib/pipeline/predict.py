"""Apply a trained run's model to a new cohort or single patients (the clinician-team use of models A and B)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..inference.volume import write_prediction
from ..ingest.cohort import CohortError, load_cohort
from ..ingest.dicom import choose_series
from ..ingest.modalities import MODALITY_CHANNELS
from ..ingest.seg import write_seg
from ..plans.profiles import load_profile
from ..preprocessing.cache import cache_patient, load_cached, load_native
from ..training.models import CONDITIONED, build_run_model
from ..training.trainer import load_checkpoint, resolve_device
from .study import RunParams, evaluate_patient, predict_styles


def package_version() -> str:
    """The installed petct-study version (recorded in DICOM objects it writes)."""
    import importlib.metadata as md

    try:
        return md.version("petct-study")
    except md.PackageNotFoundError:
        return "unknown"


def predict_cohort(model_dir: str | os.PathLike, cohort: str | os.PathLike, out: str | os.PathLike,
                   patients: list[str] | None = None, save_probabilities: bool = False,
                   dicom_seg: bool = False) -> pd.DataFrame | None:
    """Predict every (or the listed) patient; write NIfTI masks on the CT grid and, where labels exist, metrics.

    ``dicom_seg`` also writes each prediction as ``predictions/<id>.seg.dcm``, a DICOM SEG that references the
    patient's CT series (the CT must be a DICOM folder); its segment is named after the run's training label.
    """
    model_dir, out = Path(model_dir), Path(out)
    params = RunParams.from_record(model_dir / "params.json")
    profile = load_profile(params.profile)
    channels = MODALITY_CHANNELS[params.modality]
    # a style-conditioned model produces one prediction per style of the readers it was trained on
    styles = profile.readers(load_cohort(params.cohort).train_labels) if params.label == CONDITIONED else []
    model = build_run_model(profile.model, len(channels), len(styles))
    model.load_state_dict(load_checkpoint(model_dir / "best.pt")["model"])
    cohort_obj = load_cohort(cohort)
    cache_dir = out / "cache"
    device = resolve_device(profile.train.device)
    chosen = patients or cohort_obj.patient_ids
    if dicom_seg:
        not_dicom = [pid for pid in chosen if not Path(cohort_obj.patient(pid).images["ct"]).is_dir()]
        if not_dicom:
            raise CohortError(f"a DICOM SEG references a DICOM CT series, but the CT of {', '.join(not_dicom)} is "
                              f"not a DICOM folder ({cohort_obj.patient(not_dicom[0]).images['ct']})")
    derived, readers = profile.derived_targets(cohort_obj)
    # the tolerance the study scored with; runs from before it was recorded scored with the profile's value,
    # whose default was then 2 mm
    summary = model_dir / "summary.json"
    recorded = json.loads(summary.read_text()).get("nsd_tolerance_mm") if summary.exists() else None
    tolerance = recorded or profile.study.nsd_tolerance_mm or 2.0
    rows = []
    for pid in chosen:
        record = cohort_obj.patient(pid)
        scored = set(readers) <= set(record.labels)  # a patient without the readers' labels is predicted, not scored
        cache_patient(record, profile.preprocess, cache_dir, 0, derived if scored else [], readers if scored else [])
        cached = load_cached(cache_dir, pid)
        geometry = cached.meta["ct_geometry"]
        labels, body = load_native(cache_dir, pid)
        ct_files = choose_series(record.images["ct"], "CT", pid) if dicom_seg else []
        for name, probs in predict_styles(model, cached, channels, params.label, styles, device,
                                          profile.train.precision):
            stem = f"{pid}__{name}" if styles else pid
            write_prediction(probs, geometry, out / "predictions", stem, save_probabilities=save_probabilities)
            if dicom_seg:
                write_seg((probs >= 0.5).astype(np.uint8), ct_files, out / "predictions" / f"{stem}.seg.dcm",
                          segment_label=name, algorithm=f"petct-study {params.modality} {name}",
                          version=package_version())
            if labels:  # scored exactly as in a study run (both regions, the profile's NSD tolerance)
                for row in evaluate_patient(probs >= 0.5, labels, body, cached.geometry.spacing_zyx,
                                            cohort_obj.train_labels, tolerance):
                    rows.append({"patient_id": pid, "model": model_dir.name, "style": name, **row})
    if not rows:
        return None
    table = pd.DataFrame(rows)
    table.to_csv(out / "metrics.csv", index=False)
    return table
