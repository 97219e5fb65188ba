"""The report: Markdown pieces built from a results folder, and rendering (Quarto, or a fallback renderer).

The Quarto document (``report/index.qmd``) holds prose and thin calls into this module; nothing here trains.
When ``quarto`` is not on PATH, the same document is parsed into a notebook, executed with nbclient and
exported to a self-contained HTML file with nbconvert (the fallback), with Quarto's cross-references
(``@fig-...``, ``@tbl-...``) numbered the way Quarto numbers them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field, replace
from pathlib import Path

import pandas as pd
import yaml

from ..evaluation.claims import (
    NOT_TESTABLE,
    VERDICT_RULES,
    central_claim,
    claims_table,
    interval_text,
    verdict_counts,
)
from ..evaluation.metrics import NSD_ROUNDING_MM
from ..evaluation.paper import load_paper
from ..evaluation.statistics import smallest_testable_pairs
from ..ingest.cohort import load_cohort
from ..ingest.modalities import MODALITY_CHANNELS, MODALITY_NAMES, MODALITY_ORDER
from ..plans.profiles import Profile, load_profile
from ..plans.results_lock import results_lock
from ..plans.runs import RunParams, parse_run_id
from . import aggregate as agg

REPORT_DIR = Path(__file__).resolve().parents[2] / "report"


def markdown_table(df: pd.DataFrame, index: bool = False) -> str:
    """A pipe table whose column widths follow its content, so that it wraps inside the page in the PDF.

    Pandoc gives a pipe table relative column widths from the dashes of its separator line when a row is wider
    than the page; the dashes here are proportional to each column's longest word-wrapped content (header
    words included), capped; a table too wide for the page gets a separator long enough for pandoc to use them.
    """
    if index:
        df = df.reset_index()
    cols = [escape_markdown(str(c).replace("_", " ")) for c in df.columns]
    rows = [[breakable(escape_markdown(f"{v:.4g}" if isinstance(v, float) else str(v))) for v in row]
            for row in df.itertuples(index=False)]
    widths = []
    for j, col in enumerate(cols):
        words = col.split() + [w for r in rows for w in re.split(r"[\s\u200b]+", r[j])]
        longest_word = max([len(w) for w in words] + [3])
        longest_cell = max([len(col)] + [len(r[j]) for r in rows])
        widths.append(max(longest_word, min(longest_cell, 30)) + 4)  # + cell padding
    # a narrow table keeps pandoc's natural widths; a wide one gets relative widths (the line exceeds 72 columns)
    wide = sum(widths) > 72
    scale = max(1.0, 100 / sum(widths)) if wide else 1.0
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("-" * max(3, round(w * scale)) for w in widths) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def breakable(text: str) -> str:
    """Allow line breaks after '_' and ';' in long identifiers (a zero-width space), so narrow cells wrap."""
    if "](" in text or "`" in text:
        return text
    return re.sub(r"(_|;)(?=\w)", "\\1\u200b", text)


def _first_table_line(lines: list[str]) -> int:
    return next((i for i, line in enumerate(lines) if line.startswith("|")), len(lines))


def intro_of(text: str) -> str:
    """The prose before the first table of a section's Markdown (printed outside the table's float)."""
    lines = text.splitlines()
    return "\n".join(lines[:_first_table_line(lines)]).strip() + "\n"


def table_of(text: str) -> str:
    """The tables of a section's Markdown, without the prose before the first one."""
    lines = text.splitlines()
    return "\n".join(lines[_first_table_line(lines):]) + "\n"


def escape_markdown(text: str) -> str:
    """Escape characters that Markdown would read as emphasis or table syntax in a plain-text cell.

    Cells that are Markdown on purpose (a link, inline code) are left as they are.
    """
    if "`" in text or ("[" in text and "](" in text):
        return text.replace("|", "\\|")
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_").replace("|", "\\|")


