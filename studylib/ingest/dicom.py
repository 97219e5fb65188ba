"""DICOM: series selection by modality, PET Bq/ml -> SUV body weight, RTSTRUCT contours rasterised on the CT grid.

RTSTRUCT rasterisation is done here with pydicom (to read ContourData) and matplotlib's point-in-polygon test on
voxel centres (even-odd rule, so holes drawn as inner contours stay empty). We do not use rt-utils: its last
release is from 2023 and it pulls in OpenCV; this path needs nothing beyond our existing dependencies and is
checked against the IBSI NIfTI mask of the same contour (Dice > 0.95) in the tests.

Labels name their structure (an RTSTRUCT ROI, a SEG segment) by ``#N`` (its number), ``LABEL`` (the one structure
of that name) or ``LABEL*`` (every structure of that name as one mask): see ``select_structures``.

Nothing from patient-identity tags is returned or logged: callers identify patients by folder name.
"""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from .errors import ImageReadError
from .image_checks import (
    FRAME_OF_REFERENCE_KEY,
    SERIES_KEY,
    STUDY_KEY,
    check_ct_hu,
    image_source,
    image_tag,
    tag_source,
)

MODALITY_TAG = "0008|0060"
RTSTRUCT_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.481.3"

# Consecutive slices of a series must be this fraction of the series' own (median) slice step apart. Scanners write
# slice positions to 6-16 significant digits, so true steps differ by far less; a missing or unreadable slice makes
# one step twice as long, and ITK would silently read the series with the averaged step (only a warning).
SLICE_STEP_TOLERANCE = 0.1

# DICOM TM: HH, HHMM, HHMMSS or HHMMSS.FFFFFF; the colon form HH:MM:SS.frac of ACR-NEMA is still written by some
# scanners and PS3.5 asks readers to accept it
_TIME = re.compile(r"(\d{2})(?::?(\d{2})(?::?(\d{2}(?:\.\d{0,6})?))?)?")


def _series_in(folder: Path) -> list[tuple[str, list[str]]]:
    reader = sitk.ImageSeriesReader()
    out = []
    for sub in [folder, *sorted(p for p in folder.rglob("*") if p.is_dir())]:
        for uid in reader.GetGDCMSeriesIDs(str(sub)) or []:
            files = reader.GetGDCMSeriesFileNames(str(sub), uid)
            if files:
                out.append((uid, list(files)))
    return out


def _modality_of(path: str) -> str:
    info = sitk.ImageFileReader()
    info.SetFileName(path)
    info.LoadPrivateTagsOff()
    info.ReadImageInformation()
    return info.GetMetaData(MODALITY_TAG).strip() if info.HasMetaDataKey(MODALITY_TAG) else ""


def choose_series(folder: str | os.PathLike, modality: str, patient_id: str = "?") -> list[str]:
    """Files of the series of ``modality`` (CT, PT, MR) in a folder.

    Rule for several series of the same modality: the one with the most slices, ties broken by the
    lexicographically smallest SeriesInstanceUID (deterministic); the choice is reported in the error otherwise.
    """
    folder = Path(folder)
    candidates = [(uid, files) for uid, files in _series_in(folder) if _modality_of(files[0]) == modality]
    if not candidates:
        raise ImageReadError(f"patient {patient_id}: no DICOM series of modality {modality} in {folder}")
    candidates.sort(key=lambda c: (-len(c[1]), c[0]))
    return candidates[0][1]


def _parse_time(value: str, what: str = "time") -> dt.timedelta:
    """A DICOM TM value as a time of day; a ValueError naming ``what`` for anything else."""
    match = _TIME.fullmatch(str(value).strip())
    hh, mm, ss = (int(match[1]), int(match[2] or 0), float(match[3] or 0)) if match else (99, 0, 0)
    if hh > 23 or mm > 59 or ss >= 61:  # 60.x: a leap second
        raise ValueError(f"{what} {str(value)!r} is not a DICOM time (HHMMSS.FFFFFF)")
    return dt.timedelta(hours=hh, minutes=mm, seconds=ss)


