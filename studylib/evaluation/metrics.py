"""Patient-level 3D metrics in physical units: the one module every table and figure uses.

Empty-mask policy (applied everywhere, tested):
- reference and prediction both empty: DSC = IoU = sensitivity = precision = NSD = 1, distances 0;
- exactly one empty: DSC = IoU = NSD = 0, the undefined ratio (sensitivity for an empty reference,
  precision for an empty prediction) = 0, distances = the volume's diagonal in mm (the worst possible);
  the row is flagged (``empty_reference`` / ``empty_prediction``) and is never dropped from a mean.

Specificity: the paper's voxel specificity TN / (TN + FP) over the whole volume is ~1 for any model because
true negatives dominate (a 512x512x100 volume holds ~26 M voxels, a lesion a few thousand), so it cannot
reproduce the paper's 82-94 %. We report it paper-literally (``specificity``), within the body mask
(``specificity_body``, still dominated by TN), and always the false-positive volume in ml beside it.

Surfaces are the object voxels with a 6-connected background neighbour; surface distances go from each
surface voxel to the nearest surface voxel of the other mask (exact Euclidean, anisotropic spacing).
HD95 is the larger of the two directed 95th percentiles (as MONAI); NSD counts surface voxels within the
tolerance (a voxel-count approximation of the surface-area version). Lesions are 26-connected components;
a reference lesion is detected when any predicted voxel overlaps it, a predicted component with no
reference voxel is a false positive (autoPET's FP/FN volume uses the same components).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

STRUCTURE_26 = np.ones((3, 3, 3), bool)


@dataclass(frozen=True)
class Counts:
    """Voxel confusion counts."""

    tp: int
    fp: int
    fn: int
    tn: int


def confusion_counts(pred: np.ndarray, ref: np.ndarray, within: np.ndarray | None = None) -> Counts:
    """TP/FP/FN/TN of two boolean masks, optionally only inside ``within``."""
    pred, ref = pred.astype(bool), ref.astype(bool)
    if within is not None:
        within = within.astype(bool)
        pred, ref = pred & within, ref & within
        total = int(within.sum())
    else:
        total = pred.size
    tp = int(np.count_nonzero(pred & ref))
    fp = int(np.count_nonzero(pred)) - tp
    fn = int(np.count_nonzero(ref)) - tp
    return Counts(tp, fp, fn, total - tp - fp - fn)


def dice(c: Counts) -> float:
    """2TP / (2TP + FP + FN) with the empty-mask policy."""
    denom = 2 * c.tp + c.fp + c.fn
    return 1.0 if denom == 0 else 2 * c.tp / denom


def iou(c: Counts) -> float:
    """TP / (TP + FP + FN) with the empty-mask policy."""
    denom = c.tp + c.fp + c.fn
    return 1.0 if denom == 0 else c.tp / denom


def sensitivity(c: Counts) -> float:
    """TP / (TP + FN); empty reference: 1 if the prediction is empty too, else 0."""
    if c.tp + c.fn == 0:
        return 1.0 if c.fp == 0 else 0.0
    return c.tp / (c.tp + c.fn)


def precision(c: Counts) -> float:
    """TP / (TP + FP); empty prediction: 1 if the reference is empty too, else 0."""
    if c.tp + c.fp == 0:
        return 1.0 if c.fn == 0 else 0.0
    return c.tp / (c.tp + c.fp)


def specificity(c: Counts) -> float:
    """TN / (TN + FP) (voxel-wise; see the module docstring for why it is ~1)."""
    return 1.0 if c.tn + c.fp == 0 else c.tn / (c.tn + c.fp)


def cohen_kappa(c: Counts) -> float:
    """Voxel-wise Cohen's kappa of two raters from their confusion counts."""
    n = c.tp + c.fp + c.fn + c.tn
    if n == 0:
        return 1.0
    po = (c.tp + c.tn) / n
    pe = ((c.tp + c.fp) * (c.tp + c.fn) + (c.fn + c.tn) * (c.fp + c.tn)) / (n * n)
    return 1.0 if pe == 1 else (po - pe) / (1 - pe)


def _union_box(a: np.ndarray, b: np.ndarray, margin: int = 2) -> tuple[slice, ...]:
    union = a | b
    idx = [np.flatnonzero(union.any(axis=tuple(j for j in range(union.ndim) if j != i))) for i in range(union.ndim)]
    return tuple(slice(max(int(ix[0]) - margin, 0), min(int(ix[-1]) + margin + 1, n)) for ix, n in zip(idx, union.shape))


