"""The results folder: created once its cohort has been read, written file by file only when a file changes, and
the names of the files in it (the writers and the report name them from here)."""

from __future__ import annotations

import os
from pathlib import Path

from ..ingest.cohort import load_cohort

# Folders of a results folder.
RUNS = "runs"
AGGREGATE = "aggregate"  # written by reporting/aggregate.py (and the disagreement maps)
COHORT_QA = "cohort_qa"  # written by reporting/cohort_qa.py
REPORT = "report"

# Records of the study at the top of the results folder.
STUDY_RECORD = "study.json"
SPLITS = "splits.json"

# Files of one run folder (runs/<run id>/).
RUN_PARAMS = "params.json"
RUN_SUMMARY = "summary.json"
RUN_PER_PATIENT = "per_patient.csv"
RUN_TRAINING_LOG = "training_log.csv"

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
SUMMARY_STATISTICS = "summary_statistics.csv"
CLAIMS = "claims.csv"
AGGREGATE_SUMMARY = "summary.json"
FIGURES_RECORD = "figures.json"

# Tables that the cohort QA writes into COHORT_QA.
AGREEMENT = "agreement.csv"
AGREEMENT_SUMMARY = "agreement.json"
READER_SWEEP_SUMMARY = "reader_sweep_summary.csv"


def table1_file(label: str) -> str:
    """Table 1 (modality ablation, mean ± SD text) of the models trained and tested on ``label``."""
    return f"table1_{label}.csv"


def table1_extra_file(label: str) -> str:
    """The beyond-paper metrics of Table 1 for ``label``."""
    return f"table1_extra_{label}.csv"


def table1_tests_file(label: str) -> str:
    """The paired tests between modalities for ``label``."""
    return f"table1_tests_{label}.csv"


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
