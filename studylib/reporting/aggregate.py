"""Tables 1-2, statistics and figures from a results folder's per-run CSVs (no training here)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ..evaluation.claims import CLAIM_TEXT_COLUMNS, claims_across_families, claims_table
from ..evaluation.statistics import mean_sd_text, paired_comparisons, seed_mean, summarise, summary_table
from ..inference.volume import PREDICTION_SUFFIX, prediction_file, prediction_patient
from ..ingest.modalities import MODALITY_NAMES, MODALITY_ORDER
from ..plans.results_folder import (
    AGGREGATE,
    AGGREGATE_SUMMARY,
    AGREEMENT,
    BACKGROUND_ABLATION,
    CACHE,
    CLAIMS,
    CLAIMS_ACROSS_FAMILIES,
    CLAIMS_BY_FAMILY,
    COHORT_QA,
    CONVERGENCE,
    EXTERNAL,
    EXTERNAL_RECORD,
    FIGURES_RECORD,
    LOCALISATION,
    LOCALISATION_PER_PATIENT,
    PER_PATIENT_ALL,
    PER_PATIENT_EXTERNAL,
    PLAN,
    PREDICTIONS,
    REGIONS,
    RUN_PARAMS,
    RUN_PER_PATIENT,
    RUN_SUMMARY,
    RUN_TRAINING_LOG,
    RUNS,
    SUMMARY_STATISTICS,
    TABLE2,
    TABLE2_MEAN,
    TABLE2_SD,
    TABLE2_TESTS,
    table1_extra_file,
    table1_file,
    table1_tests_file,
)
from ..plans.runs import OWN_FAMILY, RunCell, RunParams, parse_run_id
from ..training.models import own_ground_truth
from .figures import distribution_figure, heatmap_figure, saved, training_curves_figure
from .readers.calibration import write_calibration
from .readers.conditioned import write_conditioned_tables
from .readers.disagreement import reader_study, write_disagreement, write_disagreement_figure
from .readers.multirater import write_multirater_metrics
from .readers.truth import write_truth_tables

TABLE1_METRICS = ["dsc", "iou", "sensitivity", "specificity", "specificity_body"]
EXTRA_METRICS = ["hd95", "assd", "nsd", "fp_volume_ml", "fn_volume_ml", "lesion_f1", "precision"]


def own_rows(per_patient: pd.DataFrame) -> pd.DataFrame:
    """Rows where each model is scored against the label it is meant to reproduce."""
    return per_patient[per_patient.train_label.map(own_ground_truth) == per_patient.ground_truth]


def trained_and_tested_on(per_patient: pd.DataFrame, label: str) -> pd.DataFrame:
    """The rows of the model trained on ``label``, scored against the label it is meant to reproduce."""
    return per_patient[(per_patient.train_label == label) & (per_patient.ground_truth == own_ground_truth(label))]


def planned_runs(results: str | os.PathLike) -> list[Path]:
    """Run folders of the study plan (``plan.json``); without a plan, every run folder."""
    results = Path(results)
    plan = results / PLAN
    if plan.exists():
        return [results / RUNS / run for run in json.loads(plan.read_text())["runs"]]
    return sorted(p.parent for p in results.glob(f"{RUNS}/*/{RUN_SUMMARY}"))


def planned_cells(results: str | os.PathLike) -> list[tuple[Path, RunCell]]:
    """(run folder, its grid cell) of every planned run, in folder-name order (the cell read by ``parse_run_id``)."""
    return [(run, parse_run_id(run.name)) for run in sorted(planned_runs(results))]


def read_per_patient(path: str | os.PathLike) -> pd.DataFrame:
    """A per-patient table (a run's, or aggregation's ``per_patient_all.csv``): ids as text (``007`` stays ``007``)."""
    return pd.read_csv(path, dtype={"patient_id": str, "run_id": str})


def read_claims(path: str | os.PathLike) -> pd.DataFrame:
    """The claims table aggregation wrote (``claims.csv``): text columns as text (empty, not missing)."""
    table = pd.read_csv(path, dtype={c: str for c in CLAIM_TEXT_COLUMNS})
    return table.fillna({c: "" for c in CLAIM_TEXT_COLUMNS})


def collect_per_patient(results: str | os.PathLike) -> pd.DataFrame:
    """Concatenate the ``per_patient.csv`` of every finished planned run (unfinished ones are left out)."""
    frames = [read_per_patient(run / RUN_PER_PATIENT) for run in planned_runs(results)
              if (run / RUN_SUMMARY).exists() and (run / RUN_PER_PATIENT).exists()]
    if not frames:
        raise FileNotFoundError(f"no finished runs under {results}/runs")
    table = pd.concat(frames, ignore_index=True)
    if "region" not in table:  # results written before evaluation regions existed
        table["region"] = "full"
    if "background_fraction" not in table:
        table["background_fraction"] = 0.0
    return table


def collect_external(results: str | os.PathLike) -> pd.DataFrame:
    """The rows of other model families' predictions scored by ``score`` (``external/*``); empty when none."""
    folders = sorted((Path(results) / EXTERNAL).glob("*"))
    frames = [read_per_patient(f / RUN_PER_PATIENT) for f in folders
              if (f / EXTERNAL_RECORD).exists() and (f / RUN_PER_PATIENT).exists()]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def family_rows(external: pd.DataFrame, results: str | os.PathLike) -> dict[str, pd.DataFrame]:
    """Each other model family's primary rows (averaged per patient like ours), by family name."""
    if external.empty:
        return {}
    return {family: primary(seed_mean(rows), results) for family, rows in external.groupby("model_family")}