def surface(mask: np.ndarray) -> np.ndarray:
    """Object voxels with at least one 6-connected background neighbour (volume borders count as background)."""
    padded = np.pad(mask, 1)
    eroded = ndimage.binary_erosion(padded, structure=ndimage.generate_binary_structure(mask.ndim, 1))
    return (padded & ~eroded)[tuple(slice(1, -1) for _ in range(mask.ndim))]


def surface_distances(pred: np.ndarray, ref: np.ndarray, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from pred's surface voxels to ref's surface, and from ref's to pred's (both non-empty)."""
    box = _union_box(pred, ref, margin=1)
    p, r = pred[box], ref[box]
    sp, sr = surface(p), surface(r)
    to_ref = ndimage.distance_transform_edt(~sr, sampling=spacing)
    to_pred = ndimage.distance_transform_edt(~sp, sampling=spacing)
    return to_ref[sp], to_pred[sr]


def volume_diagonal(shape, spacing) -> float:
    """Length (mm) of the volume's diagonal: the worst possible distance."""
    return float(np.linalg.norm(np.asarray(shape) * np.asarray(spacing)))


def _components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    return ndimage.label(mask, structure=STRUCTURE_26)


def lesion_detection(pred: np.ndarray, ref: np.ndarray, voxel_ml: float) -> dict:
    """Lesion-wise TP/FP/FN/F1 and autoPET false-positive / false-negative volumes (ml)."""
    if not pred.any() and not ref.any():
        return {"lesions_ref": 0, "lesions_pred": 0, "lesion_tp": 0, "lesion_fp": 0, "lesion_fn": 0, "lesion_f1": 1.0,
                "fp_volume_ml": 0.0, "fn_volume_ml": 0.0}
    box = _union_box(pred, ref, margin=1)
    p, r = pred[box], ref[box]
    ref_lab, n_ref = _components(r)
    pred_lab, n_pred = _components(p)
    ref_hit = np.unique(ref_lab[p & (ref_lab > 0)])
    pred_hit = np.unique(pred_lab[r & (pred_lab > 0)])
    tp = len(ref_hit)
    fn = n_ref - tp
    fp = n_pred - len(pred_hit)
    fp_vox = int(np.count_nonzero((pred_lab > 0) & ~np.isin(pred_lab, pred_hit)))
    fn_vox = int(np.count_nonzero((ref_lab > 0) & ~np.isin(ref_lab, ref_hit)))
    denom = 2 * tp + fp + fn
    return {"lesions_ref": int(n_ref), "lesions_pred": int(n_pred), "lesion_tp": tp, "lesion_fp": fp, "lesion_fn": fn,
            "lesion_f1": 1.0 if denom == 0 else 2 * tp / denom,
            "fp_volume_ml": fp_vox * voxel_ml, "fn_volume_ml": fn_vox * voxel_ml}


NSD_ROUNDING_MM = 0.5


def nsd_tolerance(requested: float | None, spacings: Sequence[Sequence[float]]) -> float:
    """The NSD tolerance (mm): ``requested`` if it is at least the largest voxel spacing of the cohort, else an
    error; ``None``: that spacing rounded up to 0.5 mm. A tolerance below the voxel size scores the grid (a
    boundary one voxel off fails it on coarse slices and passes on fine ones), not the segmentation."""
    largest = max(max(float(v) for v in s) for s in spacings)
    if requested is None:
        return float(np.ceil(largest / NSD_ROUNDING_MM) * NSD_ROUNDING_MM)
    if requested < largest:
        raise ValueError(f"study.nsd_tolerance_mm {requested:g} mm is below the cohort's largest voxel spacing "
                         f"{largest:.2f} mm: NSD would score the voxel grid; set it to at least {largest:.2f} or null "
                         "(automatic)")
    return float(requested)


def patient_metrics(pred: np.ndarray, ref: np.ndarray, spacing, body: np.ndarray | None = None,
                    nsd_tolerance_mm: float = 2.0) -> dict:
    """All per-patient metrics of a predicted vs reference 3D mask (spacing in array axis order, mm)."""
    pred, ref = np.asarray(pred).astype(bool), np.asarray(ref).astype(bool)
    if pred.shape != ref.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.shape} differ in shape")
    spacing = tuple(float(s) for s in spacing)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    c = confusion_counts(pred, ref)
    out = {
        "dsc": dice(c), "iou": iou(c), "sensitivity": sensitivity(c), "specificity": specificity(c),
        "precision": precision(c), "tp_voxels": c.tp, "fp_voxels": c.fp, "fn_voxels": c.fn,
    }
    if body is not None:
        out["specificity_body"] = specificity(confusion_counts(pred, ref, within=body))
    out["volume_pred_ml"] = (c.tp + c.fp) * voxel_ml
    out["volume_ref_ml"] = (c.tp + c.fn) * voxel_ml
    out["volume_diff_ml"] = out["volume_pred_ml"] - out["volume_ref_ml"]
    out["abs_volume_diff_ml"] = abs(out["volume_diff_ml"])
    out["rel_volume_diff"] = out["volume_diff_ml"] / out["volume_ref_ml"] if out["volume_ref_ml"] > 0 else (
        0.0 if out["volume_pred_ml"] == 0 else float("inf"))
    out["empty_reference"] = not ref.any()
    out["empty_prediction"] = not pred.any()
    if ref.any() and pred.any():
        d_pr, d_rp = surface_distances(pred, ref, spacing)
        out["hd"] = float(max(d_pr.max(), d_rp.max()))
        out["hd95"] = float(max(np.percentile(d_pr, 95), np.percentile(d_rp, 95)))
        out["assd"] = float((d_pr.sum() + d_rp.sum()) / (len(d_pr) + len(d_rp)))
        out["nsd"] = float((np.count_nonzero(d_pr <= nsd_tolerance_mm) + np.count_nonzero(d_rp <= nsd_tolerance_mm))
                           / (len(d_pr) + len(d_rp)))
    elif not ref.any() and not pred.any():
        out.update(hd=0.0, hd95=0.0, assd=0.0, nsd=1.0)
    else:
        worst = volume_diagonal(pred.shape, spacing)
        out.update(hd=worst, hd95=worst, assd=worst, nsd=0.0)
    out["nsd_tolerance_mm"] = nsd_tolerance_mm
    out.update(lesion_detection(pred, ref, voxel_ml))
    if body is not None:
        out["pred_on_lesion_side"] = lesion_side_fraction(pred, ref, body)
    return out