@dataclass
class ReportContext:
    """Everything the report reads: per-patient metrics, run records, the profile, the study record."""

    results: Path
    per_patient: pd.DataFrame
    summaries: list[dict]
    profile: Profile
    study: dict
    cohort_path: Path
    cohort_spec: dict
    agreement: dict = field(default_factory=dict)
    claims: pd.DataFrame = field(default_factory=pd.DataFrame)
    per_run: pd.DataFrame = field(default_factory=pd.DataFrame)  # primary rows of every run, before seed averaging

    @classmethod
    def load(cls, results: str | os.PathLike) -> ReportContext:
        """Read a results folder written by ``python -m studylib study``."""
        results = Path(results).resolve()
        if not (results / "runs").exists():
            raise FileNotFoundError(f"{results} holds no runs: run `python -m studylib study` first")
        raw = agg.collect_per_patient(results)
        per_patient = agg.primary(agg.seed_mean(raw), results)
        summaries = [json.loads((run / "summary.json").read_text()) for run in agg.planned_runs(results)
                     if (run / "summary.json").exists()]
        study = json.loads((results / "study.json").read_text()) if (results / "study.json").exists() else {}
        first_params = RunParams.from_record(results / "runs" / summaries[0]["run_id"] / "params.json")
        profile = load_profile(first_params.profile)
        digests = {s["params"].get("profile") for s in summaries}
        if len(digests) > 1:
            raise ValueError(f"{results}: the runs were made with {len(digests)} different profiles; re-run the study")
        cohort_path = Path(first_params.cohort)
        cohort_spec = json.loads(cohort_path.read_text()) if cohort_path.is_file() else {}
        agreement_path = results / "cohort_qa" / "agreement.json"
        agreement = json.loads(agreement_path.read_text()) if agreement_path.exists() else {}
        per_patient_agreement = results / "cohort_qa" / "agreement.csv"
        per_run = agg.primary(raw, results)
        claims = claims_table(per_patient, pd.read_csv(per_patient_agreement) if per_patient_agreement.exists() else None,
                              synthetic_readers="synthetic" in cohort_spec, per_seed=per_run)
        return cls(results, per_patient, summaries, profile, study, cohort_path, cohort_spec, agreement, claims,
                   per_run)

    @property
    def labels(self) -> list[str]:
        """Training labels present in the runs."""
        return sorted(self.per_patient.train_label.unique())


def abstract(ctx: ReportContext) -> str:
    """Abstract with every number filled in from the results."""
    pp = ctx.per_patient
    label = "label_a" if "label_a" in ctx.labels else ctx.labels[0]
    sub = agg.trained_and_tested_on(pp, label)
    means = sub.groupby("modality")["dsc"].mean()
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
    if len(ctx.labels) > 1 and "dual" in set(pp.modality):
        _, mean, _ = agg.table2(pp)
        cells = "; ".join(f"{r} on {c}: {100 * mean.loc[r, c]:.1f}%" for r in mean.index for c in mean.columns)
        text += f" Cross-evaluation of the dual-input models (3D DSC): {cells}."
    if "dice_ab_mean" in ctx.agreement:  # a single-label study has no agreement to state
        text += (f" The two annotations agree with Dice {ctx.agreement['dice_ab_mean']:.2f} and voxel kappa "
                 f"{ctx.agreement['kappa_voxel_mean']:.2f} (paper: kappa {load_paper().kappa}).")
    text += " Rules and numbers are in the claims table."
    return text + "\n"


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


def convergence_markdown(ctx: ReportContext) -> str:
    """Did every run converge (rule in ``trainer.convergence``)? A summary line and one row per run."""
    path = ctx.results / "aggregate" / "convergence.csv"
    if not path.exists():
        return "Convergence was not recorded for these runs.\n"
    table = pd.read_csv(path)
    from ..training.trainer import ANNEALED_LR_FRACTION, FLAT_TAIL_DROP

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


def regions_markdown(ctx: ReportContext) -> str:
    """3D DSC in both evaluation regions side by side."""
    path = ctx.results / "aggregate" / "regions.csv"
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
    from ..preprocessing.targets import DERIVED_TARGETS
    from ..training.models import CONDITIONED, is_conditioned_output, own_ground_truth

    readers = ctx.profile.readers(ctx.cohort_spec.get("train_labels", []))
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
    text, _, _ = agg.table2(ctx.per_patient)  # every dual model against every label: pick and order its cells
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
    from .disagreement import disagreement_summary

    path = ctx.results / "aggregate" / "disagreement.csv"
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
            f"{int(table.readers.iloc[0])} "
            "readers include a voxel; the style models (one per reader's style) disagree where some but not all of "
            "them do. The maps are NIfTI files on the CT grid in `aggregate/disagreement/` (counts 0..N per voxel); "
            "per-patient numbers in `aggregate/disagreement.csv`. Volumes: medians over patients. *Models' in "
            "readers'*: the share of the models' disagreement that lies where the readers disagree; *readers' in "
            "models'*: the share of the readers' disagreement that the models reproduce (means over patients where "
            "there is any).\n\n" + markdown_table(summary))


