import numpy as np
import pytest
import SimpleITK as sitk
from sklearn.metrics import cohen_kappa_score

from studylib.evaluation import metrics as M
from studylib.preprocessing.targets import staple_consensus


def test_hand_computed_tiny_masks():
    ref = np.zeros((1, 4, 4), bool)
    pred = np.zeros((1, 4, 4), bool)
    ref[0, 0, 0:2] = True          # 2 voxels
    pred[0, 0, 1:4] = True         # 3 voxels, 1 overlapping
    out = M.patient_metrics(pred, ref, (1, 1, 1))
    assert out["dsc"] == pytest.approx(2 * 1 / (3 + 2))
    assert out["iou"] == pytest.approx(1 / 4)
    assert out["sensitivity"] == pytest.approx(1 / 2)
    assert out["precision"] == pytest.approx(1 / 3)
    assert out["specificity"] == pytest.approx(12 / 14)  # TN 12, FP 2
    assert out["volume_pred_ml"] == pytest.approx(0.003) and out["volume_ref_ml"] == pytest.approx(0.002)
    assert out["lesion_tp"] == 1 and out["lesion_fp"] == 0 and out["lesion_fn"] == 0


def test_surface_distance_hand_case():
    a = np.zeros((1, 1, 10), bool)
    b = np.zeros((1, 1, 10), bool)
    a[0, 0, 0] = True
    b[0, 0, 3] = True
    out = M.patient_metrics(a, b, (1.0, 1.0, 2.0))
    assert out["hd"] == pytest.approx(6.0) and out["hd95"] == pytest.approx(6.0) and out["assd"] == pytest.approx(6.0)
    assert out["nsd"] == 0.0 and out["lesion_fp"] == 1 and out["lesion_fn"] == 1
    assert out["fp_volume_ml"] == pytest.approx(0.002) and out["fn_volume_ml"] == pytest.approx(0.002)


def test_empty_mask_policy():
    z = np.zeros((3, 5, 5), bool)
    one = z.copy()
    one[1, 2, 2] = True
    both = M.patient_metrics(z, z, (1, 1, 1))
    assert both["dsc"] == both["iou"] == both["sensitivity"] == both["precision"] == both["nsd"] == 1.0
    assert both["hd95"] == 0.0 and both["empty_reference"] and both["empty_prediction"]
    worst = M.volume_diagonal(z.shape, (1, 1, 1))
    for pred, ref in ((one, z), (z, one)):
        out = M.patient_metrics(pred, ref, (1, 1, 1))
        assert out["dsc"] == out["iou"] == out["nsd"] == 0.0
        assert out["hd95"] == out["hd"] == out["assd"] == pytest.approx(worst)
        assert out["empty_reference"] != out["empty_prediction"]
    assert M.patient_metrics(one, z, (1, 1, 1))["sensitivity"] == 0.0
    assert M.patient_metrics(z, one, (1, 1, 1))["precision"] == 0.0


def random_masks(seed, shape=(12, 30, 28)):
    from scipy import ndimage

    rng = np.random.default_rng(seed)
    a = ndimage.binary_opening(ndimage.gaussian_filter(rng.random(shape), 2) > 0.52)
    b = ndimage.binary_opening(ndimage.gaussian_filter(rng.random(shape), 2) > 0.52)
    # keep objects off the volume border: there ITK's LabelContour and our surface differ by convention
    return np.pad(a, 1), np.pad(b, 1)


@pytest.mark.parametrize("seed", range(4))
def test_against_simpleitk_and_sklearn(seed):
    a, b = random_masks(seed)
    spacing_zyx = (3.0, 0.8, 1.1)
    out = M.patient_metrics(a, b, spacing_zyx)
    ia, ib = (sitk.GetImageFromArray(m.astype(np.uint8)) for m in (a, b))
    for img in (ia, ib):
        img.SetSpacing(spacing_zyx[::-1])
    overlap = sitk.LabelOverlapMeasuresImageFilter()
    overlap.Execute(ib, ia)
    assert out["dsc"] == pytest.approx(overlap.GetDiceCoefficient())
    assert out["iou"] == pytest.approx(overlap.GetJaccardCoefficient())
    # surface distances: SimpleITK contours + Maurer distance map of the other contour
    ca, cb = (sitk.LabelContour(img, fullyConnected=False) for img in (ia, ib))
    dist_to_b = sitk.GetArrayFromImage(sitk.Abs(sitk.SignedMaurerDistanceMap(cb, insideIsPositive=False,
                                                                            squaredDistance=False, useImageSpacing=True)))
    dist_to_a = sitk.GetArrayFromImage(sitk.Abs(sitk.SignedMaurerDistanceMap(ca, insideIsPositive=False,
                                                                            squaredDistance=False, useImageSpacing=True)))
    d_ab = dist_to_b[sitk.GetArrayFromImage(ca) > 0]
    d_ba = dist_to_a[sitk.GetArrayFromImage(cb) > 0]
    assert out["hd"] == pytest.approx(max(d_ab.max(), d_ba.max()), abs=1e-4)
    assert out["hd95"] == pytest.approx(max(np.percentile(d_ab, 95), np.percentile(d_ba, 95)), abs=1e-4)
    assert out["assd"] == pytest.approx((d_ab.sum() + d_ba.sum()) / (len(d_ab) + len(d_ba)), abs=1e-4)
    agree = M.agreement(a, b, spacing_zyx)
    assert agree["kappa_voxel"] == pytest.approx(cohen_kappa_score(a.ravel(), b.ravel()))


