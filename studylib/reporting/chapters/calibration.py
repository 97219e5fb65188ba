"""Calibration against reader disagreement (three or more readers): each model family's probability against the
readers' vote fraction (ECE, Brier, reliability diagram) and its uncertainty as a detector of where readers disagree
(AUROC, ROC). Reads ``aggregate/calibration*.csv`` (reporting/readers/calibration.py)."""

from __future__ import annotations

import pandas as pd

from ...evaluation.calibration import CALIBRATION_BINS
from ...plans.results_folder import AGGREGATE, CALIBRATION_SUMMARY
from ...training.models import MIN_READERS_FOR_PROBABILITIES
from ..context import ReportContext
from ..markdown import markdown_table
from ..readers.calibration import FAMILIES


def _number(value: float, digits: int = 3) -> str:
    return "" if pd.isna(value) else f"{value:.{digits}f}"


def calibration_markdown(ctx: ReportContext) -> str:
    """ECE and Brier against the vote fraction, and AUROC of model uncertainty for reader disagreement, per family."""
    summary = ctx.table(AGGREGATE, CALIBRATION_SUMMARY)
    if summary.empty:
        return (f"No calibration against reader disagreement for this study: it needs at least "
                f"{MIN_READERS_FOR_PROBABILITIES} readers and the probability maps their style models keep (the "
                "`multirater` profile).\n")
    table = pd.DataFrame({
        "input": summary.modality, "models": summary.family.map(lambda f: FAMILIES.get(f, f)),
        "patients": summary.patients,
        "ECE (pooled)": summary.ece_pooled.map(_number), "ECE (patient mean)": summary.ece_patient_mean.map(_number),
        "Brier (patient mean)": summary.brier_patient_mean.map(lambda v: _number(v, 4)),
        "AUROC entropy (pooled)": summary.auroc_entropy_pooled.map(_number),
        "AUROC entropy (patient mean)": summary.auroc_entropy_patient_mean.map(_number)})
    if "auroc_spread_pooled" in summary:
        table["AUROC members' SD (pooled)"] = summary.auroc_spread_pooled.map(_number)
        table["AUROC members' SD (patient mean)"] = summary.auroc_spread_patient_mean.map(_number)
    return ("A model of the readers' styles is calibrated against their disagreement when, among voxels it gives "
            "probability p, a share p of the readers include the voxel. The target is the readers' vote fraction "
            "(0, 1/N, ..., 1); a family's probability is the mean of its members (the decoupled models, one per "
            "reader; the conditioned model's styles) or the vote-fraction model's own. ECE: "
            f"{CALIBRATION_BINS} equal-width probability bins, voxel-weighted mean of |mean probability - mean vote "
            "fraction|, pooled over the test patients' voxels and per patient; Brier: mean squared difference. "
            "The voxels are one box per patient, the same for every family: the readers' and the models' masks "
            "grown by 8 voxels (elsewhere everyone says background). The detector: voxels where readers disagree "
            "(0 < vote fraction < 1) against the rest of the box, scored by the entropy of the family's mean "
            "probability and, for families of several members, the SD of their probabilities; AUROC 0.5 is chance. "
            "Primary seed and background setting.\n\n" + markdown_table(table))
