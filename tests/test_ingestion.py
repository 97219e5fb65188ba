import json

import numpy as np
import pytest
import SimpleITK as sitk

from studylib.ingest.cohort import CohortError, init_cohort, load_cohort
from studylib.ingest.errors import ImageReadError
from studylib.ingest.imageio import read_image
from studylib.preprocessing.cache import cache_patient
from studylib.preprocessing.intensity import bone_window, min_max, normalise_pet, window
from studylib.preprocessing.patient_on_ct import PreprocessConfig, load_patient_on_ct
from studylib.preprocessing.slices import resize_slices, restore_slices

from .conftest import REALDATA, needs_realdata


def test_bone_window_and_min_max():
    hu = np.array([-1000.0, -400, 350, 1100, 3000])
    np.testing.assert_allclose(window(hu), [-400, -400, 350, 1100, 1100])
    np.testing.assert_allclose(bone_window(hu), [0, 0, 0.5, 1, 1], atol=1e-6)
    np.testing.assert_allclose(min_max(np.full(4, 7.0)), 0.0)  # epsilon: no division by zero
    np.testing.assert_allclose(normalise_pet(np.array([0.0, 5, 20]), "clip", 10), [0, 0.5, 1])
    with pytest.raises(ValueError):
        normalise_pet(np.zeros(3), "bogus")


def test_resize_and_restore_roundtrip_shapes():
    vol = np.random.default_rng(0).random((3, 100, 80)).astype(np.float32)
    small = resize_slices(vol, 64)
    assert small.shape == (3, 64, 64)
    back = restore_slices(small, (100, 80))
    assert back.shape == (3, 100, 80)
    mask = np.zeros((1, 100, 80), np.uint8)
    mask[0, 40:60, 30:50] = 1
    assert set(np.unique(resize_slices(mask, 64, is_mask=True))) <= {0, 1}


def test_cache_hit_and_invalidation(quick_cohort, tmp_path):
    cohort = load_cohort(quick_cohort)
    record = cohort.patient("P000")
    cfg = PreprocessConfig(image_size=64, registration="none")
    first = cache_patient(record, cfg, tmp_path)
    assert first.images.shape[1:] == (2, 64, 64) and first.images.dtype == np.float16
    stamp = (tmp_path / "P000" / "images.npy").stat().st_mtime_ns
    cache_patient(record, cfg, tmp_path)
    assert (tmp_path / "P000" / "images.npy").stat().st_mtime_ns == stamp  # reused
    cache_patient(record, PreprocessConfig(image_size=32, registration="none"), tmp_path)
    assert np.load(tmp_path / "P000" / "images.npy").shape[-1] == 32  # parameter change invalidates


def _write_cohort(tmp_path, quick_cohort, mutate):
    """A one-patient cohort copied from the quick cohort with one file changed by ``mutate``."""
    folder = tmp_path / "data" / "X001"
    folder.mkdir(parents=True)
    for name in ("ct", "pet", "label_a"):
        img = sitk.ReadImage(str(quick_cohort / "P000" / f"{name}.nii.gz"))
        img = mutate(name, img)
        if img is not None:
            sitk.WriteImage(img, str(folder / f"{name}.nii.gz"))
    spec, skipped = init_cohort(tmp_path / "data", "ct.nii.gz", "pet.nii.gz", {"a": "label_a.nii.gz"},
                                tmp_path / "cohort.json")
    return load_cohort(tmp_path / "cohort.json")


@pytest.mark.parametrize("case,message", [
    ("nan", "NaN"), ("constant", "constant"), ("nonbinary", "not binary"), ("grid", "neither"),
])
def test_bad_input_errors_name_patient_and_file(tmp_path, quick_cohort, case, message):
    def mutate(name, img):
        arr = sitk.GetArrayFromImage(img)
        if case == "nan" and name == "pet":
            arr = arr.copy()
            arr[0, 0, 0] = np.nan
        elif case == "constant" and name == "pet":
            arr = np.ones_like(arr)
        elif case == "nonbinary" and name == "label_a":
            arr = arr.astype(np.uint8) * 2
        elif case == "grid" and name == "label_a":
            arr = arr[:, :-3]
        else:
            return img
        out = sitk.GetImageFromArray(arr)
        out.SetSpacing(img.GetSpacing())
        out.SetOrigin(img.GetOrigin())
        return out

    cohort = _write_cohort(tmp_path, quick_cohort, mutate)
    with pytest.raises(ImageReadError, match=message) as err:
        load_patient_on_ct(cohort.patient("X001"), registration="none")
    assert "X001" in str(err.value)


