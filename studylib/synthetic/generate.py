"""Generate patients (phantom -> scanners -> readers) and write a synthetic cohort folder."""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from ..ingest.cohort import COHORT_FILE, write_cohort_json
from ..ingest.imageio import ImageGeometry, image_from_array, write_image
from .literature import assumptions
from .phantom import PatientAnatomy, evaluate_on_grid, sample_anatomy
from .readers import (
    READING_ASSUMPTIONS,
    STYLES,
    ReaderDraw,
    ReaderView,
    draw_reader,
    read_patient,
    reader_names,
)
from .scanners import (
    SCALES,
    ct_grid,
    ct_noise_cell_voxels,
    misalignment_transform,
    pet_grid,
    scan_ct,
    scan_mri,
    scan_pet,
)

# Bumped whenever the same (seed, index, scale) generates other images or labels; recorded in cohort.json and in
# every patient's meta.json so that a cohort written by older code can be told apart. 2: readers start from
# image findings (hottest PET spot, Rose-criterion CT objects on the noisy CT) with independent boundary errors.
GENERATOR_VERSION = 2
MANIFEST = "manifest.csv"  # one row per generated patient: its drawn parameters, beside cohort.json


def generator_settings(cohort_spec: dict) -> dict:
    """The generator settings a synthetic cohort's ``cohort.json`` records (``generator_version`` 1 when unversioned;
    cohorts written before the reader count was named ``reader_count`` record it as ``readers``)."""
    record = cohort_spec.get("synthetic", {})
    return {"generator_version": 1, "reader_count": record.get("readers"), **record}


@dataclass
class PatientVolumes:
    """Images, labels and records of one generated patient."""

    ct: sitk.Image
    pet: sitk.Image
    labels: dict[str, sitk.Image]
    meta: dict
    view: ReaderView  # what the readers looked at (kept in memory for checks and reader sweeps)
    pet_clean_on_ct: np.ndarray  # the registered PET without noise, on the CT grid
    reads: dict[str, ReaderDraw]
    mri: sitk.Image | None = None


def _patient_stream(patient_id: str, seed: int, index: int, scale: str) -> tuple[np.random.Generator, PatientAnatomy]:
    rng = np.random.default_rng([seed, index])
    z_len = float(rng.uniform(200, 300) * SCALES[scale]["z"])
    return rng, sample_anatomy(rng, patient_id, z_len)


def patient_anatomy(seed: int, index: int, scale: str = "paper") -> PatientAnatomy:
    """The sampled anatomy of patient ``index`` without generating any image (cheap)."""
    return _patient_stream(f"P{index:03d}", seed, index, scale)[1]


def reader_rng(seed: int, index: int, reader_number: int) -> np.random.Generator:
    """Each reader's own random stream for one patient (independent of the images' stream)."""
    return np.random.default_rng([seed, index, 101, reader_number])


def read_all(view: ReaderView, seed: int, index: int, reader_count: int = 2,
             overrides: dict[str, dict] | None = None) -> tuple[dict[str, np.ndarray], dict[str, ReaderDraw]]:
    """Every reader's mask of one patient; ``overrides`` replaces drawn parameters per label (reader sweeps)."""
    masks, reads = {}, {}
    for number, (name, style) in enumerate(reader_names(reader_count), start=1):
        rng = reader_rng(seed, index, number)
        draw = draw_reader(STYLES[style], rng)
        for key, value in (overrides or {}).get(name, {}).items():
            setattr(draw, key, value)
        masks[name] = read_patient(view, draw, rng)
        reads[name] = draw
    return masks, reads


CT_FIELDS = ("hu", "hu_healthy", "body", "metal", "truth", "focus_id", "cortex", "marrow", "periosteal", "abscess",
             "sinus_tract", "inflammation")


