"""The report's multi-rater metrics (report/index.qmd, Results, "Several readers"): the field's metric suite per
method, read from ``aggregate/multirater_summary.csv``."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from ...ingest.modalities import MODALITY_NAMES
from ...plans.results_folder import AGGREGATE, MULTIRATER_SUMMARY
from ...preprocessing.targets import DERIVED_TARGETS
from ..markdown import markdown_table
from ..readers.multirater import METRIC_ORDER

if TYPE_CHECKING:
    from ..context import ReportContext

METRIC_NAMES = {"ged_v": "GED (V)", "ged_u": "GED (U)", "hm_iou": "HM-IoU", "dice_max": "Dice max",
                "dice_max_reverse": "Dice max reverse", "dice_match": "Dice match", "dice_each": "Dice each",
                "dice_soft": "Dice soft", "s_ncc": "S-NCC"}
METHOD_NAMES = {"decoupled": "decoupled models (one per reader)", "conditioned": "conditioned model's styles",
                **{t: f"model of the {t}" for t in DERIVED_TARGETS}}


def multirater_table(summary: pd.DataFrame) -> pd.DataFrame:
    """One row per input and method, one column per metric ('mean ± SD'; empty where a metric does not apply)."""
    wide = summary.pivot_table(index=["modality", "method"], columns="metric", values="text", aggfunc="first",
                               sort=False)
    wide = wide[[m for m in METRIC_ORDER if m in wide.columns]].fillna("")
    wide.columns = [METRIC_NAMES[m] for m in wide.columns]
    wide = wide.reset_index()
    wide.insert(0, "input", wide.pop("modality").map(lambda m: MODALITY_NAMES.get(m, m)))
    wide["method"] = wide["method"].map(lambda m: METHOD_NAMES.get(m, m))
    return wide


def multirater_markdown(ctx: ReportContext) -> str:
    """The multi-rater field's metrics per method, with how each is computed and where it comes from."""
    summary = ctx.table(AGGREGATE, MULTIRATER_SUMMARY)
    if summary.empty:
        reason = pd.DataFrame({"multi-rater metrics": ["not computed"],
                               "why": ["fewer than two readers' labels, or no model predictions to score"]})
        return "No multi-rater metrics for this study.\n\n" + markdown_table(reason)
    patients = int((summary.n_patients + summary.n_undefined).max())
    undefined = summary[(summary.metric == "s_ncc") & (summary.n_undefined > 0)]
    ncc_note = ""
    if len(undefined):
        ncc_note = (f" S_NCC is undefined (left out of its mean) for {int(undefined.n_undefined.sum())} patient-method "
                    "pairs where every prediction of the set agrees, so there is no uncertainty to correlate: always "
                    "for a single prediction.")
    return ("How the multi-rater segmentation field compares methods, computed per test patient in 3D on the CT grid "
            f"({patients} patients; primary seed; per-patient values in `aggregate/multirater_metrics.csv`). Each "
            "method is a set of predictions scored against the set of the readers' masks: the decoupled models and "
            "the conditioned model's styles (one prediction per reader, in reader order) and each consensus-target "
            "model as a single prediction. GED is the generalised energy distance with d = 1 - IoU, as a "
            "V-statistic (self-pairs kept in the within-set terms, as PHiSeg; never negative) and as a U-statistic "
            "(self-pairs left out, as D-Persona; it can be negative, and is -d(A, B) for perfect predictions of two "
            "readers A and B, where the V-statistic is 0); a single prediction's within-set term is 0. HM-IoU "
            "replicates both sets to the least common multiple of their sizes and matches them one to one (as "
            "CCDM); Dice max, max reverse, match, each (style head i against reader i) and soft (mean over "
            "thresholds 0.1-0.9 of the mean prediction against the mean reader mask) follow D-Persona; S_NCC (PHiSeg) "
            "correlates the predictions' cross-entropy map with their error map against each reader, inside the box "
            "around every mask grown by 8 voxels (the other metrics do not depend on the box). Predictions are the "
            "runs' masks (probability >= 0.5), so the mean prediction is a vote fraction. Two empty masks count as "
            "IoU = Dice = 1. Lower GED is better; higher is better for the rest. The detection/segmentation split "
            "of the GED (Zepf, Frellsen and Feragen 2024) is not computed: its definition could not be read."
            + ncc_note + "\n\n" + markdown_table(multirater_table(summary)))