def test_missing_and_truncated_files(tmp_path, quick_cohort):
    def drop_pet(name, img):
        return None if name == "pet" else img

    with pytest.raises(CohortError, match="no patient folder"):
        _write_cohort(tmp_path / "a", quick_cohort, drop_pet)
    cohort = _write_cohort(tmp_path / "b", quick_cohort, lambda n, i: i)
    pet = cohort.patient("X001").images["pet"]
    pet.write_bytes(pet.read_bytes()[:200])
    with pytest.raises(ImageReadError, match="X001"):
        load_patient_on_ct(cohort.patient("X001"), registration="none")


def test_duplicate_patient_ids_and_missing_modality(tmp_path):
    path = tmp_path / "cohort.json"
    path.write_text('{"labels": {"a": "x"}, "patients": {"P1": {"ct": "a", "pet": "b"}, "P1": {"ct": "c", "pet": "d"}}}')
    with pytest.raises(CohortError, match="duplicate"):
        load_cohort(path)
    path.write_text(json.dumps({"labels": {"a": "x"}, "patients": {"P1": {"ct": "a"}}}))
    with pytest.raises(CohortError, match="missing modality"):
        load_cohort(path)


def test_suv_conversion_from_header():
    from pydicom.dataset import Dataset

    from studylib.ingest.dicom import suv_factor

    ds = Dataset()
    ds.Units = "BQML"
    ds.PatientWeight = 70
    ds.SeriesTime = "110000"
    ds.DecayCorrection = "START"
    radio = Dataset()
    radio.RadionuclideTotalDose = 370e6
    radio.RadionuclideHalfLife = 6586.2
    radio.RadiopharmaceuticalStartTime = "100000"
    ds.RadiopharmaceuticalInformationSequence = [radio]
    expected = 70000 / (370e6 * 2 ** (-3600 / 6586.2))
    assert suv_factor(ds) == pytest.approx(expected)
    ds.Units = "GML"
    assert suv_factor(ds) == 1.0
    ds.Units = "BQML"
    del ds.PatientWeight
    with pytest.raises(ImageReadError, match="PatientWeight"):
        suv_factor(ds)


@needs_realdata()
def test_realdata_rtstruct_and_pet_resampling():
    from studylib.evaluation.metrics import confusion_counts, dice
    from studylib.ingest.dicom import rasterise_rtstruct, read_dicom_series
    from studylib.preprocessing.registration import resample_to

    ct = read_dicom_series(REALDATA / "dicom_STS_002" / "CT" / "image", "CT", "STS_002")
    mask = rasterise_rtstruct(REALDATA / "dicom_STS_002" / "CT" / "mask" / "RS.dcm", ct, "GTV_Mass_CT")
    ref = sitk.GetArrayFromImage(sitk.ReadImage(str(REALDATA / "STS_002" / "CT_mask.nii.gz")))
    assert dice(confusion_counts(mask, ref)) > 0.95
    pet = read_dicom_series(REALDATA / "dicom_STS_002" / "PET" / "image", "PT", "STS_002")
    pet_native_mask = sitk.GetArrayFromImage(sitk.ReadImage(str(REALDATA / "STS_002" / "PET_mask.nii.gz")))
    native_max = sitk.GetArrayFromImage(pet)[pet_native_mask > 0].max()
    on_ct = sitk.GetArrayFromImage(resample_to(pet, ct))[ref > 0].max()
    assert abs(on_ct - native_max) / native_max < 0.05


@needs_realdata()
def test_realdata_cohort_init_without_copying(tmp_path):
    spec, skipped = init_cohort(REALDATA, "CT_image.nii.gz", "PET_image.nii.gz", {"gtv": "CT_mask.nii.gz"},
                                tmp_path / "real.json")
    assert len(spec["patients"]) == 26 and len(skipped) >= 15
    cohort = load_cohort(tmp_path / "real.json")
    patient = load_patient_on_ct(cohort.patient(cohort.patient_ids[0]), registration="none")
    assert patient.channels["pet"].shape == patient.channels["ct"].shape
    assert not list(tmp_path.glob("**/*.nii.gz"))


