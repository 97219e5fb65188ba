"""The report's Methods chapter (report/index.qmd): the methods table, departures, assumptions, ambiguities."""

from __future__ import annotations

import pandas as pd

from ...evaluation.metrics import NSD_ROUNDING_MM
from ...evaluation.paper import load_paper
from ..context import ReportContext
from ..markdown import markdown_table


def methods_table(ctx: ReportContext) -> str:
    """Methods as run, read from the profile."""
    p = ctx.profile
    pre, model, train = p.preprocess, p.model, p.train
    s0 = ctx.summaries[0]
    rows = [
        ("PET to CT", f"{pre.registration} registration (Mattes MI), linear resampling onto the CT grid; masks nearest"),
        ("CT", f"bone window W={pre.ct_width:g}, L={pre.ct_level:g} HU, then min-max to [0,1] ({pre.ct_norm})"),
        ("PET", f"{pre.pet_norm} per volume"),
        ("Slices", f"axial, resized to {pre.image_size}x{pre.image_size} (bilinear; masks nearest); training slices: "
                   f"those holding any of {ctx.labels} (one set for every label: identical inputs X) plus lesion-free "
                   f"slices at fractions {[f'{100 * f:g}%' for f in p.study.background_fractions]} (first: primary)"),
        ("Model", f"{model.arch}, widths {model.widths}, bottleneck {model.bottleneck}, "
                  f"{s0.get('n_parameters', 0) / 1e6:.2f} M parameters"),
        ("Loss", f"λ·Dice + (1−λ)·BCE, λ = {train.dice_weight}"),
        ("Optimiser", f"Adam lr {train.lr:g}, betas {tuple(train.betas)}, weight decay {train.weight_decay:g}, "
                      f"cosine annealing over "
                      + (f"a budget of {train.steps} optimiser steps" if train.steps else f"{train.epochs} epochs")
                      + f", batch {train.batch_size}, early stopping patience {train.patience} and best checkpoint "
                      f"on {train.monitor.replace('_', ' ')} over every slice of the validation patients' volumes"),
        ("Augmentation", f"flips p={train.augment.flip_p}, rotation ±{train.augment.rotation_deg:g}°, scale "
                         f"±{100 * train.augment.scale:g}%, translation ±{100 * train.augment.translation:g}%, "
                         f"shear ±{train.augment.shear_deg:g}°"),
        ("Evaluation", f"every axial slice predicted, restacked on the CT grid, threshold 0.5; per-patient 3D metrics "
                       f"(NSD tolerance {nsd_text(ctx)}) in two regions: `full` (every slice, primary) "
                       f"and `lesion_extent`, which is ground-truth-informed (only the slices within the z-extent of "
                       f"the union of the patient's own training labels: the reference chooses what is scored)"),
        ("Grid", f"modalities {p.study.modalities} x labels {ctx.labels} x {p.study.folds} folds x seeds {p.study.seeds}"),
    ]
    return markdown_table(pd.DataFrame(rows, columns=["step", "as run"]))


def nsd_text(ctx: ReportContext) -> str:
    """The NSD tolerance the runs scored with, and where it came from."""
    used = sorted({s["nsd_tolerance_mm"] for s in ctx.summaries if "nsd_tolerance_mm" in s})
    if not used:
        return f"{ctx.profile.study.nsd_tolerance_mm or 2:g} mm"
    how = ("set by the profile and checked against the voxel spacing" if ctx.profile.study.nsd_tolerance_mm
           else f"the cohort's largest voxel spacing, rounded up to {NSD_ROUNDING_MM:g} mm")
    return f"{', '.join(f'{v:g}' for v in used)} mm: {how}"


def departures_table(ctx: ReportContext) -> str:
    """Profile departures from the paper with their reasons."""
    if not ctx.profile.departures:
        return ("No setting departs from a value the paper states; where the paper states none, the choice made is "
                "in the assumptions table.\n")
    return markdown_table(pd.DataFrame(list(ctx.profile.departures.items()), columns=["setting", "why it differs"]))


def assumptions_table(ctx: ReportContext) -> str:
    """How the profile reads what the paper leaves open."""
    if not ctx.profile.assumptions:
        return "The profile states no assumption.\n"
    return markdown_table(pd.DataFrame(list(ctx.profile.assumptions.items()), columns=["setting", "assumption"]))


def specificity_note() -> str:
    """Why voxel specificity is ~1 and what we report beside it."""
    return ("**On specificity.** Voxel specificity TN/(TN+FP) over a whole CT volume is close to 1 for any model, "
            "because true-negative voxels outnumber lesion voxels by three to four orders of magnitude; it cannot "
            "produce the paper's 82-94 %. We report it paper-literally (whole volume), within the body mask, and "
            "always beside the false-positive volume in ml, which is what separates the models.\n")


def ambiguities_markdown() -> str:
    """Where the paper is ambiguous (from paper.yaml)."""
    return "\n".join(f"- {line}" for line in load_paper().ambiguities) + "\n"

