"""One patient on its CT grid (paper section 4.2): PET registered and resampled onto the CT, labels read there,
every channel normalised as the profile says."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import SimpleITK as sitk

from ..ingest.cohort import split_label_source
from ..ingest.errors import ImageReadError
from ..ingest.image_checks import check_binary_mask, check_finite
from ..ingest.imageio import image_from_array, read_image, same_grid
from .intensity import (
    BONE_WINDOW_LEVEL_HU,
    BONE_WINDOW_WIDTH_HU,
    body_mask,
    bone_window,
    min_max,
    normalise_pet,
    window,
    zscore,
)
from .registration import RegistrationError, RegistrationResult, register_pet_to_ct, resample_to


@dataclass
class PreprocessConfig:
    """How volumes become network inputs (defaults: the paper)."""

    image_size: int = 224
    ct_width: float = BONE_WINDOW_WIDTH_HU
    ct_level: float = BONE_WINDOW_LEVEL_HU
    ct_norm: str = "window_minmax"
    pet_norm: str = "minmax"
    pet_clip_suv: float = 10.0
    mri_norm: str = "minmax"
    registration: str = "rigid"
    fit: str = "pad"  # non-square slices: "pad" to a square (aspect kept) or "stretch"

    def cache_key(self) -> dict:
        """Parameters that change the cached slices."""
        return asdict(self)


@dataclass
class PatientOnCT:
    """One patient with every channel and label on the CT grid (arrays z, y, x)."""

    patient_id: str
    ct_image: sitk.Image
    channels: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    registration: RegistrationResult


def _read_label(source: str, ct: sitk.Image, pet: sitk.Image, transform: sitk.Transform, patient_id: str,
                name: str) -> np.ndarray:
    """A label as a uint8 array on the CT grid (a mask file or SEG segment on the CT or PET grid, an RTSTRUCT ROI)."""
    form, structure, path = split_label_source(source)
    if form == "rtstruct":
        from ..ingest.dicom import rasterise_rtstruct

        return rasterise_rtstruct(path, ct, structure)
    if form == "seg":
        from ..ingest.seg import read_seg_segment

        array, grid = read_seg_segment(path, structure, (ct, pet))
        if grid == 0:
            return array
        mask = image_from_array(array, pet)
        return sitk.GetArrayFromImage(resample_to(mask, ct, transform, is_mask=True))
    mask = check_binary_mask(read_image(source, patient_id), patient_id, source)
    if same_grid(mask, ct):
        return sitk.GetArrayFromImage(mask)
    if same_grid(mask, pet):
        return sitk.GetArrayFromImage(resample_to(mask, ct, transform, is_mask=True))
    raise ImageReadError(f"patient {patient_id}: label '{name}' ({source}) is on neither the CT nor the PET grid")


def load_patient_on_ct(record, registration: str = "rigid", seed: int = 0,
                       labels: list[str] | None = None) -> PatientOnCT:
    """Read CT, PET (+MRI) and labels, register PET to CT and resample everything onto the CT grid."""
    pid = record.patient_id
    ct = read_image(record.images["ct"], pid, "CT")
    check_finite(ct, pid, record.images["ct"])
    pet = read_image(record.images["pet"], pid, "PT")
    pet_array = check_finite(pet, pid, record.images["pet"])
    if float(pet_array.max()) - float(pet_array.min()) <= 0:
        raise ImageReadError(f"patient {pid}: PET {record.images['pet']} is constant ({float(pet_array.max()):g})")
    try:
        reg = register_pet_to_ct(ct, pet, mode=registration, seed=seed)
    except RegistrationError as err:
        raise RegistrationError(f"patient {pid}: PET {record.images['pet']} onto CT {record.images['ct']}: {err}") from err
    channels = {
        "ct": sitk.GetArrayFromImage(ct).astype(np.float32),
        "pet": sitk.GetArrayFromImage(resample_to(pet, ct, reg.transform)),
    }
    if "mri" in record.images:
        mri = read_image(record.images["mri"], pid, "MR")
        check_finite(mri, pid, record.images["mri"])
        # MRI is assumed registered to CT by its scanner frame; a rigid MI step could be added the same way
        channels["mri"] = sitk.GetArrayFromImage(resample_to(mri, ct))
    wanted = labels if labels is not None else list(record.labels)
    label_arrays = {name: _read_label(record.label_path(name), ct, pet, reg.transform, pid, name) for name in wanted}
    return PatientOnCT(pid, ct, channels, label_arrays, reg)


def normalise_channels(patient: PatientOnCT, config: PreprocessConfig,
                       body: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Each channel scaled as configured (CT bone window + min-max, PET min-max per volume by default)."""
    ct = patient.channels["ct"]
    body = body_mask(ct) if body is None else body
    out = {}
    if config.ct_norm == "window_minmax":
        out["ct"] = bone_window(ct, config.ct_width, config.ct_level)
    elif config.ct_norm == "zscore":
        out["ct"] = zscore(window(ct, config.ct_width, config.ct_level), body)
    else:
        raise ValueError(f"unknown CT normalisation '{config.ct_norm}'")
    out["pet"] = normalise_pet(patient.channels["pet"], config.pet_norm, config.pet_clip_suv, body)
    if "mri" in patient.channels:
        out["mri"] = min_max(patient.channels["mri"]) if config.mri_norm == "minmax" else zscore(patient.channels["mri"], body)
    return out




def pet_on_ct(record, registration: dict) -> tuple[sitk.Image, sitk.Image]:
    """(CT, PET resampled onto the CT grid) of a patient with the registration its cache recorded (``meta.json``):
    the PET our models saw, in SUV, before normalisation."""
    from .registration import transform_from_record

    pid = record.patient_id
    ct = read_image(record.images["ct"], pid, "CT")
    pet = read_image(record.images["pet"], pid, "PT")
    return ct, resample_to(pet, ct, transform_from_record(registration))
