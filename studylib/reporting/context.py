"""What the report reads: a results folder loaded once (per-patient metrics, run records, profile, cohort, claims),
from the files the study and its aggregation wrote; nothing is recomputed here."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..plans.profiles import Profile, load_profile
from ..plans.results_folder import (
    AGGREGATE,
    AGREEMENT_SUMMARY,
    CLAIMS,
    COHORT_QA,
    PER_PATIENT_ALL,
    RUN_PARAMS,
    RUN_SUMMARY,
    RUNS,
    STUDY_RECORD,
)
from ..plans.runs import RunParams
from . import aggregate as agg


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
        if not (results / RUNS).exists():
            raise FileNotFoundError(f"{results} holds no runs: run `python -m studylib study` first")
        missing = [name for name in (PER_PATIENT_ALL, CLAIMS) if not (results / AGGREGATE / name).exists()]
        if missing:
            raise FileNotFoundError(f"{results / AGGREGATE} lacks {', '.join(missing)}: run `python -m studylib aggregate "
                                    f"--results {results}` first")
        raw = agg.read_per_patient(results / AGGREGATE / PER_PATIENT_ALL)
        per_patient = agg.primary(agg.seed_mean(raw), results)
        summaries = [json.loads((run / RUN_SUMMARY).read_text()) for run in agg.planned_runs(results)
                     if (run / RUN_SUMMARY).exists()]
        study = json.loads((results / STUDY_RECORD).read_text()) if (results / STUDY_RECORD).exists() else {}
        first_params = RunParams.from_record(results / RUNS / summaries[0]["run_id"] / RUN_PARAMS)
        profile = load_profile(first_params.profile)
        digests = {s["params"].get("profile") for s in summaries}
        if len(digests) > 1:
            raise ValueError(f"{results}: the runs were made with {len(digests)} different profiles; re-run the study")
        cohort_path = Path(first_params.cohort)
        cohort_spec = json.loads(cohort_path.read_text()) if cohort_path.is_file() else {}
        agreement_path = results / COHORT_QA / AGREEMENT_SUMMARY
        agreement = json.loads(agreement_path.read_text()) if agreement_path.exists() else {}
        per_run = agg.primary(raw, results)
        claims = agg.read_claims(results / AGGREGATE / CLAIMS)
        return cls(results, per_patient, summaries, profile, study, cohort_path, cohort_spec, agreement, claims,
                   per_run)

    def table(self, folder: str, name: str, **read_csv) -> pd.DataFrame:
        """A table that aggregation (or the cohort QA) wrote into ``folder``; empty when it wrote none or an empty one.

        pandas 3 reads floats back exactly (its default parser round-trips), so a number formatted here is the number
        that was computed; pandas 2's default may differ in the last bit, which no printed digit shows.
        """
        path = self.results / folder / name
        if not path.exists():
            return pd.DataFrame()
        try:
            return pd.read_csv(path, **read_csv)
        except pd.errors.EmptyDataError:  # a table with no rows and no columns is written as an empty line
            return pd.DataFrame()

    @property
    def labels(self) -> list[str]:
        """Training labels present in the runs."""
        return sorted(self.per_patient.train_label.unique())

    @property
    def labels_with_own_truth(self) -> list[str]:
        """Training labels whose models are scored against the label they learn (not a soft target such as the vote
        fraction, which is never a ground truth): the rows of Table 1."""
        from ..training.models import own_ground_truth

        truths = set(self.per_patient.ground_truth)
        return [label for label in self.labels if own_ground_truth(label) in truths]


def show_figure(ctx: ReportContext, stem: str, folder: str = AGGREGATE) -> None:
    """Display a figure of the results folder (the first PNG under ``folder`` whose name starts with ``stem``)."""
    from IPython.display import Image, display

    candidates = sorted((ctx.results / folder).glob(f"{stem}*.png"))
    if not candidates:
        print(f"(figure {stem} not produced by this results folder)")
        return None
    return display(Image(filename=str(candidates[0])))

