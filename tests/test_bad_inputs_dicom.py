"""DICOM and NIfTI inputs as real archives and careless exports give them: a SEG with rounded positions and repeated
labels, labels of another scan, a series with a missing slice, CT in stored units, damaged RTSTRUCTs, 4D NIfTI,
odd PET header times. Every refusal is an ``ImageReadError`` naming the patient and the file(s).

The DICOM fixtures are written here with pydicom (a small CT and PET of one session sharing a frame of reference)
and highdicom (the SEG), so nothing depends on ../shared/realdata.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import format_number_as_ds

from studylib.ingest.cohort import load_cohort, split_label_source
from studylib.ingest.dicom import rasterise_rtstruct, read_dicom_series
from studylib.ingest.errors import ImageReadError
from studylib.ingest.imageio import read_image
from studylib.ingest.seg import POSITION_TOLERANCE_VOXELS, read_seg_segment, segment_labels, segments
from studylib.preprocessing.patient_on_ct import load_patient_on_ct

from .test_ingestion import _write_cohort

CT_STORAGE, PET_STORAGE = "1.2.840.10008.5.1.4.1.1.2", "1.2.840.10008.5.1.4.1.1.128"
RTSTRUCT_STORAGE = "1.2.840.10008.5.1.4.1.1.481.3"
# a whole-body table position (far from 0 mm) with many digits: rounding it to 6 significant digits moves it by
# up to 0.005 mm, more than the 0.001 voxel the SEG reader once demanded
Z0, DZ, SLICES = -1234.56789, 1.53125, 8
PET_SHAPE, PET_STEP = (10, 12), 4.0  # rows, columns; mm
CT_SHAPE, CT_STEP = (20, 24), 2.0
ORIGIN_XY = (-24.51171875, -20.51171875)


def _ds(value: float) -> str:
    """A DICOM DS string for ``value`` (16 characters at most, as a writer that keeps all digits it can)."""
    return format_number_as_ds(float(value))


def _patient(ds: Dataset, session: dict) -> None:
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "Test^Patient", "X1", "19700101", "O"
    ds.StudyInstanceUID, ds.FrameOfReferenceUID = session["study"], session["frame"]
    ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = \
        "20260101", "100000", "1", "1", ""


def _save(ds: Dataset, sop_class: str, path: Path) -> Path:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = sop_class, ds.SOPInstanceUID
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta, ds.SOPClassUID = meta, sop_class
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


def write_series(folder: Path, modality: str, stored: np.ndarray, step: float, session: dict,
                 rescale: bool = True, injection: str = "100000") -> list[Path]:
    """A CT (stored = HU + 1024) or PET (stored = Bq/ml) series of ``stored`` (z, y, x) in ``folder``."""
    series = generate_uid()
    files = []
    for k, plane in enumerate(stored):
        ds = Dataset()
        _patient(ds, session)
        ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = modality, series, 1 if modality == "CT" else 2
        ds.SOPInstanceUID, ds.InstanceNumber = generate_uid(), k + 1
        ds.SeriesDate, ds.SeriesTime = "20260101", "110000"
        ds.ImageOrientationPatient = ["1", "0", "0", "0", "1", "0"]
        ds.ImagePositionPatient = [_ds(ORIGIN_XY[0]), _ds(ORIGIN_XY[1]), _ds(Z0 + k * DZ)]
        ds.PixelSpacing, ds.SliceThickness = [_ds(step), _ds(step)], _ds(DZ)
        ds.Rows, ds.Columns = plane.shape
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        ds.PixelData = plane.astype(np.uint16).tobytes()
        if modality == "CT" and rescale:
            ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = "-1024", "1", "HU"
        if modality == "PT":
            ds.RescaleIntercept, ds.RescaleSlope, ds.Units = "0", "1", "BQML"
            ds.DecayCorrection, ds.CorrectedImage, ds.PatientWeight = "START", ["DECY", "ATTN"], "70"
            radio = Dataset()
            radio.RadionuclideTotalDose, radio.RadionuclideHalfLife = "370000000", "6586.2"
            radio.RadiopharmaceuticalStartTime = injection
            ds.RadiopharmaceuticalInformationSequence = [radio]
        files.append(_save(ds, CT_STORAGE if modality == "CT" else PET_STORAGE, folder / f"{k:03d}.dcm"))
    return files


@pytest.fixture
def session(tmp_path) -> dict:
    """One PET/CT session: CT (air around a soft-tissue body) and PET series, one frame of reference."""
    ids = {"study": generate_uid(), "frame": generate_uid(), "root": tmp_path}
    yy, xx = np.mgrid[0:CT_SHAPE[0], 0:CT_SHAPE[1]]
    body = ((yy - 10) ** 2 + (xx - 12) ** 2 < 64)
    ct_hu = np.where(body, 40, -1000)[None].repeat(SLICES, 0)
    ids["ct_files"] = write_series(tmp_path / "ct", "CT", ct_hu + 1024, CT_STEP, ids)
    pet = np.full((SLICES, *PET_SHAPE), 500)
    pet[2:6, 3:7, 4:8] = 20000
    ids["pet_files"] = write_series(tmp_path / "pet", "PT", pet, PET_STEP, ids)
    ids["ct"] = read_dicom_series(tmp_path / "ct", "CT", "X1")
    ids["pet"] = read_dicom_series(tmp_path / "pet", "PT", "X1")
    return ids


LABELS = ["Primary", "Neoplasm, Secondary", "Neoplasm, Secondary", "Neoplasm, Secondary"]


def lesion_map() -> np.ndarray:
    """A (z, y, x) label map on the PET grid: segment n (1..4) is one lesion."""
    labels = np.zeros((SLICES, *PET_SHAPE), np.uint8)
    labels[1:4, 1:3, 1:3] = 1
    labels[2:5, 5:8, 1:4] = 2
    labels[4:7, 1:3, 7:10] = 3
    labels[6:8, 6:9, 8:11] = 4
    return labels


def write_multi_segment_seg(source_files: list[Path], labels: np.ndarray, path: Path) -> Path:
    """A BINARY SEG with segments 1..4 labelled ``LABELS`` (like an archive's "Neoplasm, Secondary" x n)."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    descriptions = [hd.seg.SegmentDescription(
        segment_number=n, segment_label=label, segmented_property_category=codes.SCT.MorphologicallyAbnormalStructure,
        segmented_property_type=codes.SCT.Neoplasm, algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL)
        for n, label in enumerate(LABELS, start=1)]
    sources = [pydicom.dcmread(f) for f in source_files]
    seg = hd.seg.Segmentation(
        source_images=sources, pixel_array=labels, segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions, series_instance_uid=hd.UID(), series_number=5, sop_instance_uid=hd.UID(),
        instance_number=1, manufacturer="test", manufacturer_model_name="test", software_versions="0",
        device_serial_number="0")
    seg.save_as(path)
    return path