def background_markdown(ctx: ReportContext) -> str:
    """The background-slice ablation, when the profile runs one."""
    path = ctx.results / "aggregate" / "background_ablation.csv"
    table = pd.read_csv(path) if path.exists() else pd.DataFrame()
    if table.empty or table.background_fraction.nunique() < 2:
        return ("This profile trains with one share of lesion-free slices only "
                f"({[f'{100 * f:g}%' for f in ctx.profile.study.background_fractions]}); the paper profile adds an "
                "ablation.\n")
    table["modality"] = table["modality"].map(lambda m: MODALITY_NAMES.get(m, m))
    return ("Full-volume 3D DSC (%), body specificity (%) and false-positive volume (ml) by the share of lesion-free "
            "slices added to training (each model against its own label).\n\n" + markdown_table(table))


def specificity_note() -> str:
    """Why voxel specificity is ~1 and what we report beside it."""
    return ("**On specificity.** Voxel specificity TN/(TN+FP) over a whole CT volume is close to 1 for any model, "
            "because true-negative voxels outnumber lesion voxels by three to four orders of magnitude; it cannot "
            "produce the paper's 82-94 %. We report it paper-literally (whole volume), within the body mask, and "
            "always beside the false-positive volume in ml, which is what separates the models.\n")


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
        manifest = cohort_json.parent / "manifest.csv"
        if manifest.exists():
            m = pd.read_csv(manifest)
            keep = [c for c in ("patient_id", "site", "implant", "confounders", "n_foci", "truth_ml", "label_a_ml",
                                "label_b_ml", "label_a_slices", "label_b_slices", "suvmax") if c in m]
            lines.append("\nPer-patient summary:\n\n" + markdown_table(m[keep]))
    return "\n".join(lines) + "\n"


def agreement_table(ctx: ReportContext) -> str:
    """Rater agreement summary."""
    a = ctx.agreement
    if not a or "dice_ab_mean" not in a:
        return "The cohort has a single label: no rater agreement to report.\n"
    table = pd.read_csv(ctx.results / "cohort_qa" / "agreement.csv")
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
    path = ctx.results / "cohort_qa" / "reader_sweep_summary.csv"
    if not path.exists():
        return "No reader sweep (the cohort is not synthetic, or its QA notebook has not run).\n"
    table = pd.read_csv(path).rename(columns={
        "value": "label B SUV threshold", "dice_ab": "Dice(A, B)", "kappa_voxel_body": "kappa (body)",
        "volume_ratio_median": "r (median)", "ceiling_median": "ceiling 2/(1+r)", "volume_b_ml": "volume B (ml)",
        "n_patients": "patients"})
    return ("The same synthetic images read again, with only label B's uptake threshold changed (the cohort draws it "
            "from the range its style states). Agreement between the annotations is an outcome of the reader "
            "models; this shows how strongly it depends on that one choice.\n\n" + markdown_table(table.round(3)))


def localisation_markdown(ctx: ReportContext) -> str:
    """Fraction of predicted voxels on the affected side, per modality (chance about 0.5)."""
    path = ctx.results / "aggregate" / "localisation.csv"
    if not path.exists() or not len(pd.read_csv(path)):
        return "Not computed for this results folder.\n"
    table = pd.read_csv(path).round(4)
    table["modality"] = table["modality"].map(lambda m: MODALITY_NAMES.get(m, m))
    table = table.astype(object).where(table.notna(), "n/a")  # every prediction of that model was empty
    out = ("With both limbs in the field of view, a model that does not know where the infection is puts about half "
           "of its predicted voxels on each side. One-sided Wilcoxon test of the per-patient fraction against 0.5 "
           "(patients with an empty prediction are left out and counted; n/a: no prediction at all).\n\n" + markdown_table(table))
    per_patient = ctx.results / "aggregate" / "localisation_per_patient.csv"
    if per_patient.exists():
        pp = pd.read_csv(per_patient, header=[0, 1], index_col=0)
        ct = pp.loc[:, [c for c in pp.columns if c[0] == "ct"]]
        if ct.shape[1]:
            ct.columns = [f"CT only, {c[1]}" for c in ct.columns]
            ct = ct.reset_index().round(3)
            out += "\n**CT only, per patient**\n\n" + markdown_table(ct.astype(object).where(ct.notna(), "n/a"))
    return out