def _date_time(date, time, what: str = "time") -> dt.datetime | None:
    """A datetime from DICOM DA (YYYYMMDD) and TM (HHMMSS.frac) values; None without a date."""
    date = str(date or "").strip()
    if len(date) < 8:
        return None
    try:
        day = dt.datetime.strptime(date[:8], "%Y%m%d")
    except ValueError as err:
        raise ValueError(f"{what}: date {date!r} is not a DICOM date (YYYYMMDD)") from err
    return day + _parse_time(str(time), what)


def _uptake_seconds(ds, radio, need, where: str) -> float:
    """Seconds from injection to the scan, on full date-times when the header has them.

    Scan: SeriesDate + SeriesTime, else AcquisitionDate + AcquisitionTime. Injection: RadiopharmaceuticalStartDateTime,
    else the scan's date + RadiopharmaceuticalStartTime. Only when no date exists at all does a negative
    difference mean an injection before midnight (time-of-day arithmetic).
    """
    scan_what = "SeriesTime (0008,0031)" if getattr(ds, "SeriesTime", None) else "AcquisitionTime (0008,0032)"
    scan_time = getattr(ds, "SeriesTime", None) or need(ds, "AcquisitionTime", "(0008,0032)")
    scan_date = getattr(ds, "SeriesDate", None) if getattr(ds, "SeriesTime", None) else None
    scan_date = scan_date or getattr(ds, "AcquisitionDate", None) or getattr(ds, "StudyDate", None)
    scan = _date_time(scan_date, scan_time, scan_what)
    start = str(getattr(radio, "RadiopharmaceuticalStartDateTime", "") or "").strip()
    if start:
        injection = _date_time(start[:8], start[8:], "injection RadiopharmaceuticalStartDateTime (0018,1078)")
        if injection is None:
            raise ValueError(f"injection RadiopharmaceuticalStartDateTime (0018,1078) {start!r} is not a DICOM "
                             "date-time (YYYYMMDDHHMMSS)")
    else:
        start_time = str(need(radio, "RadiopharmaceuticalStartTime", "(0018,1072)"))
        start_what = "injection RadiopharmaceuticalStartTime (0018,1072)"
        injection = _date_time(scan_date, start_time, start_what) if scan is not None else None
        if injection is not None and injection > scan:
            injection -= dt.timedelta(days=1)  # same-date fields: the injection was the evening before
        if injection is None:
            elapsed = (_parse_time(str(scan_time), scan_what) - _parse_time(start_time, start_what)).total_seconds()
            return elapsed + 24 * 3600 if elapsed < 0 else elapsed
    if scan is None:  # injection date-time known, scan date missing: assume the same day
        scan = dt.datetime.combine(injection.date(), dt.time()) + _parse_time(str(scan_time), scan_what)
        if scan < injection:
            scan += dt.timedelta(days=1)
    elapsed = (scan - injection).total_seconds()
    if elapsed < 0:
        raise ImageReadError(f"{where}: PET scan at {scan} precedes the injection at {injection}")
    return elapsed


def suv_factor(ds, patient_id: str = "?") -> float:
    """Multiplier from PET Bq/ml to SUV body weight (1.0 for Units = GML) from a pydicom dataset.

    Errors are ``ImageReadError`` naming the patient and, for a dataset read from a file, that file.
    """
    filename = getattr(ds, "filename", None)
    where = f"patient {patient_id}" + (f": {filename}" if isinstance(filename, (str, os.PathLike)) else "")
    try:
        return _suv_factor(ds, where)
    except ImageReadError:
        raise
    except (ValueError, TypeError, AttributeError, IndexError, OverflowError) as err:
        # odd header values: a time that is no DICOM time, a weight that is no number, an empty sequence
        raise ImageReadError(f"{where}: cannot compute SUV from the PET header: {err}") from err


