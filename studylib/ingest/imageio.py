"""Reading and writing medical images (NIfTI or DICOM series) with clear errors and atomic writes."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .dicom import read_dicom_series
from .errors import ImageReadError
from .image_checks import check_ct_hu, check_nifti_length, check_volume, tag_source


def read_image(path: str | os.PathLike, patient_id: str = "?", modality: str | None = None) -> sitk.Image:
    """Read a NIfTI/MHA file or a DICOM series folder (PET converted to SUV) as a SimpleITK image."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"patient {patient_id}: file not found: {path}")
    if path.is_dir():
        return read_dicom_series(path, modality=modality, patient_id=patient_id)
    if path.name.endswith((".nii", ".nii.gz")):
        check_nifti_length(path, patient_id)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else "unreadable"
        raise ImageReadError(f"patient {patient_id}: cannot read {path} (unreadable or truncated: {first})") from err
    check_volume(image, patient_id, path)
    if (modality or "").upper() == "CT":
        check_ct_hu(image, patient_id, path)
    return tag_source(image, path, patient_id)


def write_image(image: sitk.Image, path: str | os.PathLike, compress: bool = True) -> None:
    """Write an image atomically: a temporary name in the same folder, then rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(path.suffixes)
    tmp = path.with_name(f".{path.name.removesuffix(suffix)}.{uuid.uuid4().hex[:8]}.tmp{suffix}")
    try:
        sitk.WriteImage(image, str(tmp), useCompression=compress)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def image_from_array(array: np.ndarray, reference: sitk.Image | dict) -> sitk.Image:
    """Wrap a (z, y, x) array as an image with the geometry of ``reference`` (an image or a grid dict)."""
    image = sitk.GetImageFromArray(array)
    if isinstance(reference, sitk.Image):
        image.CopyInformation(reference)
    else:
        image.SetOrigin(tuple(float(v) for v in reference["origin"]))
        image.SetSpacing(tuple(float(v) for v in reference["spacing"]))
        image.SetDirection(tuple(float(v) for v in reference.get("direction", np.eye(3).ravel())))
    return image


def same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-3) -> bool:
    """True when two images share size, spacing, origin and direction (within ``tol`` mm)."""
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-4)
    )
