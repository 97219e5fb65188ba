"""Paper preprocessing (section 4.2): PET onto the CT grid, bone window, min-max, axial slices, 2D cache."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from ..ingest.cohort import split_label_source
from ..ingest.errors import ImageReadError
from ..ingest.image_checks import check_binary_mask, check_finite
from ..ingest.imageio import image_from_array, read_image, same_grid
from .registration import RegistrationError, RegistrationResult, register_pet_to_ct, resample_to

EPSILON = 1e-8


def window(hu: np.ndarray, width: float = 1500.0, level: float = 350.0) -> np.ndarray:
    """Clip HU to [level - width/2, level + width/2] (paper eq. 7)."""
    return np.clip(hu, level - width / 2, level + width / 2)


def min_max(volume: np.ndarray, eps: float = EPSILON) -> np.ndarray:
    """Scale a volume to [0, 1] by its own minimum and maximum (paper eq. 8)."""
    volume = volume.astype(np.float32, copy=False)
    lo, hi = float(volume.min()), float(volume.max())
    return (volume - lo) / (hi - lo + eps)


def bone_window(hu: np.ndarray, width: float = 1500.0, level: float = 350.0) -> np.ndarray:
    """CT bone window then min-max to [0, 1] (paper eqs. 7-8)."""
    return min_max(window(hu, width, level))


def zscore(volume: np.ndarray, mask: np.ndarray | None = None, eps: float = EPSILON) -> np.ndarray:
    """Zero mean, unit variance, statistics taken inside ``mask`` (the body) when given."""
    values = volume[mask] if mask is not None and mask.any() else volume
    return ((volume - values.mean()) / (values.std() + eps)).astype(np.float32)


def normalise_pet(suv: np.ndarray, method: str = "minmax", clip_suv: float = 10.0,
                  body: np.ndarray | None = None) -> np.ndarray:
    """PET intensity normalisation: 'minmax' per volume (paper), 'clip' SUV to [0, clip_suv], or 'zscore'."""
    if method == "minmax":
        return min_max(suv)
    if method == "clip":
        return (np.clip(suv, 0, clip_suv) / clip_suv).astype(np.float32)
    if method == "zscore":
        return zscore(suv, body)
    raise ValueError(f"unknown PET normalisation '{method}' (minmax, clip, zscore)")


def body_mask(ct_hu: np.ndarray, threshold: float = -500.0) -> np.ndarray:
    """Voxels inside the patient: above ``threshold`` HU, holes filled slice by slice."""
    from scipy import ndimage

    mask = ct_hu > threshold
    return np.stack([ndimage.binary_fill_holes(s) for s in mask])


@dataclass
class PreprocessConfig:
    """How volumes become network inputs (defaults: the paper)."""

    image_size: int = 224
    ct_width: float = 1500.0
    ct_level: float = 350.0
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
    pet_native: sitk.Image | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        """Voxel spacing in (z, y, x) order, mm."""
        return tuple(self.ct_image.GetSpacing()[::-1])


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


def load_patient_on_ct(record, registration: str = "rigid", seed: int = 0, labels: list[str] | None = None,
                       keep_pet_native: bool = False) -> PatientOnCT:
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
    return PatientOnCT(pid, ct, channels, label_arrays, reg, pet if keep_pet_native else None)


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


def square_padding(height: int, width: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) zero padding that makes a height x width slice square, centred."""
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    return top, side - height - top, left, side - width - left


def resize_slices(volume: np.ndarray, size: int, is_mask: bool = False, fit: str = "pad") -> np.ndarray:
    """Resize axial slices (z, [C,] H, W) to size x size: bilinear (antialiased) images, nearest masks.

    ``fit="pad"`` first pads a non-square slice to a square with zeros (the normalised background), so
    anatomy keeps its aspect ratio; ``"stretch"`` resizes each axis on its own.
    """
    squeeze = volume.ndim == 3
    tensor = torch.from_numpy(np.ascontiguousarray(volume[:, None] if squeeze else volume)).float()
    if fit == "pad" and tensor.shape[-2] != tensor.shape[-1]:
        top, bottom, left, right = square_padding(*tensor.shape[-2:])
        tensor = F.pad(tensor, (left, right, top, bottom))
    elif fit not in ("pad", "stretch"):
        raise ValueError(f"preprocess.fit must be 'pad' or 'stretch', got {fit!r}")
    if tuple(tensor.shape[-2:]) == (size, size):
        out = tensor
    elif is_mask:
        out = F.interpolate(tensor, size=(size, size), mode="nearest-exact")
    else:
        antialias = size < tensor.shape[-1]
        out = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)
    out = out[:, 0] if squeeze else out
    return out.numpy().astype(np.uint8 if is_mask else np.float32)


def restore_slices(probabilities: torch.Tensor | np.ndarray, shape_hw: tuple[int, int], fit: str = "pad") -> np.ndarray:
    """Map (z, S, S) probabilities back to the CT slice size (z, H, W): the inverse of ``resize_slices``."""
    tensor = torch.as_tensor(probabilities).float()[:, None]
    height, width = shape_hw
    if fit == "pad" and height != width:
        top, _, left, _ = square_padding(height, width)
        side = max(height, width)
        if tuple(tensor.shape[-2:]) != (side, side):
            tensor = F.interpolate(tensor, size=(side, side), mode="bilinear", align_corners=False)
        return tensor[:, 0, top:top + height, left:left + width].numpy()
    if tuple(tensor.shape[-2:]) != tuple(shape_hw):
        tensor = F.interpolate(tensor, size=tuple(shape_hw), mode="bilinear", align_corners=False)
    return tensor[:, 0].numpy()

