"""Truth-anchored answers, possible only on a synthetic cohort whose truth mask is known: each read's actual
sensitivity and specificity (to set beside STAPLE's estimates of them), and which supervision comes closest to the
truth, decided by a rule stated before the numbers (``CLOSEST_RULE``). Pure functions: arrays in, numbers out."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .metrics import confusion_counts, sensitivity, specificity
from .statistics import bootstrap_ci, hierarchical_bootstrap_ci

CLOSEST_LEVEL = 0.95
MIN_PAIRED_PATIENTS = 2  # fewer paired patients: no interval, no verdict
CLOSEST_RULE = (
    "Decision rule (fixed before the numbers): the supervision whose models have the highest mean 3D Dice against "
    "the truth (per patient, full volume, seeds averaged) is the candidate. It is called closest to the truth only "
    "if, against every other supervision, the paired bootstrap 95 % interval of the mean Dice difference (candidate "
    "minus other; patients resampled, and each patient's seeds where several ran; 10,000 draws) lies above 0. "
    "Otherwise the candidate and every supervision whose interval holds 0 are named together as tied for closest. "
    f"Fewer than {MIN_PAIRED_PATIENTS} paired patients: no verdict.")


def read_rates(read: np.ndarray, truth: np.ndarray, within: np.ndarray | None = None) -> tuple[float, float]:
    """(sensitivity, specificity) of one read against the truth, optionally only inside ``within`` (the project's
    empty-mask policy: an empty truth gives sensitivity 1 for an empty read, else 0)."""
    counts = confusion_counts(np.asarray(read, bool), np.asarray(truth, bool), within)
    return sensitivity(counts), specificity(counts)


def box_mask(shape: tuple[int, ...], box: tuple[slice, ...]) -> np.ndarray:
    """A boolean mask of ``shape`` that is True inside ``box``."""
    mask = np.zeros(shape, bool)
    mask[box] = True
    return mask


def estimate_error(estimated, actual, level: float = CLOSEST_LEVEL) -> dict:
    """How far an estimate is from the actual value over patients: means, mean error (estimated - actual) with its
    bootstrap interval, mean absolute error (patients where either is NaN are left out, and counted)."""
    estimated, actual = np.asarray(estimated, float), np.asarray(actual, float)
    keep = np.isfinite(estimated) & np.isfinite(actual)
    error = estimated[keep] - actual[keep]
    lo, hi = bootstrap_ci(error, level=level)
    empty = not keep.any()
    return {"n_patients": int(keep.sum()), "n_left_out": int((~keep).sum()),
            "mean_estimated": float("nan") if empty else float(estimated[keep].mean()),
            "mean_actual": float("nan") if empty else float(actual[keep].mean()),
            "mean_error": float("nan") if empty else float(error.mean()), "error_ci_low": lo, "error_ci_high": hi,
            "mean_absolute_error": float("nan") if empty else float(np.abs(error).mean())}


@dataclass(frozen=True)
class ClosestVerdict:
    """The decision rule applied: the candidate (highest mean), whether it was called closest, and the tied set."""

    candidate: str
    decided: bool
    tied: list[str] = field(default_factory=list)
    n_patients: int = 0

    @property
    def text(self) -> str:
        """The verdict in one sentence."""
        if self.n_patients < MIN_PAIRED_PATIENTS:
            return f"no verdict: {self.n_patients} paired patient(s), fewer than {MIN_PAIRED_PATIENTS}"
        if self.decided:
            return f"`{self.candidate}` is closest to the truth (every paired interval lies above 0)"
        names = ", ".join(f"`{t}`" for t in self.tied)
        return f"no single closest supervision: {names} are tied (their paired intervals against `{self.candidate}` hold 0)"


def closest_supervision(scores: dict[str, np.ndarray], level: float = CLOSEST_LEVEL, n_boot: int = 10000,
                        seed: int = 0) -> tuple[pd.DataFrame, ClosestVerdict]:
    """``CLOSEST_RULE`` applied to Dice against the truth.

    Args:
        scores: per supervision, Dice against the truth as (patients, seeds), every array on the same patients in the
            same order (paired) and the same seeds.
    Returns:
        One row per supervision (mean Dice with its bootstrap interval; difference to the candidate with its paired
        interval; whether it is tied with the candidate), best first, and the verdict.
    """
    if not scores:
        raise ValueError("no supervision to compare")
    arrays = {name: np.asarray(v, float).reshape(len(v), -1) for name, v in scores.items()}
    shapes = {a.shape for a in arrays.values()}
    if len(shapes) != 1:
        raise ValueError(f"scores are not paired: shapes {sorted(shapes)}")
    means = {name: float(a.mean()) if a.size else float("nan") for name, a in arrays.items()}
    order = sorted(arrays, key=lambda n: -means[n])
    candidate = order[0]
    n_patients = arrays[candidate].shape[0]
    rows, tied = [], [candidate]
    for name in order:
        lo, hi = hierarchical_bootstrap_ci(arrays[name], n_boot, level, seed)
        row = {"supervision": name, "n_patients": n_patients, "n_seeds": arrays[name].shape[1],
               "mean_dice": means[name], "ci_low": lo, "ci_high": hi}
        if name == candidate:
            row |= {"difference_to_candidate": 0.0, "difference_ci_low": float("nan"),
                    "difference_ci_high": float("nan"), "tied_with_candidate": True}
        else:
            d_lo, d_hi = hierarchical_bootstrap_ci(arrays[candidate] - arrays[name], n_boot, level, seed)
            holds_zero = not d_lo > 0 or n_patients < MIN_PAIRED_PATIENTS
            row |= {"difference_to_candidate": means[candidate] - means[name], "difference_ci_low": d_lo,
                    "difference_ci_high": d_hi, "tied_with_candidate": holds_zero}
            if holds_zero:
                tied.append(name)
        rows.append(row)
    decided = len(tied) == 1 and n_patients >= MIN_PAIRED_PATIENTS
    return pd.DataFrame(rows), ClosestVerdict(candidate, decided, tied, n_patients)