def lesion_side_fraction(pred: np.ndarray, ref: np.ndarray, body: np.ndarray) -> float:
    """Fraction of predicted voxels on the reference lesion's side of the body's left-right midline.

    With both limbs in the field of view, chance localisation gives about 0.5. NaN when the prediction or the
    reference is empty. The midline is the mean x (last array axis) of the body mask.
    """
    pred, ref, body = np.asarray(pred, bool), np.asarray(ref, bool), np.asarray(body, bool)
    if not pred.any() or not ref.any() or not body.any():
        return float("nan")
    columns = np.arange(pred.shape[-1])

    def mean_column(mask: np.ndarray) -> float:
        return float((mask.sum(axis=(0, 1)) * columns).sum() / mask.sum())

    midline = mean_column(body)
    same_side = np.sign(columns - midline) == np.sign(mean_column(ref) - midline)
    pred_columns = pred.sum(axis=(0, 1))
    return float(pred_columns[same_side].sum() / pred_columns.sum())


def agreement(a: np.ndarray, b: np.ndarray, spacing, body: np.ndarray | None = None) -> dict:
    """Agreement of two raters (or models) on one patient: Dice, voxel kappa, volumes and their ratio."""
    a, b = a.astype(bool), b.astype(bool)
    voxel_ml = float(np.prod(spacing)) / 1000.0
    c = confusion_counts(a, b)
    out = {"dice_ab": dice(c), "kappa_voxel": cohen_kappa(c), "volume_a_ml": float(a.sum() * voxel_ml),
           "volume_b_ml": float(b.sum() * voxel_ml)}
    out["volume_ratio_a_over_b"] = out["volume_a_ml"] / out["volume_b_ml"] if out["volume_b_ml"] > 0 else float("inf")
    out["fraction_b_inside_a"] = float((a & b).sum() / b.sum()) if b.any() else 1.0
    if body is not None:
        out["kappa_voxel_body"] = cohen_kappa(confusion_counts(a, b, within=body))
    return out


def patient_level_kappa(a_positive: list[bool], b_positive: list[bool]) -> float:
    """Cohen's kappa of lesion presence per patient; NaN when neither rater has a lesion-free patient."""
    a, b = np.asarray(a_positive, bool), np.asarray(b_positive, bool)
    if a.all() and b.all() or (~a).all() and (~b).all():
        return float("nan")
    from sklearn.metrics import cohen_kappa_score

    return float(cohen_kappa_score(a, b))
