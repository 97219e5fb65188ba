"""Apply a trained run's model to a new cohort or single patients (the clinician-team use of models A and B)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd

from .cohort import load_cohort
from .config import MODALITY_CHANNELS, load_profile
from .inference import probability_volume, write_prediction
from .metrics import patient_metrics
from .models import build_model
from .preprocessing import cache_patient, load_native
from .study import load_cached
from .training import load_checkpoint, resolve_device


def predict_cohort(model_dir: str | os.PathLike, cohort: str | os.PathLike, out: str | os.PathLike,
                   patients: list[str] | None = None, save_probabilities: bool = False) -> pd.DataFrame | None:
    """Predict every (or the listed) patient; write NIfTI masks on the CT grid and, where labels exist, metrics."""
    model_dir, out = Path(model_dir), Path(out)
    params = json.loads((model_dir / "params.json").read_text())
    profile = load_profile(params["profile"])
    channels = MODALITY_CHANNELS[params["modality"]]
    model = build_model(profile.model, len(channels))
    model.load_state_dict(load_checkpoint(model_dir / "best.pt")["model"])
    cohort_obj = load_cohort(cohort)
    cache_dir = out / "cache"
    device = resolve_device(profile.train.device)
    rows = []
    for pid in patients or cohort_obj.patient_ids:
        cache_patient(cohort_obj.patient(pid), profile.preprocess, cache_dir)
        cached = load_cached(cache_dir, pid)
        geometry = cached.meta["ct_geometry"]
        probs = probability_volume(model, cached.images, cached.channel_index(channels), geometry, device=device)
        write_prediction(probs, geometry, out / "predictions", pid, save_probabilities=save_probabilities)
        labels, body = load_native(cache_dir, pid)
        for name, gt in labels.items():
            rows.append({"patient_id": pid, "model": model_dir.name, "ground_truth": name,
                         **patient_metrics(probs >= 0.5, gt, geometry["spacing"][::-1], body)})
    if not rows:
        return None
    table = pd.DataFrame(rows)
    table.to_csv(out / "metrics.csv", index=False)
    return table
