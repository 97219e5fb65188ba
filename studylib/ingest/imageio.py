"""Reading and writing medical images (NIfTI or DICOM series) with clear errors and atomic writes."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
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


IDENTITY_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class ImageGeometry:
    """An image grid in ITK order (x, y, z): the one geometry type of the CT grid, its cache and its predictions."""

    size: tuple[int, int, int]
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float]
    direction: tuple[float, ...] = IDENTITY_DIRECTION

    @classmethod
    def of_image(cls, image: sitk.Image) -> ImageGeometry:
        """The grid of a SimpleITK image."""
        return cls(tuple(image.GetSize()), tuple(image.GetSpacing()), tuple(image.GetOrigin()),
                   tuple(image.GetDirection()))

    @classmethod
    def of_array(cls, array: np.ndarray, spacing, origin) -> ImageGeometry:
        """An axis-aligned grid for a (z, y, x) array (the synthetic scanners' grids)."""
        return cls(tuple(int(n) for n in array.shape[::-1]), tuple(float(v) for v in spacing),
                   tuple(float(v) for v in origin))

    @classmethod
    def from_record(cls, record: dict) -> ImageGeometry:
        """From its JSON record (a cache's ``meta.json`` ``ct_geometry``)."""
        return cls(tuple(record["size"]), tuple(record["spacing"]), tuple(record["origin"]),
                   tuple(record.get("direction", IDENTITY_DIRECTION)))

    def as_record(self) -> dict:
        """JSON-friendly record."""
        return {"size": list(self.size), "spacing": list(self.spacing), "origin": list(self.origin),
                "direction": list(self.direction)}

    @property
    def shape_zyx(self) -> tuple[int, int, int]:
        """Array shape (z, y, x) of an image on this grid."""
        return self.size[2], self.size[1], self.size[0]

    @property
    def spacing_zyx(self) -> tuple[float, float, float]:
        """Spacing in array (z, y, x) order, as the metrics take it."""
        return self.spacing[2], self.spacing[1], self.spacing[0]


def image_from_array(array: np.ndarray, reference: sitk.Image | ImageGeometry) -> sitk.Image:
    """Wrap a (z, y, x) array as an image with the grid of ``reference`` (an image or an ``ImageGeometry``)."""
    if isinstance(reference, ImageGeometry) and array.shape != reference.shape_zyx:
        raise ValueError(f"array {array.shape} does not match the grid {reference.shape_zyx}")
    image = sitk.GetImageFromArray(array)
    if isinstance(reference, sitk.Image):
        image.CopyInformation(reference)
    else:
        image.SetOrigin(tuple(float(v) for v in reference.origin))
        image.SetSpacing(tuple(float(v) for v in reference.spacing))
        image.SetDirection(tuple(float(v) for v in reference.direction))
    return image


def same_grid(a: sitk.Image, b: sitk.Image, tol: float = 1e-3) -> bool:
    """True when two images share size, spacing, origin and direction (within ``tol`` mm)."""
    return (
        a.GetSize() == b.GetSize()
        and np.allclose(a.GetSpacing(), b.GetSpacing(), atol=tol)
        and np.allclose(a.GetOrigin(), b.GetOrigin(), atol=tol)
        and np.allclose(a.GetDirection(), b.GetDirection(), atol=1e-4)
    )
