"""Training targets derived from several readers' masks: STAPLE consensus, union, intersection and the readers' mean
mask, the vote fraction (a soft target), on the CT grid.

The math is kept apart from I/O: every function takes and returns (z, y, x) arrays.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

VOTE_FRACTION = "vote_fraction"  # the readers' mean mask
DERIVED_TARGETS = ("consensus", "union", "intersection", VOTE_FRACTION)
SOFT_TARGETS = (VOTE_FRACTION,)  # values in [0, 1], not masks: cached as vote counts (cache.py), trained with the
# soft-target loss (training.losses.soft_target_dice_loss), never scored as a ground truth
STAPLE_MARGIN = 8  # voxels around the readers' union kept for STAPLE (see staple_consensus)
# a voxel is in the consensus when STAPLE's foreground probability is strictly above this (the assumption stated
# in profiles/multirater.yaml); a model's predicted mask is a different threshold (training.models.MASK_THRESHOLD, >=)
CONSENSUS_THRESHOLD = 0.5


def union_mask(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Voxels that any reader includes."""
    return np.logical_or.reduce([np.asarray(m, bool) for m in masks]).astype(np.uint8)


def intersection_mask(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Voxels that every reader includes."""
    return np.logical_and.reduce([np.asarray(m, bool) for m in masks]).astype(np.uint8)


def vote_count(masks: Sequence[np.ndarray]) -> np.ndarray:
    """How many readers include each voxel (0..N), uint8."""
    return np.sum([np.asarray(m, bool) for m in masks], axis=0, dtype=np.uint8)


def vote_fraction(masks: Sequence[np.ndarray]) -> np.ndarray:
    """Share of readers including each voxel (0, 1/N, ..., 1), float32: the readers' mean mask."""
    return (vote_count(masks) / np.float32(len(masks))).astype(np.float32)


@dataclass(frozen=True)
class StapleEstimate:
    """What STAPLE estimated on one patient: the foreground probability inside ``box`` (zero outside) and each
    reader's sensitivity and specificity (in reader order; NaN when every reader said background everywhere)."""

    probability: np.ndarray
    box: tuple[slice, ...]
    sensitivity: tuple[float, ...]
    specificity: tuple[float, ...]


def staple_probability(masks: Sequence[np.ndarray]) -> np.ndarray:
    """STAPLE (Warfield et al. 2004, SimpleITK's implementation) probability that each voxel is foreground."""
    return _staple(masks)[0]


def _staple(masks: Sequence[np.ndarray]) -> tuple[np.ndarray, tuple[float, ...], tuple[float, ...]]:
    """SimpleITK's STAPLE filter (foreground 1, its default iterations): probability map and each reader's
    estimated sensitivity and specificity."""
    images = [sitk.GetImageFromArray(np.asarray(m, np.uint8)) for m in masks]
    staple = sitk.STAPLEImageFilter()
    staple.SetForegroundValue(1.0)
    probability = sitk.GetArrayFromImage(staple.Execute(images)).astype(np.float32)
    return probability, tuple(staple.GetSensitivity()), tuple(staple.GetSpecificity())


def staple_box(masks: Sequence[np.ndarray], margin: int | None = STAPLE_MARGIN) -> tuple[slice, ...]:
    """The region STAPLE runs in: the bounding box of the readers' union grown by ``margin`` voxels (clipped to the
    volume; the whole volume when ``margin`` is None or the union is empty)."""
    union = union_mask(masks)
    if margin is None or not union.any():
        return tuple(slice(0, n) for n in union.shape)
    coords = np.argwhere(union)
    lo = np.maximum(coords.min(0) - margin, 0)
    hi = np.minimum(coords.max(0) + margin + 1, union.shape)
    return tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))


def staple_estimate(masks: Sequence[np.ndarray], margin: int | None = STAPLE_MARGIN) -> StapleEstimate:
    """STAPLE of binary masks, the project's one STAPLE: its probability map and each reader's estimated sensitivity
    and specificity.

    With ``margin`` set, STAPLE runs inside the bounding box of the readers' union grown by ``margin`` voxels:
    outside it every reader says background, and a whole-body scan would only change STAPLE's foreground prior
    (and cost gigabytes at 512x512x300); the specificities it estimates are specificities inside that box.
    ``margin=None`` runs on the whole volume. No reader's foreground at all: probability 0, estimates NaN.
    """
    masks = [np.asarray(m, bool) for m in masks]
    if len(masks) < 2:
        raise ValueError(f"STAPLE needs at least two readers' masks, got {len(masks)}")
    if len({m.shape for m in masks}) != 1:
        raise ValueError(f"readers' masks differ in shape: {sorted({m.shape for m in masks})}")
    probability = np.zeros(masks[0].shape, np.float32)
    box = staple_box(masks, margin)
    if not union_mask(masks).any():
        nan = (float("nan"),) * len(masks)
        return StapleEstimate(probability, box, nan, nan)
    probability[box], sensitivity, specificity = _staple([m[box] for m in masks])
    return StapleEstimate(probability, box, sensitivity, specificity)


def staple_consensus(masks: Sequence[np.ndarray], threshold: float = CONSENSUS_THRESHOLD,
                     margin: int | None = STAPLE_MARGIN) -> np.ndarray:
    """STAPLE consensus of binary masks (``staple_estimate``): foreground probability > ``threshold``."""
    return (staple_estimate(masks, margin).probability > threshold).astype(np.uint8)


def derived_targets(labels: dict[str, np.ndarray], reader_labels: Sequence[str], names: Sequence[str]) -> dict[str, np.ndarray]:
    """The derived targets ``names`` (from DERIVED_TARGETS) of the masks ``reader_labels`` names in ``labels``."""
    unknown = [n for n in names if n not in DERIVED_TARGETS]
    if unknown:
        raise ValueError(f"unknown derived targets {unknown} (known: {list(DERIVED_TARGETS)})")
    missing = [r for r in reader_labels if r not in labels]
    if missing:
        raise ValueError(f"derived targets need the readers' labels {missing} (present: {sorted(labels)})")
    masks = [labels[r] for r in reader_labels]
    build = {"consensus": staple_consensus, "union": union_mask, "intersection": intersection_mask,
             VOTE_FRACTION: vote_fraction}
    return {n: build[n](masks) for n in names}
