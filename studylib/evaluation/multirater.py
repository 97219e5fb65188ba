"""The multi-rater segmentation field's metrics: a set of predictions against a set of readers' masks, per patient.

Math only: numpy arrays in, floats out. ``predictions`` is an array (N, ...) of N predicted masks (or foreground
probabilities in [0, 1] where a metric says so), ``readers`` an array (M, ...) of M readers' masks, all on one
grid. Each metric follows the formula of a reference implementation, cited at the function:

- PHiSeg, Baumgartner et al. 2019, ``baumgach/PHiSeg-code`` ``utils.py``: ``generalised_energy_distance`` (the GED
  with self-pairs, d = 1 - IoU of the foreground), ``variance_ncc_dist`` and ``ncc`` (S_NCC).
- D-Persona, Wu et al. 2024, ``ycwu1997/D-Persona`` ``D-Persona/code/lib/metrics_set.py``:
  ``generalized_energy_distancex`` (the GED without self-pairs), ``dice_at_all`` (Dice_max, Dice_max_reverse,
  Dice_match, Dice_each) and ``dice_at_thresh`` (Dice_soft).
- HM-IoU as CCDM computes it (Zbinden et al. 2023, ``LarsDoorenbos/ccdm-stochastic-segmentation``
  ``ddpm/trainer.py`` and ``ddpm/utils.py`` ``batched_hungarian_matching``): readers and predictions are each
  replicated (``repeat_interleave``) to the least common multiple of N and M, then matched one to one by the
  Hungarian algorithm on 1 - IoU; the score is the mean matched IoU. (D-Persona's ``metrics_set.py`` has no HM-IoU;
  its ``calc_generalised_energy_distance`` is CCDM's GED.)

Empty masks, one policy with ``evaluation.metrics``: the IoU and the Dice of two empty masks are 1 (so d = 0),
of an empty and a non-empty mask 0. PHiSeg's ``dist_fct`` and CCDM's ``iou`` (NaN set to 1) say the same; D-Persona's
smoothed Dice and IoU ((x + 1e-6) / (y + 1e-6), 1e-8 in ``compute_dice_accuracy``) give 1 for two empty masks
and differ from the exact ratios everywhere else by less than 1e-6. (D-Persona's ``iou`` inside ``calc_generalised_energy_distance``
adds 1e-8 to the denominator before its NaN check, so it scores two empty masks 0; we do not follow that slip.)

The GED's two estimators of 2 E d(S, Y) - E d(S, S') - E d(Y, Y'):
- ``ged_v`` (V-statistic, PHiSeg): the within-set terms average over all N^2 (M^2) ordered pairs, self-pairs
  included; it is >= 0, because the Jaccard similarity is a positive definite kernel (an empty mask counts as a
  set holding one extra element of its own, which gives exactly the policy above).
- ``ged_u`` (U-statistic, D-Persona ``generalized_energy_distancex``): the within-set terms leave the self-pairs
  out (N (N - 1) ordered pairs); it can be negative. A set of one mask has no pair: its within-set term is 0 (a
  single prediction is a point mass, whose E d(S, S') is 0; D-Persona's code divides by zero there).
Two perfect style predictions of two different readers A and B (predictions = readers = {A, B}) give
GED_V = 2 d/2 - d/2 - d/2 = 0 and GED_U = 2 d/2 - d - d = -d, with d = d(A, B).

Domain: every metric but S_NCC counts only foreground voxels, so cropping to the box around the union of all
masks (``union_box``) leaves it unchanged; S_NCC is a correlation over the voxels it is given, so its domain is part
of its definition (PHiSeg scored LIDC crops of 128 x 128 pixels around the lesion; the study scores the union box).

Not implemented: the detection/segmentation split of the GED of Zepf, Frellsen and Feragen 2024 ("Navigating
uncertainty in medical image segmentation", arXiv 2407.16367). The summaries of the paper that could be read name
its two distances (D^2_IoU and D^2_Det) but not their definitions, and none of the searched code holds them, so no
decomposition is invented here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment

from ..training.models import MASK_THRESHOLD

SOFT_DICE_THRESHOLDS = (0.1, 0.3, 0.5, 0.7, 0.9)  # D-Persona ``dice_at_thresh``
LOG_EPSILON = 1e-8  # PHiSeg ``variance_ncc_dist``: ``pixel_wise_xent`` adds it inside the log


def flat_masks(masks: np.ndarray) -> np.ndarray:
    """A stack of masks (K, ...) as booleans (K, voxels)."""
    masks = np.asarray(masks)
    return masks.reshape(masks.shape[0], -1).astype(bool)


def binary_masks(predictions: np.ndarray) -> np.ndarray:
    """Predicted masks: probability >= ``MASK_THRESHOLD``, the project's one threshold (D-Persona's ``dice_at_all``
    uses > 0.5; the two differ only at exactly 0.5). A boolean stack stays as it is."""
    predictions = np.asarray(predictions)
    return predictions if predictions.dtype == bool else predictions >= MASK_THRESHOLD


def overlaps(first: np.ndarray, second: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Intersections (N, M) and sizes (N,), (M,) of every mask of ``first`` with every mask of ``second``."""
    a, b = flat_masks(first), flat_masks(second)
    intersection = np.array([[np.count_nonzero(x & y) for y in b] for x in a], dtype=np.int64).reshape(len(a), len(b))
    return intersection, np.count_nonzero(a, axis=1), np.count_nonzero(b, axis=1)