def table1_markdown(ctx: ReportContext) -> str:
    """Table 1 for each training label (the paper's own Table 1 is shown apart: its label is not stated)."""
    out = []
    for label in ctx.labels:
        t = agg.table1(ctx.per_patient, label).drop(columns=["modality"])
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
    return "\n".join(f"**`{label}`**\n\n" + markdown_table(agg.table1_extra(ctx.per_patient, label).drop(columns=["modality"]))
                     for label in ctx.labels)


def tests_markdown(ctx: ReportContext) -> str:
    """Paired tests between modalities and between models."""
    parts = []
    for label in ctx.labels:
        t = agg.modality_tests(ctx.per_patient, label)
        if len(t):
            parts.append(f"**Modalities, `{label}`**\n\n" + markdown_table(
                t[["group_a", "group_b", "n_pairs", "mean_difference", "p_value", "p_holm", "rank_biserial"]]))
    if len(ctx.labels) > 1:
        t = agg.model_tests(ctx.per_patient)
        if len(t):
            parts.append("**Model A vs model B (dual input)**\n\n" + markdown_table(
                t[["ground_truth", "group_a", "group_b", "n_pairs", "mean_difference", "p_value", "p_holm", "rank_biserial"]]))
    return "\n".join(parts) or "Too few paired patients for tests.\n"


def table2_markdown(ctx: ReportContext) -> str:
    """Cross-evaluation matrix with the paper's values (mean ± SD) in brackets."""
    if len(ctx.labels) < 2 or "dual" not in set(ctx.per_patient.modality):
        return "Needs two training labels and the dual input.\n"
    text, _, _ = agg.table2(ctx.per_patient)
    paper = load_paper().table2
    for model in text.index:
        for gt in text.columns:
            reported = paper.get((model.removeprefix("model "), gt.removeprefix("GT ")))
            if reported is not None:
                text.loc[model, gt] = f"{text.loc[model, gt]} [{reported.text()}]"
    return markdown_table(text, index=True)


def ceiling_sentence(ctx: ReportContext) -> str:
    """The structural ceiling of the off-diagonal cells of Table 2, from the measured A/B volume ratio."""
    path = ctx.results / "cohort_qa" / "agreement.csv"
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


def ambiguities_markdown() -> str:
    """Where the paper is ambiguous (from paper.yaml)."""
    return "\n".join(f"- {line}" for line in load_paper().ambiguities) + "\n"


def show_figure(ctx: ReportContext, stem: str, folder: str = "aggregate"):
    """Display a figure of the results folder (the first PNG under ``folder`` whose name starts with ``stem``)."""
    from IPython.display import Image, display

    candidates = sorted((ctx.results / folder).glob(f"{stem}*.png"))
    if not candidates:
        print(f"(figure {stem} not produced by this results folder)")
        return None
    return display(Image(filename=str(candidates[0])))


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


def real_data_section(ctx: ReportContext) -> str:
    """Table 1 on a real PET/CT cohort when its results folder exists (``PETCT_REAL_RESULTS`` or a sibling)."""
    candidates = [os.environ.get("PETCT_REAL_RESULTS", ""), str(ctx.results.parent / "real")]
    for c in candidates:
        if c and (Path(c) / "runs").exists() and Path(c).resolve() != ctx.results:
            real = agg.primary(agg.seed_mean(agg.collect_per_patient(c)), c)
            run = next(r for r in agg.planned_runs(c) if (r / "params.json").exists())
            cohort_json = Path(RunParams.from_record(run / "params.json").cohort)
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


