"""``export nnunet``: a prepared results folder as nnU-Net v2 raw datasets, one per training target, on the study's
folds, so that nnU-Net and our U-Net see the same patients, the same CT-grid images and the same labels.

Layout (nnU-Net v2's ``nnUNet_raw``)::

    <out>/images/<patient>_0000.nii.gz        CT (a link to the cohort's NIfTI CT, else written once)
    <out>/images/<patient>_0001.nii.gz        PET in SUV on the CT grid, registered as our cache recorded
    <out>/Dataset<id>_<name>/imagesTr/        links to <out>/images, every patient (nnU-Net's folds choose)
    <out>/Dataset<id>_<name>/labelsTr/        the target's mask on the CT grid, from the cache (what we score on)
    <out>/Dataset<id>_<name>/imagesTs/fold<k>/ links to fold k's test patients, predicted separately
    <out>/Dataset<id>_<name>/dataset.json     channel names (the normalisation nnU-Net applies) and labels
    <out>/Dataset<id>_<name>/splits_final.json  ``plans.splits.nnunet_splits``: train = ours, val = our validation

Channel normalisation (nnU-Net picks it from the channel name in ``dataset.json``): CT is named "CT", nnU-Net's
CT normalisation (clip to the 0.5-99.5 percentiles of the training set's foreground intensities, then z-score with
their mean and SD: one scale for every image, as HU have one meaning). PET is named "CT" as well by default
(``PET_NORMALISATION``): SUV, like HU, is a quantitative unit with one meaning across patients, and nnU-Net's own
conversion of the AutoPET II PET/CT dataset (``Dataset221_AutoPETII_2023.py``) names its SUV channel "CT" for this
reason. Its maintainers' answers differ by case: a PET channel with any other name is z-scored per image with the
image's own mean and SD ("PET image will be handled like any other non-CT image", MIC-DKFZ/nnUNet#464), which
throws away the absolute uptake level a reader thresholds on; and the AutoPET II choice was questioned because the
0.5-99.5 percentile clip might cut the hottest SUVs (MIC-DKFZ/nnUNet#1872, #2985). Here the percentiles are those
of the lesion voxels (nnU-Net's foreground), so the clip caps SUV at the 99.5th percentile of lesion uptake, above
which a voxel is lesion anyway. ``--pet-normalization zscore`` names the channel "PET" (per-image z-score) instead.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..ingest.cohort import load_cohort
from ..ingest.imageio import image_from_array, write_image
from ..ingest.modalities import MODALITY_CHANNELS
from ..plans.profiles import load_profile
from ..plans.results_folder import CACHE, NNUNET_SPLITS, PROFILE_SNAPSHOT, SPLITS
from ..plans.runs import read_plan
from ..plans.splits import check_nnunet_splits, check_splits, nnunet_splits
from ..preprocessing.cache import load_cached, load_native
from ..preprocessing.patient_on_ct import pet_on_ct

FILE_ENDING = ".nii.gz"
# nnU-Net's channel names, which choose its normalisation: "CT" -> CTNormalization; any other name (here "PET")
# -> ZScoreNormalization of each image by its own mean and SD.
PET_NORMALISATION = {"CT": "CT", "zscore": "PET"}
CHANNEL_FILE_INDEX = {"ct": 0, "pet": 1}  # <patient>_0000 is CT, _0001 PET, whatever the modality exported
DEFAULT_DATASET_ID = 500


def dataset_name(dataset_id: int, modality: str, target: str) -> str:
    """nnU-Net's folder name of the dataset for one training target and input: ``Dataset501_petct_dual_label_a``."""
    if not 1 <= dataset_id <= 999:
        raise ValueError(f"nnU-Net dataset ids have three digits (1-999), got {dataset_id}")
    return f"Dataset{dataset_id:03d}_petct_{modality}_{target}"


def channel_names(modality: str, pet_normalisation: str) -> dict[str, str]:
    """``dataset.json``'s channel_names for an input: CT as "CT", PET as ``PET_NORMALISATION[pet_normalisation]``."""
    names = {"ct": "CT", "pet": PET_NORMALISATION[pet_normalisation]}
    return {str(i): names[channel] for i, channel in enumerate(MODALITY_CHANNELS[modality])}


def link(target: Path, link_path: Path, relative: bool = True) -> None:
    """A symbolic link ``link_path`` -> ``target``, relative (inside the export) or absolute (to the cohort); a
    copy where the file system has no links."""
    link_path.parent.mkdir(parents=True, exist_ok=True)
    if link_path.is_symlink() or link_path.exists():
        link_path.unlink()
    try:
        link_path.symlink_to(os.path.relpath(target, link_path.parent) if relative else target)
    except OSError:
        shutil.copyfile(target, link_path)