def generate_patient(patient_id: str, seed: int, index: int, scale: str = "paper", with_mri: bool = False,
                     reader_count: int = 2) -> PatientVolumes:
    """Generate one synthetic patient deterministically from (seed, index)."""
    if scale not in SCALES:
        raise ValueError(f"unknown scale '{scale}' (choose from {sorted(SCALES)})")
    rng, an = _patient_stream(patient_id, seed, index, scale)
    grid = ct_grid(rng, SCALES[scale], an.z_len)
    an.z_len = grid.spacing[2] * (grid.size[2] - 1)
    maps = evaluate_on_grid(an, *grid.axes(), fields=CT_FIELDS)
    ct = scan_ct(an, grid, maps, rng)
    ct_img = image_from_array(ct.hu, ImageGeometry.of_array(ct.hu, grid.spacing, grid.origin))
    del maps["hu"], maps["hu_healthy"]

    focus_center = np.array(an.foci[0].destruction.center)
    tr = misalignment_transform(an, focus_center)
    pgrid = pet_grid(rng, grid)
    pet_img, pet_clean = scan_pet(an, pgrid, tr, rng)
    # what the readers see: the PET registered perfectly onto the CT grid
    on_ct = [sitk.GetArrayFromImage(sitk.Resample(img, ct_img, tr, sitk.sitkLinear, 0.0, sitk.sitkFloat32))
             for img in (pet_img, pet_clean)]
    maps["bone"] = maps.pop("cortex") | maps.pop("marrow")
    view = ReaderView(pet=on_ct[0], ct_hu=ct.hu, ct_healthy_hu=ct.healthy_hu, ct_noise_sd=an.ct_noise,
                      ct_noise_cell_voxels=ct_noise_cell_voxels(), ct_change_hu=ct.change_hu, maps=maps,
                      focus_grades=[f.grade for f in an.foci], spacing_zyx=grid.zyx_spacing)
    labels, reads = read_all(view, seed, index, reader_count)
    labels["truth"] = maps["truth"]
    label_imgs = {k: image_from_array(v.astype(np.uint8), ct_img) for k, v in labels.items()}
    mri_img = scan_mri(an, rng, grid) if with_mri else None
    pet = sitk.GetArrayViewFromImage(pet_img)
    foci_meta = [{
        "grade": f.grade, "suvmax_model": f.suvmax, "center_mm": list(f.destruction.center),
        "marrow_half_extent_mm": f.marrow_half_extent, "has_abscess": f.abscess is not None,
        "has_gas": bool(f.gas), "has_sequestrum": f.sequestrum is not None, "has_sinus_tract": f.sinus_tract is not None,
        "periosteal_reaction": f.periosteal,
    } for f in an.foci]
    voxel_ml = float(np.prod(grid.spacing)) / 1000
    meta = {
        "patient_id": patient_id, "generator_version": GENERATOR_VERSION, "seed": seed, "index": index,
        "scale": scale, "site": an.site,
        "affected_side": ["right", "left"][an.side], "implant": None if an.implant is None else an.implant.kind,
        "confounders": [c.kind for c in an.confounders], "foci": foci_meta,
        "lesion_center_mm": list(map(float, focus_center)),
        "pet_to_ct_truth": {"type": "Euler3DTransform", "convention": "maps CT physical points to PET physical points",
                            "center_mm": list(map(float, focus_center)), **an.misalignment,
                            "parameters": list(tr.GetParameters()), "fixed_parameters": list(tr.GetFixedParameters())},
        "ct_grid": grid.as_dict(), "pet_grid": pgrid.as_dict(),
        "pet_fwhm_mm": an.pet_fwhm, "pet_noise_cv": an.pet_noise, "ct_noise_hu": an.ct_noise,
        "hu": vars(an.hu), "suv": vars(an.suv), "ct_signs_hu": vars(an.signs),
        "readers": {k: d.as_dict() for k, d in reads.items()},
        "volumes_ml": {k: float(v.sum() * voxel_ml) for k, v in labels.items()},
        "lesion_slices": {**{k: int(v.any(axis=(1, 2)).sum()) for k, v in labels.items()},
                          "any_reader": int(np.any([labels[k].any(axis=(1, 2)) for k in reads], axis=0).sum())},
        "suvmax_observed": float(pet.max()),
    }
    return PatientVolumes(ct_img, pet_img, label_imgs, meta, view, on_ct[1], reads, mri_img)


def label_descriptions(reader_count: int) -> dict[str, str]:
    """What each label of a synthetic cohort means."""
    out = {name: STYLES[style].description if name in ("label_a", "label_b") else
           f"an additional simulated reader of the {style} style" for name, style in reader_names(reader_count)}
    out["truth"] = ("exact infected region of the phantom (destruction, involved marrow, sequestrum, abscess, "
                    "sinus tract)")
    return out


LABEL_DESCRIPTIONS = label_descriptions(2)


def write_patient(vol: PatientVolumes, folder: Path) -> None:
    """Write one patient into a temporary folder, then rename it into place (never half-written)."""
    tmp = folder.with_name(f".{folder.name}.partial")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        write_image(vol.ct, tmp / "ct.nii.gz")
        write_image(vol.pet, tmp / "pet.nii.gz")
        if vol.mri is not None:
            write_image(vol.mri, tmp / "mri.nii.gz")
        for name, img in vol.labels.items():
            write_image(img, tmp / f"{name}.nii.gz")
        (tmp / "meta.json").write_text(json.dumps(vol.meta, indent=2))
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _generate_and_write(task) -> tuple[dict, float]:
    pid, seed, index, scale, with_mri, reader_count, out = task
    start = time.perf_counter()
    vol = generate_patient(pid, seed, index, scale=scale, with_mri=with_mri, reader_count=reader_count)
    write_patient(vol, Path(out) / pid)
    return vol.meta, time.perf_counter() - start


