"""The multi-rater metric suite against independent re-implementations of the reference code's formulas.

Each ``reference_*`` function below is written from the reference implementation cited in
``studylib/evaluation/multirater.py`` (PHiSeg ``utils.py``, D-Persona ``lib/metrics_set.py``, CCDM
``ddpm/utils.py``), with loops or the reference's own broadcasting, never with the library's code. The one change
to the references: ratios are exact (D-Persona adds 1e-6 or 1e-8 to numerator and denominator), with the empty-mask
policy PHiSeg's ``dist_fct`` states (two empty masks: IoU 1; one empty: 0).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linear_sum_assignment

from studylib.evaluation import multirater

SHAPE = (3, 4, 5)
FIXTURE_SETS = 60


def random_fixture(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Readers (2-4) and predictions (1-50) on a small 3D grid: masks, some empty, some predictions probabilities
    or exact copies of a reader."""
    rng = np.random.default_rng(seed)
    m = int(rng.integers(2, 5))
    n = int(rng.choice([1, 2, 3, 4, int(rng.integers(5, 51))]))
    readers = np.zeros((m, *SHAPE), bool)
    for j in range(m):
        if rng.random() > 0.2:  # else empty
            readers[j] = rng.random(SHAPE) < rng.uniform(0.05, 0.6)
    probabilities = seed % 2 == 1
    predictions = np.zeros((n, *SHAPE), float if probabilities else bool)
    for i in range(n):
        draw = rng.random()
        if draw < 0.15:
            continue  # empty prediction
        if draw < 0.35:
            predictions[i] = readers[rng.integers(m)]
        elif probabilities:
            predictions[i] = rng.random(SHAPE) ** rng.uniform(0.3, 3)
        else:
            predictions[i] = rng.random(SHAPE) < rng.uniform(0.05, 0.6)
    return predictions, readers


def reference_iou(x: np.ndarray, y: np.ndarray) -> float:
    """PHiSeg ``dist_fct`` for the foreground: both empty 1, one empty 0, else medpy's ``jc``."""
    x, y = x.astype(bool), y.astype(bool)
    if x.sum() == 0 and y.sum() == 0:
        return 1.0
    if x.sum() == 0 or y.sum() == 0:
        return 0.0
    return float(np.logical_and(x, y).sum() / np.logical_or(x, y).sum())


def reference_dice(x: np.ndarray, y: np.ndarray) -> float:
    """D-Persona ``compute_dice_accuracy`` (2 I + s) / (|x| + |y| + s), exact (s -> 0) with both empty = 1."""
    x, y = x.astype(float).ravel(), y.astype(float).ravel()
    if x.sum() + y.sum() == 0:
        return 1.0
    return float(2.0 * (x * y).sum() / (x.sum() + y.sum()))


def thresholded(predictions: np.ndarray) -> list[np.ndarray]:
    """D-Persona ``pred_masks = (preds > thresh)`` at 0.5."""
    return [p > 0.5 for p in predictions.astype(float)]


def reference_ged_v(predictions, readers) -> float:
    """PHiSeg ``generalised_energy_distance``: (2/NM) sum d_sy - (1/N^2) sum d_ss - (1/M^2) sum d_yy."""
    samples, gts = thresholded(predictions), list(readers)
    n, m = len(samples), len(gts)
    d_sy = [1 - reference_iou(samples[i], gts[j]) for i in range(n) for j in range(m)]
    d_ss = [1 - reference_iou(samples[i], samples[j]) for i in range(n) for j in range(n)]
    d_yy = [1 - reference_iou(gts[i], gts[j]) for i in range(m) for j in range(m)]
    return (2.0 / (n * m)) * sum(d_sy) - (1.0 / n**2) * sum(d_ss) - (1.0 / m**2) * sum(d_yy)


def reference_ged_u(predictions, readers) -> float:
    """D-Persona ``generalized_energy_distancex`` (no self-pairs); a one-member set's within term is 0."""
    preds, labels = thresholded(predictions), list(readers)
    label_label = [1 - reference_iou(a, b) for i1, a in enumerate(labels) for i2, b in enumerate(labels) if i1 != i2]
    pred_pred = [1 - reference_iou(a, b) for i1, a in enumerate(preds) for i2, b in enumerate(preds) if i1 != i2]
    pred_label = [1 - reference_iou(p, lab) for p in preds for lab in labels]
    within_labels = sum(label_label) / len(label_label) if label_label else 0.0
    within_preds = sum(pred_pred) / len(pred_pred) if pred_pred else 0.0
    return 2 * sum(pred_label) / len(pred_label) - within_labels - within_preds


