"""Calibration against reader disagreement: a model's voxel probability set against the readers' agreement fraction
(the vote fraction, the share of readers including the voxel), and model disagreement as a detector of the voxels
where readers disagree. Pure functions: arrays in, numbers out.

Bins: ``CALIBRATION_BINS`` equal-width bins of the predicted probability on [0, 1] (the last one closed: [0.9, 1.0]).
ECE is the voxel-weighted mean over bins of |mean probability - mean vote fraction| (Guo et al. 2017, with the vote
fraction in place of the 0/1 label); Brier is the mean squared difference of probability and vote fraction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CALIBRATION_BINS = 10


def bin_index(probabilities: np.ndarray, n_bins: int = CALIBRATION_BINS) -> np.ndarray:
    """Equal-width bin of each probability: bin k holds [k/n, (k+1)/n), the last bin also holds 1."""
    p = np.asarray(probabilities, float)
    if np.any((p < 0) | (p > 1)):
        raise ValueError("probabilities must lie in [0, 1]")
    return np.minimum((p * n_bins).astype(int), n_bins - 1)


def reliability_sums(probabilities: np.ndarray, target: np.ndarray, n_bins: int = CALIBRATION_BINS) -> np.ndarray:
    """Per bin: (voxel count, sum of probabilities, sum of targets), shape (n_bins, 3); sums of several patients
    add up to the sums of their pooled voxels."""
    p = np.asarray(probabilities, float).ravel()
    t = np.asarray(target, float).ravel()
    index = bin_index(p, n_bins)
    return np.stack([np.bincount(index, minlength=n_bins).astype(float),
                     np.bincount(index, weights=p, minlength=n_bins),
                     np.bincount(index, weights=t, minlength=n_bins)], axis=1)


def ece_from_sums(sums: np.ndarray) -> float:
    """Expected calibration error from ``reliability_sums`` (NaN without voxels)."""
    sums = np.asarray(sums, float)
    total = sums[:, 0].sum()
    if total == 0:
        return float("nan")
    filled = sums[:, 0] > 0
    return float(np.abs(sums[filled, 1] - sums[filled, 2]).sum() / total)


def expected_calibration_error(probabilities: np.ndarray, target: np.ndarray, n_bins: int = CALIBRATION_BINS) -> float:
    """Voxel ECE of probabilities against a soft target (the vote fraction), ``n_bins`` equal-width bins."""
    return ece_from_sums(reliability_sums(probabilities, target, n_bins))


def brier_score(probabilities: np.ndarray, target: np.ndarray) -> float:
    """Mean squared difference between probability and soft target (NaN without voxels)."""
    p, t = np.asarray(probabilities, float), np.asarray(target, float)
    return float(np.mean((p - t) ** 2)) if p.size else float("nan")


def readers_disagree(fraction: np.ndarray) -> np.ndarray:
    """Voxels some but not all readers include: 0 < vote fraction < 1."""
    return (fraction > 0) & (fraction < 1)


def binary_entropy(probabilities: np.ndarray) -> np.ndarray:
    """Entropy in bits of a Bernoulli variable with the given probability (0 at 0 and 1)."""
    p = np.clip(np.asarray(probabilities, float), 0.0, 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        h = -(p * np.log2(p) + (1 - p) * np.log2(1 - p))
    return np.nan_to_num(h, nan=0.0)


def member_spread(members: Sequence[np.ndarray]) -> np.ndarray:
    """Disagreement of several models' probabilities: their standard deviation per voxel (population, ddof 0)."""
    return np.std(np.stack([np.asarray(m, float) for m in members]), axis=0)


@dataclass(frozen=True)
class SortedScores:
    """A score's values on the voxels where readers disagree (positives) and on the rest (negatives), each sorted:
    the one sort that both the AUROC and the ROC curve are read from."""

    positives: np.ndarray
    negatives: np.ndarray

    @classmethod
    def of(cls, score: np.ndarray, disagree: np.ndarray) -> SortedScores:
        """Split ``score`` by ``disagree`` and sort each part (values unsorted, sort-only: no index array)."""
        score, y = np.asarray(score).ravel(), np.asarray(disagree, bool).ravel()
        return cls(np.sort(score[y]), np.sort(score[~y]))

    def auroc(self) -> float:
        """The Mann-Whitney AUROC, ties counting one half (NaN when either class is absent)."""
        p, n = self.positives.size, self.negatives.size
        if p == 0 or n == 0:
            return float("nan")
        below = np.searchsorted(self.negatives, self.positives, side="left").sum(dtype=np.float64)
        tied = np.searchsorted(self.negatives, self.positives, side="right").sum(dtype=np.float64) - below
        return float((below + tied / 2) / (p * n))

    def roc(self, points: int = 1000) -> tuple[np.ndarray, np.ndarray]:
        """(false-positive rate, true-positive rate) at up to ``points`` thresholds, each an exact point of the ROC
        curve (scores >= threshold called positive), from (0, 0) to (1, 1)."""
        picks = [part[np.linspace(0, part.size - 1, max(1, points // 2)).astype(int)]
                 for part in (self.positives, self.negatives) if part.size]
        thresholds = np.unique(np.concatenate(picks))[::-1]  # scores seen, evenly spaced in each class's order
        tpr = 1 - np.searchsorted(self.positives, thresholds, side="left") / max(1, self.positives.size)
        fpr = 1 - np.searchsorted(self.negatives, thresholds, side="left") / max(1, self.negatives.size)
        return np.concatenate([[0.0], fpr, [1.0]]), np.concatenate([[0.0], tpr, [1.0]])


def disagreement_auroc(score: np.ndarray, disagree: np.ndarray) -> float:
    """AUROC of a score for telling voxels where readers disagree from the rest (NaN when either class is absent):
    the Mann-Whitney statistic (ties count one half), what ``sklearn.metrics.roc_auc_score`` computes, counted by
    binary search in the two sorted classes (an index sort of millions of voxels costs ten times more)."""
    return SortedScores.of(score, disagree).auroc()
