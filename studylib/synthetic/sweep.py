"""Sensitivity of the A/B agreement to one reader parameter: the same images, read again at each setting."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..evaluation.metrics import agreement
from .generate import generate_patient, read_all

# The parameter that drives the A/B volume ratio: label B keeps only bone whose uptake exceeds this SUV.
SWEEP_LABEL = "label_b"
SWEEP_PARAMETER = "pet_threshold_suv"
SWEEP_VALUES = (2.0, 2.5, 3.0, 3.5, 4.0, 4.5)


def _sweep_patient(task) -> list[dict]:
    seed, index, scale, label, parameter, values = task
    vol = generate_patient(f"P{index:03d}", seed, index, scale)
    rows = []
    for value in values:
        masks, _ = read_all(vol.view, seed, index, 2, {label: {parameter: value}})
        rows.append({"patient_id": vol.meta["patient_id"], "value": float(value),
                     **agreement(masks["label_a"], masks["label_b"], vol.view.spacing_zyx, vol.view.maps["body"])})
    return rows


def reader_sweep(seed: int, patients: int, scale: str, label: str = SWEEP_LABEL, parameter: str = SWEEP_PARAMETER,
                 values=SWEEP_VALUES, jobs: int = 1, progress: bool = True) -> pd.DataFrame:
    """Per patient and setting: Dice(A, B), voxel kappa, volume ratio r and the ceiling 2/(1+r)."""
    from ..preprocessing.parallel import map_in_processes

    tasks = [(seed, index, scale, label, parameter, tuple(values)) for index in range(patients)]
    rows = [row for part in map_in_processes(_sweep_patient, tasks, jobs, "reader sweep", progress) for row in part]
    table = pd.DataFrame(rows)
    table["ceiling_off_diagonal_dice"] = ceiling(table["volume_ratio_a_over_b"])
    table.insert(1, "parameter", f"{label}.{parameter}")
    return table


def sweep_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean over patients per setting (r as the median: one tiny B volume must not dominate)."""
    g = table.groupby("value")
    return pd.DataFrame({
        "dice_ab": g["dice_ab"].mean(), "kappa_voxel_body": g["kappa_voxel_body"].mean(),
        "volume_ratio_median": g["volume_ratio_a_over_b"].median(),
        "ceiling_median": g["ceiling_off_diagonal_dice"].median(),
        "volume_b_ml": g["volume_b_ml"].mean(), "n_patients": g.size(),
    }).reset_index()


def sweep_figure(summary: pd.DataFrame, parameter: str, drawn_range: tuple[float, float] | None = None):
    """Agreement and the structural ceiling against the swept parameter."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.6))
    ax.plot(summary["value"], summary["kappa_voxel_body"], "o-", label="voxel kappa (body)")
    ax.plot(summary["value"], summary["dice_ab"], "s-", label="Dice(A, B)")
    ax.plot(summary["value"], summary["ceiling_median"], "^--", label="ceiling 2/(1+r), median")
    if drawn_range:
        ax.axvspan(*drawn_range, color="grey", alpha=0.15, label="range the cohort draws from")
    ax.set_xlabel(parameter)
    ax.set_ylabel("agreement")
    ax.set_ylim(0, 1)
    right = ax.twinx()
    right.plot(summary["value"], summary["volume_ratio_median"], "d:", color="black", label="r = vol A / vol B")
    right.set_ylabel("volume ratio r (median)")
    lines = ax.get_legend_handles_labels()
    more = right.get_legend_handles_labels()
    ax.legend(lines[0] + more[0], lines[1] + more[1], fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def drawn_range(label: str = SWEEP_LABEL, parameter: str = SWEEP_PARAMETER) -> tuple[float, float] | None:
    """The range the cohort's reader style draws the swept parameter from."""
    from .readers import STYLES, reader_names

    style = dict(reader_names(2)).get(label)
    value = getattr(STYLES[style], parameter, None) if style else None
    return tuple(value) if isinstance(value, tuple) else None


def ceiling(volume_ratio: float | np.ndarray) -> float | np.ndarray:
    """Upper bound 2/(1+r) on Dice(A, B) for r = |A|/|B| >= 1 (a perfect model of A scored against B), reached only
    when B lies inside A."""
    return 2 / (1 + np.asarray(volume_ratio))
