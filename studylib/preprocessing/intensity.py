"""Intensity math on arrays: the CT window, min-max, z-score, PET normalisation, the body mask (paper eqs. 7-8)."""

from __future__ import annotations

import numpy as np

from ..ingest.image_checks import CT_AIR_CEILING_HU

EPSILON = 1e-8
BONE_WINDOW_WIDTH_HU = 1500.0  # the paper's CT window (section 4.1, eq. 7): W1500/L350
BONE_WINDOW_LEVEL_HU = 350.0


def window(hu: np.ndarray, width: float = BONE_WINDOW_WIDTH_HU, level: float = BONE_WINDOW_LEVEL_HU) -> np.ndarray:
    """Clip HU to [level - width/2, level + width/2] (paper eq. 7)."""
    return np.clip(hu, level - width / 2, level + width / 2)


def min_max(volume: np.ndarray, eps: float = EPSILON) -> np.ndarray:
    """Scale a volume to [0, 1] by its own minimum and maximum (paper eq. 8)."""
    volume = volume.astype(np.float32, copy=False)
    lo, hi = float(volume.min()), float(volume.max())
    return (volume - lo) / (hi - lo + eps)


def bone_window(hu: np.ndarray, width: float = BONE_WINDOW_WIDTH_HU, level: float = BONE_WINDOW_LEVEL_HU) -> np.ndarray:
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


def body_mask(ct_hu: np.ndarray, threshold: float = CT_AIR_CEILING_HU) -> np.ndarray:
    """Voxels inside the patient: above ``threshold`` HU (not air), holes filled slice by slice."""
    from scipy import ndimage

    mask = ct_hu > threshold
    return np.stack([ndimage.binary_fill_holes(s) for s in mask])