def edited(path: Path, out: Path, change) -> Path:
    """A copy of a DICOM file with ``change(dataset)`` applied."""
    ds = pydicom.dcmread(path)
    change(ds)
    ds.save_as(out)
    return out


def round_positions(ds: Dataset) -> None:
    """Write every frame position to 6 significant digits, as a real SEG writer does."""
    for group in ds.PerFrameFunctionalGroupsSequence:
        plane = group.PlanePositionSequence[0]
        plane.ImagePositionPatient = [f"{float(v):.6g}" for v in plane.ImagePositionPatient]


def test_seg_with_rounded_positions_decodes_like_the_unrounded_one(session, tmp_path):
    labels = lesion_map()
    exact = write_multi_segment_seg(session["pet_files"], labels, tmp_path / "exact.seg.dcm")
    rounded = edited(exact, tmp_path / "rounded.seg.dcm", round_positions)
    # the rounding really moves frames further off the PET's slices than the reader once demanded (0.001 voxel)
    pet = session["pet"]
    offsets = [abs(pet.TransformPhysicalPointToContinuousIndex(
        [float(v) for v in g.PlanePositionSequence[0].ImagePositionPatient])[2] % 1)
        for g in pydicom.dcmread(rounded).PerFrameFunctionalGroupsSequence]
    worst = max(min(o, 1 - o) for o in offsets)
    assert 0.001 < worst < POSITION_TOLERANCE_VOXELS
    grids = (session["ct"], session["pet"])
    for selector in ("Primary", "#1", "#2", "#3", "#4", "Neoplasm, Secondary*"):
        want, grid = read_seg_segment(exact, selector, grids)
        got, grid_rounded = read_seg_segment(rounded, selector, grids)
        assert grid == grid_rounded == 1 and want.any() and np.array_equal(got, want), selector
    # the tolerance is a tolerance, not "anywhere": a frame a third of a slice off is refused
    def shift(ds):
        plane = ds.PerFrameFunctionalGroupsSequence[0].PlanePositionSequence[0]
        plane.ImagePositionPatient = [*plane.ImagePositionPatient[:2], _ds(float(plane.ImagePositionPatient[2]) + DZ / 3)]
    shifted = edited(exact, tmp_path / "shifted.seg.dcm", shift)
    with pytest.raises(ImageReadError, match=r"shifted\.seg\.dcm.*none of the given image grids"):
        read_seg_segment(shifted, "Primary", grids)


