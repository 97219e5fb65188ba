"""Cohort QA: rater agreement table, per-patient label overlays, intensity histograms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import SimpleITK as sitk

from ..evaluation.metrics import patient_level_kappa
from ..evaluation.scoring import rater_agreement
from ..ingest.cohort import Cohort
from ..ingest.imageio import read_image
from ..plans.results_folder import (
    AGREEMENT,
    AGREEMENT_SUMMARY,
    READER_SWEEP,
    READER_SWEEP_FIGURE,
    READER_SWEEP_SUMMARY,
)
from ..preprocessing.cache import load_cached, load_native
from ..preprocessing.registration import resample_to, transform_from_record
from ..synthetic.sweep import ceiling, drawn_range, reader_sweep, sweep_figure, sweep_summary
from .figures import lesion_slice, patient_qa_figure, registration_qa_figure, save_figure


def write_agreement(cohort: Cohort, cache_dir: Path, out_dir: Path) -> pd.DataFrame:
    """Per-patient and pooled agreement between the first two training labels (CSV + JSON)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if len(cohort.train_labels) < 2:
        table = pd.DataFrame()
        (out_dir / AGREEMENT_SUMMARY).write_text(json.dumps({"note": "one label only: no rater agreement"}))
        return table
    a, b = cohort.train_labels[:2]
    table = rater_agreement(cohort, cache_dir, a, b)
    table["ceiling_off_diagonal_dice"] = ceiling(table["volume_ratio_a_over_b"])
    table.to_csv(out_dir / AGREEMENT, index=False)
    pooled = {
        "labels": [a, b], "n_patients": len(table),
        "dice_ab_mean": float(table.dice_ab.mean()), "dice_ab_sd": float(table.dice_ab.std(ddof=1)),
        "kappa_voxel_mean": float(table.kappa_voxel.mean()), "kappa_voxel_body_mean": float(table.kappa_voxel_body.mean()),
        "volume_a_ml_mean": float(table.volume_a_ml.mean()), "volume_b_ml_mean": float(table.volume_b_ml.mean()),
        "volume_ratio_median": float(table.volume_ratio_a_over_b.median()),
        "fraction_b_inside_a_mean": float(table.fraction_b_inside_a.mean()),
        "patient_level_kappa": patient_level_kappa(list(table.volume_a_ml > 0), list(table.volume_b_ml > 0)),
    }
    (out_dir / AGREEMENT_SUMMARY).write_text(json.dumps(pooled, indent=1))
    return table


def write_patient_figures(cohort: Cohort, cache_dir: Path, out_dir: Path, limit: int | None = None) -> list[Path]:
    """One QA figure per patient: CT, PET on the CT grid, fused, labels (A red, B blue)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for pid in cohort.patient_ids[:limit]:
        record = cohort.patient(pid)
        ct = read_image(record.images["ct"], pid, "CT")
        pet = read_image(record.images["pet"], pid, "PT")
        meta = load_cached(cache_dir, pid).meta
        pet_on_ct = sitk.GetArrayFromImage(resample_to(pet, ct, transform_from_record(meta["registration"])))
        labels, _ = load_native(cache_dir, pid)
        info = record.read_meta()
        title = f"{pid} {info.get('site', '')} implant={info.get('implant')} {','.join(info.get('confounders', []))}"
        ct_array = sitk.GetArrayFromImage(ct)
        fig = patient_qa_figure(ct_array, pet_on_ct, labels, title)
        written += save_figure(fig, out_dir / f"qa_{pid}")
        z = lesion_slice(next(iter(labels.values()))) if labels else ct_array.shape[0] // 2
        before = sitk.GetArrayFromImage(resample_to(pet, ct))
        fig = registration_qa_figure(ct_array, before, pet_on_ct, z, f"{pid}: PET over CT before/after registration")
        save_figure(fig, out_dir / f"registration_{pid}")
    return written


def write_histograms(cohort: Cohort, out_dir: Path, limit: int = 8) -> Path:
    """CT HU and PET SUV histograms of the first patients (body voxels)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for pid in cohort.patient_ids[:limit]:
        record = cohort.patient(pid)
        ct = sitk.GetArrayFromImage(read_image(record.images["ct"], pid, "CT")).ravel()
        pet = sitk.GetArrayFromImage(read_image(record.images["pet"], pid, "PT")).ravel()
        axes[0].hist(ct[ct > -900], bins=200, range=(-300, 3100), histtype="step", log=True, label=pid)
        axes[1].hist(pet[pet > 0.05], bins=200, range=(0, float(np.percentile(pet, 99.99)) + 1), histtype="step", log=True)
    axes[0].set_xlabel("CT (HU), body voxels")
    axes[1].set_xlabel("PET (SUV)")
    axes[0].legend(fontsize=6, ncol=2)
    return save_figure(fig, out_dir / "intensity_histograms")[0]


def write_reader_sweep(cohort: Cohort, out_dir: Path, patients: int = 6, progress: bool = True) -> pd.DataFrame | None:
    """Synthetic cohorts only: agreement and ceiling when label B's uptake threshold is swept (CSV + figure)."""
    synth = cohort.synthetic
    if not synth:
        return None
    out_dir.mkdir(parents=True, exist_ok=True)
    table = reader_sweep(synth["seed"], min(patients, synth["patients"]), synth["scale"], progress=progress)
    return save_reader_sweep(table, out_dir, table["parameter"].iloc[0], drawn_range())


def save_reader_sweep(table: pd.DataFrame, out_dir: Path, parameter: str,
                      drawn: tuple[float, float] | None) -> pd.DataFrame:
    """Write a reader sweep's table, its summary and its figure into ``out_dir``; return the summary."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table.to_csv(out_dir / READER_SWEEP, index=False)
    summary = sweep_summary(table)
    summary.to_csv(out_dir / READER_SWEEP_SUMMARY, index=False)
    save_figure(sweep_figure(summary, parameter, drawn), out_dir / READER_SWEEP_FIGURE)
    return summary