def _suv_factor(ds, where: str) -> float:
    """``suv_factor`` itself; header values that are not what DICOM says raise ValueError/TypeError."""
    units = str(getattr(ds, "Units", "")).upper()
    if units == "GML":
        return 1.0
    if units not in ("BQML", ""):
        raise ImageReadError(f"{where}: PET Units '{units}' cannot be converted to SUV")

    def need(obj, name, tag):
        value = getattr(obj, name, None)
        if value in (None, ""):
            raise ImageReadError(f"{where}: DICOM tag {name} {tag} missing; cannot compute SUV")
        return value

    weight_kg = float(need(ds, "PatientWeight", "(0010,1030)"))
    sequence = need(ds, "RadiopharmaceuticalInformationSequence", "(0054,0016)")
    radio = sequence[0]
    dose = float(need(radio, "RadionuclideTotalDose", "(0018,1074)"))
    half_life = float(need(radio, "RadionuclideHalfLife", "(0018,1075)"))
    decay_correction = str(getattr(ds, "DecayCorrection", "START")).upper()
    if decay_correction == "ADMIN":
        decayed = dose  # images already decay-corrected to the administration time
    else:
        elapsed = _uptake_seconds(ds, radio, need, where)
        decayed = dose * 2 ** (-elapsed / half_life)
    if not decayed > 0 or not weight_kg > 0:
        raise ImageReadError(f"{where}: non-positive dose or weight in the PET header")
    return weight_kg * 1000.0 / decayed


def _series_headers(files: list[str], folder: Path, modality: str, patient_id: str) -> list:
    """Each slice's header (pydicom, no pixels): the full first one, the geometry of the others."""
    import pydicom

    headers = []
    for i, name in enumerate(files):
        try:
            tags = None if i == 0 else ["ImagePositionPatient", "ImageOrientationPatient"]
            headers.append(pydicom.dcmread(name, stop_before_pixels=True, specific_tags=tags))
        except Exception as err:  # pydicom raises InvalidDicomError, OSError and others for a damaged file
            raise ImageReadError(f"patient {patient_id}: slice {name} of the {modality} series in {folder} cannot be "
                                 f"read ({type(err).__name__}: {err})") from err
    return headers


def check_slice_steps(headers: list, files: list[str], folder: Path, modality: str, patient_id: str) -> None:
    """Refuse a series whose slices are not evenly spaced (a missing or unreadable slice), naming folder and gap."""
    try:
        positions = np.array([[float(v) for v in h.ImagePositionPatient] for h in headers])
        orientation = np.array([float(v) for v in headers[0].ImageOrientationPatient])
    except (AttributeError, ValueError, TypeError):
        return  # no slice geometry in the headers (not CT/PET): ITK's own ordering is all there is
    if len(positions) < 3 or positions.shape[1] != 3 or orientation.shape != (6,):
        return
    along = positions @ np.cross(orientation[:3], orientation[3:])  # slice positions along the slice normal
    steps = np.diff(along)
    expected = float(np.median(steps))
    off = np.flatnonzero(np.abs(steps - expected) > SLICE_STEP_TOLERANCE * abs(expected))
    if expected == 0 or off.size:
        i = int(off[0]) if off.size else int(np.argmin(np.abs(steps)))
        raise ImageReadError(
            f"patient {patient_id}: the {modality} series in {folder} is not evenly spaced: slices "
            f"{Path(files[i]).name} and {Path(files[i + 1]).name} at {along[i]:.3f} and {along[i + 1]:.3f} mm are "
            f"{abs(steps[i]):.3f} mm apart, expected {abs(expected):.3f} mm ({off.size or 1} uneven gap(s) in "
            f"{len(files)} slices: a missing, unreadable or duplicate slice?)")


