import json

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from studylib import synthetic
from studylib.synthetic import generate_cohort, generate_patient


def arrays(vol):
    return {k: sitk.GetArrayFromImage(v) for k, v in {"ct": vol.ct, "pet": vol.pet, **vol.labels}.items()}


def test_same_seed_identical_different_seed_differs():
    a, b = arrays(generate_patient("P000", 0, 1, "quick")), arrays(generate_patient("P000", 0, 1, "quick"))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    c = arrays(generate_patient("P000", 1, 1, "quick"))
    assert a["ct"].shape != c["ct"].shape or not np.array_equal(a["ct"], c["ct"])


@pytest.mark.parametrize("index", range(6))
def test_patient_properties(index):
    vol = generate_patient(f"P{index:03d}", 0, index, "quick")
    x = arrays(vol)
    a, b, truth = x["label_a"].astype(bool), x["label_b"].astype(bool), x["truth"].astype(bool)
    assert truth.any() and b.any()
    assert a.sum() > b.sum(), "label A (sensitive) must be larger than label B (specific)"
    assert (a & b).sum() / b.sum() > 0.9, "most of B lies inside A"
    for mask in (a, b):
        slices = mask.any(axis=(1, 2))
        assert (mask[slices].reshape(slices.sum(), -1).mean(axis=1) < 0.05).all(), "lesion under 5% of slice area"
    ct, pet = x["ct"], x["pet"]
    assert ct.dtype == np.int16 and ct.min() >= -1024 and ct.max() <= 3071
    body_soft = (ct > -150) & (ct < 150)
    assert 20 < np.median(ct[(ct > 0) & (ct < 100)]) < 70  # muscle about 45 HU
    assert np.median(ct[(ct > -150) & (ct < -60)]) < -70  # fat about -100 HU
    assert (ct > 1100).any()  # cortical bone
    assert body_soft.any()
    assert pet.dtype == np.float32 and pet.min() >= 0
    assert 2.0 < pet.max() < 15.0  # focus SUVmax 3-12 after PSF and noise
    # PET lies on its own, coarser grid
    assert vol.pet.GetSpacing()[0] > 3.5 > vol.ct.GetSpacing()[0]
    assert vol.pet.GetSize() != vol.ct.GetSize()
    for img in vol.labels.values():
        assert img.GetSize() == vol.ct.GetSize() and img.GetOrigin() == vol.ct.GetOrigin()


def _residual_std_per_slice(ct: np.ndarray) -> np.ndarray:
    """High-frequency HU variation in soft tissue away from bone, per axial slice."""
    out = []
    for sl in ct.astype(float):
        soft = (sl > -300) & (sl < 300) & ~ndimage.binary_dilation(sl > 600, iterations=3)
        soft &= ndimage.binary_erosion(sl > -500, iterations=3)
        out.append(np.std((sl - ndimage.median_filter(sl, 5))[soft]))
    return np.array(out)


def test_metal_patients_have_streaks():
    metal = [i for i in range(40) if synthetic.patient_anatomy(0, i, "quick").implant][:2]
    assert len(metal) == 2
    for index in metal:
        ct = sitk.GetArrayFromImage(generate_patient("P", 0, index, "quick").ct)
        assert ct.max() == 3071
        with_metal = (ct >= 3071).any(axis=(1, 2))
        assert with_metal.any() and (~with_metal).any()
        residual = _residual_std_per_slice(ct)
        assert residual[with_metal].mean() > 1.8 * residual[~with_metal].mean()


def test_about_a_third_have_implants():
    share = np.mean([synthetic.patient_anatomy(0, i).implant is not None for i in range(60)])
    assert 0.2 < share < 0.5


def test_generate_cohort_layout_and_meta(quick_cohort):
    spec = json.loads((quick_cohort / "cohort.json").read_text())
    assert set(spec["patients"]) == {"P000", "P001", "P002", "P003"}
    meta = json.loads((quick_cohort / "P000" / "meta.json").read_text())
    assert meta["pet_to_ct_truth"]["type"] == "Euler3DTransform"
    assert (quick_cohort / "manifest.csv").read_text().count("\n") == 5
    for name in ("ct", "pet", "label_a", "label_b", "truth"):
        assert (quick_cohort / "P000" / f"{name}.nii.gz").exists()


def test_bad_inputs(tmp_path):
    with pytest.raises(ValueError, match="patients"):
        generate_cohort(tmp_path / "a", patients=0)
    with pytest.raises(ValueError, match="seed"):
        generate_cohort(tmp_path / "a", patients=1, seed=-1)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="overwrite"):
        generate_cohort(tmp_path / "full", patients=1, scale="quick")


def test_failed_write_leaves_no_complete_looking_patient(tmp_path, monkeypatch):
    calls = {"n": 0}
    real = synthetic.write_image

    def failing(image, path, compress=True):
        calls["n"] += 1
        if calls["n"] == 3:
            raise OSError(28, "No space left on device")
        real(image, path, compress)

    monkeypatch.setattr(synthetic, "write_image", failing)
    with pytest.raises(OSError):
        generate_cohort(tmp_path / "c", patients=1, scale="quick", progress=False)
    assert not (tmp_path / "c" / "P000").exists()
    assert not list((tmp_path / "c").glob(".*partial"))
    assert not (tmp_path / "c" / "cohort.json").exists()


def test_mri_channel():
    vol = generate_patient("P000", 0, 0, "quick", with_mri=True)
    mri = sitk.GetArrayFromImage(vol.mri)
    assert vol.mri.GetSpacing() != vol.ct.GetSpacing() and mri.max() > 300