def with_family_rows(ours: pd.DataFrame, families: dict[str, pd.DataFrame], label: str, build) -> pd.DataFrame:
    """A Table 1 (``build``: ``table1`` or ``table1_extra``) of ours with each other family's rows below it, its
    input named with the family ('Dual (CT+PET), nnunet_2d')."""
    frames = [ours]
    for family, rows in families.items():
        theirs = build(rows, label)
        if len(theirs):
            frames.append(theirs.assign(input=theirs["input"] + f", {family}"))
    return pd.concat(frames, ignore_index=True)


def family_table2(families: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, ...]:
    """Table 2's rows (text, means, SDs) of the other families' dual-input models, each named '<family> <training
    label>' (ours: 'model <training label>'); empty when no other family scored the dual input."""
    parts = []
    for family, rows in families.items():
        if "dual" in set(rows.modality):
            parts.append([t.rename(index=lambda name, f=family: f"{f} {name.removeprefix('model ')}")
                          for t in table2(rows)])
    return tuple(pd.concat([part[i] for part in parts]) for i in range(3)) if parts else ()


def primary(per_patient: pd.DataFrame, results: str | os.PathLike | None = None,
            region: str = "full") -> pd.DataFrame:
    """The rows of the primary analysis: one evaluation region, the primary background setting."""
    bg = min(per_patient.background_fraction)
    if results is not None and (Path(results) / PLAN).exists():
        bg = json.loads((Path(results) / PLAN).read_text()).get("primary_background_fraction", bg)
    keep = (per_patient.region == region) & np.isclose(per_patient.background_fraction, bg)
    return per_patient[keep].reset_index(drop=True)


def table1(per_patient: pd.DataFrame, label: str) -> pd.DataFrame:
    """Modality ablation (paper Table 1) for models trained and tested on ``label``: mean ± SD in %."""
    df = trained_and_tested_on(per_patient, label)
    rows = []
    for m in [m for m in MODALITY_ORDER if m in set(df.modality)]:
        g = df[df.modality == m]
        rows.append({"input": MODALITY_NAMES[m], "modality": m, "n_patients": g.patient_id.nunique(),
                     **{metric: mean_sd_text(g[metric]) for metric in TABLE1_METRICS if metric in g}})
    return pd.DataFrame(rows)


BOUNDARY_METRICS = ("hd95", "assd")  # an empty prediction scores the volume diagonal: summarised by median and IQR


def empty_predictions(group: pd.DataFrame) -> int:
    """Patients with a lesion in the reference but no predicted voxel (in every seed, after ``seed_mean``)."""
    return int(((group.volume_pred_ml == 0) & (group.volume_ref_ml > 0)).sum())


def table1_extra(per_patient: pd.DataFrame, label: str) -> pd.DataFrame:
    """Beyond-paper metrics for the modality ablation: HD95, ASSD (mm) as median [IQR] beside the number of empty
    predictions (their worst-value score would decide a mean), NSD, FP/FN volume (ml), lesion F1 as mean ± SD."""
    df = trained_and_tested_on(per_patient, label)
    rows = []
    for m in [m for m in MODALITY_ORDER if m in set(df.modality)]:
        g = df[df.modality == m]
        row = {"input": MODALITY_NAMES[m], "modality": m, "empty predictions": f"{empty_predictions(g)} of {len(g)}"}
        for metric in EXTRA_METRICS:
            s = summarise(g[metric].to_numpy())
            if metric in BOUNDARY_METRICS:
                row[f"{metric} median [IQR]"] = f"{s['median']:.1f} [{s['q1']:.1f}-{s['q3']:.1f}]"
                continue
            scale = 100 if metric in ("nsd", "lesion_f1", "precision") else 1
            row[metric] = f"{scale * s['mean']:.2f} ± {scale * s['sd']:.2f}"
        rows.append(row)
    return pd.DataFrame(rows)


