"""Truth-anchored tables of a multi-reader study on a synthetic cohort (the truth mask is cached as label ``truth``):
STAPLE's estimated sensitivity and specificity of each read against the read's actual ones, and the Dice against the
truth of every supervision the study trained, with the decision rule of ``evaluation.truth`` applied.

Written by aggregation only when the cohort has a truth mask and at least ``MIN_READERS`` readers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd

from ...evaluation.metrics import confusion_counts, dice
from ...evaluation.truth import box_mask, closest_supervision, estimate_error, read_rates
from ...plans.results_folder import (
    AGGREGATE,
    CACHE,
    PLAN,
    TRUTH_DICE,
    TRUTH_STAPLE,
    TRUTH_STAPLE_SUMMARY,
    TRUTH_TARGETS_PER_PATIENT,
    TRUTH_VERDICT,
)
from ...preprocessing.targets import staple_estimate
from .disagreement import reader_study

TRUTH = "truth"  # the synthetic cohort's label holding the phantom's exact infected region
MIN_READERS = 3
MODELS, TARGETS = "models trained on it", "the target mask itself"


def study_readers(results: Path) -> tuple[list[str], list[str]]:
    """(the study's readers, every cached patient) of a results folder."""
    from ...ingest.cohort import load_cohort
    from ...preprocessing.cache import CACHE_NATIVE

    plan = json.loads((results / PLAN).read_text())
    cohort = load_cohort(results / plan["cohort"])
    patients = [p for p in cohort.patient_ids if (results / CACHE / p / CACHE_NATIVE).exists()]
    return reader_study(results).readers, patients


def staple_rows(pid: str, labels: dict[str, np.ndarray], readers: list[str]) -> list[dict]:
    """One row per reader of one patient: STAPLE's estimated and the read's actual sensitivity and specificity,
    both inside the box STAPLE ran in."""
    masks = [labels[r] for r in readers]
    estimate = staple_estimate(masks)
    within = box_mask(masks[0].shape, estimate.box)
    rows = []
    for i, reader in enumerate(readers):
        sens, spec = read_rates(masks[i], labels[TRUTH], within)
        rows.append({"patient_id": pid, "reader": reader, "box_voxels": int(within.sum()),
                     "estimated_sensitivity": estimate.sensitivity[i], "actual_sensitivity": sens,
                     "estimated_specificity": estimate.specificity[i], "actual_specificity": spec})
    return rows


def target_rows(pid: str, labels: dict[str, np.ndarray]) -> list[dict]:
    """Dice of every cached binary target of one patient (readers, consensus, union, intersection) vs the truth."""
    return [{"patient_id": pid, "supervision": name, "dsc": dice(confusion_counts(mask, labels[TRUTH]))}
            for name, mask in sorted(labels.items()) if name != TRUTH]


def model_scores(per_run: pd.DataFrame) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    """Per (modality, supervision): Dice against the truth as (patients, seeds), on the patients and seeds every
    supervision of that modality has (paired); ``per_run``: primary rows of every run, seeds not averaged."""
    rows = per_run[per_run.ground_truth == TRUTH]
    out = {}
    for modality, g in rows.groupby("modality"):
        table = g.pivot_table(index="patient_id", columns=["train_label", "seed"], values="dsc").dropna()
        out[modality] = {label: table[label].to_numpy() for label in table.columns.get_level_values(0).unique()}
    return out


def staple_summary(staple: pd.DataFrame) -> pd.DataFrame:
    """Per reader and rate: STAPLE's estimate against the read's actual value over patients (``estimate_error``)."""
    rows = []
    for reader, g in staple.groupby("reader", sort=False):
        for rate in ("sensitivity", "specificity"):
            rows.append({"reader": reader, "rate": rate,
                         **estimate_error(g[f"estimated_{rate}"], g[f"actual_{rate}"])})
    return pd.DataFrame(rows)


def write_truth_tables(results: str | os.PathLike, per_run: pd.DataFrame) -> dict:
    """``truth_staple.csv``, ``truth_targets_per_patient.csv``, ``truth_dice.csv`` and ``truth_verdict.csv`` in
    ``aggregate/`` (nothing when the cohort has no truth mask or fewer than ``MIN_READERS`` readers)."""
    from ...preprocessing.cache import load_native

    results = Path(results)
    out = results / AGGREGATE
    readers, patients = study_readers(results)
    if len(readers) < MIN_READERS or TRUTH not in per_run.ground_truth.unique():
        return {}
    staple, targets = [], []
    for pid in patients:
        labels, _ = load_native(results / CACHE, pid)
        if TRUTH not in labels or not all(r in labels for r in readers):
            continue
        staple += staple_rows(pid, labels, readers)
        targets += target_rows(pid, labels)
    staple = pd.DataFrame(staple)
    staple.to_csv(out / TRUTH_STAPLE, index=False)
    (staple_summary(staple) if len(staple) else pd.DataFrame()).to_csv(out / TRUTH_STAPLE_SUMMARY, index=False)
    targets = pd.DataFrame(targets)
    targets.to_csv(out / TRUTH_TARGETS_PER_PATIENT, index=False)
    comparisons = {(MODELS, modality): scores for modality, scores in model_scores(per_run).items()}
    if len(targets):
        wide = targets.pivot(index="patient_id", columns="supervision", values="dsc").dropna()
        comparisons[(TARGETS, "")] = {name: wide[[name]].to_numpy() for name in wide.columns}
    tables, verdicts = [], []
    for (kind, modality), scores in comparisons.items():
        table, verdict = closest_supervision(scores)
        tables.append(table.assign(kind=kind, modality=modality))
        verdicts.append({"kind": kind, "modality": modality, "candidate": verdict.candidate,
                         "decided": verdict.decided, "tied": ";".join(verdict.tied), "n_patients": verdict.n_patients,
                         "verdict": verdict.text})
    pd.concat(tables, ignore_index=True).to_csv(out / TRUTH_DICE, index=False)
    pd.DataFrame(verdicts).to_csv(out / TRUTH_VERDICT, index=False)
    return {"patients": int(staple.patient_id.nunique()) if len(staple) else 0, "verdicts": len(verdicts)}
