"""The report's Data chapter (report/index.qmd): the cohort, rater agreement, the reader sweep."""

from __future__ import annotations

import pandas as pd

from ...evaluation.paper import load_paper
from ...plans.results_folder import AGREEMENT, COHORT_QA, READER_SWEEP_SUMMARY
from ...synthetic.generate import MANIFEST
from ..context import ReportContext
from ..markdown import markdown_table
from ..viewer import viewer_link, viewer_patients


def data_section(ctx: ReportContext) -> str:
    """Cohort description and the synthetic cohort's stated assumptions."""
    spec, cohort_json = ctx.cohort_spec, ctx.cohort_path
    lines = [cohort_description(spec) + "\n"]
    synth = spec.get("synthetic")
    if synth:
        lines.append("This cohort is **synthetic**; it is not the paper's private cohort. Its assumptions, stated plainly:\n")
        lines += [f"- **{k}**: {v}" for k, v in synth["assumptions"].items()]
        slices = synth.get("lesion_slices_total")
        if slices:
            lines.append("\nAxial slices holding each label, summed over patients: "
                         + ", ".join(f"`{k}` {v}" for k, v in slices.items())
                         + f" (the paper trained on {load_paper().training_slices:,} lesion slices of its training "
                         "patients).")
        manifest = cohort_json.parent / MANIFEST
        if manifest.exists():
            m = pd.read_csv(manifest, dtype={"patient_id": str})
            keep = [c for c in ("patient_id", "site", "implant", "confounders", "n_foci", "truth_ml", "label_a_ml",
                                "label_b_ml", "label_a_slices", "label_b_slices", "suvmax") if c in m]
            m = m[keep].astype({"patient_id": str})
            tested = set(viewer_patients(ctx.results))
            m["patient_id"] = [viewer_link(pid) if pid in tested else pid for pid in m.patient_id]
            lines.append("\nPer-patient summary (a patient's id opens its viewer page):\n\n" + markdown_table(m))
    return "\n".join(lines) + "\n"


def cohort_description(spec: dict) -> str:
    """What a cohort is, from its own ``cohort.json``: disease, annotations and their meaning, how it was made."""
    labels = spec.get("labels", {})
    train = spec.get("train_labels") or list(labels)
    lines = [f"Cohort **{spec.get('name', '?')}**, {len(spec.get('patients', {}))} patients. Disease: "
             f"{spec.get('disease', 'not stated in its cohort.json')}."]
    if spec.get("description"):
        lines.append(f"How it was made: {spec['description']}.")
    lines.append(f"Annotations trained on: {len(train)} (" + "; ".join(f"`{k}`: {labels.get(k, '?')}" for k in train) + ").")
    return " ".join(lines)


def agreement_table(ctx: ReportContext) -> str:
    """Rater agreement summary."""
    a = ctx.agreement
    if not a or "dice_ab_mean" not in a:
        return "The cohort has a single label: no rater agreement to report.\n"
    table = pd.read_csv(ctx.results / COHORT_QA / AGREEMENT)
    rows = [(name, f"{table[col].mean():.3f} ± {table[col].std(ddof=1):.3f}") for name, col in (
        ("Dice(A, B)", "dice_ab"), ("voxel kappa, whole volume", "kappa_voxel"), ("voxel kappa, body", "kappa_voxel_body"),
        ("volume A (ml)", "volume_a_ml"), ("volume B (ml)", "volume_b_ml"), ("fraction of B inside A", "fraction_b_inside_a"))]
    if "ceiling_off_diagonal_dice" in table:
        rows.append(("volume ratio r = A / B (median)", f"{table.volume_ratio_a_over_b.median():.2f}"))
        rows.append(("ceiling 2/(1+r) of a perfect model off the diagonal of Table 2 (median)",
                     f"{table.ceiling_off_diagonal_dice.median():.3f}"))
    rows.append(("paper: kappa (statistic not defined)", f"{load_paper().kappa}"))
    pk = a.get("patient_level_kappa")
    rows.append(("patient-level kappa", "n/a (no lesion-free patient)" if pk is None or pk != pk else f"{pk:.3f}"))
    return markdown_table(pd.DataFrame(rows, columns=["agreement", "value"]))


def reader_sweep_markdown(ctx: ReportContext) -> str:
    """The reader sweep of a synthetic cohort: agreement and ceiling against label B's uptake threshold."""
    path = ctx.results / COHORT_QA / READER_SWEEP_SUMMARY
    if not path.exists():
        return "No reader sweep (the cohort is not synthetic, or its QA notebook has not run).\n"
    table = pd.read_csv(path).rename(columns={
        "value": "label B SUV threshold", "dice_ab": "Dice(A, B)", "kappa_voxel_body": "kappa (body)",
        "volume_ratio_median": "r (median)", "ceiling_median": "ceiling 2/(1+r)", "volume_b_ml": "volume B (ml)",
        "n_patients": "patients"})
    return ("The same synthetic images read again, with only label B's uptake threshold changed (the cohort draws it "
            "from the range its style states). Agreement between the annotations is an outcome of the reader "
            "models; this shows how strongly it depends on that one choice.\n\n" + markdown_table(table.round(3)))