def generate_cohort(
    out: str | os.PathLike,
    patients: int = 20,
    seed: int = 0,
    scale: str = "paper",
    with_mri: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    jobs: int | None = None,
    reader_count: int = 2,
) -> Path:
    """Generate a synthetic cohort folder (``cohort.json``, ``manifest.csv``, a folder per patient).

    Patients are independent (each has its own random streams from (seed, index)), so ``jobs`` processes
    generate them in parallel with identical results.
    """
    if not isinstance(patients, int) or patients < 1:
        raise ValueError(f"--patients must be a positive integer, got {patients!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"--seed must be a non-negative integer, got {seed!r}")
    if scale not in SCALES:
        raise ValueError(f"unknown scale '{scale}' (choose from {sorted(SCALES)})")
    names = [name for name, _ in reader_names(reader_count)]
    final = Path(out)
    check_replaceable(final, overwrite)
    # generated beside its destination and renamed into place at the end: an interrupted or concurrent generation
    # never leaves a half-written cohort where a study would read it
    partial = final.with_name(f".{final.name}.partial-{os.getpid()}")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    try:
        _write_cohort(partial, patients, seed, scale, with_mri, reader_count, names, progress, jobs)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    check_replaceable(final, overwrite)  # again: another process may have written it meanwhile
    if final.exists():
        shutil.rmtree(final)
    os.replace(partial, final)
    return final


def _write_cohort(out: Path, patients: int, seed: int, scale: str, with_mri: bool, reader_count: int, names: list[str],
                  progress: bool, jobs: int | None) -> None:
    """Generate every patient into ``out`` and write ``manifest.csv`` and ``cohort.json`` there."""
    (out / COHORT_MARKER).write_text("written by python -m studylib synth; `synth --overwrite` may delete this folder\n")
    from ..preprocessing.parallel import map_in_processes

    tasks = [(f"P{index:03d}", seed, index, scale, with_mri, reader_count, out) for index in range(patients)]
    jobs = max(1, min(jobs or os.cpu_count() or 1, patients))
    rows = []
    spec_patients = {}
    results = map_in_processes(_generate_and_write, tasks, jobs, "synthetic patients", progress)
    for (pid, *_), (m, seconds) in zip(tasks, results):
        rows.append({
            "patient_id": pid, "site": m["site"], "side": m["affected_side"], "implant": m["implant"] or "none",
            "confounders": ";".join(m["confounders"]) or "none", "n_foci": len(m["foci"]),
            "ct_size": "x".join(map(str, m["ct_grid"]["size"])),
            "ct_spacing_mm": "x".join(f"{v:.2f}" for v in m["ct_grid"]["spacing"]),
            "pet_spacing_mm": "x".join(f"{v:.2f}" for v in m["pet_grid"]["spacing"]),
            **{f"{k}_ml": round(v, 3) for k, v in m["volumes_ml"].items()},
            **{f"{k}_slices": v for k, v in m["lesion_slices"].items()},
            "suvmax": round(m["suvmax_observed"], 2), "seconds": round(seconds, 2),
        })
        entry = {"ct": f"{pid}/ct.nii.gz", "pet": f"{pid}/pet.nii.gz",
                 "labels": {k: f"{pid}/{k}.nii.gz" for k in (*names, "truth")}, "meta": f"{pid}/meta.json"}
        if with_mri:
            entry["mri"] = f"{pid}/mri.nii.gz"
        spec_patients[pid] = entry
    with open(out / MANIFEST, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    spec = {
        "name": f"synthetic-osteomyelitis-{scale}-seed{seed}",
        "description": "Synthetic lower-limb PET-CT osteomyelitis cohort generated by studylib.synthetic",
        "disease": "osteomyelitis (synthetic, lower-limb long bones)",
        "root": ".",
        "channels": {"ct": "CT in HU", "pet": "PET in SUV (body weight)", **({"mri": "STIR-like MRI"} if with_mri else {})},
        "labels": label_descriptions(reader_count),
        "train_labels": ["label_a", "label_b"][: max(1, min(reader_count, 2))],
        "synthetic": {"generator_version": GENERATOR_VERSION, "seed": seed, "patients": patients, "scale": scale,
                      "reader_count": reader_count,
                      "lesion_slices_total": {k: int(sum(r[f"{k}_slices"] for r in rows))
                                              for k in (*names, "any_reader", "truth")},
                      "assumptions": {**assumptions(), **READING_ASSUMPTIONS}},
        "patients": spec_patients,
    }
    write_cohort_json(out / COHORT_FILE, spec)


COHORT_MARKER = ".petct-synthetic-cohort"  # written into every generated cohort: what --overwrite may delete


def check_replaceable(folder: Path, overwrite: bool) -> None:
    """Refuse to replace a non-empty ``folder`` unless asked to, and never one that ``synth`` did not write."""
    if not folder.exists() or (folder.is_dir() and not any(folder.iterdir())):
        return
    if not overwrite:
        raise FileExistsError(f"{folder} exists and is not empty; pass --overwrite to replace it")
    if not (folder / COHORT_MARKER).is_file():
        raise FileExistsError(f"{folder} was not written by `synth` (no {COHORT_MARKER} in it): --overwrite deletes only "
                              "synthetic cohorts; choose another --out or remove the folder yourself")
