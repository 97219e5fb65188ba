"""The report's Abstract chapter (report/index.qmd)."""

from __future__ import annotations

from ...evaluation.claims import NOT_TESTABLE, central_claim, interval_text, verdict_counts
from ...evaluation.paper import load_paper
from ...ingest.modalities import MODALITY_NAMES, MODALITY_ORDER
from ...plans.results_folder import AGGREGATE, SUMMARY_STATISTICS, TABLE2_MEAN
from ..context import ReportContext


def abstract(ctx: ReportContext) -> str:
    """Abstract with every number filled in from the results."""
    pp = ctx.per_patient
    label = "label_a" if "label_a" in ctx.labels else ctx.labels[0]
    summary = ctx.table(AGGREGATE, SUMMARY_STATISTICS, dtype={"modality": str, "train_label": str, "ground_truth": str})
    own = summary[(summary.train_label == label) & (summary.ground_truth == label) & (summary.metric == "dsc")]
    means = own.set_index("modality")["mean"]
    parts = [f"{MODALITY_NAMES[m]} {100 * means[m]:.1f}%" for m in MODALITY_ORDER if m in means]
    n_pat = pp.patient_id.nunique()
    name = ctx.cohort_spec.get("name", ctx.cohort_path.parent.name)
    central = central_claim(ctx.claims) if len(ctx.claims) else ctx.claims
    text = ""
    if len(central):  # the paper's central claim first: fusing CT with PET beats PET alone
        paper = central.paper_difference.iloc[0]
        verdicts = "; ".join(f"{r.verdict} for `{r.key.split(':')[1]}` ({interval_text(r)})"
                             if r.verdict != NOT_TESTABLE else f"not testable for `{r.key.split(':')[1]}`: {r.reason}"
                             for r in central.itertuples())
        text += (f"The paper's central claim, that CT and PET together segment better than PET alone (dual > PET in "
                 f"3D DSC; the paper's Table 1: {paper:+.2f} points), is {verdicts}. ")
    if len(ctx.claims):  # counted by class: what is not evidence is kept apart
        text += verdict_counts(ctx.claims) + " "
    text += (f"We re-ran the paper's design on the cohort `{name}` "
             f"({n_pat} patients, profile `{ctx.profile.name}`, {len(ctx.summaries)} training runs, "
             f"{ctx.profile.study.folds}-fold patient-wise cross-validation). With models trained and evaluated on "
             f"{label}, the mean patient-level 3D Dice was: {', '.join(parts)}.")
    mean = ctx.table(AGGREGATE, TABLE2_MEAN, index_col=0)
    mean = mean[mean.index.astype(str).str.startswith("model ")] if len(mean) else mean  # our models, not others'
    if len(mean):
        cells = "; ".join(f"{r} on {c}: {100 * mean.loc[r, c]:.1f}%" for r in mean.index for c in mean.columns)
        text += f" Cross-evaluation of the dual-input models (3D DSC): {cells}."
    if "dice_ab_mean" in ctx.agreement:  # a single-label study has no agreement to state
        text += (f" The two annotations agree with Dice {ctx.agreement['dice_ab_mean']:.2f} and voxel kappa "
                 f"{ctx.agreement['kappa_voxel_mean']:.2f} (paper: kappa {load_paper().kappa}).")
    text += " Rules and numbers are in the claims table."
    return text + "\n"