def test_specificity_within_body_and_staple():
    a, b = random_masks(7)
    body = np.zeros_like(a)
    body[:, 5:25, 5:25] = True
    out = M.patient_metrics(a, b, (1, 1, 1), body=body)
    c = M.confusion_counts(a, b, within=body)
    assert out["specificity_body"] == pytest.approx(c.tn / (c.tn + c.fp))
    consensus = staple_consensus([a, a, b]).astype(bool)  # the one STAPLE: preprocessing.targets
    assert consensus.shape == a.shape and (consensus & a).sum() >= (consensus & ~a).sum()
    assert np.isnan(M.patient_level_kappa([True, True], [True, True]))
    assert M.patient_level_kappa([True, False, True], [True, False, False]) == pytest.approx(
        cohen_kappa_score([1, 0, 1], [1, 0, 0]))


def test_lesion_detection_rule():
    ref = np.zeros((1, 10, 10), bool)
    pred = np.zeros_like(ref)
    ref[0, 0:2, 0:2] = True   # detected
    ref[0, 6:8, 6:8] = True   # missed
    pred[0, 1:3, 1:3] = True  # overlaps the first
    pred[0, 0, 8:10] = True   # false positive
    out = M.lesion_detection(pred, ref, 0.001)
    assert (out["lesion_tp"], out["lesion_fp"], out["lesion_fn"]) == (1, 1, 1)
    assert out["lesion_f1"] == pytest.approx(0.5)
    assert out["fp_volume_ml"] == pytest.approx(0.002) and out["fn_volume_ml"] == pytest.approx(0.004)


def test_lesion_side_fraction():
    from studylib.evaluation.metrics import lesion_side_fraction

    body = np.zeros((4, 10, 20), bool)
    body[:, 2:8, 1:8] = True
    body[:, 2:8, 12:19] = True  # two limbs, midline at x = 9.5
    ref = np.zeros_like(body)
    ref[1:3, 4:6, 14:16] = True  # lesion in the right-hand limb
    pred = np.zeros_like(body)
    pred[1, 4:6, 13:16] = True  # 6 voxels on the lesion side
    pred[2, 4:6, 3:5] = True  # 4 on the other limb
    assert lesion_side_fraction(pred, ref, body) == pytest.approx(0.6)
    assert np.isnan(lesion_side_fraction(np.zeros_like(body), ref, body))


def test_nsd_tolerance_follows_the_voxel_size():
    from studylib.evaluation.metrics import nsd_tolerance

    spacings = [(2.1, 2.1, 3.0), (2.6, 2.6, 2.0)]
    assert nsd_tolerance(None, spacings) == 3.0  # the largest spacing, rounded up to 0.5 mm
    assert nsd_tolerance(None, [(0.9, 0.9, 1.25)]) == 1.5
    assert nsd_tolerance(4.0, spacings) == 4.0
    with pytest.raises(ValueError, match="below the cohort's largest voxel spacing 3.00 mm"):
        nsd_tolerance(2.0, spacings)


def test_boundary_summaries_are_not_decided_by_an_empty_prediction():
    import pandas as pd

    from studylib.reporting.aggregate import table1_extra

    rows = []
    for i, (hd95, empty) in enumerate([(3.0, False), (4.0, False), (5.0, False), (654.0, True)]):
        rows.append({"modality": "ct", "train_label": "label_a", "ground_truth": "label_a", "patient_id": f"P{i}",
                     "hd95": hd95, "assd": hd95 / 2, "nsd": 0.0 if empty else 0.9, "fp_volume_ml": 0.0,
                     "fn_volume_ml": 1.0, "lesion_f1": 0.5, "precision": 0.5,
                     "volume_pred_ml": 0.0 if empty else 2.0, "volume_ref_ml": 2.0})
    row = table1_extra(pd.DataFrame(rows), "label_a").iloc[0]
    assert row["empty predictions"] == "1 of 4"
    assert row["hd95 median [IQR]"] == "4.5 [3.8-167.2]"  # the median stays where the real predictions are
    assert "hd95" not in row.index  # no mean of the worst-value scores