def test_segments_by_number_by_label_and_all_of_a_repeated_label(session, tmp_path):
    labels = lesion_map()
    path = write_multi_segment_seg(session["pet_files"], labels, tmp_path / "mets.seg.dcm")
    grids = (session["ct"], session["pet"])
    assert segments(path) == dict(enumerate(LABELS, start=1))
    third, _ = read_seg_segment(path, "#3", grids)
    assert np.array_equal(third, (labels == 3).astype(np.uint8))
    every, _ = read_seg_segment(path, "Neoplasm, Secondary*", grids)
    assert np.array_equal(every, np.isin(labels, [2, 3, 4]).astype(np.uint8))
    with pytest.raises(ImageReadError, match=r"patient X1: .*mets\.seg\.dcm: 3 segments are labelled "
                                             r"'Neoplasm, Secondary' \(numbers 2, 3, 4\).*'Neoplasm, Secondary\*'"):
        read_seg_segment(path, "Neoplasm, Secondary", grids)
    with pytest.raises(ImageReadError, match=r"mets\.seg\.dcm: no segment #9 \(has #1 'Primary'"):
        read_seg_segment(path, "#9", grids)
    with pytest.raises(ImageReadError, match=r"several segments.*Neoplasm, Secondary.*\[2, 3, 4\]"):
        segment_labels(path)

    # the same selectors as cohort label sources, through the reader the study uses (PET grid -> CT grid)
    assert split_label_source(f"seg:Neoplasm, Secondary*:{path}") == ("seg", "Neoplasm, Secondary*", str(path))
    spec = {"name": "x", "root": str(tmp_path), "labels": {"third": "", "mets": "", "bad": ""},
            "patients": {"X1": {"ct": "ct", "pet": "pet", "labels": {
                "third": "seg:#3:mets.seg.dcm", "mets": "seg:Neoplasm, Secondary*:mets.seg.dcm",
                "bad": "seg:Neoplasm, Secondary:mets.seg.dcm"}}}}
    (tmp_path / "cohort.json").write_text(json.dumps(spec))
    record = load_cohort(tmp_path / "cohort.json").patient("X1")
    patient = load_patient_on_ct(record, registration="none", labels=["third", "mets"])
    assert 0 < patient.labels["third"].sum() < patient.labels["mets"].sum()
    with pytest.raises(ImageReadError, match="numbers 2, 3, 4"):
        load_patient_on_ct(record, registration="none", labels=["bad"])


def write_rtstruct(path: Path, session: dict, rois: dict[int, str], series_uid: str, frame: str | None = None) -> Path:
    """An RTSTRUCT with one square contour per ROI (number -> name) on CT slice 3, in ``frame`` (the session's)."""
    frame = frame or session["frame"]
    ds = Dataset()
    _patient(ds, session)
    ds.Modality, ds.SeriesInstanceUID, ds.SeriesNumber = "RTSTRUCT", generate_uid(), 3
    ds.SOPInstanceUID, ds.StructureSetLabel = generate_uid(), "test"
    series = Dataset()
    series.SeriesInstanceUID = series_uid
    study = Dataset()
    study.ReferencedSOPClassUID, study.ReferencedSOPInstanceUID = "1.2.840.10008.3.1.2.3.1", session["study"]
    study.RTReferencedSeriesSequence = [series]
    reference = Dataset()
    reference.FrameOfReferenceUID, reference.RTReferencedStudySequence = frame, [study]
    ds.ReferencedFrameOfReferenceSequence = [reference]
    ds.StructureSetROISequence, ds.ROIContourSequence = [], []
    z = Z0 + 3 * DZ
    for number, name in rois.items():
        roi = Dataset()
        roi.ROINumber, roi.ROIName, roi.ReferencedFrameOfReferenceUID = number, name, frame
        roi.ROIGenerationAlgorithm = "MANUAL"
        ds.StructureSetROISequence.append(roi)
        x0, y0 = ORIGIN_XY[0] + 4 * number * CT_STEP, ORIGIN_XY[1] + 4 * CT_STEP
        contour = Dataset()
        contour.ContourGeometricType, contour.NumberOfContourPoints = "CLOSED_PLANAR", 4
        contour.ContourData = [_ds(v) for p in [(x0, y0), (x0 + 6, y0), (x0 + 6, y0 + 6), (x0, y0 + 6)]
                               for v in (*p, z)]
        item = Dataset()
        item.ReferencedROINumber, item.ContourSequence = number, [contour]
        ds.ROIContourSequence.append(item)
    return _save(ds, RTSTRUCT_STORAGE, path)


