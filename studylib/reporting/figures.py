"""Figures of the study: cohort QA, registration QA, overlays (paper Figs. 2-3), distributions, curves."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from ..preprocessing.intensity import bone_window

# The backend of the notebooks the study executes, which write figures to files and show none: set through
# MPLBACKEND where they start (pipeline.notebooks), never at import, so an interactive session keeps its own.
FILE_BACKEND = "Agg"

STRIP_JITTER_SEED = 0
MODEL_COLOURS = {"label_a": "#d62728", "label_b": "#1f77b4", "truth": "#2ca02c"}


def save_figure(fig: plt.Figure, path: str | os.PathLike, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Save a figure in the given formats next to ``path`` (its suffix is replaced) and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in formats:
        target = path.with_suffix(f".{fmt}")
        # no creation date in SVG or PDF files and fixed SVG element ids, so a re-run writes the same bytes
        metadata = {"Date": None} if fmt == "svg" else {"CreationDate": None} if fmt == "pdf" else None
        with matplotlib.rc_context({"svg.hashsalt": "petct-study"}):
            fig.savefig(target, dpi=130, bbox_inches="tight", metadata=metadata)
        written.append(target)
    plt.close(fig)
    return written


def saved(fig: plt.Figure, path: Path, formats: Sequence[str], results: Path) -> list[str]:
    """Save ``fig`` in ``formats`` and return the files' paths relative to the results folder."""
    return [os.path.relpath(p, results) for p in save_figure(fig, path, formats)]


def _ct_display(ct_hu: np.ndarray) -> np.ndarray:
    return bone_window(ct_hu.astype(np.float32))


def _contour(ax, mask: np.ndarray, colour: str, label: str | None = None, fill: float = 0.25) -> None:
    if mask is None or not mask.any():
        return
    ax.contour(mask.astype(float), levels=[0.5], colors=[colour], linewidths=1.2)
    overlay = np.zeros((*mask.shape, 4))
    overlay[mask.astype(bool)] = (*matplotlib.colors.to_rgb(colour), fill)
    ax.imshow(overlay, interpolation="nearest")
    if label:
        ax.plot([], [], color=colour, label=label)


def lesion_slice(mask: np.ndarray) -> int:
    """Index of the axial slice with the largest mask area."""
    areas = mask.reshape(mask.shape[0], -1).sum(axis=1)
    return int(np.argmax(areas))


