"""Training targets derived from several readers' masks: STAPLE consensus, union, intersection (on the CT grid).

The math is kept apart from I/O: every function takes and returns (z, y, x) arrays.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk

DERIVED_TARGETS = ("consensus", "union", "intersection")
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


def staple_probability(masks: Sequence[np.ndarray]) -> np.ndarray:
    """STAPLE (Warfield et al. 2004, SimpleITK's implementation) probability that each voxel is foreground."""
    images = [sitk.GetImageFromArray(np.asarray(m, np.uint8)) for m in masks]
    return sitk.GetArrayFromImage(sitk.STAPLE(images, 1.0)).astype(np.float32)


def staple_consensus(masks: Sequence[np.ndarray], threshold: float = CONSENSUS_THRESHOLD,
                     margin: int | None = STAPLE_MARGIN) -> np.ndarray:
    """STAPLE consensus of binary masks (the project's one STAPLE): foreground probability > ``threshold``.

    With ``margin`` set, STAPLE runs inside the bounding box of the readers' union grown by ``margin`` voxels:
    outside it every reader says background, and a whole-body scan would only change STAPLE's foreground prior
    (and cost gigabytes at 512x512x300). ``margin=None`` runs on the whole volume.
    """
    masks = [np.asarray(m, bool) for m in masks]
    if len(masks) < 2:
        raise ValueError(f"STAPLE needs at least two readers' masks, got {len(masks)}")
    if len({m.shape for m in masks}) != 1:
        raise ValueError(f"readers' masks differ in shape: {sorted({m.shape for m in masks})}")
    out = np.zeros(masks[0].shape, np.uint8)
    union = union_mask(masks)
    if not union.any():
        return out
    if margin is None:
        box = tuple(slice(None) for _ in out.shape)
    else:
        coords = np.argwhere(union)
        lo = np.maximum(coords.min(0) - margin, 0)
        hi = np.minimum(coords.max(0) + margin + 1, out.shape)
        box = tuple(slice(int(a), int(b)) for a, b in zip(lo, hi, strict=True))
    out[box] = staple_probability([m[box] for m in masks]) > threshold
    return out


def derived_targets(labels: dict[str, np.ndarray], reader_labels: Sequence[str], names: Sequence[str]) -> dict[str, np.ndarray]:
    """The derived targets ``names`` (from DERIVED_TARGETS) of the masks ``reader_labels`` names in ``labels``."""
    unknown = [n for n in names if n not in DERIVED_TARGETS]
    if unknown:
        raise ValueError(f"unknown derived targets {unknown} (known: {list(DERIVED_TARGETS)})")
    missing = [r for r in reader_labels if r not in labels]
    if missing:
        raise ValueError(f"derived targets need the readers' labels {missing} (present: {sorted(labels)})")
    masks = [labels[r] for r in reader_labels]
    build = {"consensus": staple_consensus, "union": union_mask, "intersection": intersection_mask}
    return {n: build[n](masks) for n in names}