def test_rtstruct_rois_by_number_and_repeated_names(session, tmp_path):
    ct, series = session["ct"], session["ct"].GetMetaData("0020|000e")
    path = write_rtstruct(tmp_path / "RS.dcm", session, {1: "GTV", 2: "node", 3: "node"}, series)
    gtv = rasterise_rtstruct(path, ct, "GTV")
    second = rasterise_rtstruct(path, ct, "#2")
    both = rasterise_rtstruct(path, ct, "node*")
    assert gtv.sum() > 0 and second.sum() > 0 and not (gtv & second).any()
    assert np.array_equal(both, second | rasterise_rtstruct(path, ct, "#3")) and both.sum() > second.sum()
    with pytest.raises(ImageReadError, match=r"patient X1: .*RS\.dcm: 2 ROIs are labelled 'node' \(numbers 2, 3\)"):
        rasterise_rtstruct(path, ct, "node")


def test_seg_and_rtstruct_of_another_scan_are_refused(session, tmp_path):
    ct, ct_folder = session["ct"], str(tmp_path / "ct")
    mask = np.zeros((SLICES, *CT_SHAPE), np.uint8)
    mask[2:5, 8:12, 8:12] = 1
    from studylib.ingest.seg import write_seg

    good = write_seg(mask, session["ct_files"], tmp_path / "good.seg.dcm")
    assert np.array_equal(read_seg_segment(good, "lesion", (ct, session["pet"]))[0], mask)

    def other_frame(ds):
        ds.FrameOfReferenceUID = generate_uid()
    foreign = edited(good, tmp_path / "foreign.seg.dcm", other_frame)
    with pytest.raises(ImageReadError, match=rf"patient X1: .*foreign\.seg\.dcm does not label {ct_folder}: "
                                             r"its frame of reference .* is not the image's"):
        read_seg_segment(foreign, "lesion", (ct, session["pet"]))

    def other_series(ds):
        ds.ReferencedSeriesSequence[0].SeriesInstanceUID = generate_uid()
    sibling = edited(good, tmp_path / "sibling.seg.dcm", other_series)  # same scan, a series it was not drawn on
    with pytest.raises(ImageReadError, match=rf"sibling\.seg\.dcm does not label {ct_folder}: it references series"):
        read_seg_segment(sibling, "lesion", (ct,))

    series = ct.GetMetaData("0020|000e")
    rs = write_rtstruct(tmp_path / "RS_other.dcm", session, {1: "GTV"}, series, frame=generate_uid())
    with pytest.raises(ImageReadError, match=rf"patient X1: RTSTRUCT .*RS_other\.dcm is drawn in frame of reference "
                                             rf".* not that of the image it labels, {ct_folder}"):
        rasterise_rtstruct(rs, ct, "GTV")
    # the image as NIfTI carries no UIDs: the same RTSTRUCT is then checked by geometry only, and it fits
    nifti = tmp_path / "ct.nii.gz"
    sitk.WriteImage(ct, str(nifti))
    assert rasterise_rtstruct(rs, read_image(nifti, "X1", "CT"), "GTV").sum() > 0


def test_series_with_a_missing_slice_names_folder_and_gap(session, tmp_path):
    (tmp_path / "ct" / "004.dcm").unlink()
    with pytest.raises(ImageReadError, match=rf"patient X1: the CT series in {tmp_path / 'ct'} is not evenly "
                                             r"spaced: slices 003\.dcm and 005\.dcm .* are 3\.062 mm apart, "
                                             r"expected 1\.531 mm"):
        read_dicom_series(tmp_path / "ct", "CT", "X1")