def crop_box(masks: Sequence[np.ndarray], shape: tuple[int, int], margin: int = 40) -> tuple[slice, slice]:
    """A square 2D box around the union of the given slice masks."""
    union = np.zeros(shape, bool)
    for m in masks:
        if m is not None:
            union |= m.astype(bool)
    if not union.any():
        return slice(0, shape[0]), slice(0, shape[1])
    ys, xs = np.nonzero(union)
    cy, cx = (ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2
    half = max(ys.max() - ys.min(), xs.max() - xs.min()) // 2 + margin
    y0, x0 = max(cy - half, 0), max(cx - half, 0)
    return slice(y0, min(cy + half, shape[0])), slice(x0, min(cx + half, shape[1]))


def patient_qa_figure(ct: np.ndarray, pet_on_ct: np.ndarray, labels: dict[str, np.ndarray], title: str = "",
                      z: int | None = None) -> plt.Figure:
    """CT bone window, PET (SUV), fused, and label A (red) / label B (blue) on the lesion's largest slice."""
    ref = labels.get("label_a", next(iter(labels.values())))
    z = lesion_slice(ref) if z is None else z
    box = crop_box([labels[k][z] for k in labels], ct.shape[1:], margin=max(ct.shape[1] // 10, 12))
    fig, axes = plt.subplots(1, 4, figsize=(14, 3.8))
    ct_s, pet_s = _ct_display(ct[z])[box], pet_on_ct[z][box]
    axes[0].imshow(ct_s, cmap="gray")
    axes[0].set_title("CT (bone window)")
    im = axes[1].imshow(pet_s, cmap="hot", vmin=0)
    fig.colorbar(im, ax=axes[1], fraction=0.046, label="SUV")
    axes[1].set_title("PET on CT grid")
    axes[2].imshow(ct_s, cmap="gray")
    axes[2].imshow(np.ma.masked_less(pet_s, 0.15 * max(pet_s.max(), 1e-6)), cmap="hot", alpha=0.55)
    axes[2].set_title("fused")
    axes[3].imshow(ct_s, cmap="gray")
    for name in sorted(labels, key=lambda n: (n == "truth", n)):
        _contour(axes[3], labels[name][z][box], MODEL_COLOURS.get(name, "#ff7f0e"), name,
                 fill=0.0 if name == "truth" else 0.25)
    axes[3].legend(loc="lower right", fontsize=7)
    axes[3].set_title("labels (A red, B blue)" if "label_a" in labels else "labels")
    for ax in axes:
        ax.axis("off")
    fig.suptitle(f"{title}  slice {z}")
    return fig


def registration_qa_figure(ct: np.ndarray, pet_before: np.ndarray, pet_after: np.ndarray, z: int,
                           title: str = "") -> plt.Figure:
    """PET over CT before and after registration on one axial slice."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.2))
    for ax, pet, name in zip(axes, (pet_before, pet_after), ("before registration", "after registration")):
        ax.imshow(_ct_display(ct[z]), cmap="gray")
        p = pet[z]
        ax.imshow(np.ma.masked_less(p, 0.25 * max(float(p.max()), 1e-6)), cmap="hot", alpha=0.5)
        ax.contour(p, levels=[0.5 * max(float(p.max()), 1e-6)], colors="cyan", linewidths=0.8)
        ax.set_title(name)
        ax.axis("off")
    fig.suptitle(title)
    return fig


def overlay_figure(ct: np.ndarray, pet: np.ndarray, gts: dict[str, np.ndarray], preds: dict[str, np.ndarray],
                   title: str = "", z: int | None = None) -> plt.Figure:
    """Paper Fig. 2 analogue: inputs, then per label its ground truth and its model's prediction."""
    names = [n for n in ("label_a", "label_b") if n in preds] or list(preds)
    z = lesion_slice(gts[names[0]]) if z is None else z
    box = crop_box([gts[n][z] for n in names] + [preds[n][z] for n in names], ct.shape[1:],
                   margin=max(ct.shape[1] // 10, 12))
    fig, axes = plt.subplots(1 + len(names), 2, figsize=(7.5, 3.6 * (1 + len(names))))
    axes = np.atleast_2d(axes)
    ct_s = _ct_display(ct[z])[box]
    axes[0, 0].imshow(ct_s, cmap="gray")
    axes[0, 0].set_title("CT (bone window)")
    axes[0, 1].imshow(pet[z][box], cmap="hot")
    axes[0, 1].set_title("PET")
    for row, name in enumerate(names, start=1):
        colour = MODEL_COLOURS.get(name, "#ff7f0e")
        letter = name.split("_")[-1].upper()
        for col, (mask, what) in enumerate(((gts[name], f"ground truth {letter}"), (preds[name], f"model {letter}"))):
            axes[row, col].imshow(ct_s, cmap="gray")
            _contour(axes[row, col], mask[z][box], colour, fill=0.4)
            axes[row, col].set_title(what)
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(f"{title}  slice {z}")
    fig.tight_layout()
    return fig


def model_comparison_figure(ct: np.ndarray, pet: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray,
                            title: str = "", z: int | None = None) -> plt.Figure:
    """Paper Fig. 3 analogue: CT and PET, then model A (red) and model B (blue) on the same slice."""
    z = lesion_slice(pred_a | pred_b) if z is None else z
    box = crop_box([pred_a[z], pred_b[z]], ct.shape[1:], margin=max(ct.shape[1] // 10, 12))
    ct_s = _ct_display(ct[z])[box]
    fig, axes = plt.subplots(2, 2, figsize=(7.5, 7.2))
    axes[0, 0].imshow(ct_s, cmap="gray")
    axes[0, 0].set_title("CT")
    axes[0, 1].imshow(pet[z][box], cmap="hot")
    axes[0, 1].set_title("PET")
    for ax, mask, name in ((axes[1, 0], pred_a, "label_a"), (axes[1, 1], pred_b, "label_b")):
        ax.imshow(ct_s, cmap="gray")
        _contour(ax, mask[z][box], MODEL_COLOURS[name], fill=0.4)
        ax.set_title(f"model {name[-1].upper()}")
    for ax in axes.ravel():
        ax.axis("off")
    fig.suptitle(f"{title}  slice {z}")
    fig.tight_layout()
    return fig


def distribution_figure(per_patient: pd.DataFrame, metric: str, x: str, hue: str | None = None,
                        order: Sequence[str] | None = None, title: str = "") -> plt.Figure:
    """Per-patient metric distribution: box plot with the individual patients as points."""
    import seaborn as sns

    fig, ax = plt.subplots(figsize=(7, 4))
    sns.boxplot(data=per_patient, x=x, y=metric, hue=hue, order=order, ax=ax, showfliers=False,
                palette="pastel" if hue else None, color=None if hue else "#cfd8e3")
    # seaborn draws the points' jitter from NumPy's global generator: seeded here and restored after, so the
    # figure is the same on every re-run
    state = np.random.get_state()
    np.random.seed(STRIP_JITTER_SEED)
    try:
        sns.stripplot(data=per_patient, x=x, y=metric, hue=hue, order=order, ax=ax, dodge=hue is not None,
                      color="black" if hue is None else None, palette="dark" if hue else None, size=4, alpha=0.8,
                      legend=False)
    finally:
        np.random.set_state(state)
    ax.set_ylim(-0.02, 1.02) if per_patient[metric].max() <= 1 else None
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    return fig


def heatmap_figure(matrix: pd.DataFrame, sd: pd.DataFrame | None = None, title: str = "") -> plt.Figure:
    """Cross-evaluation matrix heatmap (rows models, columns ground truths), annotated mean +- SD."""
    fig, ax = plt.subplots(figsize=(1.8 * matrix.shape[1] + 2.5, 1.4 * matrix.shape[0] + 1.6))
    values = matrix.to_numpy(dtype=float)
    im = ax.imshow(values, cmap="viridis", vmin=0, vmax=max(1.0, np.nanmax(values)))
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            text = f"{100 * values[i, j]:.1f}"
            if sd is not None:
                text += f"\n± {100 * sd.iloc[i, j]:.1f}"
            ax.text(j, i, text, ha="center", va="center", color="white" if values[i, j] < 0.6 else "black")
    ax.set_xticks(range(values.shape[1]), matrix.columns)
    ax.set_yticks(range(values.shape[0]), matrix.index)
    ax.set_xlabel("ground truth")
    ax.set_ylabel("model")
    fig.colorbar(im, ax=ax, label="3D DSC", shrink=0.8)
    ax.set_title(title)
    fig.tight_layout()
    return fig


def training_curves_figure(logs: dict[str, pd.DataFrame], title: str = "") -> plt.Figure:
    """Train/validation loss and validation Dice per epoch for several runs."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    for name, log in logs.items():
        line = axes[0].plot(log["epoch"], log["train_loss"], label=f"{name} train")[0]
        axes[0].plot(log["epoch"], log["val_loss"], "--", color=line.get_color(), label=f"{name} val")
        axes[1].plot(log["epoch"], log["val_dice"], color=line.get_color(), label=name)
    axes[0].set_xlabel("epoch")
    axes[0].set_ylabel("loss")
    axes[1].set_xlabel("epoch")
    axes[1].set_ylabel("validation Dice (2D slices)")
    axes[1].legend(fontsize=6, ncol=2)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def disagreement_figure(ct: np.ndarray, reader_votes: np.ndarray, model_votes: dict[str, np.ndarray], reader_count: int,
                        title: str = "") -> plt.Figure:
    """Readers' and models' disagreement on the slice where the readers disagree most: how many readers (and how
    many style models) include each voxel, on the CT."""
    partial = (reader_votes > 0) & (reader_votes < reader_count)
    z = lesion_slice(partial if partial.any() else reader_votes > 0)
    maps = {"readers": (reader_votes, reader_count), **{name: (m, reader_count) for name, m in model_votes.items()}}
    box = crop_box([m[z] > 0 for m, _ in maps.values()], ct.shape[1:], margin=max(ct.shape[1] // 10, 12))
    ct_s = _ct_display(ct[z])[box]
    cmap = matplotlib.colormaps["viridis"].resampled(reader_count)
    fig, axes = plt.subplots(1, len(maps), figsize=(3.2 * len(maps) + 1.0, 3.6), squeeze=False, layout="constrained")
    for ax, (name, (votes, total)) in zip(axes[0], maps.items(), strict=True):
        ax.imshow(ct_s, cmap="gray")
        shown = np.ma.masked_equal(votes[z][box].astype(float), 0)
        image = ax.imshow(shown, cmap=cmap, vmin=0.5, vmax=total + 0.5, alpha=0.75, interpolation="nearest")
        ax.set_title(name, fontsize=10)
        ax.axis("off")
    fig.colorbar(image, ax=list(axes[0]), ticks=range(1, reader_count + 1), shrink=0.8,
                 label=f"how many include the voxel (of {reader_count})")
    fig.suptitle(f"{title}, slice {z}: readers and style models")
    return fig


def reliability_figure(bins: pd.DataFrame, names: dict[str, str], title: str = "") -> plt.Figure:
    """Reliability diagram: mean vote fraction against mean predicted probability per bin, one line per family
    (``bins``: family, bin_low, bin_high, voxels, mean_probability, mean_vote_fraction), voxel counts below."""
    fig, (ax, count_ax) = plt.subplots(2, 1, figsize=(5.2, 6.0), sharex=True, height_ratios=(3, 1))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="calibrated")
    for family, g in bins.groupby("family", sort=False):
        g = g[g.voxels > 0]
        line = ax.plot(g.mean_probability, g.mean_vote_fraction, marker="o", ms=3, label=names.get(family, family))[0]
        count_ax.plot((g.bin_low + g.bin_high) / 2, g.voxels, marker="o", ms=3, color=line.get_color())
    ax.set_ylabel("readers' vote fraction (mean in bin)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3)
    count_ax.set_yscale("log")
    count_ax.set_xlabel("predicted probability (bin)")
    count_ax.set_ylabel("voxels")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def roc_figure(curves: dict[str, tuple[np.ndarray, np.ndarray, float]], title: str = "") -> plt.Figure:
    """ROC curves (name -> (false-positive rates, true-positive rates, AUROC)), the AUROC in the legend."""
    fig, ax = plt.subplots(figsize=(6.0, 6.4))
    ax.plot([0, 1], [0, 1], color="grey", lw=1, ls="--", label="chance")
    for name, (fpr, tpr, auroc) in curves.items():
        ax.plot(fpr, tpr, label=f"{name} (AUROC {auroc:.3f})")
    ax.set_xlabel("false-positive rate (voxels where readers agree)")
    ax.set_ylabel("true-positive rate (voxels where readers disagree)")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=1, frameon=False)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    return fig
