"""What the report reads: a results folder loaded once (per-patient metrics, run records, profile, cohort, claims)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from ..evaluation.claims import claims_table
from ..plans.profiles import Profile, load_profile
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


def show_figure(ctx: ReportContext, stem: str, folder: str = "aggregate"):
    """Display a figure of the results folder (the first PNG under ``folder`` whose name starts with ``stem``)."""
    from IPython.display import Image, display

    candidates = sorted((ctx.results / folder).glob(f"{stem}*.png"))
    if not candidates:
        print(f"(figure {stem} not produced by this results folder)")
        return None
    return display(Image(filename=str(candidates[0])))