def export_images(results: Path, out: Path, patient_ids: list[str]) -> dict[str, dict[str, Path]]:
    """Each patient's CT and CT-grid PET under ``out/images`` (written once; a NIfTI CT is linked, not copied)."""
    plan = read_plan(results)
    cohort = load_cohort(results / plan["cohort"])
    images = out / "images"
    paths = {}
    for pid in patient_ids:
        record = cohort.patient(pid)
        files = {c: images / f"{pid}_{i:04d}{FILE_ENDING}" for c, i in CHANNEL_FILE_INDEX.items()}
        if not all(f.exists() for f in files.values()):
            ct, pet = pet_on_ct(record, load_cached(results / CACHE, pid).meta["registration"])
            source = Path(record.images["ct"])
            if source.is_file() and source.name.endswith(FILE_ENDING):
                link(source.resolve(), files["ct"], relative=False)
            else:  # a DICOM series or another format: written once as NIfTI
                write_image(ct, files["ct"])
            write_image(pet, files["pet"])
        paths[pid] = files
    return paths


def export_dataset(results: Path, folder: Path, target: str, modality: str, pet_normalisation: str,
                   images: dict[str, dict[str, Path]], splits: list[dict[str, list[str]]]) -> Path:
    """One nnU-Net raw dataset: every patient's images and ``target`` mask, fold test sets, dataset.json, splits."""
    channels = MODALITY_CHANNELS[modality]
    for pid, files in images.items():
        for i, channel in enumerate(channels):
            link(files[channel], folder / "imagesTr" / f"{pid}_{i:04d}{FILE_ENDING}")
        labels, _ = load_native(results / CACHE, pid)
        if target not in labels:
            raise ValueError(f"patient {pid}: no label '{target}' in its cache ({', '.join(sorted(labels))})")
        geometry = load_cached(results / CACHE, pid).geometry
        write_image(image_from_array(labels[target].astype(np.uint8), geometry), folder / "labelsTr" / f"{pid}{FILE_ENDING}")
    for k, fold in enumerate(splits):
        for pid in fold["test"]:
            for i, channel in enumerate(channels):
                link(images[pid][channel], folder / "imagesTs" / f"fold{k}" / f"{pid}_{i:04d}{FILE_ENDING}")
    nnunet = nnunet_splits(splits)
    check_nnunet_splits(nnunet, splits)
    (folder / NNUNET_SPLITS).write_text(json.dumps(nnunet, indent=1))
    dataset = {"channel_names": channel_names(modality, pet_normalisation), "labels": {"background": 0, target: 1},
               "numTraining": len(images), "file_ending": FILE_ENDING, "name": folder.name,
               "description": f"petct-study {results.name}: {modality} input, training target {target}, on the CT "
                              f"grid; folds in {NNUNET_SPLITS} (val = our validation patients, never our test "
                              "patients; those are in imagesTs/fold<k>)",
               "reference": "petct-study export nnunet",
               "pet_normalization": {"choice": pet_normalisation, "reason": "studylib/pipeline/nnunet_export.py"}}
    (folder / "dataset.json").write_text(json.dumps(dataset, indent=1))
    return folder


def export_nnunet(results: str | os.PathLike, out: str | os.PathLike, modality: str = "dual",
                  dataset_id: int = DEFAULT_DATASET_ID, pet_normalisation: str = "CT") -> list[Path]:
    """Every training target of a prepared results folder as an nnU-Net v2 raw dataset under ``out``
    (``Dataset<dataset_id + i>_...`` for the i-th target, from 1)."""
    results, out = Path(results).resolve(), Path(out).resolve()
    if modality not in MODALITY_CHANNELS:
        raise ValueError(f"unknown modality '{modality}' (one of {', '.join(MODALITY_CHANNELS)})")
    if pet_normalisation not in PET_NORMALISATION:
        raise ValueError(f"unknown PET normalisation '{pet_normalisation}' (one of {', '.join(PET_NORMALISATION)})")
    plan = read_plan(results)
    profile = load_profile(results / PROFILE_SNAPSHOT)
    cohort = load_cohort(results / plan["cohort"])
    splits = json.loads((results / SPLITS).read_text())
    check_splits(splits, cohort.patient_ids)
    names = {target: dataset_name(dataset_id + i, modality, target)  # a bad id refused before anything is written
             for i, target in enumerate(profile.mask_targets(cohort), start=1)}
    images = export_images(results, out, sorted(cohort.patient_ids))
    return [export_dataset(results, out / name, target, modality, pet_normalisation, images, splits)
            for target, name in names.items()]
