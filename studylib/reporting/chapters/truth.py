"""Truth-anchored answers (a synthetic cohort with three or more readers): STAPLE's estimates of each read's
sensitivity and specificity against their actual values, and which supervision comes closest to the truth, with the
decision rule printed before the numbers; and the one conditioned network against K decoupled ones (non-inferiority,
training cost). Reads ``aggregate/truth_*.csv`` (reporting/readers/truth.py) and ``aggregate/conditioned_*.csv``
(reporting/readers/conditioned.py)."""

from __future__ import annotations

import pandas as pd

from ...evaluation.truth import CLOSEST_RULE
from ...plans.results_folder import (
    AGGREGATE,
    CONDITIONED_COST,
    CONDITIONED_NONINFERIORITY,
    TRUTH_DICE,
    TRUTH_STAPLE_SUMMARY,
    TRUTH_VERDICT,
)
from ..context import ReportContext
from ..markdown import markdown_table
from ..readers.conditioned import NONINFERIORITY_LEVEL, NONINFERIORITY_RULE
from ..readers.truth import MIN_READERS, MODELS

NOT_WRITTEN = ("No truth-anchored tables for this study: they need a synthetic cohort (whose truth mask is known) and "
               f"at least {MIN_READERS} readers (the `multirater` profile).\n")


def _percent(value: float, digits: int = 1) -> str:
    return "" if pd.isna(value) else f"{100 * value:.{digits}f}"


def _interval(low: float, high: float, digits: int = 1) -> str:
    return "" if pd.isna(low) else f"[{100 * low:.{digits}f}, {100 * high:.{digits}f}]"


def staple_markdown(ctx: ReportContext) -> str:
    """STAPLE's estimated sensitivity and specificity of each read beside the read's actual ones (mean over patients,
    in %, with the mean error's bootstrap 95 % interval)."""
    summary = ctx.table(AGGREGATE, TRUTH_STAPLE_SUMMARY)
    if summary.empty:
        return NOT_WRITTEN
    table = pd.DataFrame({
        "reader": summary.reader, "rate": summary.rate, "patients": summary.n_patients,
        "STAPLE's estimate (%)": summary.mean_estimated.map(lambda v: _percent(v, 2)),
        "actual (%)": summary.mean_actual.map(lambda v: _percent(v, 2)),
        "mean error (points)": summary.mean_error.map(lambda v: _percent(v, 2)),
        "95 % interval": [_interval(lo, hi, 2) for lo, hi in zip(summary.error_ci_low, summary.error_ci_high)],
        "mean absolute error (points)": summary.mean_absolute_error.map(lambda v: _percent(v, 2))})
    return ("STAPLE (the project's one implementation, the consensus target's) estimates each read's sensitivity and "
            "specificity while it estimates the consensus; on a synthetic cohort the truth is known, so each read's "
            "actual rates can be measured against it. Both are taken inside the box STAPLE runs in (the readers' "
            "union grown by 8 voxels), so the specificities are specificities in that box, not over the body. Error: "
            "estimate minus actual, per patient, averaged over patients (bootstrap 95 % interval over patients).\n\n"
            + markdown_table(table))


def closest_markdown(ctx: ReportContext) -> str:
    """The decision rule, then its verdicts, then Dice against the truth of every supervision with the paired
    intervals of its difference to the candidate."""
    dice = ctx.table(AGGREGATE, TRUTH_DICE, keep_default_na=False, na_values=[""])
    verdicts = ctx.table(AGGREGATE, TRUTH_VERDICT, keep_default_na=False, na_values=[""])
    if dice.empty or verdicts.empty:
        return NOT_WRITTEN
    lines = [CLOSEST_RULE, "", "Verdicts:", ""]
    for v in verdicts.itertuples():
        where = f"{v.kind}" + (f", {v.modality} input" if isinstance(v.modality, str) and v.modality else "")
        lines.append(f"- {where} ({v.n_patients} patients): {v.verdict}.")
    lines += ["", "Models are scored per test patient in 3D on the CT grid (full volume); a conditioned model's style "
              "`conditioned_<reader>` is its own supervision. The target masks themselves (no model) are scored on "
              "every patient of the cohort. Dice in %, difference in points.", ""]
    table = pd.DataFrame({
        "scored": [k + (f" ({m})" if isinstance(m, str) and m else "") for k, m in zip(dice.kind, dice.modality)],
        "supervision": dice.supervision, "patients": dice.n_patients, "seeds": dice.n_seeds,
        "Dice vs truth": dice.mean_dice.map(_percent),
        "95 % interval": [_interval(lo, hi) for lo, hi in zip(dice.ci_low, dice.ci_high)],
        "candidate minus this": dice.difference_to_candidate.map(_percent),
        "paired 95 % interval": [_interval(lo, hi) for lo, hi in zip(dice.difference_ci_low, dice.difference_ci_high)],
        "tied with candidate": dice.tied_with_candidate.map(lambda t: "yes" if str(t) == "True" else "no")})
    order = {MODELS: 0}
    table = table.iloc[sorted(range(len(table)), key=lambda i: order.get(dice.kind.iloc[i], 1))]
    return "\n".join(lines) + "\n" + markdown_table(table)


def conditioned_markdown(ctx: ReportContext) -> str:
    """Non-inferiority of the one conditioned network against the K decoupled ones on own-reader Dice, the rule
    before the numbers, and the training cost of each."""
    table = ctx.table(AGGREGATE, CONDITIONED_NONINFERIORITY)
    cost = ctx.table(AGGREGATE, CONDITIONED_COST)
    if table.empty:
        return "No conditioned model beside decoupled ones in this study (the `multirater` profile trains both).\n"
    shown = pd.DataFrame({
        "input": table.modality, "reader": table.reader, "patients": table.n_pairs,
        "mean difference (points)": table.mean_difference.map(lambda v: _percent(v, 2)),
        f"one-sided {100 * NONINFERIORITY_LEVEL:.0f} % lower bound (points)": table.lower_bound.map(lambda v: _percent(v, 2)),
        "margin (points)": table.margin.map(lambda v: _percent(-v, 1)), "verdict": table.verdict})
    text = NONINFERIORITY_RULE + " Difference: conditioned minus decoupled, 3D Dice in points.\n"
    if not cost.empty:
        totals = cost.groupby("modality")[["conditioned_seconds", "decoupled_seconds"]].sum()
        runs = int(cost.decoupled_runs.iloc[0])
        lines = [f"{m}: the conditioned network trained for {r.conditioned_seconds:.0f} s, the {runs} decoupled "
                 f"networks for {r.decoupled_seconds:.0f} s together ({r.conditioned_seconds / r.decoupled_seconds:.2f}x)"
                 for m, r in totals.iterrows() if r.decoupled_seconds > 0]
        text += ("\nTraining cost, summed over folds from the runs' training logs (seconds of every epoch's training "
                 "and validation; runs that shared the CPU with another run were timed as they ran): "
                 + "; ".join(lines) + ".\n")
    return text + "\n" + markdown_table(shown)