def ccdm_iou(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """CCDM ``iou``: (x & y).sum / (x | y).sum, NaN set to 1."""
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = (x & y).sum(axis) / (x | y).sum(axis)
    iou[np.isnan(iou)] = 1.0
    return iou


def reference_hm_iou(predictions, readers) -> float:
    """CCDM: readers and predictions ``repeat_interleave``d to lcm(M, N), one-hot, IoU of the foreground class by
    broadcasting (``batched_distance``), Hungarian matching on 1 - IoU, mean matched IoU."""
    labels = np.asarray(readers).astype(int)
    preds = np.stack(thresholded(predictions)).astype(int)
    common = np.lcm(len(labels), len(preds))
    labels = np.repeat(labels, common // len(labels), axis=0).reshape(common, -1)
    preds = np.repeat(preds, common // len(preds), axis=0).reshape(common, -1)
    eye = np.eye(2)
    one_hot_labels, one_hot_preds = eye[labels].astype(bool), eye[preds].astype(bool)
    per_class = ccdm_iou(one_hot_labels[:, None], one_hot_preds[None, :], axis=-2)
    cost = 1 - per_class[..., 1:].mean(-1)
    return float((1 - cost)[linear_sum_assignment(cost)].mean())


def brute_force_hm_iou(predictions, readers) -> float:
    """The best one-to-one matching of the replicated sets, by trying every permutation (small sets only)."""
    labels, preds = list(readers), thresholded(predictions)
    common = math.lcm(len(labels), len(preds))
    labels = [x for x in labels for _ in range(common // len(labels))]
    preds = [x for x in preds for _ in range(common // len(preds))]
    iou = [[reference_iou(a, b) for b in preds] for a in labels]
    return max(sum(iou[i][p[i]] for i in range(common)) for p in itertools.permutations(range(common))) / common


def reference_dice_matrix(predictions, readers) -> np.ndarray:
    """D-Persona ``dice_at_all``'s ``dice_matrix[i, j]``: reader i against prediction j."""
    preds = thresholded(predictions)
    matrix = np.zeros((len(readers), len(preds)))
    for i in range(len(readers)):
        for j in range(len(preds)):
            matrix[i, j] = reference_dice(readers[i], preds[j])
    return matrix


def reference_dice_match(predictions, readers) -> float:
    """D-Persona ``dice_match`` (every reader matched) when M <= N; else the best injective matching of the N
    predictions to readers, by enumeration (the library's stated rule where D-Persona's index runs out)."""
    matrix = reference_dice_matrix(predictions, readers)
    m, n = matrix.shape
    if m <= n:
        cost = 1 - matrix
        _, col_ind = linear_sum_assignment(cost)
        return float(np.mean([1 - cost[i, col_ind[i]] for i in range(m)]))
    return max(sum(matrix[rows[j], j] for j in range(n)) for rows in itertools.permutations(range(m), n)) / n


def reference_dice_soft(predictions, readers) -> float:
    """D-Persona ``dice_at_thresh``: mean over thresholds of Dice(mean prediction > t, mean label > t)."""
    pred_mean = np.asarray(predictions, float).mean(0)
    label_mean = np.asarray(readers, float).mean(0)
    return float(np.mean([reference_dice(pred_mean > t, label_mean > t) for t in [0.1, 0.3, 0.5, 0.7, 0.9]]))


def reference_ncc(a: np.ndarray, v: np.ndarray) -> float:
    """PHiSeg ``ncc`` (zero_norm): np.correlate of the standardised maps; NaN for a constant map (0/0 there)."""
    a, v = a.flatten(), v.flatten()
    if np.ptp(a) == 0 or np.ptp(v) == 0:
        return float("nan")
    a = (a - np.mean(a)) / (np.std(a) * len(a))
    v = (v - np.mean(v)) / np.std(v)
    return float(np.correlate(a, v)[0])


def reference_s_ncc(predictions, readers) -> float:
    """PHiSeg ``variance_ncc_dist`` on two-class one-hot samples (1 - p, p) and one-hot readers."""
    def pixel_wise_xent(m_samp, m_gt, eps=1e-8):
        return -1.0 * np.sum(m_gt * np.log(m_samp + eps), axis=-1)

    p = np.asarray(predictions, float)
    sample_arr = np.stack([1 - p, p], axis=-1)
    y = np.asarray(readers, float)
    gt_arr = np.stack([1 - y, y], axis=-1)
    mean_seg = np.mean(sample_arr, axis=0)
    n, m = sample_arr.shape[0], gt_arr.shape[0]
    e_ss = np.mean([pixel_wise_xent(sample_arr[i], mean_seg) for i in range(n)], axis=0)
    e_sy = np.zeros((m, n, *p.shape[1:]))
    for j in range(m):
        for i in range(n):
            e_sy[j, i] = pixel_wise_xent(sample_arr[i], gt_arr[j])
    e_sy = np.mean(e_sy, axis=1)
    return (1 / m) * sum(reference_ncc(e_ss, e_sy[j]) for j in range(m))


def close(a: float, b: float) -> bool:
    """Equal to 1e-6, NaN equal to NaN."""
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-6


@pytest.mark.parametrize("seed", range(FIXTURE_SETS))
def test_every_metric_matches_its_reference(seed):
    predictions, readers = random_fixture(seed)
    matrix = reference_dice_matrix(predictions, readers)
    expected = {
        "ged_v": reference_ged_v(predictions, readers), "ged_u": reference_ged_u(predictions, readers),
        "hm_iou": reference_hm_iou(predictions, readers), "dice_max": float(matrix.max(0).mean()),
        "dice_max_reverse": float(matrix.max(1).mean()), "dice_match": reference_dice_match(predictions, readers),
        "dice_soft": reference_dice_soft(predictions, readers), "s_ncc": reference_s_ncc(predictions, readers)}
    aligned = len(predictions) == len(readers)
    if aligned:
        expected["dice_each"] = float(np.mean([matrix[i, i] for i in range(len(readers))]))
    got = multirater.multirater_suite(predictions, readers, styles_of_readers=aligned)
    assert set(got) == set(expected)
    wrong = {k: (got[k], expected[k]) for k in expected if not close(got[k], expected[k])}
    assert not wrong, wrong
    assert got["ged_v"] >= -1e-12  # the V-statistic of a negative-type distance
    if math.lcm(len(predictions), len(readers)) <= 6:
        assert close(got["hm_iou"], brute_force_hm_iou(predictions, readers))


def test_fixtures_cover_the_cases():
    """The random sets hold empty readers and predictions, probabilities, 1 and many predictions, 2 to 4 readers."""
    fixtures = [random_fixture(seed) for seed in range(FIXTURE_SETS)]
    assert {len(r) for _, r in fixtures} == {2, 3, 4}
    counts = {len(p) for p, _ in fixtures}
    assert 1 in counts and max(counts) >= 20
    assert any((~r.reshape(len(r), -1).any(1)).any() for _, r in fixtures)
    assert any((p.reshape(len(p), -1) <= 0.5).all(1).any() for p, _ in fixtures)
    assert any(p.dtype == float for p, _ in fixtures) and any(p.dtype == bool for p, _ in fixtures)
    assert any(len(p) < len(r) for p, r in fixtures)  # more readers than predictions (Dice_match's own rule)


def test_perfect_style_predictions_of_two_readers():
    """Predictions {A, B} of readers {A, B}, A != B: GED_V = 2 d/2 - d/2 - d/2 = 0, GED_U = 2 d/2 - d - d = -d."""
    a = np.zeros(SHAPE, bool)
    a[1, 1:3, 1:4] = True
    b = np.zeros(SHAPE, bool)
    b[1:3, 2:4, 2:5] = True
    d = 1 - reference_iou(a, b)
    assert 0 < d < 1
    readers = np.stack([a, b])
    predictions = readers.copy()
    assert multirater.ged_v(predictions, readers) == pytest.approx(0.0, abs=1e-12)
    assert multirater.ged_u(predictions, readers) == pytest.approx(-d, abs=1e-12)
    assert multirater.hm_iou(predictions, readers) == 1.0
    assert multirater.dice_each(predictions, readers) == 1.0
    assert multirater.dice_each(predictions[::-1], readers) < 1.0  # style heads swapped


def test_empty_masks_policy():
    """Two empty masks: IoU and Dice 1, distance 0; an empty against a non-empty mask: 0."""
    empty = np.zeros((1, *SHAPE), bool)
    full = np.ones((1, *SHAPE), bool)
    assert multirater.pairwise_iou(empty, empty)[0, 0] == 1.0
    assert multirater.pairwise_dice(empty, empty)[0, 0] == 1.0
    assert multirater.pairwise_iou(empty, full)[0, 0] == 0.0
    assert multirater.ged_v(np.concatenate([empty, empty]), np.concatenate([empty, empty])) == 0.0


def test_s_ncc_needs_uncertainty():
    """One prediction, or identical ones, has a constant uncertainty map: S_NCC is undefined (NaN)."""
    _, readers = random_fixture(3)
    one = readers[:1].copy()
    assert math.isnan(multirater.s_ncc(one, readers))
    assert math.isnan(multirater.s_ncc(np.concatenate([one, one]), readers))


def test_dice_each_needs_one_style_per_reader():
    predictions, readers = random_fixture(0)
    with pytest.raises(ValueError, match="Dice_each"):
        multirater.dice_each(predictions[:1], readers)


def test_summary_per_method():
    """Per-patient rows of a style family and a single prediction: Dice_each and S_NCC only where defined."""
    from studylib.reporting.readers.multirater import multirater_summary, suite_rows

    rows = []
    for seed in range(3):
        predictions, readers = random_fixture(seed)
        styles = predictions[: len(readers)] if len(predictions) >= len(readers) else readers.copy()
        keys = {"patient_id": f"P{seed}", "fold": 0, "modality": "dual"}
        rows += suite_rows({**keys, "method": "decoupled"}, styles, readers, True)
        rows += suite_rows({**keys, "method": "union"}, readers[:1] | readers[1:2], readers, False)
    summary = multirater_summary(pd.DataFrame(rows))
    assert list(summary.method.unique()) == ["decoupled", "union"]
    union = summary[summary.method == "union"].set_index("metric")
    assert "dice_each" not in union.index and union.loc["s_ncc", "n_undefined"] == 3
    assert union.loc["s_ncc", "text"] == "undefined" and (union.n_patients[union.index != "s_ncc"] == 3).all()
    decoupled = summary[summary.method == "decoupled"].set_index("metric")
    assert decoupled.loc["dice_each", "n_patients"] == 3 and "±" in decoupled.loc["dice_each", "text"]