def test_nifti_cut_inside_its_data_is_refused(tmp_path, quick_cohort):
    """A partial copy that still decompresses to a full header must not be read as zero-padded voxels."""
    import gzip

    source = quick_cohort / "P000" / "ct.nii.gz"
    raw = gzip.decompress(source.read_bytes())
    cut = tmp_path / "ct_cut.nii.gz"
    cut.write_bytes(gzip.compress(raw[: len(raw) // 3]))
    with pytest.raises(ImageReadError, match="truncated.*ct_cut.nii.gz|ct_cut.nii.gz.*truncated"):
        read_image(cut, "P000")
    partial = tmp_path / "ct_partial.nii.gz"
    partial.write_bytes(source.read_bytes()[:5000])  # a download stopped inside the gzip stream
    with pytest.raises(ImageReadError, match="ct_partial.nii.gz"):
        read_image(partial, "P000")
    assert read_image(source, "P000").GetSize()[0] > 0


def test_suv_decay_uses_full_date_times_across_midnight():
    from pydicom.dataset import Dataset

    from studylib.ingest.dicom import suv_factor

    ds = Dataset()
    ds.Units, ds.PatientWeight, ds.DecayCorrection = "BQML", 70, "START"
    ds.SeriesDate, ds.SeriesTime = "20260102", "003000"  # 00:30 the next day
    radio = Dataset()
    radio.RadionuclideTotalDose, radio.RadionuclideHalfLife = 370e6, 6586.2
    radio.RadiopharmaceuticalStartDateTime = "20260101233000"  # 23:30
    ds.RadiopharmaceuticalInformationSequence = [radio]
    assert suv_factor(ds) == pytest.approx(70000 / (370e6 * 2 ** (-3600 / 6586.2)))
    radio.RadiopharmaceuticalStartDateTime = "20260102013000"  # after the scan
    with pytest.raises(ImageReadError, match="precedes"):
        suv_factor(ds)


def test_non_square_slices_keep_their_aspect():
    """A real crop (e.g. 5 cm around a tumour, not square) is padded, not stretched, and restored exactly."""
    yy, xx = np.mgrid[0:60, 0:120]
    disk = ((yy - 30) ** 2 + (xx - 60) ** 2 < 20**2).astype(np.uint8)[None]
    small = resize_slices(disk, 64, is_mask=True)
    ys, xs = np.nonzero(small[0])
    assert abs((ys.max() - ys.min()) - (xs.max() - xs.min())) <= 1  # still round
    back = restore_slices(small.astype(np.float32), (60, 120)) >= 0.5
    assert back.shape == (1, 60, 120)
    assert (back[0] & disk[0].astype(bool)).sum() / disk.sum() > 0.9
    stretched = resize_slices(disk, 64, is_mask=True, fit="stretch")
    ys, xs = np.nonzero(stretched[0])
    assert (ys.max() - ys.min()) > 1.5 * (xs.max() - xs.min())


def _dicom_cohort(tmp_path, labels: dict[str, str]):
    """A cohort.json for the DICOM patient STS_002 with the given label sources."""
    dicom = REALDATA / "dicom_STS_002"
    spec = {"name": "sts-dicom", "root": str(dicom), "channels": {"ct": "CT", "pet": "PET"},
            "labels": {k: k for k in labels}, "train_labels": sorted(labels),
            "patients": {"STS_002": {"ct": "CT/image", "pet": "PET/image", "labels": labels}}}
    path = tmp_path / "cohort.json"
    path.write_text(json.dumps(spec))
    return load_cohort(path)


@needs_realdata()
def test_dicom_seg_round_trip_on_ct_and_pet_grids(tmp_path):
    """A SEG on the CT grid reads back to the same mask; one on the PET grid reads back as its NIfTI twin does."""
    import pydicom

    from studylib.ingest.dicom import choose_series, rasterise_rtstruct, read_dicom_series
    from studylib.ingest.imageio import image_from_array
    from studylib.ingest.seg import segment_labels, write_seg

    dicom = REALDATA / "dicom_STS_002"
    ct_files = choose_series(dicom / "CT" / "image", "CT")
    ct = read_dicom_series(dicom / "CT" / "image", "CT")
    gtv = rasterise_rtstruct(dicom / "CT" / "mask" / "RS.dcm", ct, "GTV_Mass_CT")
    assert gtv.sum() > 1000
    ct_seg = write_seg(gtv, ct_files, tmp_path / "ct.seg.dcm", segment_label="gtv")
    assert segment_labels(ct_seg) == {"gtv": 1}
    written = pydicom.dcmread(ct_seg)
    first = pydicom.dcmread(ct_files[0])
    assert written.ReferencedSeriesSequence[0].SeriesInstanceUID == first.SeriesInstanceUID
    assert written.PatientID == first.PatientID and written.StudyInstanceUID == first.StudyInstanceUID

    pet_files = choose_series(dicom / "PET" / "image", "PT")
    pet = read_dicom_series(dicom / "PET" / "image", "PT")
    pet_mask = sitk.GetArrayFromImage(sitk.ReadImage(str(REALDATA / "STS_002" / "PET_mask.nii.gz"))).astype(np.uint8)
    assert pet_mask.shape == sitk.GetArrayFromImage(pet).shape
    pet_seg = write_seg(pet_mask, pet_files, tmp_path / "pet.seg.dcm", segment_label="gtv_pet")
    sitk.WriteImage(image_from_array(pet_mask, pet), str(tmp_path / "pet_mask.nii.gz"))

    cohort = _dicom_cohort(tmp_path, {"ct_seg": f"seg:gtv:{ct_seg}", "pet_seg": f"seg:gtv_pet:{pet_seg}",
                                      "pet_nifti": str(tmp_path / "pet_mask.nii.gz")})
    patient = load_patient_on_ct(cohort.patient("STS_002"), registration="none")
    assert np.array_equal(patient.labels["ct_seg"], gtv)
    assert patient.labels["pet_seg"].sum() > 0
    assert np.array_equal(patient.labels["pet_seg"], patient.labels["pet_nifti"])


@needs_realdata()
def test_corrupt_or_foreign_seg_is_a_clear_error(tmp_path):
    from studylib.ingest.dicom import choose_series, read_dicom_series
    from studylib.ingest.seg import read_seg_segment, write_seg

    dicom = REALDATA / "dicom_STS_002"
    ct_files = choose_series(dicom / "CT" / "image", "CT")
    ct = read_dicom_series(dicom / "CT" / "image", "CT")
    mask = np.zeros(sitk.GetArrayFromImage(ct).shape, np.uint8)
    mask[10:14, 40:60, 50:70] = 1
    good = write_seg(mask, ct_files, tmp_path / "good.seg.dcm", segment_label="lesion")
    back, grid = read_seg_segment(good, "lesion", (ct,))
    assert grid == 0 and np.array_equal(back, mask)
    with pytest.raises(ImageReadError, match=r"good\.seg\.dcm.*no segment 'tumour'.*lesion"):
        read_seg_segment(good, "tumour", (ct,))
    cut = tmp_path / "cut.seg.dcm"
    cut.write_bytes(good.read_bytes()[:2000])
    with pytest.raises(ImageReadError, match=r"cut\.seg\.dcm"):
        read_seg_segment(cut, "lesion", (ct,))
    with pytest.raises(ImageReadError, match=r"not a DICOM SEG.*CT|000000\.dcm.*not a DICOM SEG"):
        read_seg_segment(ct_files[0], "lesion", (ct,))
    text = tmp_path / "notes.dcm"
    text.write_text("not dicom at all")
    with pytest.raises(ImageReadError, match=r"notes\.dcm"):
        read_seg_segment(text, "lesion", (ct,))
    small = sitk.Image(10, 10, 5, sitk.sitkUInt8)  # a grid the SEG's frames do not lie on
    with pytest.raises(ImageReadError, match=r"good\.seg\.dcm.*none of the given image grids"):
        read_seg_segment(good, "lesion", (small,))
