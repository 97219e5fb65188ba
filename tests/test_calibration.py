"""Calibration against reader disagreement, each function against an independent formula written here."""

import numpy as np
import pytest

from studylib.evaluation.calibration import (
    CALIBRATION_BINS,
    SortedScores,
    bin_index,
    binary_entropy,
    brier_score,
    disagreement_auroc,
    ece_from_sums,
    expected_calibration_error,
    member_spread,
    readers_disagree,
    reliability_sums,
)
from studylib.preprocessing.targets import vote_fraction


def _ece_by_loop(p, t, n_bins):
    total, ece = len(p), 0.0
    for k in range(n_bins):
        lo, hi = k / n_bins, (k + 1) / n_bins
        inside = [(pi, ti) for pi, ti in zip(p, t) if lo <= pi < hi or (k == n_bins - 1 and pi == 1.0)]
        if inside:
            ece += len(inside) / total * abs(sum(x for x, _ in inside) / len(inside) - sum(y for _, y in inside) / len(inside))
    return ece


def _auroc_by_pairs(score, y):
    pos, neg = [s for s, v in zip(score, y) if v], [s for s, v in zip(score, y) if not v]
    wins = sum((a > b) + 0.5 * (a == b) for a in pos for b in neg)
    return wins / (len(pos) * len(neg))


@pytest.mark.parametrize("seed", range(25))
def test_ece_brier_auroc_match_independent_formulas(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(5, 300))
    readers = int(rng.integers(2, 5))
    p = rng.random(n)
    p[rng.random(n) < 0.2] = 1.0  # the closed last bin
    p[rng.random(n) < 0.2] = 0.0
    t = rng.integers(0, readers + 1, n) / readers
    n_bins = int(rng.choice([CALIBRATION_BINS, 5, 15]))
    assert expected_calibration_error(p, t, n_bins) == pytest.approx(_ece_by_loop(p, t, n_bins), abs=1e-9)
    assert brier_score(p, t) == pytest.approx(sum((a - b) ** 2 for a, b in zip(p, t)) / n, abs=1e-12)
    y = readers_disagree(t)
    expected = _auroc_by_pairs(p, y) if 0 < y.sum() < n else float("nan")
    assert disagreement_auroc(p, y) == pytest.approx(expected, abs=1e-9, nan_ok=True)
    if 0 < y.sum() < n:  # the reference implementation agrees too, ties included
        from sklearn.metrics import roc_auc_score

        assert disagreement_auroc(p, y) == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def test_pooled_sums_are_the_sums_of_pooled_voxels():
    rng = np.random.default_rng(0)
    parts = [(rng.random(50), rng.integers(0, 4, 50) / 3) for _ in range(3)]
    pooled = reliability_sums(np.concatenate([p for p, _ in parts]), np.concatenate([t for _, t in parts]))
    assert np.allclose(sum(reliability_sums(p, t) for p, t in parts), pooled)
    assert ece_from_sums(np.zeros((CALIBRATION_BINS, 3))) != ece_from_sums(np.zeros((CALIBRATION_BINS, 3)))  # NaN


def test_known_answers():
    # a model predicting the vote fraction exactly is perfectly calibrated
    t = np.array([0, 1 / 3, 2 / 3, 1, 1, 0])
    assert expected_calibration_error(t, t) == pytest.approx(0) and brier_score(t, t) == 0
    # always 0.5 on targets 0 and 1: ECE 0 (mean 0.5 vs 0.5), Brier 0.25
    assert expected_calibration_error(np.full(4, 0.5), np.array([0, 1, 0, 1])) == pytest.approx(0)
    assert brier_score(np.full(4, 0.5), np.array([0, 1, 0, 1])) == pytest.approx(0.25)
    assert list(bin_index(np.array([0, 0.0999, 0.1, 0.95, 1.0]))) == [0, 0, 1, 9, 9]
    with pytest.raises(ValueError):
        bin_index(np.array([1.2]))
    assert binary_entropy(np.array([0.0, 0.5, 1.0])) == pytest.approx([0, 1, 0])
    assert binary_entropy(np.array([0.25]))[0] == pytest.approx(-(0.25 * np.log2(0.25) + 0.75 * np.log2(0.75)))
    assert member_spread([np.array([0.0, 1.0]), np.array([1.0, 1.0])]) == pytest.approx([0.5, 0.0])
    a, b, c = (np.array(v, bool) for v in ([1, 1, 0, 0], [1, 0, 1, 0], [1, 0, 0, 0]))
    assert vote_fraction([a, b, c]) == pytest.approx([1, 1 / 3, 1 / 3, 0])
    assert list(readers_disagree(vote_fraction([a, b, c]))) == [False, True, True, False]
    assert np.isnan(disagreement_auroc(np.array([0.1, 0.2]), np.array([True, True])))


@pytest.mark.parametrize("seed", range(10))
def test_roc_points_lie_on_sklearns_curve_and_enclose_the_auroc(seed):
    """Every point drawn is the (FPR, TPR) of one threshold, counted here; with a point per distinct score the
    trapezoids under the curve add up to the AUROC (ties included), as sklearn's curve does."""
    from sklearn.metrics import auc, roc_curve

    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 400))
    score = np.round(rng.random(n), int(rng.integers(1, 4)))  # rounding: many ties
    y = rng.random(n) < rng.uniform(0.1, 0.6)
    if not 0 < y.sum() < n:
        y[0], y[-1] = True, False
    ranked = SortedScores.of(score, y)
    fpr, tpr = ranked.roc(points=5)
    assert (fpr[0], tpr[0], fpr[-1], tpr[-1]) == (0, 0, 1, 1) and np.all(np.diff(fpr) >= 0) and np.all(np.diff(tpr) >= 0)
    for f, t in zip(fpr[1:-1], tpr[1:-1]):  # some threshold gives exactly this point
        assert any(np.isclose(f, (score[~y] >= c).mean()) and np.isclose(t, (score[y] >= c).mean()) for c in score)
    fpr, tpr = ranked.roc(points=10 * n)
    sk_fpr, sk_tpr, _ = roc_curve(y, score)
    assert auc(fpr, tpr) == pytest.approx(auc(sk_fpr, sk_tpr), abs=1e-12) == pytest.approx(ranked.auroc(), abs=1e-12)
