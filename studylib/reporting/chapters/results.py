"""The report's Results chapter (report/index.qmd): Tables 1-2, tests, localisation, regions, readers, disagreement, background slices, convergence, the per-patient viewer pages, a real cohort."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pandas as pd

from ...evaluation.paper import load_paper
from ...ingest.modalities import MODALITY_NAMES
from ...plans.results_folder import (
    AGGREGATE,
    AGREEMENT,
    BACKGROUND_ABLATION,
    COHORT_QA,
    CONVERGENCE,
    DISAGREEMENT,
    LOCALISATION,
    LOCALISATION_PER_PATIENT,
    REGIONS,
    RUN_PARAMS,
    RUNS,
    TABLE2,
    TABLE2_TESTS,
    table1_extra_file,
    table1_file,
    table1_tests_file,
)
from ...plans.runs import RunParams, parse_run_id
from .. import aggregate as agg
from ..context import ReportContext
from ..markdown import markdown_table
from .data import cohort_description


def table1_markdown(ctx: ReportContext) -> str:
    """Table 1 for each training label (the paper's own Table 1 is shown apart: its label is not stated)."""
    out = []
    for label in ctx.labels_with_own_truth:
        t = ctx.table(AGGREGATE, table1_file(label)).drop(columns=["modality"])
        t = t.drop(columns=[c for c in ("specificity",) if c in t]).rename(columns={
            "n_patients": "n", "dsc": "DSC", "iou": "IoU", "sensitivity": "Sens", "specificity_body": "Spec (body)"})
        out.append(f"**Trained and tested on `{label}`**\n\n" + markdown_table(t))
    return "\n".join(out)


def paper_table1_markdown() -> str:
    """The paper's Table 1 with its SDs, as printed (label not stated in the paper)."""
    paper = load_paper()
    rows = [{"input": MODALITY_NAMES.get(m, m), **{k.upper() if k in ("dsc", "iou") else k.capitalize(): v.text()
                                                   for k, v in metrics.items()}}
            for m, metrics in paper.table1.items()]
    return (f"The paper's Table 1 ({paper.sources['table1']}); whole-volume specificity of our runs is above 99 % by "
            "construction, so the paper's specificity cannot be compared with it.\n\n" + markdown_table(pd.DataFrame(rows)))


def table1_extra_markdown(ctx: ReportContext) -> str:
    """Beyond-paper metrics per modality."""
    return "\n".join(f"**`{label}`**\n\n" + markdown_table(ctx.table(AGGREGATE, table1_extra_file(label)).drop(columns=["modality"]))
                     for label in ctx.labels_with_own_truth)


def tests_markdown(ctx: ReportContext) -> str:
    """Paired tests between modalities and between models."""
    parts = []
    for label in ctx.labels:
        t = ctx.table(AGGREGATE, table1_tests_file(label))
        if len(t):
            parts.append(f"**Modalities, `{label}`**\n\n" + markdown_table(
                t[["group_a", "group_b", "n_pairs", "mean_difference", "p_value", "p_holm", "rank_biserial"]]))
    if len(ctx.labels) > 1:
        t = ctx.table(AGGREGATE, TABLE2_TESTS)
        if len(t):
            parts.append("**Model A vs model B (dual input)**\n\n" + markdown_table(
                t[["ground_truth", "group_a", "group_b", "n_pairs", "mean_difference", "p_value", "p_holm", "rank_biserial"]]))
    return "\n".join(parts) or "Too few paired patients for tests.\n"


def localisation_markdown(ctx: ReportContext) -> str:
    """Fraction of predicted voxels on the affected side, per modality (chance about 0.5)."""
    path = ctx.results / AGGREGATE / LOCALISATION
    if not path.exists() or not len(pd.read_csv(path)):
        return "Not computed for this results folder.\n"
    table = pd.read_csv(path).round(4)
    table["modality"] = table["modality"].map(lambda m: MODALITY_NAMES.get(m, m))
    table = table.astype(object).where(table.notna(), "n/a")  # every prediction of that model was empty
    out = ("With both limbs in the field of view, a model that does not know where the infection is puts about half "
           "of its predicted voxels on each side. One-sided Wilcoxon test of the per-patient fraction against 0.5 "
           "(patients with an empty prediction are left out and counted; n/a: no prediction at all).\n\n" + markdown_table(table))
    per_patient = ctx.results / AGGREGATE / LOCALISATION_PER_PATIENT
    if per_patient.exists():
        pp = pd.read_csv(per_patient, header=[0, 1], index_col=0)
        ct = pp.loc[:, [c for c in pp.columns if c[0] == "ct"]]
        if ct.shape[1]:
            ct.columns = [f"CT only, {c[1]}" for c in ct.columns]
            ct = ct.reset_index().round(3)
            out += "\n**CT only, per patient**\n\n" + markdown_table(ct.astype(object).where(ct.notna(), "n/a"))
    return out


def table2_markdown(ctx: ReportContext) -> str:
    """Cross-evaluation matrix with the paper's values (mean ± SD) in brackets."""
    if len(ctx.labels) < 2 or "dual" not in set(ctx.per_patient.modality):
        return "Needs two training labels and the dual input.\n"
    text = ctx.table(AGGREGATE, TABLE2, index_col=0)
    paper = load_paper().table2
    for model in text.index:
        for gt in text.columns:
            reported = paper.get((model.removeprefix("model "), gt.removeprefix("GT ")))
            if reported is not None:
                text.loc[model, gt] = f"{text.loc[model, gt]} [{reported.text()}]"
    return markdown_table(text, index=True)


def ceiling_sentence(ctx: ReportContext) -> str:
    """The structural ceiling of the off-diagonal cells of Table 2, from the measured A/B volume ratio."""
    path = ctx.results / COHORT_QA / AGREEMENT
    if not path.exists():
        return ""
    table = pd.read_csv(path)
    if "volume_ratio_a_over_b" not in table:
        return ""
    r = float(table.volume_ratio_a_over_b.median())
    inside = float(table.fraction_b_inside_a.mean())
    return (f"**What the annotations allow.** Label A is a median {r:.2f} times the volume of label B and "
            f"{100 * inside:.0f} % of B lies inside A, so even a perfect model of A scored against B (or of B against "
            f"A) reaches a Dice of at most about 2/(1+r) = {2 / (1 + r):.2f}: the off-diagonal cells are bounded by "
            "the annotations before any model is trained.\n")


def regions_markdown(ctx: ReportContext) -> str:
    """3D DSC in both evaluation regions side by side."""
    path = ctx.results / AGGREGATE / REGIONS
    if not path.exists():
        return "Only one evaluation region was recorded.\n"
    table = pd.read_csv(path)
    table = table[table.ground_truth.isin(ctx.labels)]
    wide = table.pivot_table(index=["modality", "train_label", "ground_truth"], columns="region", values="dsc",
                             aggfunc="first").reset_index()
    wide["modality"] = wide["modality"].map(lambda m: MODALITY_NAMES.get(m, m))
    wide.columns.name = None
    wide = wide.rename(columns={"lesion_extent": "lesion_extent (ground-truth-informed)"})
    return ("`full`: every slice of the test volume (the primary analysis). `lesion_extent` is "
            "**ground-truth-informed**: only the slices within the z-extent of the union of the patient's own "
            "training labels, the same slices whichever label is scored; the reference chooses what is scored, so "
            "it shows how well a model segments where the lesion is known to be, never how well it finds it. "
            "3D DSC, mean ± SD in %.\n\n" + markdown_table(wide))


def readers_markdown(ctx: ReportContext) -> str:
    """Beyond the paper: every style model (decoupled per reader, conditioned, consensus targets) against every
    reader, the consensus and the truth, dual input, side by side."""
    from ...preprocessing.targets import DERIVED_TARGETS
    from ...training.models import CONDITIONED, is_conditioned_output, own_ground_truth

    readers = ctx.profile.reader_labels(ctx.cohort_spec.get("train_labels", []))
    pp = ctx.per_patient[ctx.per_patient.modality == "dual"]
    conditioned = sorted(m for m in pp.train_label.unique() if is_conditioned_output(m))
    derived = [t for t in DERIVED_TARGETS if t in set(pp.train_label)]
    if not conditioned and not derived:
        trained = pd.DataFrame({
            "model family": ["decoupled (one per reader)", "consensus targets (STAPLE, union, intersection)",
                             "rater-conditioned (one model, every style)"],
            "trained in this study": [", ".join(f"`{m}`" for m in readers if m in set(pp.train_label)) or "no",
                                      "no", "no"]})
        return ("This study trains only the paper's decoupled models, one per reader's labels (Table 2 compares "
                "them). The `multirater` profile adds a third reader, models of the readers' STAPLE consensus, union "
                "and intersection, and one rater-conditioned model that produces each reader's style on request.\n\n"
                + markdown_table(trained))
    rows = [m for m in readers if m in set(pp.train_label)] + conditioned + derived
    truths = [t for t in [*readers, *derived, "truth"] if t in set(pp.ground_truth)]
    text = ctx.table(AGGREGATE, TABLE2, index_col=0)  # every dual model against every label: pick and order its cells
    table = text.loc[[f"model {m}" for m in rows], [f"GT {t}" for t in truths]]
    table.columns = truths
    table.index = [f"{CONDITIONED} model, style {own_ground_truth(m)}" if m in conditioned
                   else f"model of {m}" for m in rows]
    table.index.name = "model"
    return (f"Readers: {', '.join(f'`{r}`' for r in readers)}. Decoupled models (the paper's design) are trained "
            "one per reader; the conditioned model is one network trained on every reader's labels at once and told "
            "which style to produce (one-hot style planes beside the image channels); consensus targets are the "
            "readers' STAPLE consensus, union and intersection, computed per patient on the CT grid. Same folds, "
            "same training slices (equal slice digests), dual input, 3D DSC mean ± SD in %, full volumes.\n\n"
            + markdown_table(table.reset_index()))


def disagreement_markdown(ctx: ReportContext) -> str:
    """Where readers disagree and where their style models disagree (``disagreement.csv``)."""
    from ..readers.disagreement import disagreement_summary

    path = ctx.results / AGGREGATE / DISAGREEMENT
    table = pd.read_csv(path) if path.exists() else pd.DataFrame()
    if table.empty:
        reason = pd.DataFrame({"disagreement maps": ["not written"],
                               "why": ["fewer than two readers' labels, or no complete set of style models"]})
        return "No disagreement maps for this study.\n\n" + markdown_table(reason)
    summary = disagreement_summary(table)
    patients = int(summary.pop("patients").max())
    summary["modality"] = summary["modality"].map(lambda m: MODALITY_NAMES.get(m, m))
    for column in ("reader_disagreement_ml", "model_disagreement_ml"):
        summary[column] = summary[column].map(lambda v: f"{v:.1f}")
    for column in ("in_reader_disagreement", "reader_disagreement_covered"):
        summary[column] = summary[column].map(lambda v: "" if pd.isna(v) else f"{100 * v:.0f} %")
    summary = summary.rename(columns={
        "modality": "input", "reader_disagreement_ml": "readers disagree (ml)",
        "model_disagreement_ml": "models disagree (ml)", "in_reader_disagreement": "models' in readers'",
        "reader_disagreement_covered": "readers' in models'"})
    return (f"Per test patient ({patients}), the readers disagree where some but not all of the "
            f"{int(table.reader_count.iloc[0])} "
            "readers include a voxel; the style models (one per reader's style) disagree where some but not all of "
            "them do. The maps are NIfTI files on the CT grid in `aggregate/disagreement/` (counts 0..N per voxel); "
            "per-patient numbers in `aggregate/disagreement.csv`. Volumes: medians over patients. *Models' in "
            "readers'*: the share of the models' disagreement that lies where the readers disagree; *readers' in "
            "models'*: the share of the readers' disagreement that the models reproduce (means over patients where "
            "there is any).\n\n" + markdown_table(summary))


def background_markdown(ctx: ReportContext) -> str:
    """The background-slice ablation, when the profile runs one."""
    path = ctx.results / AGGREGATE / BACKGROUND_ABLATION
    table = pd.read_csv(path) if path.exists() else pd.DataFrame()
    if table.empty or table.background_fraction.nunique() < 2:
        return ("This profile trains with one share of lesion-free slices only "
                f"({[f'{100 * f:g}%' for f in ctx.profile.study.background_fractions]}); the paper profile adds an "
                "ablation.\n")
    table["modality"] = table["modality"].map(lambda m: MODALITY_NAMES.get(m, m))
    return ("Full-volume 3D DSC (%), body specificity (%) and false-positive volume (ml) by the share of lesion-free "
            "slices added to training (each model against its own label).\n\n" + markdown_table(table))


def convergence_markdown(ctx: ReportContext) -> str:
    """Did every run converge (rule in ``trainer.convergence``)? A summary line and one row per run."""
    path = ctx.results / AGGREGATE / CONVERGENCE
    if not path.exists():
        return "Convergence was not recorded for these runs.\n"
    table = pd.read_csv(path)
    from ...training.trainer import ANNEALED_LR_FRACTION, FLAT_TAIL_DROP

    done = int(table.converged.fillna(False).astype(bool).sum())
    patience = int(table.get("stopped_by_patience", pd.Series(dtype=bool)).fillna(False).astype(bool).sum())
    lines = [f"**{done} of {len(table)} runs converged** by the rule written in `studylib/training/trainer.py` "
             f"(`convergence`): the training loss is flat (over the last quarter of the epochs it falls by less than "
             f"{100 * FLAT_TAIL_DROP:g} % of its level in the quarter before) and the learning rate was annealed (the "
             f"last epoch's at most {100 * ANNEALED_LR_FRACTION:g} % of its start). Stopping by patience is not "
             f"convergence: {patience} run(s) stopped by patience, most before their learning rate was annealed, so "
             "their checkpoints were chosen mid-schedule.\n"]
    columns = ["run_id", "n_train_slices", "epochs_run", "best_epoch", "steps", "final_train_loss",
               "stopped_by_patience", "lr_fraction_at_end", "converged", "reason"]
    shown = table[[c for c in columns if c in table]].copy()
    if "lr_fraction_at_end" in shown:
        shown["lr_fraction_at_end"] = shown["lr_fraction_at_end"].map(lambda v: "" if pd.isna(v) else f"{v:.2f}")
    shown["final_train_loss"] = shown["final_train_loss"].round(3)
    # models A and B of a cell: the same run id once label_b is read as label_a
    cell_of_pair = table.run_id.map(parse_run_id).map(
        lambda c: replace(c, label="label_a") if c.label == "label_b" else c)
    digests = table.groupby(cell_of_pair, sort=False)["train_slices_digest"].nunique()
    same = bool((digests == 1).all())
    lines.append(f"Models A and B of each cell trained on {'the identical' if same else 'DIFFERENT'} slice sets "
                 "(equal slice digests in every run's summary).\n")
    return "\n".join(lines) + "\n" + markdown_table(shown)


def viewer_markdown(ctx: ReportContext) -> str:
    """Links to the viewer pages: the worst and the best test patient of every model family, then every patient."""
    from ..viewer import extreme_patients, viewer_link, viewer_patients

    extremes = extreme_patients(ctx.per_run)
    if extremes.empty:
        return "No per-patient rows to choose patients from.\n"

    def cell(row: pd.Series) -> str:
        empty = ", empty prediction" if row.empty_prediction else ""
        return f"{viewer_link(row.patient_id)} ({100 * row.dsc:.1f}{empty})"

    table = extremes.pivot_table(index=["modality", "train_label", "ground_truth"], columns="which",
                                 values="patient_id", aggfunc="first").reset_index()[["modality", "train_label",
                                                                                      "ground_truth"]]
    for which in ("worst", "best"):
        chosen = extremes[extremes.which == which].set_index(["modality", "train_label"])
        table[f"{which} (DSC %)"] = [cell(chosen.loc[(m, t)]) for m, t in zip(table.modality, table.train_label)]
    table["modality"] = table["modality"].map(lambda m: MODALITY_NAMES.get(m, m))
    table = table.rename(columns={"modality": "input", "train_label": "model", "ground_truth": "scored against"})
    seed = int(ctx.per_run.seed.min())
    every = ", ".join(viewer_link(pid) for pid in viewer_patients(ctx.results))
    tied = int((extremes.groupby(["modality", "train_label"]).dsc.nunique() == 1).sum())
    ties = (f" In {tied} famil{'y' if tied == 1 else 'ies'} every test patient scores the same (every prediction "
            "empty, for instance): there the worst and the best are the first and the last patient id." if tied else "")
    return ("Each test patient has a viewer page (HTML report only; it opens from disk, offline, in any browser "
            "with WebGL 2): CT in a bone or soft-tissue window with PET fused (colour map and SUV range adjustable), "
            "every label (readers, consensus targets, truth where the cohort has one), every model family's "
            "prediction from the fold that tested the patient and the disagreement maps, each a layer to switch on "
            "or off, in axial, coronal and sagittal views, with CT HU, SUV and each shown layer's value under the "
            f"crosshair. Below, the worst and the best test patient of each model family (3D DSC against the label "
            f"the model reproduces, seed {seed}, full volume; the worst are the failure cases).{ties} Every test "
            f"patient: {every}.\n\n" + markdown_table(table))


def real_data_section(ctx: ReportContext) -> str:
    """Table 1 on a real PET/CT cohort when its results folder exists (``PETCT_REAL_RESULTS`` or a sibling)."""
    candidates = [os.environ.get("PETCT_REAL_RESULTS", ""), str(ctx.results.parent / "real")]
    for c in candidates:
        if c and (Path(c) / RUNS).exists() and Path(c).resolve() != ctx.results:
            real = agg.primary(agg.seed_mean(agg.collect_per_patient(c)), c)
            run = next(r for r in agg.planned_runs(c) if (r / RUN_PARAMS).exists())
            cohort_json = Path(RunParams.from_record(run / RUN_PARAMS).cohort)
            spec = json.loads(cohort_json.read_text()) if cohort_json.exists() else {}
            n_labels = len(spec.get("train_labels") or spec.get("labels", {}))
            can = ("It can show whether adding PET to CT (and CT to PET) helps on real scanner data: the modality "
                   "comparison of Table 1.")
            cannot = ("It cannot test the cross-evaluation (Table 2), the models' different coverage or the annotation "
                      "agreement: it has one annotation." if n_labels < 2 else
                      "Its annotations come from its own readers, not the paper's.")
            if spec.get("disease") and "osteomyelitis" not in spec["disease"].lower():
                cannot += f" Its disease ({spec['disease']}) is not osteomyelitis: absolute values do not transfer."
            parts = [cohort_description(spec), can, cannot, f"\nResults folder `{os.path.relpath(c, ctx.results)}` "
                     f"({real.patient_id.nunique()} patients)."]
            for label in sorted(real.train_label.unique()):
                parts.append(f"\n**Trained and tested on `{label}`**\n\n" + markdown_table(
                    agg.table1(real, label).drop(columns=["modality", "specificity"], errors="ignore")))
            tests = [agg.modality_tests(real, label) for label in sorted(real.train_label.unique())]
            tests = [t for t in tests if len(t)]
            if tests:
                parts.append("\n**Paired tests (Holm)**\n\n" + markdown_table(pd.concat(tests)[
                    ["group_a", "group_b", "n_pairs", "mean_difference", "p_holm", "rank_biserial"]].round(4)))
            return "\n".join(parts) + "\n"
    return "No real-cohort results folder was found next to this one (run the study with `--cohort` on a real cohort).\n"