def pairwise_iou(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """IoU (N, M) of every mask of ``first`` with every mask of ``second``; two empty masks: 1."""
    intersection, size_a, size_b = overlaps(first, second)
    union = size_a[:, None] + size_b[None, :] - intersection
    return np.where(union == 0, 1.0, intersection / np.maximum(union, 1))


def pairwise_dice(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Dice (N, M) of every mask of ``first`` with every mask of ``second``; two empty masks: 1."""
    intersection, size_a, size_b = overlaps(first, second)
    total = size_a[:, None] + size_b[None, :]
    return np.where(total == 0, 1.0, 2 * intersection / np.maximum(total, 1))


def mean_within_distance(distances: np.ndarray, self_pairs: bool) -> float:
    """Mean of a square distance matrix over ordered pairs, with or without the diagonal (one member: 0)."""
    n = distances.shape[0]
    if self_pairs:
        return float(distances.mean())
    if n < 2:
        return 0.0
    return float((distances.sum() - np.trace(distances)) / (n * (n - 1)))


def energy_distance(predictions: np.ndarray, readers: np.ndarray, self_pairs: bool) -> float:
    """2 E d(S, Y) - E d(S, S') - E d(Y, Y') with d = 1 - IoU (predictions thresholded at 0.5)."""
    predictions = binary_masks(predictions)
    cross = float((1 - pairwise_iou(predictions, readers)).mean())
    within_predictions = mean_within_distance(1 - pairwise_iou(predictions, predictions), self_pairs)
    within_readers = mean_within_distance(1 - pairwise_iou(readers, readers), self_pairs)
    return 2 * cross - within_predictions - within_readers


def ged_v(predictions: np.ndarray, readers: np.ndarray) -> float:
    """GED, V-statistic (self-pairs in the within-set terms; PHiSeg ``generalised_energy_distance``): >= 0."""
    return energy_distance(predictions, readers, self_pairs=True)


def ged_u(predictions: np.ndarray, readers: np.ndarray) -> float:
    """GED, U-statistic (no self-pairs; D-Persona ``generalized_energy_distancex``): can be negative."""
    return energy_distance(predictions, readers, self_pairs=False)


def hm_iou(predictions: np.ndarray, readers: np.ndarray) -> float:
    """Hungarian-matched IoU, both sets replicated to lcm(N, M) members (CCDM ``batched_hungarian_matching``)."""
    iou = pairwise_iou(readers, binary_masks(predictions))
    m, n = iou.shape
    common = math.lcm(m, n)
    replicated = np.repeat(np.repeat(iou, common // m, axis=0), common // n, axis=1)
    rows, cols = linear_sum_assignment(1 - replicated)
    return float(replicated[rows, cols].mean())


def reader_prediction_dice(predictions: np.ndarray, readers: np.ndarray) -> np.ndarray:
    """Dice (M, N) of every reader with every prediction (D-Persona ``dice_at_all``'s ``dice_matrix``)."""
    return pairwise_dice(readers, binary_masks(predictions))


def dice_max(predictions: np.ndarray, readers: np.ndarray) -> float:
    """Each prediction's best Dice over the readers, averaged over predictions (D-Persona ``dice_max``)."""
    return float(reader_prediction_dice(predictions, readers).max(axis=0).mean())


def dice_max_reverse(predictions: np.ndarray, readers: np.ndarray) -> float:
    """Each reader's best Dice over the predictions, averaged over readers (D-Persona ``dice_max_reverse``)."""
    return float(reader_prediction_dice(predictions, readers).max(axis=1).mean())


def dice_match(predictions: np.ndarray, readers: np.ndarray) -> float:
    """Mean Dice of the Hungarian one-to-one matching of readers to predictions (D-Persona ``dice_match``).

    With fewer readers than predictions every reader is matched, as in D-Persona; with more readers than
    predictions (where D-Persona's index runs out) the mean is over the min(N, M) matched pairs.
    """
    dice = reader_prediction_dice(predictions, readers)
    rows, cols = linear_sum_assignment(1 - dice)
    return float(dice[rows, cols].mean())


def dice_each(predictions: np.ndarray, readers: np.ndarray) -> float:
    """Mean Dice of prediction i (style head i) against reader i (D-Persona ``dice_each`` at test time)."""
    if len(predictions) != len(readers):
        raise ValueError(f"Dice_each pairs style head i with reader i: {len(predictions)} predictions, "
                         f"{len(readers)} readers")
    return float(np.diag(reader_prediction_dice(predictions, readers)).mean())


def dice_soft(predictions: np.ndarray, readers: np.ndarray) -> float:
    """Mean over ``SOFT_DICE_THRESHOLDS`` t of Dice(mean prediction > t, mean reader mask > t) (D-Persona
    ``dice_at_thresh``; ``predictions`` may be probabilities)."""
    mean_prediction = np.asarray(predictions, dtype=np.float64).mean(axis=0)
    mean_reader = np.asarray(readers, dtype=np.float64).mean(axis=0)
    scores = [pairwise_dice((mean_prediction > t)[None], (mean_reader > t)[None])[0, 0] for t in SOFT_DICE_THRESHOLDS]
    return float(np.mean(scores))


def mean_log_class_probabilities(predictions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over predictions of log(1 - p + eps) and log(p + eps), the two classes of PHiSeg's one-hot samples
    (for masks, from the fraction of predictions that include each voxel: the logs take two values)."""
    predictions = np.asarray(predictions)
    if predictions.dtype == bool:
        included = predictions.mean(axis=0, dtype=np.float64)
        log_one, log_zero = math.log(1 + LOG_EPSILON), math.log(LOG_EPSILON)
        return included * log_zero + (1 - included) * log_one, included * log_one + (1 - included) * log_zero
    p = predictions.astype(np.float64)
    return np.log(1 - p + LOG_EPSILON).mean(axis=0), np.log(p + LOG_EPSILON).mean(axis=0)


def uncertainty_map(predictions: np.ndarray) -> np.ndarray:
    """PHiSeg's E_ss: mean over predictions of the cross-entropy of each prediction against their mean."""
    log_background, log_foreground = mean_log_class_probabilities(predictions)
    mean_prediction = np.asarray(predictions, dtype=np.float64).mean(axis=0)
    return -((1 - mean_prediction) * log_background + mean_prediction * log_foreground)


def error_maps(predictions: np.ndarray, readers: np.ndarray) -> np.ndarray:
    """PHiSeg's E_sy (M, ...): mean over predictions of each prediction's cross-entropy against reader j."""
    log_background, log_foreground = mean_log_class_probabilities(predictions)
    y = np.asarray(readers, dtype=np.float64)
    return -((1 - y) * log_background + y * log_foreground)


def ncc(a: np.ndarray, v: np.ndarray) -> float:
    """Zero-normalised cross-correlation of two maps (PHiSeg ``ncc``: Pearson's r); NaN when either is constant."""
    a, v = np.asarray(a, np.float64).ravel(), np.asarray(v, np.float64).ravel()
    if a.max() == a.min() or v.max() == v.min():  # exactly constant (its computed SD may round to a tiny non-zero)
        return float("nan")
    return float(np.dot((a - a.mean()) / (a.std() * len(a)), (v - v.mean()) / v.std()))


def s_ncc(predictions: np.ndarray, readers: np.ndarray) -> float:
    """S_NCC: mean over readers of NCC(uncertainty map, error map against the reader) (PHiSeg
    ``variance_ncc_dist``; ``predictions`` may be probabilities). NaN when the predictions all agree (no
    uncertainty: the map is constant), as the reference's division by a zero SD gives."""
    uncertainty = uncertainty_map(predictions)
    return float(np.mean([ncc(uncertainty, error) for error in error_maps(predictions, readers)]))


def union_box(stacks: Sequence[np.ndarray], margin: int) -> tuple[slice, ...]:
    """The bounding box of the foreground of every mask of ``stacks`` (each (K, ...)) grown by ``margin`` voxels;
    one voxel when all are empty (where every metric scores the same as on the whole grid)."""
    union = np.logical_or.reduce([np.asarray(stack, bool).any(axis=0) for stack in stacks])
    if not union.any():
        return tuple(slice(0, 1) for _ in union.shape)
    box = []
    for axis, n in enumerate(union.shape):
        found = np.flatnonzero(union.any(axis=tuple(a for a in range(union.ndim) if a != axis)))
        box.append(slice(max(int(found[0]) - margin, 0), min(int(found[-1]) + margin + 1, n)))
    return tuple(box)


def multirater_suite(predictions: np.ndarray, readers: np.ndarray, styles_of_readers: bool) -> dict[str, float]:
    """Every metric of this module for one patient; Dice_each only when prediction i is reader i's style."""
    suite = {"ged_v": ged_v(predictions, readers), "ged_u": ged_u(predictions, readers),
             "hm_iou": hm_iou(predictions, readers), "dice_max": dice_max(predictions, readers),
             "dice_max_reverse": dice_max_reverse(predictions, readers), "dice_match": dice_match(predictions, readers),
             "dice_soft": dice_soft(predictions, readers), "s_ncc": s_ncc(predictions, readers)}
    if styles_of_readers:
        suite["dice_each"] = dice_each(predictions, readers)
    return suite
