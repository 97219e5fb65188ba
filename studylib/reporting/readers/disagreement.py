"""Where readers disagree and where models of their styles disagree, per test patient on the CT grid.

Readers' disagreement: voxels that some but not all readers include (from the reader count, 0..N). Models'
disagreement: voxels that some but not all style models include, where the style models are the decoupled
models trained on each reader's labels (the paper's models A and B) or the styles of one conditioned model.
The number per patient is the fraction of the models' disagreement that falls where the readers disagree.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ...inference.volume import prediction_file, prediction_stem
from ...plans.results_folder import (
    AGGREGATE,
    CACHE,
    DISAGREEMENT,
    DISAGREEMENT_FIGURE,
    DISAGREEMENT_MAPS,
    PLAN,
    PREDICTIONS,
    PROFILE_SNAPSHOT,
    RUNS,
    SPLITS,
)
from ...plans.runs import run_id
from ...preprocessing.targets import vote_count
from ...training.models import CONDITIONED, conditioned_output


@dataclass(frozen=True)
class ReaderStudy:
    """The primary setting of a results folder whose cohort has several readers: the analyses of reader
    disagreement (maps, the multi-rater suite, calibration) all look at the same test patients and runs."""

    results: Path
    readers: list[str]  # the study's reader labels, in order (styles of the conditioned model)
    modalities: list[str]
    seed: int  # the primary seed and background setting
    background: float
    splits: list[dict[str, list[str]]]

    def test_patients(self) -> Iterator[tuple[int, str, list[np.ndarray]]]:
        """(fold, patient id, the readers' masks in reader order) of every test patient holding every reader."""
        from ...preprocessing.cache import load_native

        for fold, split in enumerate(self.splits):
            for pid in split["test"]:
                labels, _ = load_native(self.results / CACHE, pid)
                if all(r in labels for r in self.readers):
                    yield fold, pid, [labels[r] for r in self.readers]


def reader_study(results: str | os.PathLike) -> ReaderStudy:
    """The primary setting of a prepared results folder, read from its profile snapshot, plan and splits."""
    from ...ingest.cohort import load_cohort
    from ...plans.profiles import load_profile

    results = Path(results)
    profile = load_profile(results / PROFILE_SNAPSHOT)
    plan = json.loads((results / PLAN).read_text())
    readers = profile.reader_labels(load_cohort(results / plan["cohort"]).train_labels)
    return ReaderStudy(results, readers, list(profile.study.modalities), profile.study.seeds[0],
                       profile.study.background_fractions[0], json.loads((results / SPLITS).read_text()))


def reader_count_file(maps: Path, pid: str) -> Path:
    """The readers' vote-count map of a patient in the disagreement maps folder."""
    return prediction_file(maps, f"{pid}__readers")


def model_count_file(maps: Path, pid: str, modality: str, family: str) -> Path:
    """A style-model family's vote-count map of a patient in the disagreement maps folder."""
    return prediction_file(maps, f"{pid}__{modality}__{family}")


def partial_agreement(count: np.ndarray, total: int) -> np.ndarray:
    """Voxels included by some but not all of ``total`` sources (0 < count < total)."""
    return (count > 0) & (count < total)


def disagreement_fraction(model_disagreement: np.ndarray, reader_disagreement: np.ndarray) -> float:
    """Fraction of the models' disagreement voxels where the readers disagree too (NaN when models agree)."""
    model_disagreement = np.asarray(model_disagreement, bool)
    n = int(model_disagreement.sum())
    if n == 0:
        return float("nan")
    return float((model_disagreement & np.asarray(reader_disagreement, bool)).sum() / n)


def disagreement_row(readers: Sequence[np.ndarray], models: Sequence[np.ndarray], voxel_ml: float) -> dict:
    """Volumes of the readers' and the models' disagreement and their overlap, for one patient."""
    reader_map = partial_agreement(vote_count(readers), len(readers))
    model_map = partial_agreement(vote_count(models), len(models))
    overlap = reader_map & model_map
    return {"reader_disagreement_ml": float(reader_map.sum() * voxel_ml),
            "model_disagreement_ml": float(model_map.sum() * voxel_ml),
            "overlap_ml": float(overlap.sum() * voxel_ml),
            "model_disagreement_in_reader_disagreement": disagreement_fraction(model_map, reader_map),
            "reader_disagreement_in_model_disagreement": disagreement_fraction(reader_map, model_map)}


def style_predictions(results: Path, modality: str, fold: int, seed: int, readers: Sequence[str],
                      background: float, pid: str) -> dict[str, list[Path]]:
    """Prediction files of one test patient's style models: {"decoupled": [...], "conditioned": [...]} (complete
    families only, in reader order)."""
    families = {
        "decoupled": [prediction_file(results / RUNS / run_id(modality, r, fold, seed, background) / PREDICTIONS, pid)
                      for r in readers],
        "conditioned": [prediction_file(results / RUNS / run_id(modality, CONDITIONED, fold, seed, background) / PREDICTIONS,
                                        prediction_stem(pid, conditioned_output(r), True)) for r in readers],
    }
    return {family: files for family, files in families.items() if all(f.exists() for f in files)}


def write_disagreement(results: str | os.PathLike) -> pd.DataFrame:
    """Reader and model disagreement maps (NIfTI, in ``DISAGREEMENT_MAPS``) and their table (``DISAGREEMENT``).

    Uses the primary seed and background setting; every test patient of every fold, every modality.
    """
    import SimpleITK as sitk

    from ...ingest.imageio import image_from_array, write_image
    from ...preprocessing.cache import load_cached

    results = Path(results)
    study = reader_study(results)
    readers = study.readers
    out = results / AGGREGATE / DISAGREEMENT_MAPS
    rows = []
    if len(readers) < 2:
        return pd.DataFrame(rows)
    for fold, pid, reader_masks in study.test_patients():
        geometry = load_cached(results / CACHE, pid).geometry
        voxel_ml = float(np.prod(geometry.spacing)) / 1000.0
        wrote_readers = False
        for modality in study.modalities:
            for family, files in style_predictions(results, modality, fold, study.seed, readers, study.background,
                                                   pid).items():
                models = [sitk.GetArrayFromImage(sitk.ReadImage(str(f))).astype(bool) for f in files]
                if not wrote_readers:
                    out.mkdir(parents=True, exist_ok=True)
                    write_image(image_from_array(vote_count(reader_masks), geometry), reader_count_file(out, pid))
                    wrote_readers = True
                write_image(image_from_array(vote_count(models), geometry),
                            model_count_file(out, pid, modality, family))
                rows.append({"patient_id": pid, "fold": fold, "modality": modality, "models": family,
                             "reader_count": len(readers), **disagreement_row(reader_masks, models, voxel_ml)})
    table = pd.DataFrame(rows)
    table.to_csv(results / AGGREGATE / DISAGREEMENT, index=False)
    return table


def write_disagreement_figure(results: str | os.PathLike, pid: str, ct: np.ndarray,
                              figure_formats=("png", "svg")) -> list[str]:
    """The report's disagreement figure for one patient (``ct``: its CT in HU, z, y, x): reader count beside
    each style-model family's count."""
    import SimpleITK as sitk

    from ..figures import disagreement_figure, saved

    results = Path(results)
    folder = results / AGGREGATE / DISAGREEMENT_MAPS
    readers_path = reader_count_file(folder, pid)
    if not readers_path.exists():
        return []

    def read(path: Path) -> np.ndarray:
        return sitk.GetArrayFromImage(sitk.ReadImage(str(path)))

    models = {f"{family} models (dual)": read(model_count_file(folder, pid, "dual", family))
              for family in ("decoupled", "conditioned") if model_count_file(folder, pid, "dual", family).exists()}
    table = pd.read_csv(results / AGGREGATE / DISAGREEMENT)
    reader_count = int(table.reader_count.iloc[0])
    fig = disagreement_figure(ct, read(readers_path), models, reader_count, title=pid)
    return saved(fig, results / AGGREGATE / DISAGREEMENT_FIGURE, figure_formats, results)


def disagreement_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per modality and model family: median volumes and the mean fraction of model disagreement in reader
    disagreement (patients where the models disagree somewhere)."""
    if table.empty:
        return table
    return (table.groupby(["modality", "models"], sort=False)
            .agg(patients=("patient_id", "nunique"),
                 reader_disagreement_ml=("reader_disagreement_ml", "median"),
                 model_disagreement_ml=("model_disagreement_ml", "median"),
                 in_reader_disagreement=("model_disagreement_in_reader_disagreement", "mean"),
                 reader_disagreement_covered=("reader_disagreement_in_model_disagreement", "mean"))
            .reset_index())
