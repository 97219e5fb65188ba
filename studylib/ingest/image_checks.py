"""What an image read here must be (a 3D volume of one value per voxel, finite, a CT in HU, a binary mask, a whole
NIfTI file), and where it came from (its patient and file, kept in the image's metadata)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import ImageReadError

# Where an image came from, kept in the SimpleITK image's own metadata dictionary, so that a label read against it
# (a SEG, an RTSTRUCT) can be checked against it and its errors can name the patient and both files. Filters and
# CopyInformation do not carry these keys on, and ITK's NIfTI writer does not write them.
SOURCE_KEY = "studylib|source"
PATIENT_KEY = "studylib|patient"
FRAME_OF_REFERENCE_KEY = "0020|0052"  # DICOM series only: a NIfTI file carries no UIDs
STUDY_KEY = "0020|000d"
SERIES_KEY = "0020|000e"

# A CT in HU of a body holds some air (about -1000 HU: around the body, in the lungs or bowel; every real crop of
# 5 cm around a limb tumour in ../shared/realdata reaches -1000). A lowest value above -500 HU means no air at all,
# which is what a CT in stored units looks like (0..4095 with air near 0: RescaleSlope/Intercept missing or not
# applied); the body mask (above -500 HU) would then be the whole volume.
CT_AIR_CEILING_HU = -500.0


def tag_source(image: sitk.Image, path: str | os.PathLike, patient_id: str) -> sitk.Image:
    """``image`` with the file it was read from and its patient recorded in its metadata (see ``SOURCE_KEY``)."""
    image.SetMetaData(SOURCE_KEY, str(path))
    image.SetMetaData(PATIENT_KEY, str(patient_id))
    return image


def image_tag(image: sitk.Image, key: str) -> str:
    """One metadata value of ``image`` (a source key or a DICOM UID), '' when absent."""
    return image.GetMetaData(key).strip() if image.HasMetaDataKey(key) else ""


def image_source(image: sitk.Image) -> tuple[str, str]:
    """(patient, file or folder) an image was read from; '?' and 'the given image' when it was not read here."""
    return image_tag(image, PATIENT_KEY) or "?", image_tag(image, SOURCE_KEY) or "the given image"


def check_volume(image: sitk.Image, patient_id: str, path: str | os.PathLike) -> None:
    """Refuse anything but a 3D image of one value per voxel (a 4D series, a 2D slice, an RGB or vector image)."""
    # SimpleITK already reads a 4D file whose 4th dimension is 1 as 3D, so only a real series of volumes gets here
    if image.GetDimension() != 3:
        size = "x".join(str(n) for n in image.GetSize())
        raise ImageReadError(f"patient {patient_id}: {path} is a {image.GetDimension()}D image ({size}); "
                             "a 3D volume is expected")
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise ImageReadError(f"patient {patient_id}: {path} has {image.GetNumberOfComponentsPerPixel()} values per "
                             "voxel (an RGB or vector image); one value per voxel is expected")


def check_ct_hu(image: sitk.Image, patient_id: str, path: str | os.PathLike) -> None:
    """Refuse a CT that is not in HU: no voxel at or below ``CT_AIR_CEILING_HU`` (no air at all)."""
    lowest = float(np.nanmin(sitk.GetArrayViewFromImage(image)))
    if lowest > CT_AIR_CEILING_HU:
        raise ImageReadError(f"patient {patient_id}: CT {path} is not in HU: its lowest value is {lowest:g}, above "
                             f"{CT_AIR_CEILING_HU:g} HU (no air at all); stored units without RescaleSlope/"
                             "RescaleIntercept applied?")


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