def ct_sign_contrast(ctx: ReportContext) -> pd.DataFrame:
    """Per synthetic patient: how far the CT signs of infection stand out of the CT noise (in noise SDs)."""
    if "synthetic" not in ctx.cohort_spec or not ctx.cohort_path.is_file():
        return pd.DataFrame()
    cohort = load_cohort(ctx.cohort_path)
    rows = []
    for pid in cohort.patient_ids:
        meta = cohort.patient(pid).read_meta()
        if not meta:
            continue
        noise, hu, signs = meta["ct_noise_hu"], meta["hu"], meta["ct_signs_hu"]
        rows.append({"patient_id": pid, "involved_marrow": (signs["involved_marrow"] - hu["marrow"]) / noise,
                     "lytic_destruction": (hu["cortex"] - signs["lytic"]) / noise})
    return pd.DataFrame(rows)


def limitations_markdown(ctx: ReportContext) -> str:
    """What the tables can and cannot show, written from this results folder (seeds, folds, validation patients,
    power, cohort, scale, precision and hardware, the CT-only arm, boundary metrics, regions)."""
    from ..evaluation.claims import ALPHA, failed_runs

    pp, profile, items = ctx.per_patient, ctx.profile, []
    seeds = sorted({s["params"]["seed"] for s in ctx.summaries if "params" in s})
    if len(seeds) == 1:
        items.append(f"**Training variance is not measured.** Every cell was trained with one seed ({seeds[0]}): how "
                     "much a model's scores move with its random initialisation and batch order is unknown, and each "
                     "test compares one trained model per fold with another, not the two methods.")
    else:
        items.append(f"**Seeds.** Each cell was trained with {len(seeds)} seeds ({', '.join(map(str, seeds))}); "
                     "per-patient values are averaged over seeds before the tests, which treat patients, not seeds, "
                     "as the unit.")
    splits_path = ctx.results / "splits.json"
    if splits_path.exists():
        splits = json.loads(splits_path.read_text())
        val = sorted({len(f["val"]) for f in splits})
        test = sorted({len(f["test"]) for f in splits})
        few = " Model selection on so few volumes is noisy: a checkpoint can win by one patient's luck." if min(val) < 3 else ""
        items.append(f"**Model selection.** {len(splits)} folds; in each, {'-'.join(map(str, val))} validation "
                     f"patient(s) choose every run's checkpoint and stopping epoch, and {'-'.join(map(str, test))} "
                     f"are tested.{few}")
    tested = ctx.claims[ctx.claims.family != "agreement"] if len(ctx.claims) else ctx.claims
    if len(tested):
        family = int(tested.groupby("family").size().max())
        need = smallest_testable_pairs(family, ALPHA)
        n = pp.patient_id.nunique()
        items.append(f"**Power.** {n} test patients. With up to {family} comparisons corrected together (Holm), no "
                     f"comparison can reach p < {ALPHA} with fewer than {need} paired patients, whatever the data; "
                     "below that a row is not testable, and an inconclusive verdict (an interval holding 0) means "
                     "underpowered or no difference, never refuted.")
    synthetic = "synthetic" in ctx.cohort_spec
    readers = len(ctx.cohort_spec.get("train_labels", ctx.labels))
    if synthetic:
        items.append(f"**A synthetic cohort.** Patients, scanners and {readers} readers are simulated from literature "
                     "values (listed under Data): the tables say how the method behaves on this simulation, not on "
                     "patients. Agreement between the readers is an outcome of the reader models, so the paper's kappa "
                     "cannot be tested; scanner, protocol and reader variation beyond the simulation are not "
                     "represented.")
        items.append(development_limitation(int(ctx.cohort_spec["synthetic"].get("seed", -1))))
    else:
        disease = ctx.cohort_spec.get("disease", "a disease the cohort description does not name")
        items.append(f"**A real cohort of {pp.patient_id.nunique()} test patients** ({disease}) with {readers} "
                     "annotation(s): its readers are not the paper's, and conclusions about osteomyelitis hold only "
                     "as far as the cohort shows osteomyelitis.")
    if profile.name != "paper" and profile.departures:
        shown = "; ".join(f"`{k}`" for k in list(profile.departures)[:6])
        items.append(f"**Scale.** Profile `{profile.name}` departs from the paper in {len(profile.departures)} "
                     f"setting{'s' if len(profile.departures) > 1 else ''} ({shown}{'; ...' if len(profile.departures) > 6 else ''}; reasons in the departures "
                     "table). The paper-scale profile has not run in this results folder: its numbers are not these.")
    items.append(hardware_limitation(ctx))
    failed = failed_runs(ctx.per_run) if len(ctx.per_run) and "run_id" in ctx.per_run else []
    if failed:
        runs = ctx.per_run.run_id.nunique()
        items.append(f"**Runs that failed to train.** {len(failed)} of {runs} runs predicted (almost) nothing on most "
                     f"of their test patients ({', '.join(f'`{r}`' for r in failed)}). Their scores stay in the seed "
                     "means of Tables 1-2 and of the claims; the failed-arm rule judges each seed-averaged arm, so one "
                     "failed run among its seeds lowers an arm's values without making its comparisons not testable. "
                     "The stability column gives the verdict on each seed alone.")
    items += ct_arm_limitations(ctx)
    own = agg.own_rows(pp)
    empty = agg.empty_predictions(own)
    if empty:
        items.append(f"**Boundary metrics.** {empty} of {len(own)} test predictions (each model on its own label) are "
                     "empty; their HD95 and ASSD are scored as the volume diagonal, so these are summarised by median "
                     "and IQR with the empty count beside them, never by a mean.")
    items.append(f"**NSD tolerance** {nsd_text(ctx)}. The `lesion_extent` region is ground-truth-informed: it crops "
                 "each test volume to the z-extent of that patient's own labels, so it cannot show whether a model "
                 "finds the lesion; the primary analysis is the `full` volume.")
    return "\n".join(f"- {item}" for item in items) + "\n"


