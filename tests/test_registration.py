import numpy as np
import pytest
import SimpleITK as sitk

from studylib.preprocessing.registration import (
    RegistrationError,
    register_pet_to_ct,
    target_registration_error,
    transform_from_record,
)
from studylib.synthetic import generate_patient


@pytest.mark.parametrize("index", range(4))
def test_registration_recovers_misalignment(index):
    vol = generate_patient(f"P{index:03d}", 0, index, "quick")
    truth = transform_from_record(vol.meta["pet_to_ct_truth"])
    center = vol.meta["lesion_center_mm"]
    before = target_registration_error(sitk.Euler3DTransform(), truth, center)
    result = register_pet_to_ct(vol.ct, vol.pet, "rigid")
    tre = target_registration_error(result.transform, truth, center)
    assert before > 2.0, "the phantom must be misaligned for this test to mean anything"
    assert tre < 2.0, f"TRE {tre:.2f} mm (before {before:.2f} mm)"
    assert result.metric_after < result.metric_before  # Mattes MI is minimised


def test_registration_is_reproducible_whatever_the_itk_threads():
    """The same inputs give the same transform bit for bit (ITK's threaded metric sums would not), and the
    caller's ITK thread setting is restored."""
    vol = generate_patient("P002", 0, 2, "quick")
    before = sitk.ProcessObject.GetGlobalDefaultNumberOfThreads()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)
    try:
        first = register_pet_to_ct(vol.ct, vol.pet, "rigid").transform.GetParameters()
        assert sitk.ProcessObject.GetGlobalDefaultNumberOfThreads() == 2
        again = register_pet_to_ct(vol.ct, vol.pet, "rigid").transform.GetParameters()
    finally:
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(before)
    assert first == again


def test_none_mode_is_identity_and_no_overlap_is_refused():
    vol = generate_patient("P000", 0, 0, "quick")
    assert register_pet_to_ct(vol.ct, vol.pet, "none").transform.GetParameters() == (0.0,) * 6
    far = sitk.Image(vol.pet)
    far.SetOrigin((5000.0, 5000.0, 5000.0))
    with pytest.raises(RegistrationError, match="overlap"):
        register_pet_to_ct(vol.ct, far, "rigid")
    with pytest.raises(ValueError, match="registration mode"):
        register_pet_to_ct(vol.ct, vol.pet, "affine")
    np.testing.assert_allclose(vol.ct.GetSpacing()[2] > 0, True)