def table2(per_patient: pd.DataFrame, modality: str = "dual") -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Cross-evaluation matrix (paper Table 2): model (train label) x ground truth; text, means, SDs of DSC."""
    df = per_patient[per_patient.modality == modality]
    models = sorted(df.train_label.unique())
    truths = [t for t in sorted(df.ground_truth.unique())]
    text = pd.DataFrame(index=[f"model {m}" for m in models], columns=[f"GT {t}" for t in truths], dtype=object)
    mean = pd.DataFrame(index=text.index, columns=text.columns, dtype=float)
    sd = mean.copy()
    for m in models:
        for t in truths:
            v = df[(df.train_label == m) & (df.ground_truth == t)]["dsc"].to_numpy()
            s = summarise(v)
            text.loc[f"model {m}", f"GT {t}"] = f"{100 * s['mean']:.2f} ± {100 * s['sd']:.2f}"
            mean.loc[f"model {m}", f"GT {t}"] = s["mean"]
            sd.loc[f"model {m}", f"GT {t}"] = s["sd"]
    return text, mean, sd


def modality_tests(per_patient: pd.DataFrame, label: str, metric: str = "dsc") -> pd.DataFrame:
    """Paired Wilcoxon tests between modalities on the same patients (Holm-corrected)."""
    df = trained_and_tested_on(per_patient, label)
    present = [m for m in MODALITY_ORDER if m in set(df.modality)]
    pairs = [(a, b) for i, a in enumerate(present) for b in present[i + 1:]]
    return paired_comparisons(df, "modality", pairs, metric, ["patient_id"])


def model_tests(per_patient: pd.DataFrame, modality: str = "dual", metric: str = "dsc") -> pd.DataFrame:
    """Paired tests between model A and model B on each ground truth (Holm-corrected over all)."""
    df = per_patient[per_patient.modality == modality]
    models = sorted(df.train_label.unique())
    frames = []
    for gt in sorted(df.ground_truth.unique()):
        sub = df[df.ground_truth == gt]
        pairs = [(a, b) for i, a in enumerate(models) for b in models[i + 1:]]
        t = paired_comparisons(sub, "train_label", pairs, metric, ["patient_id"])
        if len(t):
            t.insert(0, "ground_truth", gt)
            frames.append(t)
    if not frames:
        return pd.DataFrame()
    out = pd.concat(frames, ignore_index=True)
    from ..evaluation.statistics import holm

    out["p_holm"] = holm(out["p_value"].to_numpy())
    return out


def region_table(every: pd.DataFrame, results: str | os.PathLike | None = None) -> pd.DataFrame:
    """3D DSC (mean ± SD, %) of every model against every label in both evaluation regions (primary background)."""
    rows = []
    for region in sorted(every.region.unique()):
        sub = primary(every, results, region)
        for (modality, model, gt), g in sub.groupby(["modality", "train_label", "ground_truth"]):
            rows.append({"region": region, "modality": modality, "train_label": model, "ground_truth": gt,
                         "n_patients": len(g), "dsc": mean_sd_text(g.dsc), "dsc_mean": 100 * g.dsc.mean()})
    return pd.DataFrame(rows)


def background_ablation(every: pd.DataFrame) -> pd.DataFrame:
    """Full-volume DSC and false-positive volume by the share of lesion-free training slices (own label)."""
    sub = own_rows(every[every.region == "full"])
    rows = []
    for (bg, modality, label), g in sub.groupby(["background_fraction", "modality", "train_label"]):
        rows.append({"background_fraction": bg, "modality": modality, "train_label": label, "n_patients": len(g),
                     "dsc": mean_sd_text(g.dsc), "fp_volume_ml": f"{g.fp_volume_ml.mean():.1f}",
                     "specificity_body": mean_sd_text(g.specificity_body)})
    return pd.DataFrame(rows)


def convergence_table(results: str | os.PathLike) -> pd.DataFrame:
    """One row per finished planned run: epochs, best epoch, the convergence verdict and its reason.

    The verdict is recomputed here from each run's ``training_log.csv`` by ``trainer.convergence``, so runs written
    before the rule changed are judged by the rule in force.
    """
    from ..training.trainer import convergence

    rows = []
    for run in planned_runs(results):
        path = run / RUN_SUMMARY
        if not path.exists():
            continue
        s = json.loads(path.read_text())
        log = pd.read_csv(run / RUN_TRAINING_LOG).to_dict("records") if (run / RUN_TRAINING_LOG).exists() else []
        verdict = convergence(log, s.get("monitor", "val_loss"), bool(s.get("stopped_early"))) if log else {
            "converged": s.get("converged"), "reason": s.get("reason", "not recorded")}
        rows.append({"run_id": s["run_id"], "n_train_slices": s.get("n_train_slices"),
                     "train_slices_digest": s.get("train_slices_digest"), "epochs_run": s.get("epochs_run"),
                     "best_epoch": s.get("best_epoch"), "steps": s.get("epochs_run", 0) * s.get("steps_per_epoch", 0),
                     "final_train_loss": s.get("final_train_loss"), "stopped_by_patience": bool(s.get("stopped_early")),
                     "lr_fraction_at_end": verdict.get("lr_fraction_at_end"), "converged": verdict["converged"],
                     "reason": verdict["reason"]})
    return pd.DataFrame(rows)


def localisation_table(per_patient: pd.DataFrame) -> pd.DataFrame:
    """Does each input find the affected limb? Predicted voxels on the lesion's side (chance about 0.5).

    One-sided Wilcoxon signed-rank test of the per-patient fraction against 0.5, per modality and label
    (patients with an empty prediction have no fraction and are left out, and counted).
    """
    if "pred_on_lesion_side" not in per_patient:
        return pd.DataFrame()
    from scipy.stats import wilcoxon

    rows = []
    df = own_rows(per_patient)
    for (modality, label), g in df.groupby(["modality", "train_label"]):
        x = g["pred_on_lesion_side"].dropna().to_numpy()
        p = float(wilcoxon(x - 0.5, alternative="greater").pvalue) if len(x) > 1 and np.any(x != 0.5) else float("nan")
        rows.append({"modality": modality, "train_label": label, "n_patients": len(g), "n_empty": int(len(g) - len(x)),
                     "mean_on_lesion_side": float(np.mean(x)) if len(x) else float("nan"),
                     "min_on_lesion_side": float(np.min(x)) if len(x) else float("nan"),
                     "n_above_half": int((x > 0.5).sum()), "p_greater_than_half": p})
    out = pd.DataFrame(rows)
    if len(out):
        order = {m: i for i, m in enumerate(MODALITY_ORDER)}
        out = out.sort_values(["train_label", "modality"], key=lambda c: c.map(order) if c.name == "modality" else c)
    return out.reset_index(drop=True)


def write_aggregate(results: str | os.PathLike, figure_formats=("png", "svg")) -> dict:
    """Write every table (CSV), figure (PNG/SVG) and ``aggregate/summary.json`` for a results folder."""
    results = Path(results)
    out = results / AGGREGATE
    out.mkdir(parents=True, exist_ok=True)
    raw = collect_per_patient(results)
    raw.to_csv(out / PER_PATIENT_ALL, index=False)
    every = seed_mean(raw)
    pp = primary(every, results)
    region_table(every, results).to_csv(out / REGIONS, index=False)
    background_ablation(every).to_csv(out / BACKGROUND_ABLATION, index=False)
    convergence_table(results).to_csv(out / CONVERGENCE, index=False)
    labels = sorted(pp.train_label.unique())
    written: dict = {"tables": {}, "figures": {}}
    external = collect_external(results)
    families = family_rows(external, results)  # other model families (``score``): rows of Tables 1-2, own claims
    if not external.empty:
        external.to_csv(out / PER_PATIENT_EXTERNAL, index=False)
    for label in labels:
        t1 = with_family_rows(table1(pp, label), families, label, table1)
        t1.to_csv(out / table1_file(label), index=False)
        with_family_rows(table1_extra(pp, label), families, label, table1_extra).to_csv(out / table1_extra_file(label),
                                                                                         index=False)
        modality_tests(pp, label).to_csv(out / table1_tests_file(label), index=False)
        written["tables"][f"table1_{label}"] = f"{AGGREGATE}/{table1_file(label)}"
        sub = trained_and_tested_on(pp, label)
        if len(sub):
            order = [m for m in MODALITY_ORDER if m in set(sub.modality)]
            fig = distribution_figure(sub, "dsc", "modality", order=order, title=f"3D DSC per patient, trained and tested on {label}")
            written["figures"][f"dsc_by_modality_{label}"] = saved(fig, out / f"dsc_by_modality_{label}", figure_formats, results)
    if "dual" in set(pp.modality) and len(labels) > 1:
        text, mean, sd = table2(pp)
        if theirs := family_table2(families):
            text, mean, sd = (pd.concat([a, b]) for a, b in zip((text, mean, sd), theirs))
        text.to_csv(out / TABLE2)
        mean.to_csv(out / TABLE2_MEAN)
        sd.to_csv(out / TABLE2_SD)
        model_tests(pp).to_csv(out / TABLE2_TESTS, index=False)
        fig = heatmap_figure(mean, sd, "Cross-evaluation, dual input (3D DSC %)")
        written["figures"]["table2_heatmap"] = saved(fig, out / "table2_heatmap", figure_formats, results)
        dual = pp[pp.modality == "dual"]
        fig = distribution_figure(dual, "dsc", "ground_truth", hue="train_label", title="3D DSC per patient by model and ground truth")
        written["figures"]["dsc_by_model"] = saved(fig, out / "dsc_by_model", figure_formats, results)
    logs = {}  # fold 0, one curve per modality and label (the last seed and background setting drawn)
    for run, cell in planned_cells(results):
        if cell.fold == 0 and (run / RUN_TRAINING_LOG).exists():
            logs[f"{cell.modality}__{cell.label}"] = pd.read_csv(run / RUN_TRAINING_LOG)
    if logs:
        fig = training_curves_figure(logs, "Training curves (fold 0)")
        written["figures"]["training_curves"] = saved(fig, out / "training_curves", figure_formats, results)
    localisation_table(pp).to_csv(out / LOCALISATION, index=False)
    written["disagreement_patients"] = int(write_disagreement(results).get("patient_id", pd.Series(dtype=str)).nunique())
    written["multirater_patients"] = int(write_multirater_metrics(results).get("patient_id", pd.Series(dtype=str)).nunique())
    written["truth"] = write_truth_tables(results, primary(raw, results))
    written["calibration"] = write_calibration(results, figure_formats)
    written["conditioned"] = write_conditioned_tables(results, pp, reader_study(results).readers, planned_cells(results))
    if "pred_on_lesion_side" in pp:
        own = own_rows(pp)
        own.pivot_table(index="patient_id", columns=["modality", "train_label"], values="pred_on_lesion_side").round(3).to_csv(
            out / LOCALISATION_PER_PATIENT)
    summary = summary_table(pp, ["modality", "train_label", "ground_truth"], TABLE1_METRICS + EXTRA_METRICS)
    summary.to_csv(out / SUMMARY_STATISTICS, index=False)
    claims = study_claims(results, pp, primary(raw, results))
    claims.to_csv(out / CLAIMS, index=False)
    if families:  # the claims judged for each family alone, and which families each claim holds for
        by_family = {OWN_FAMILY: claims, **{family: study_claims(results, rows, None) for family, rows in families.items()}}
        pd.concat([t.assign(model_family=f) for f, t in by_family.items()], ignore_index=True).to_csv(
            out / CLAIMS_BY_FAMILY, index=False)
        claims_across_families(by_family).to_csv(out / CLAIMS_ACROSS_FAMILIES, index=False)
        written["model_families"] = [OWN_FAMILY, *families]
    written["n_runs"] = int(raw.run_id.nunique())
    written["n_patients"] = int(raw.patient_id.nunique())
    written["empty_predictions"] = int(pp.get("empty_prediction", pd.Series(dtype=float)).fillna(0).astype(bool).sum())
    (out / AGGREGATE_SUMMARY).write_text(json.dumps(written, indent=1))
    return written


def study_claims(results: Path, per_patient: pd.DataFrame, per_run: pd.DataFrame | None) -> pd.DataFrame:
    """The claims table of a results folder (``evaluation.claims``) for one model family: its primary rows averaged
    over seeds, each seed's rows for the stability column (none: no stability column), and the cohort QA's
    annotation agreement."""
    plan = json.loads((results / PLAN).read_text()) if (results / PLAN).exists() else {}
    cohort_json = results / plan["cohort"] if "cohort" in plan else None
    cohort_spec = json.loads(cohort_json.read_text()) if cohort_json is not None and cohort_json.is_file() else {}
    agreement = results / COHORT_QA / AGREEMENT
    return claims_table(per_patient, read_per_patient(agreement) if agreement.exists() else None,
                        synthetic_readers="synthetic" in cohort_spec, per_seed=per_run)


def numbers_in_table(table: pd.DataFrame) -> list[float]:
    """Every number printed in a 'mean ± SD' table (for checks that no cell is NaN or a placeholder)."""
    values = []
    for cell in table.select_dtypes(exclude="number").to_numpy().ravel():
        if isinstance(cell, str) and "±" in cell:
            values += [float(x) for x in cell.split("±")]
    return values


def is_complete(table: pd.DataFrame) -> bool:
    """True when every 'mean ± SD' cell holds finite numbers."""
    values = numbers_in_table(table)
    return bool(values) and bool(np.all(np.isfinite(values)))


def choose_figure_patient(results: Path, cohort) -> str:
    """A test patient with a metal implant when there is one (paper Fig. 2), else the first one."""
    candidates = sorted({prediction_patient(p.name.removesuffix(PREDICTION_SUFFIX)) for run, cell in planned_cells(results)
                         if cell.modality == "dual" for p in (run / PREDICTIONS).glob(f"*{PREDICTION_SUFFIX}")})
    for pid in candidates:
        if cohort.patient(pid).read_meta().get("implant"):
            return pid
    if not candidates:
        raise FileNotFoundError("no dual-input predictions to draw")
    return candidates[0]


def write_overlay_figures(results: str | os.PathLike, figure_formats=("png", "svg")) -> dict:
    """Fig. 2 analogue (GT A + model A red, GT B + model B blue) and Fig. 3 analogue (model A vs B)."""
    import SimpleITK as sitk

    from ..ingest.cohort import load_cohort
    from ..ingest.imageio import read_image
    from ..preprocessing.cache import load_cached, load_native
    from ..preprocessing.registration import resample_to, transform_from_record
    from .figures import model_comparison_figure, overlay_figure, registration_qa_figure

    results = Path(results)
    out = results / AGGREGATE

    run_params = next(run / RUN_PARAMS for run in planned_runs(results) if (run / RUN_PARAMS).exists())
    cohort = load_cohort(RunParams.from_record(run_params).cohort)
    pid = choose_figure_patient(results, cohort)
    record = cohort.patient(pid)
    ct = read_image(record.images["ct"], pid, "CT")
    pet = read_image(record.images["pet"], pid, "PT")
    transform = transform_from_record(load_cached(results / CACHE, pid).meta["registration"])
    pet_on_ct = sitk.GetArrayFromImage(resample_to(pet, ct, transform))
    ct_arr = sitk.GetArrayFromImage(ct)
    labels, _ = load_native(results / CACHE, pid)
    preds = {}
    for run, cell in planned_cells(results):
        prediction = prediction_file(run / PREDICTIONS, pid)
        if cell.modality == "dual" and prediction.exists():
            preds.setdefault(cell.label, sitk.GetArrayFromImage(sitk.ReadImage(str(prediction))).astype(bool))
    written = {"patient": pid}
    gts = {k: labels[k] for k in preds if k in labels}
    fig = overlay_figure(ct_arr, pet_on_ct, gts, preds, title=f"{pid} ({record.read_meta().get('implant') or 'no implant'})")
    written["figure2"] = saved(fig, out / "figure2_overlay", figure_formats, results)
    if "label_a" in preds and "label_b" in preds:
        fig = model_comparison_figure(ct_arr, pet_on_ct, preds["label_a"], preds["label_b"], title=pid)
        written["figure3"] = saved(fig, out / "figure3_models", figure_formats, results)
    disagreement = write_disagreement_figure(results, pid, ct_arr, figure_formats)
    if disagreement:
        written["disagreement_map"] = disagreement
    identity = sitk.GetArrayFromImage(resample_to(pet, ct))
    z = int(np.argmax(next(iter(gts.values())).reshape(ct_arr.shape[0], -1).sum(1))) if gts else ct_arr.shape[0] // 2
    fig = registration_qa_figure(ct_arr, identity, pet_on_ct, z, f"{pid}: PET on CT before/after registration")
    written["registration_qa"] = saved(fig, out / "registration_qa", figure_formats, results)
    (out / FIGURES_RECORD).write_text(json.dumps(written, indent=1))
    return written