def read_dicom_series(folder: str | os.PathLike, modality: str | None = None, patient_id: str = "?") -> sitk.Image:
    """Read the CT/PT/MR series of a folder; PET comes back in SUV body weight.

    The image carries its folder, patient and DICOM frame of reference, study and series UIDs in its metadata
    (``image_checks.SOURCE_KEY`` ...), against which SEG and RTSTRUCT labels are checked.
    """
    folder = Path(folder)
    modality = {"CT": "CT", "PT": "PT", "PET": "PT", "MR": "MR", "MRI": "MR", None: "CT"}[modality.upper() if modality else None]
    files = choose_series(folder, modality, patient_id)
    headers = _series_headers(files, folder, modality, patient_id)
    check_slice_steps(headers, files, folder, modality, patient_id)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    try:
        image = reader.Execute()
    except RuntimeError as err:
        raise ImageReadError(f"patient {patient_id}: cannot read the {modality} series in {folder}") from err
    if modality == "PT":
        image = sitk.Cast(image, sitk.sitkFloat32) * suv_factor(headers[0], patient_id)
    if modality == "CT":
        check_ct_hu(image, patient_id, folder)
    for key, name in ((FRAME_OF_REFERENCE_KEY, "FrameOfReferenceUID"), (STUDY_KEY, "StudyInstanceUID"),
                      (SERIES_KEY, "SeriesInstanceUID")):
        if headers[0].get(name):
            image.SetMetaData(key, str(headers[0].get(name)))
    return tag_source(image, folder, patient_id)


def select_structures(selector: str, names: dict[int, str], path: str | os.PathLike, kind: str) -> list[int]:
    """Numbers of the structures (RTSTRUCT ROIs, SEG segments; ``names``: number -> label) a label selector names.

    ``#N``: structure number N. ``LABEL``: the one structure of that label; several of that label are an error
    listing their numbers (never a silent pick). ``LABEL*``: every structure of that label, to be taken as one mask.
    """
    if selector.startswith("#"):
        number = int(selector[1:]) if selector[1:].isdigit() else None
        if number not in names:
            shown = ", ".join(f"#{n} {label!r}" for n, label in sorted(names.items()))
            raise ImageReadError(f"{path}: no {kind} {selector} (has {shown})")
        return [number]
    every = selector.endswith("*")
    label = selector[:-1] if every else selector
    numbers = sorted(n for n, name in names.items() if name == label)
    if not numbers:
        raise ImageReadError(f"{path}: no {kind} '{label}' (has {sorted(set(names.values()))})")
    if len(numbers) > 1 and not every:
        raise ImageReadError(f"{path}: {len(numbers)} {kind}s are labelled '{label}' (numbers "
                             f"{', '.join(str(n) for n in numbers)}): name one as '#N', or take all of them as one "
                             f"mask with '{label}*'")
    return numbers


def _open_rtstruct(path: Path, who: str):
    """The RTSTRUCT at ``path`` as a pydicom dataset; an error naming patient and file otherwise."""
    import pydicom

    if not path.is_file():
        raise ImageReadError(f"{who}: RTSTRUCT not found: {path}")
    try:
        ds = pydicom.dcmread(str(path))
    except Exception as err:  # pydicom raises InvalidDicomError, OSError (a file cut short) and others
        raise ImageReadError(f"{who}: {path} is not a readable DICOM file (truncated or corrupt: "
                             f"{type(err).__name__}: {err})") from err
    if str(ds.get("SOPClassUID", "")) != RTSTRUCT_SOP_CLASS:
        raise ImageReadError(f"{who}: {path} is not an RTSTRUCT (SOP class {ds.get('SOPClassUID', 'missing')}, "
                             f"modality {ds.get('Modality', 'missing')})")
    return ds


def _rtstruct_rois(ds, path: Path, who: str) -> tuple[dict[int, str], dict[int, str], dict[int, list[np.ndarray]]]:
    """(number -> ROI name, number -> ROI frame of reference UID, number -> contours as (n, 3) mm arrays)."""
    try:
        names = {int(r.ROINumber): str(r.ROIName) for r in ds.StructureSetROISequence}
        frames = {int(r.ROINumber): str(r.get("ReferencedFrameOfReferenceUID", "")) for r in ds.StructureSetROISequence}
        contours: dict[int, list[np.ndarray]] = {}
        for item in ds.get("ROIContourSequence", []):
            contours.setdefault(int(item.ReferencedROINumber), []).extend(
                np.asarray(c.ContourData, float).reshape(-1, 3) for c in item.get("ContourSequence", []))
    except Exception as err:  # a file cut between elements parses, then misses or garbles its sequences
        raise ImageReadError(f"{who}: {path} is a corrupt or truncated RTSTRUCT ({type(err).__name__}: {err})") from err
    return names, frames, contours