def development_limitation(cohort_seed: int) -> str:
    """Whether this synthetic cohort confirms the settings or is the one they were chosen on."""
    from ..synthetic import DEVELOPMENT_SEED

    if cohort_seed == DEVELOPMENT_SEED:
        return (f"**The development cohort.** This is cohort seed {DEVELOPMENT_SEED}, on which the profile's settings "
                "and the reader models were chosen: its numbers informed those choices and confirm nothing.")
    return (f"**Settings frozen before this cohort.** The profile's settings and the reader models were chosen on the "
            f"development cohort (seed {DEVELOPMENT_SEED}); this cohort (seed {cohort_seed}) did not inform them, "
            "unless the profile's comments say otherwise.")


def hardware_limitation(ctx: ReportContext) -> str:
    """The precision (the profile's) and the machines the runs computed on, with their CPU features."""
    executions = [s.get("execution", {}) for s in ctx.summaries]
    precisions = sorted({str(e.get("precision", "bf16" if e.get("bf16") else "fp32")) for e in executions})
    machines = set()
    for summary, e in zip(ctx.summaries, executions):
        cpu = e.get("cpu") or {}
        flags = [f for f in ("avx512_bf16", "amx_bf16") if cpu.get(f)]
        machines.add(f"{summary.get('environment', {}).get('device', 'unknown')}"
                     + (f", {cpu['model']} ({', '.join(flags) if flags else 'no bf16 instructions'})" if cpu.get("model") else ""))
    departures = sorted({e["precision_departure"] for e in executions if e.get("precision_departure")})
    flushed = {e.get("denormals_flushed") for e in executions}
    text = (f"**Precision and hardware.** The profile sets the precision ({', '.join(precisions)}); the runs computed "
            f"on {'; '.join(sorted(machines))}"
            + (", denormals flushed to zero" if flushed == {True} else "") + ". ")
    if departures:
        text += f"This machine departed from the profile's precision: {'; '.join(departures)}. "
    return text + ("CPU results repeat bit for bit on one machine. Another CPU's kernels round in another order, "
                   "and training then takes another path: the numbers can move well beyond their last digits, and "
                   "GPU kernels are not bit-deterministic by default. Compare verdicts across machines, and seeds for "
                   "the spread of a number.")


