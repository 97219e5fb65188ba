"""The report's What replicates chapter (report/index.qmd): the claims table, and its verdicts per model family."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ...evaluation.claims import VERDICT_RULES
from ...evaluation.paper import load_paper
from ...plans.results_folder import AGGREGATE, CLAIMS_ACROSS_FAMILIES, EXTERNAL, EXTERNAL_RECORD
from ...plans.runs import OWN_FAMILY, SEPARATOR
from ..context import ReportContext
from ..markdown import markdown_table

NNUNET_DEFAULT_BUDGET = "1000 epochs of 250 iterations, test-time mirroring on"  # nnUNetTrainer's defaults


def claims_markdown(ctx: ReportContext) -> str:
    """The claims table: the paired difference with its CI beside the paper's, Holm-corrected p, verdict and reason."""
    t = ctx.claims.copy()

    def number(v, form: str) -> str:
        """``v`` in ``form``, or '' for a missing value."""
        return "" if pd.isna(v) else format(v, form)

    for column in ("first_mean", "second_mean"):
        t[column] = t[column].map(lambda v: number(v, ".2f"))
    for column in ("mean_difference", "paper_difference"):
        t[column] = t[column].map(lambda v: number(v, "+.2f"))
    t["ci"] = [f"{100 * level:.1f} %: {low:+.2f} to {high:+.2f}" if pd.notna(low) else ""
               for level, low, high in zip(t.ci_level, t.ci_low, t.ci_high)]
    t["p_holm"] = t["p_holm"].map(lambda v: number(v, ".2g"))
    t["n_patients"] = t["n_patients"].map(lambda v: "" if pd.isna(v) else str(int(v)))
    columns = ["comparison", "n_patients", "first_mean", "second_mean", "mean_difference", "ci", "paper_difference",
               "p_holm", "verdict", "reason"]
    if t.stability.fillna("").astype(bool).any():  # judged on each seed alone: only with several seeds
        columns.append("stability")
    shown = t[columns].rename(columns={"n_patients": "n", "first_mean": "first", "second_mean": "second",
                                       "mean_difference": "difference", "ci": "CI", "paper_difference": "paper",
                                       "p_holm": "p (Holm)", "stability": "seeds"})
    paper = load_paper()
    claims = "\n".join(f"- `{k}`: {v}" for k, v in paper.claims.items())
    return (f"The claims, as the paper makes them:\n\n{claims}\n\nHow a verdict follows from the numbers "
            f"(fixed before they were computed): {VERDICT_RULES}\n\n'first' and 'second' are the two sides of each "
            "comparison as named (3D DSC in %, volumes in ml, kappa); 'difference' is first minus second, per patient "
            "then averaged, with its bootstrap CI at the family's level; 'paper' is the same difference from the "
            "paper's own table means.\n\n" + markdown_table(shown))



def claims_per_family_markdown(ctx: ReportContext) -> str:
    """Each claim's verdict for our U-Net and for every other model family scored into the results folder ('' when
    none was): whether it holds (replicated) for ours, for the other, for both or for neither."""
    t = ctx.table(AGGREGATE, CLAIMS_ACROSS_FAMILIES)
    if t.empty:
        return ""
    families = [c.removeprefix("verdict_") for c in t.columns if c.startswith("verdict_")]
    others = ", ".join(f"`{f}`" for f in families if f != OWN_FAMILY)
    shown = t.drop(columns=["key"]).rename(columns={f"verdict_{f}": f for f in families} | {"holds_for": "holds for"})
    budgets = "\n".join(f"- `{f}`: {family_budget(ctx.results, f)}" for f in families if f != OWN_FAMILY)
    return (f"The same claims judged by the same rules for each model family: our U-Net (`{OWN_FAMILY}`) and "
            f"{others}, whose predictions of the same folds' test patients were scored by the same code "
            "(`python -m studylib score`). A claim holds for a family when its verdict there is replicated; a family "
            "without the inputs or labels a claim compares is not testable on it. Other families' rows are in "
            "Tables 1-2 under their names. A verdict says no more than the training behind it; as recorded with "
            f"their scores (`external/*/score.json`):\n\n{budgets}\n\n" + markdown_table(shown, names=families))


def family_budget(results: Path, family: str) -> str:
    """How another family's scored folds were trained, from their ``score.json`` (``training``), in words."""
    budgets = set()
    for record in sorted((results / EXTERNAL).glob(f"{family}{SEPARATOR}*/{EXTERNAL_RECORD}")):
        training = json.loads(record.read_text()).get("training") or {}
        if not training:
            budgets.add("predictions scored as given (no training recorded)")
            continue
        epochs, iterations = training.get("epochs"), training.get("iterations_per_epoch")
        mirroring = "on" if training.get("test_time_mirroring", True) else "off"
        batches = ""
        if "batch_size" in training:  # recorded since the memory target became a setting
            patch = "x".join(str(v) for v in training["patch_size"])
            target = (training.get("settings") or {}).get("memory_target_gb")
            batches = f" (batches of {training['batch_size']} patches of {patch}" + (
                f", planned for {target:g} GB)" if target is not None else ")")
        budgets.add(f"{training.get('trainer')}, {training.get('configuration')}, {epochs} epoch(s) of {iterations} "
                    f"iterations{batches} on {training.get('device')}, test-time mirroring {mirroring}")
    text = "; ".join(sorted(budgets)) or "no record"
    if family.startswith("nnunet_"):
        text += f" (nnU-Net's own budget: {NNUNET_DEFAULT_BUDGET})"
    return text