def _check_rtstruct_identity(ds, roi_frames: list[str], reference: sitk.Image, path: Path, who: str) -> None:
    """Refuse an RTSTRUCT drawn in another frame of reference or study than the image it is rasterised on."""
    # A NIfTI image carries no UIDs: then only geometry is checked (contours must land on its slices).
    # Contours are in patient coordinates, so any series of the same frame of reference can carry them (a contour
    # drawn on the PET rasterised on the CT): the referenced series is not required to be this one, its study is.
    source = image_source(reference)[1]
    image_frame = image_tag(reference, FRAME_OF_REFERENCE_KEY)
    frames = {f for f in roi_frames if f} or {str(r.get("FrameOfReferenceUID", ""))
                                               for r in ds.get("ReferencedFrameOfReferenceSequence", [])} - {""}
    if image_frame and frames - {image_frame}:
        raise ImageReadError(f"{who}: RTSTRUCT {path} is drawn in frame of reference "
                             f"{', '.join(sorted(frames - {image_frame}))}, "
                             f"not that of the image it labels, {source} ({image_frame}): contours of another scan")
    studies = {str(s.get("ReferencedSOPInstanceUID", "")) for r in ds.get("ReferencedFrameOfReferenceSequence", [])
               for s in r.get("RTReferencedStudySequence", [])} - {""}
    image_study = image_tag(reference, STUDY_KEY)
    if image_study and studies and image_study not in studies:
        raise ImageReadError(f"{who}: RTSTRUCT {path} references study {', '.join(sorted(studies))}, not the study "
                             f"of the image it labels, {source} ({image_study})")


def rasterise_rtstruct(path: str | os.PathLike, reference: sitk.Image, roi_name: str) -> np.ndarray:
    """ROI ``roi_name`` (``#N``, a name, or ``NAME*`` for all ROIs of that name) of an RTSTRUCT as a uint8 (z, y, x)
    mask on the reference (CT) grid.

    Errors name the patient (from the reference image) and the file: not an RTSTRUCT, truncated, no such ROI,
    another frame of reference or study, or contours none of which lie on the reference's slices.
    """
    from matplotlib.path import Path as PolygonPath

    path = Path(path)
    patient = image_source(reference)[0]
    who = f"patient {patient}"
    ds = _open_rtstruct(path, who)
    names, frames, contours = _rtstruct_rois(ds, path, who)
    try:
        numbers = select_structures(roi_name, names, path, "ROI")
    except ImageReadError as err:
        raise ImageReadError(f"{who}: {err}") from err
    _check_rtstruct_identity(ds, [frames[n] for n in numbers], reference, path, who)
    size = reference.GetSize()
    mask = np.zeros(size[::-1], np.uint8)
    yy, xx = np.mgrid[0:size[1], 0:size[0]]
    centres = np.column_stack([xx.ravel(), yy.ravel()])
    drawn, placed = 0, 0
    for number in numbers:
        roi = np.zeros_like(mask)
        for points in contours.get(number, []):
            if len(points) < 3:
                continue
            drawn += 1
            index = np.array([reference.TransformPhysicalPointToContinuousIndex(tuple(p)) for p in points])
            k = int(round(float(np.median(index[:, 2]))))
            if not 0 <= k < size[2]:
                continue  # a contour beyond a cropped image's slices
            placed += 1
            inside = PolygonPath(index[:, :2]).contains_points(centres).reshape(size[1], size[0])
            roi[k] ^= inside.astype(np.uint8)  # even-odd: inner contours are holes
        mask |= roi
    if drawn and not placed:
        raise ImageReadError(f"{who}: none of the {drawn} contours of ROI '{roi_name}' in {path} lies on the slices "
                             f"of {image_source(reference)[1]}: an RTSTRUCT of another scan or grid")
    return mask