def ct_arm_limitations(ctx: ReportContext) -> list[str]:
    """Why the CT-only arm scores what it scores, with the evidence this study has."""
    pp = ctx.per_patient
    if "ct" not in set(pp.modality):
        return []
    means = agg.own_rows(pp).groupby(["train_label", "modality"])["dsc"].mean()
    parts = [f"`{label}`: CT {100 * means[(label, 'ct')]:.1f} % against PET {100 * means[(label, 'pet')]:.1f} %"
             for label in ctx.labels if (label, "ct") in means and (label, "pet") in means]
    paper_ct = load_paper().table1["ct"]["dsc"].mean
    evidence = []
    contrast = ct_sign_contrast(ctx)
    if len(contrast):
        evidence.append(f"the CT signs are visible in this cohort (involved marrow {contrast.involved_marrow.min():.0f}-"
                        f"{contrast.involved_marrow.max():.0f} CT noise SDs above healthy marrow, lytic destruction "
                        f"{contrast.lytic_destruction.min():.0f}-{contrast.lytic_destruction.max():.0f} SDs below "
                        "cortex): the signs stand out of the noise, so a CT-only model could in principle see them")
    localisation = ctx.results / "aggregate" / "localisation.csv"
    if localisation.exists():
        table = pd.read_csv(localisation)
        ct = table[table.modality == "ct"]
        if len(ct):
            evidence.append("on the lesion's side of the body (chance 0.5): " + ", ".join(
                f"`{r.train_label}` no prediction at all ({r.n_empty} empty)" if pd.isna(r.mean_on_lesion_side) else
                f"`{r.train_label}` {r.mean_on_lesion_side:.2f} of the predicted voxels ({r.n_empty} empty "
                "predictions)" for r in ct.itertuples()))
    convergence = ctx.results / "aggregate" / "convergence.csv"
    if convergence.exists():
        table = pd.read_csv(convergence)
        ct = table[table.run_id.map(lambda r: parse_run_id(r).modality == "ct")]
        if len(ct):
            evidence.append(f"{int(ct.converged.fillna(False).astype(bool).sum())} of {len(ct)} CT-only runs converged "
                            "by the written rule")
    text = (f"**The CT-only arm** ({'; '.join(parts) or 'no CT/PET pair'}; the paper: {paper_ct:.1f} % DSC). Likely "
            "causes: the method at this scale (a small network, a short schedule, 2D slices), model selection on few "
            "validation volumes, and, for the specific label, a criterion (strong uptake) that CT cannot show.")
    if evidence:
        text += " Evidence here: " + "; ".join(evidence) + "."
    return [text]


def reproducibility_section(ctx: ReportContext) -> str:
    """Git commit, command, package versions, device, wall time per run, links to executed notebooks."""
    env = ctx.summaries[0].get("environment", {})
    lines = [f"- git commit: `{env.get('git_commit', '?')}`", f"- command: `{ctx.study.get('command', 'python -m studylib study')}`",
             f"- device: {env.get('device', '?')}; Python {env.get('python', '?')}",
             "- packages: " + ", ".join(f"{k} {v}" for k, v in env.get("packages", {}).items()),
             f"- wall time of the last `study` invocation: {ctx.study.get('wall_seconds', float('nan')):.0f} s "
             f"(runs it skipped as done: {ctx.study.get('skipped_as_done', 0)}); per-run wall times below", ""]
    rows = [{"run": s["run_id"], "train slices": s["n_train_slices"], "best epoch": s["best_epoch"],
             "epochs": s["epochs_run"], "wall (s)": f"{s['wall_seconds']:.0f}",
             "notebook": f"[run.ipynb](../runs/{s['run_id']}/run.ipynb)"} for s in ctx.summaries]
    return "\n".join(lines) + "\n" + markdown_table(pd.DataFrame(rows))


# ---------------------------------------------------------------- rendering


@dataclass
class QmdCell:
    """A cell of a Quarto document: markdown text, or python code with its ``#|`` options."""

    kind: str
    source: str
    options: dict = field(default_factory=dict)


def parse_qmd(text: str) -> tuple[dict, list[QmdCell]]:
    """Split a .qmd into its YAML front matter and cells (python chunks with parsed ``#|`` options)."""
    front = {}
    if text.startswith("---"):
        end = text.index("\n---", 3)
        front = yaml.safe_load(text[3:end]) or {}
        text = text[end + 4:]
    cells: list[QmdCell] = []
    pattern = re.compile(r"^```\{python\}[^\n]*\n(.*?)^```\s*$", re.S | re.M)
    pos = 0
    for m in pattern.finditer(text):
        md = text[pos:m.start()].strip()
        if md:
            cells.append(QmdCell("markdown", md))
        body = m.group(1)
        opt_lines = [ln[3:] for ln in body.splitlines() if ln.startswith("#| ")]
        code = "\n".join(ln for ln in body.splitlines() if not ln.startswith("#|"))
        options = yaml.safe_load("\n".join(opt_lines)) if opt_lines else {}
        cells.append(QmdCell("code", code.strip(), options or {}))
        pos = m.end()
    tail = text[pos:].strip()
    if tail:
        cells.append(QmdCell("markdown", tail))
    return front, cells


