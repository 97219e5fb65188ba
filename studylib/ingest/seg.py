"""DICOM SEG in and out (highdicom): a label as one segment of a SEG, a prediction as a SEG that references its CT.

Reading places each frame of the segment on the grid whose planes it lies on (the CT's, or the PET's, which the
caller then resamples), by the frame's position in patient coordinates; nothing is assumed about frame order.
A segment is named by number (``#3``), by its label when only one segment has it, or as ``LABEL*`` for every
segment of that label as one mask (``dicom.select_structures``). A SEG is checked against the DICOM series it lies
on: same frame of reference, and that series among those it references.
Writing copies patient and study identity only from the source CT series (highdicom does, from the datasets
given); nothing here invents or logs an identity.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .dicom import select_structures
from .errors import ImageReadError
from .image_checks import FRAME_OF_REFERENCE_KEY, SERIES_KEY, image_source, image_tag

SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"

# A frame lies on an image plane when its first pixel is within this fraction of a voxel of the plane's first
# voxel (and its last pixel too, for the spacing). Real writers round ImagePositionPatient to 6-7 significant
# digits (a 16-character DS), which puts frames up to ~0.02 voxel off the image's own slice positions; 0.1 voxel
# accepts that and is still 5 times smaller than the half voxel that would move a frame to another slice.
POSITION_TOLERANCE_VOXELS = 0.1


def _open_seg(path: str | os.PathLike):
    """The SEG at ``path`` as a highdicom Segmentation; a clear error naming the file otherwise."""
    import highdicom as hd
    import pydicom

    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"DICOM SEG not found: {path}")
    try:
        ds = pydicom.dcmread(str(path))
    except Exception as err:  # pydicom raises InvalidDicomError and several others for non-DICOM bytes
        raise ImageReadError(f"{path}: not a readable DICOM file ({type(err).__name__}: {err})") from err
    if str(ds.get("SOPClassUID", "")) != SEG_SOP_CLASS:
        raise ImageReadError(f"{path}: not a DICOM SEG (SOP class {ds.get('SOPClassUID', 'missing')}, "
                             f"modality {ds.get('Modality', 'missing')})")
    try:
        return hd.seg.Segmentation.from_dataset(ds)
    except Exception as err:  # highdicom validates the SEG modules
        raise ImageReadError(f"{path}: a corrupt DICOM SEG ({type(err).__name__}: {err})") from err


def segment_labels(path: str | os.PathLike) -> dict[str, int]:
    """Segment label -> segment number of a SEG whose labels are unique (several segments of one label: an error)."""
    names = segments(path)
    numbers: dict[str, list[int]] = {}
    for number, label in sorted(names.items()):
        numbers.setdefault(label, []).append(number)
    repeated = {label: found for label, found in numbers.items() if len(found) > 1}
    if repeated:
        raise ImageReadError(f"{path}: a label names several segments ({repeated}); use segments() or '#N'")
    return {label: found[0] for label, found in numbers.items()}


def segments(path: str | os.PathLike) -> dict[int, str]:
    """Segment number -> segment label of a SEG (labels may repeat)."""
    return _segment_names(_open_seg(path))


def _segment_names(seg) -> dict[int, str]:
    return {int(item.SegmentNumber): str(item.SegmentLabel) for item in seg.SegmentSequence}


def _frame_index(position: Sequence[float], grid: sitk.Image, orientation: np.ndarray, spacing: tuple[float, float],
                 shape: tuple[int, int]) -> int | None:
    """The slice of ``grid`` a frame lies on (its first pixel on the grid's first row and column), else None.

    "On" is within ``POSITION_TOLERANCE_VOXELS``: for the first pixel, and for the last one given the spacing.
    """
    direction = np.asarray(grid.GetDirection(), float).reshape(3, 3)
    if not np.allclose(orientation[:3], direction[:, 0], atol=1e-4) or \
            not np.allclose(orientation[3:], direction[:, 1], atol=1e-4):
        return None
    if shape != (grid.GetSize()[1], grid.GetSize()[0]):
        return None
    for frame_step, grid_step, count in zip(spacing, grid.GetSpacing()[:2], (shape[1], shape[0]), strict=True):
        if abs(frame_step - grid_step) * count > POSITION_TOLERANCE_VOXELS * grid_step:
            return None  # the frame's last pixel would lie off the grid's last voxel
    index = np.asarray(grid.TransformPhysicalPointToContinuousIndex(tuple(float(v) for v in position)))
    k = int(round(index[2]))
    if np.abs(index[:2]).max() > POSITION_TOLERANCE_VOXELS or abs(index[2] - k) > POSITION_TOLERANCE_VOXELS or \
            not 0 <= k < grid.GetSize()[2]:
        return None
    return k


def _referenced_series(seg) -> set[str]:
    """SeriesInstanceUIDs a SEG says it was derived from (same study and other studies)."""
    items = list(seg.get("ReferencedSeriesSequence", []))
    for study in seg.get("StudiesContainingOtherReferencedInstancesSequence", []):
        items += list(study.get("ReferencedSeriesSequence", []))
    return {str(item.get("SeriesInstanceUID", "")) for item in items} - {""}


def _identity_mismatch(seg, grid: sitk.Image) -> str | None:
    """Why a SEG does not belong to the DICOM series ``grid`` was read from, else None."""
    # A NIfTI image carries no UIDs: against it only geometry (the frame positions) can be checked.
    grid_frame, grid_series = image_tag(grid, FRAME_OF_REFERENCE_KEY), image_tag(grid, SERIES_KEY)
    seg_frame = str(seg.get("FrameOfReferenceUID", ""))
    if grid_frame and seg_frame and seg_frame != grid_frame:
        return f"its frame of reference {seg_frame} is not the image's {grid_frame}"
    referenced = _referenced_series(seg)
    if grid_series and referenced and grid_series not in referenced:
        return f"it references series {', '.join(sorted(referenced))}, not the image's {grid_series}"
    return None


def read_seg_segment(path: str | os.PathLike, segment_label: str,
                     grids: Sequence[sitk.Image]) -> tuple[np.ndarray, int]:
    """Segment ``segment_label`` of a SEG as a uint8 (z, y, x) mask on the first of ``grids`` its frames lie on.

    ``segment_label`` is ``#N`` (segment number N), a label naming one segment, or ``LABEL*`` (every segment of
    that label, as one mask). Returns the mask and the index of that grid. Errors name the patient (from the
    grids) and the file: not a SEG, no such segment (the available ones are listed), a label naming several
    segments without ``*`` (their numbers are listed), a SEG of another frame of reference or series than the
    image it lies on (both files named), or frames on none of the grids.
    """
    patient = next((image_source(g)[0] for g in grids if image_source(g)[0] != "?"), "?")
    who = f"patient {patient}: " if patient != "?" else ""
    try:
        seg = _open_seg(path)
        numbers = set(select_structures(segment_label, _segment_names(seg), path, "segment"))
    except ImageReadError as err:
        raise ImageReadError(f"{who}{err}") from err
    shared = seg.SharedFunctionalGroupsSequence[0]
    frames = []
    for i, group in enumerate(seg.PerFrameFunctionalGroupsSequence):
        identification = (group if "SegmentIdentificationSequence" in group else shared).SegmentIdentificationSequence
        if int(identification[0].ReferencedSegmentNumber) not in numbers:
            continue
        orientation = (group if "PlaneOrientationSequence" in group else shared).PlaneOrientationSequence[0]
        measures = (group if "PixelMeasuresSequence" in group else shared).PixelMeasuresSequence[0]
        row_spacing, column_spacing = (float(v) for v in measures.PixelSpacing)
        frames.append((i, [float(v) for v in group.PlanePositionSequence[0].ImagePositionPatient],
                       np.asarray(orientation.ImageOrientationPatient, float), (column_spacing, row_spacing)))
    shape = (int(seg.Rows), int(seg.Columns))
    try:
        pixels = np.asarray(seg.pixel_array)
    except Exception as err:
        raise ImageReadError(f"{who}{path}: the SEG's pixel data cannot be decoded ({type(err).__name__}: {err})") from err
    pixels = pixels.reshape((-1, *shape))
    mismatches = [_identity_mismatch(seg, grid) for grid in grids]
    refused = []
    for g, grid in enumerate(grids):
        slices = [_frame_index(position, grid, orientation, spacing, shape)
                  for _, position, orientation, spacing in frames]
        if any(k is None for k in slices):
            continue
        if mismatches[g]:
            refused.append(g)  # on this grid, but of another scan: another grid may still be its own
            continue
        mask = np.zeros(grid.GetSize()[::-1], np.uint8)
        for (i, *_), k in zip(frames, slices, strict=True):
            mask[k] |= (pixels[i] > 0).astype(np.uint8)
        return mask, g
    if not refused and grids and all(mismatches):
        refused = [0]  # a SEG of another scan altogether: say so rather than "on no grid"
    if refused:
        g = refused[0]
        raise ImageReadError(f"{who}{path} does not label {image_source(grids[g])[1]}: {mismatches[g]} "
                             "(a SEG of another scan or series)")
    raise ImageReadError(f"{who}{path}: segment '{segment_label}' lies on none of the given image grids "
                         f"(its frames match neither the CT nor the PET planes)")


def _segmentation(hd, sources, mask: np.ndarray, description, algorithm: str, version: str, segment_label: str):
    """The highdicom Segmentation of a binary mask on ``sources`` (identity and study tags come from them)."""
    return hd.seg.Segmentation(
        source_images=sources, pixel_array=mask.astype(bool), segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[description], series_instance_uid=hd.UID(), series_number=900,
        sop_instance_uid=hd.UID(), instance_number=1, manufacturer="petct-study", manufacturer_model_name=algorithm,
        software_versions=version, device_serial_number="0", series_description=f"{algorithm} {segment_label}",
        omit_empty_frames=bool(mask.any()))


def write_seg(mask: np.ndarray, source_files: Sequence[str | os.PathLike], out_path: str | os.PathLike,
              segment_label: str = "lesion", algorithm: str = "petct-study", version: str = "0") -> Path:
    """Write a binary (z, y, x) mask on a DICOM series' grid as a SEG that references that series.

    ``source_files`` are the series' files in the mask's z order (as ``dicom.choose_series`` returns them).
    """
    import highdicom as hd
    import pydicom
    from pydicom.sr.codedict import codes

    sources = [pydicom.dcmread(str(f)) for f in source_files]
    if mask.shape != (len(sources), int(sources[0].Rows), int(sources[0].Columns)):
        raise ValueError(f"mask {mask.shape} does not match the source series ({len(sources)} slices of "
                         f"{sources[0].Rows}x{sources[0].Columns})")
    description = hd.seg.SegmentDescription(
        segment_number=1, segment_label=segment_label,
        segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Lesion, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name=algorithm, family=codes.cid7162.ArtificialIntelligence, version=version))
    with warnings.catch_warnings():
        # highdicom and pydicom warn about the source series' own values they copy (a one-component PatientName,
        # an over-long StudyID): those are the archive's, copied unchanged, not something to fix here
        warnings.filterwarnings("ignore", category=UserWarning, module=r"(highdicom|pydicom)\.")
        seg = _segmentation(hd, sources, mask, description, algorithm, version, segment_label)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".{out_path.name}.tmp")
    seg.save_as(str(tmp))
    os.replace(tmp, out_path)
    return out_path
