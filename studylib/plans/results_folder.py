"""The results folder: created once its cohort has been read, written file by file only when a file changes, and
the names of the files in it (the writers and the report name them from here)."""

from __future__ import annotations

import os
from pathlib import Path

from ..ingest.cohort import load_cohort
from ..training.trainer import BEST_CHECKPOINT, LAST_CHECKPOINT, TRAINING_LOG

# Folders of a results folder.
CACHE = "cache"  # written by preprocessing/cache.py: one folder per patient
RUNS = "runs"
AGGREGATE = "aggregate"  # written by reporting/aggregate.py (and the disagreement maps)
COHORT_QA = "cohort_qa"  # written by reporting/cohort_qa.py
NOTEBOOKS = "notebooks"  # the executed cohort and aggregate notebooks
REPORT = "report"
VIEWER = "viewer"  # inside REPORT: a viewer page per test patient (reporting/viewer.py)
# Other model families' predictions scored like our runs (pipeline/score.py): EXTERNAL/<external id>/ holds
# RUN_PER_PATIENT and EXTERNAL_RECORD; aggregation adds them to Tables 1-2 and judges the claims for each family.
EXTERNAL = "external"
EXTERNAL_RECORD = "score.json"
NNUNET = "nnunet"  # the nnU-Net baseline's raw, preprocessed, results and predictions folders (pipeline/nnunet_baseline.py)

# Records of the study at the top of the results folder.
PROFILE_SNAPSHOT = "profile.yaml"
PREPROCESS_RECORD = "preprocess.csv"
SPLITS = "splits.json"
NNUNET_SPLITS = "splits_final.json"  # nnU-Net v2's folds from ours (plans/splits.py: its val = our validation)
PLAN = "plan.json"
FAILURES = "failures.json"
STUDY_RECORD = "study.json"

# Files of one run folder (runs/<run id>/).
RUN_PARAMS = "params.json"
RUN_SUMMARY = "summary.json"
RUN_PER_PATIENT = "per_patient.csv"
RUN_TRAINING_LOG = TRAINING_LOG
RUN_LAST_CHECKPOINT = LAST_CHECKPOINT
RUN_BEST_CHECKPOINT = BEST_CHECKPOINT
RUN_NOTEBOOK_OUTPUT = "run.ipynb"
RUN_LOG = "run.log"
PREDICTIONS = "predictions"  # in a run folder or a `predict` output: one NIfTI per patient (and style)

# Written by `predict` beside its PREDICTIONS folder.
PREDICTION_METRICS = "metrics.csv"

# Tables that aggregation writes into AGGREGATE.
PER_PATIENT_ALL = "per_patient_all.csv"
REGIONS = "regions.csv"
BACKGROUND_ABLATION = "background_ablation.csv"
CONVERGENCE = "convergence.csv"
TABLE2 = "table2.csv"
TABLE2_MEAN = "table2_mean.csv"
TABLE2_SD = "table2_sd.csv"
TABLE2_TESTS = "table2_tests.csv"
LOCALISATION = "localisation.csv"
LOCALISATION_PER_PATIENT = "localisation_per_patient.csv"
DISAGREEMENT = "disagreement.csv"
DISAGREEMENT_MAPS = "disagreement"  # folder of per-patient vote-count maps
DISAGREEMENT_FIGURE = "disagreement_map"
MULTIRATER_METRICS = "multirater_metrics.csv"  # the multi-rater field's metrics per patient, method and metric
MULTIRATER_SUMMARY = "multirater_summary.csv"  # their mean ± SD per input, method and metric
SUMMARY_STATISTICS = "summary_statistics.csv"
CLAIMS = "claims.csv"
PER_PATIENT_EXTERNAL = "per_patient_external.csv"  # the other families' rows (per_patient_all.csv: our runs only)
CLAIMS_BY_FAMILY = "claims_by_family.csv"  # the claims table of every model family, ours first
CLAIMS_ACROSS_FAMILIES = "claims_across_families.csv"  # per claim: each family's verdict, and which it holds for
AGGREGATE_SUMMARY = "summary.json"
# truth-anchored tables (synthetic cohorts with a truth mask and three or more readers; reporting/readers/truth.py)
TRUTH_STAPLE = "truth_staple.csv"  # per patient and reader: STAPLE's estimated vs the read's actual rates
TRUTH_STAPLE_SUMMARY = "truth_staple_summary.csv"  # per reader and rate: mean error of STAPLE's estimate
TRUTH_TARGETS_PER_PATIENT = "truth_targets_per_patient.csv"  # per patient: Dice of each target mask vs the truth
TRUTH_DICE = "truth_dice.csv"  # per supervision: mean Dice vs the truth, paired intervals to the candidate
TRUTH_VERDICT = "truth_verdict.csv"  # the decision rule applied: candidate, decided, tied set
# calibration against reader disagreement (>= 3 readers; reporting/readers/calibration.py)
CALIBRATION = "calibration.csv"  # per test patient and model family: ECE, Brier, AUROC of reader disagreement
CALIBRATION_BINS_TABLE = "calibration_bins.csv"  # pooled reliability bins per family
CALIBRATION_SUMMARY = "calibration_summary.csv"  # per family: pooled ECE, mean Brier, pooled and mean AUROC
# one conditioned network against K decoupled ones (reporting/readers/conditioned.py)
CONDITIONED_NONINFERIORITY = "conditioned_noninferiority.csv"  # own-reader Dice, one-sided bound vs the margin
CONDITIONED_COST = "conditioned_cost.csv"  # per fold: training seconds of the conditioned run and the K decoupled
FIGURES_RECORD = "figures.json"

# Tables that the cohort QA writes into COHORT_QA.
AGREEMENT = "agreement.csv"
AGREEMENT_SUMMARY = "agreement.json"
READER_SWEEP = "reader_sweep.csv"
READER_SWEEP_SUMMARY = "reader_sweep_summary.csv"
READER_SWEEP_FIGURE = "reader_sweep"


def table1_file(label: str) -> str:
    """Table 1 (modality ablation, mean ± SD text) of the models trained and tested on ``label``."""
    return f"table1_{label}.csv"


def table1_extra_file(label: str) -> str:
    """The beyond-paper metrics of Table 1 for ``label``."""
    return f"table1_extra_{label}.csv"


def table1_tests_file(label: str) -> str:
    """The paired tests between modalities for ``label``."""
    return f"table1_tests_{label}.csv"


def viewer_page_file(patient_id: str) -> str:
    """The viewer page of one patient, in the report's VIEWER folder."""
    return f"{patient_id}.html"


def results_folder(out: str | os.PathLike, cohort: str | None) -> Path:
    """The results folder, created once the given cohort has been read: a bad cohort (an id such as '../x') is
    refused before anything is written."""
    if cohort:
        load_cohort(cohort)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` atomically unless the file already holds it (a finished study rewrites nothing)."""
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