def cross_references(cells: list[QmdCell]) -> tuple[dict[str, str], list[str]]:
    """Quarto-style numbering of ``fig-``/``tbl-`` labels, and every ``@ref`` used in the text."""
    numbers, counters = {}, {"fig": 0, "tbl": 0}
    for cell in cells:
        label = cell.options.get("label") if cell.kind == "code" else None
        if label and label.split("-")[0] in counters:
            kind = label.split("-")[0]
            counters[kind] += 1
            numbers[label] = f"{'Figure' if kind == 'fig' else 'Table'} {counters[kind]}"
    refs = [r for cell in cells if cell.kind == "markdown" for r in re.findall(r"@((?:fig|tbl)-[\w-]+)", cell.source)]
    return numbers, refs


def _fallback_render(results: Path, out_html: Path) -> Path:
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    front, cells = parse_qmd((REPORT_DIR / "index.qmd").read_text())
    numbers, refs = cross_references(cells)
    missing = sorted(set(refs) - set(numbers))
    if missing:
        raise ValueError(f"unresolved cross-references in index.qmd: {missing}")

    def resolve(text: str) -> str:
        return re.sub(r"@((?:fig|tbl)-[\w-]+)", lambda m: numbers[m.group(1)], text)

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    title = f"# {front.get('title', 'Report')}\n\n*{front.get('subtitle', '')}*\n\n" \
            "> Rendered with the fallback renderer (nbclient + nbconvert): `quarto` was not found on PATH."
    nb.cells.append(nbformat.v4.new_markdown_cell(title))
    plan = []
    for cell in cells:
        if cell.kind == "markdown":
            nb.cells.append(nbformat.v4.new_markdown_cell(resolve(cell.source)))
            continue
        code = cell.source
        if "parameters" in (cell.options.get("tags") or []):
            # the kernel runs in the report folder: the results folder is named relatively, so it can move
            code += f"\nresults = {os.path.relpath(results, out_html.parent)!r}"
        nb.cells.append(nbformat.v4.new_code_cell(code))
        plan.append((len(nb.cells) - 1, cell))
        for key in ("tbl-cap", "fig-cap"):
            if key in cell.options:
                label = cell.options.get("label", "")
                nb.cells.append(nbformat.v4.new_markdown_cell(f"**{numbers.get(label, '')}.** {cell.options[key]}"))
    out_html.parent.mkdir(parents=True, exist_ok=True)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(out_html.parent)}}).execute()
    # asis cells print Markdown: turn their output into markdown cells, as Quarto does
    for index, cell in reversed(plan):
        if cell.options.get("output") == "asis":
            text = "".join(o.get("text", "") for o in nb.cells[index].outputs if o.get("output_type") == "stream")
            nb.cells[index] = nbformat.v4.new_markdown_cell(resolve(text))
    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nb)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(body)
    nbformat.write(nb, out_html.with_suffix(".ipynb"))
    return out_html


def render_report(results: str | os.PathLike, force_fallback: bool = False) -> Path:
    """Render ``report/`` for a results folder: Quarto (HTML + typst PDF) when available, else the fallback HTML."""
    results = Path(results).resolve()
    ReportContext.load(results)  # fail early with a clear message
    out_dir = results / "report"
    with results_lock(results):
        if shutil.which("quarto") and not force_fallback:
            env = {**os.environ, "PETCT_RESULTS": str(results)}
            subprocess.run(["quarto", "render", str(REPORT_DIR), "--output-dir", str(out_dir)], check=True, env=env)
            return out_dir / "index.html"
        return _fallback_render(results, out_dir / "index.html")


__all__ = ["MODALITY_CHANNELS", "ReportContext", "render_report", "parse_qmd", "cross_references", "markdown_table"]
