"""Reading and writing medical images (NIfTI or DICOM series) with clear errors and atomic writes."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import numpy as np
import SimpleITK as sitk


class ImageReadError(ValueError):
    """An image could not be read or holds invalid values; the message names patient and file."""


def read_image(path: str | os.PathLike, patient_id: str = "?", modality: str | None = None) -> sitk.Image:
    """Read a NIfTI/MHA file or a DICOM series folder (PET converted to SUV) as a SimpleITK image."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"patient {patient_id}: file not found: {path}")
    if path.is_dir():
        from .dicom import read_dicom_series

        return read_dicom_series(path, modality=modality, patient_id=patient_id)
    if path.name.endswith((".nii", ".nii.gz")):
        check_nifti_length(path, patient_id)
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as err:
        first = str(err).strip().splitlines()[-1] if str(err).strip() else "unreadable"
        raise ImageReadError(f"patient {patient_id}: cannot read {path} (unreadable or truncated: {first})") from err
    return image


def nifti_data_bytes(header: bytes) -> tuple[int, int]:
    """(voxel data offset, voxel data length in bytes) that a NIfTI-1 header announces."""
    endian = "<" if np.frombuffer(header[0:4], "<i4")[0] == 348 else ">"
    dims = np.frombuffer(header[40:56], f"{endian}i2")
    bitpix = int(np.frombuffer(header[72:74], f"{endian}i2")[0])
    offset = int(np.frombuffer(header[108:112], f"{endian}f4")[0])
    n = int(np.prod([max(int(d), 1) for d in dims[1:1 + max(int(dims[0]), 1)]]))
    return max(offset, 352), n * bitpix // 8


def check_nifti_length(path: str | os.PathLike, patient_id: str = "?") -> None:
    """Refuse a NIfTI file cut short inside its data (ITK would pad the missing voxels with zeros)."""
    import gzip
    import zlib

    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            header = fh.read(348)
            if len(header) < 348:
                raise ImageReadError(f"patient {patient_id}: {path} is truncated (no complete NIfTI header)")
            if np.frombuffer(header[0:4], "<i4")[0] not in (348, 0x5C010000):
                return  # not NIfTI-1 (NIfTI-2 or another format): ITK checks it
            offset, expected = nifti_data_bytes(header)
            fh.seek(offset)
            got = 0
            while chunk := fh.read(1 << 22):
                got += len(chunk)
    except (EOFError, OSError, zlib.error) as err:
        raise ImageReadError(f"patient {patient_id}: {path} is truncated or corrupt ({err})") from err
    if got < expected:
        raise ImageReadError(f"patient {patient_id}: {path} is truncated: the header announces {expected} bytes of "
                             f"voxel data, the file holds {got}")


def nifti_nonfinite_count(path: str | os.PathLike) -> int:
    """NaN/inf voxels stored in a float NIfTI-1 file.

    ITK's NIfTI reader silently turns NaN into 0, so the file's own bytes are checked.
    """
    import gzip

    path = Path(path)
    opener = gzip.open if path.name.endswith(".gz") else open
    with opener(path, "rb") as fh:
        header = fh.read(348)
        if len(header) < 348:
            return 0
        endian = "<" if np.frombuffer(header[0:4], "<i4")[0] == 348 else ">"
        datatype = int(np.frombuffer(header[70:72], f"{endian}i2")[0])
        dtype = {16: "f4", 64: "f8"}.get(datatype)
        if dtype is None:
            return 0
        offset = int(np.frombuffer(header[108:112], f"{endian}f4")[0])
        fh.read(max(offset - 348, 0))
        data = np.frombuffer(fh.read(), f"{endian}{dtype}")
    return int((~np.isfinite(data)).sum())


def check_finite(image: sitk.Image, patient_id: str, path: str | os.PathLike) -> np.ndarray:
    """Return the image's array, refusing NaN or infinite voxels (checked in the file itself for NIfTI)."""
    array = sitk.GetArrayViewFromImage(image)
    bad = 0
    if np.issubdtype(array.dtype, np.floating):
        bad = int((~np.isfinite(array)).sum())
        if not bad and str(path).endswith((".nii", ".nii.gz")):
            bad = nifti_nonfinite_count(path)
    if bad:
        raise ImageReadError(f"patient {patient_id}: {path} has {bad} NaN/inf voxels")
    return array


def check_binary_mask(image: sitk.Image, patient_id: str, path: str | os.PathLike) -> sitk.Image:
    """Refuse masks with values other than 0/1 and return the mask as uint8."""
    array = sitk.GetArrayViewFromImage(image)
    values = np.unique(array)
    if not np.isin(values, [0, 1]).all():
        shown = ", ".join(f"{v:g}" for v in values[:6])
        raise ImageReadError(f"patient {patient_id}: mask {path} is not binary (values {shown}...)")
    return sitk.Cast(image, sitk.sitkUInt8)


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