def test_ct_in_stored_units_is_refused(session, tmp_path, quick_cohort):
    stored = np.where(sitk.GetArrayFromImage(session["ct"]) > -500, 1064, 24)  # HU + 1024 without the rescale
    stored[0, 0, :2] = (0, 4095)
    write_series(tmp_path / "raw_ct", "CT", stored, CT_STEP, session, rescale=False)
    with pytest.raises(ImageReadError, match=rf"patient X1: CT {tmp_path / 'raw_ct'} is not in HU: its lowest "
                                             r"value is 0, above -500 HU"):
        read_dicom_series(tmp_path / "raw_ct", "CT", "X1")

    def stored_units(name, img):
        if name != "ct":
            return img
        out = sitk.Cast(sitk.Clamp(img + 1024, lowerBound=0, upperBound=4095), sitk.sitkUInt16)
        out.CopyInformation(img)
        return out
    cohort = _write_cohort(tmp_path / "nifti", quick_cohort, stored_units)
    with pytest.raises(ImageReadError, match=r"patient X001: CT .*X001/ct\.nii\.gz is not in HU"):
        load_patient_on_ct(cohort.patient("X001"), registration="none")
    assert load_patient_on_ct(load_cohort(quick_cohort).patient("P000"), registration="none").channels["ct"].min() < -500


def test_truncated_or_wrong_type_rtstruct_names_patient_and_file(session, tmp_path):
    series = session["ct"].GetMetaData("0020|000e")
    good = write_rtstruct(tmp_path / "RS.dcm", session, {1: "GTV", 2: "node"}, series)
    raw = good.read_bytes()
    for cut in (len(raw) // 2, len(raw) - 40):
        (tmp_path / "RS_cut.dcm").write_bytes(raw[:cut])
        spec = {"name": "x", "root": str(tmp_path), "labels": {"gtv": ""},
                "patients": {"X1": {"ct": "ct", "pet": "pet", "labels": {"gtv": "rtstruct:node:RS_cut.dcm"}}}}
        (tmp_path / "cohort.json").write_text(json.dumps(spec))
        with pytest.raises(ImageReadError, match=r"patient X1: .*RS_cut\.dcm"):
            load_patient_on_ct(load_cohort(tmp_path / "cohort.json").patient("X1"), registration="none")
    with pytest.raises(ImageReadError, match=r"patient X1: .*001\.dcm is not an RTSTRUCT \(SOP class .*modality CT"):
        rasterise_rtstruct(session["ct_files"][1], session["ct"], "GTV")


def test_4d_nifti_is_refused(tmp_path, quick_cohort):
    def four_d(name, img):
        return sitk.JoinSeries([img, img]) if name == "pet" else img
    cohort = _write_cohort(tmp_path, quick_cohort, four_d)
    with pytest.raises(ImageReadError, match=r"patient X001: .*X001/pet\.nii\.gz is a 4D image .*3D volume"):
        load_patient_on_ct(cohort.patient("X001"), registration="none")


@pytest.mark.filterwarnings("ignore:Invalid value for VR TM")  # pydicom, writing the odd values on purpose
@pytest.mark.parametrize("injection", ["10h00", "1000 AM", "2500", ""])
def test_odd_injection_time_names_patient_and_file(session, tmp_path, injection):
    stored = sitk.GetArrayFromImage(session["pet"])
    files = write_series(tmp_path / "odd", "PT", np.full(stored.shape, 500), PET_STEP, session, injection=injection)
    with pytest.raises(ImageReadError, match=rf"patient X1: {files[0]}: .*RadiopharmaceuticalStartTime"):
        read_dicom_series(tmp_path / "odd", "PT", "X1")


@pytest.mark.filterwarnings("ignore:Invalid value for VR TM")  # pydicom knows only the DICOM 3 form
def test_acr_nema_colon_time_is_a_dicom_time(session, tmp_path):
    """HH:MM:SS (ACR-NEMA) is still written by some scanners; PS3.5 asks readers to accept it."""
    write_series(tmp_path / "colon", "PT", np.full((SLICES, *PET_SHAPE), 500), PET_STEP, session, injection="10:00:00")
    colon = sitk.GetArrayFromImage(read_dicom_series(tmp_path / "colon", "PT", "X1"))
    plain = sitk.GetArrayFromImage(session["pet"])
    assert colon[0, 0, 0] == pytest.approx(plain[0, 0, 0])
