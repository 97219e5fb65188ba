"""Study profiles: configuration as data (``profiles/*.yaml``) parsed into typed dataclasses."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..ingest.modalities import MODALITY_CHANNELS
from ..preprocessing.patient_on_ct import PreprocessConfig
from ..training.augmentation import AugmentConfig
from ..training.models import CONDITIONED, ModelConfig
from ..training.trainer import TrainConfig
from .splits import VAL_PATIENTS

PROFILE_DIR = Path(__file__).resolve().parents[2] / "profiles"


@dataclass
class CohortSpec:
    """The synthetic cohort a profile generates when no ``--cohort`` is given."""

    patients: int = 20
    seed: int = 0
    scale: str = "paper"
    with_mri: bool = False
    reader_count: int = 2  # label_a (sensitive), label_b (specific), then reader_3, ... alternating styles


@dataclass
class StudySpec:
    """The experimental grid."""

    modalities: list[str] = field(default_factory=lambda: ["ct", "pet", "dual"])
    folds: int = 5
    val_patients: int = VAL_PATIENTS  # per fold: model selection follows them
    seeds: list[int] = field(default_factory=lambda: [0])
    labels: list[str] | None = None  # training targets (default: the cohort's train_labels); may name derived ones
    reader_labels: list[str] | None = None  # whose labels derived targets combine (default: the cohort's train_labels)
    nsd_tolerance_mm: float | None = None  # None: the cohort's largest voxel spacing (metrics.nsd_tolerance)
    background_fractions: list[float] = field(default_factory=lambda: [0.0])  # first: the primary setting


@dataclass
class Profile:
    """Everything a study run needs, read from a YAML profile."""

    name: str
    description: str
    cohort: CohortSpec
    preprocess: PreprocessConfig
    model: ModelConfig
    train: TrainConfig
    study: StudySpec
    departures: dict[str, str]
    assumptions: dict[str, str] = field(default_factory=dict)
    path: str = ""

    def reader_labels(self, train_labels: Sequence[str]) -> list[str]:
        """The readers' labels that derived targets combine and a conditioned model learns the styles of
        (``study.reader_labels``, else the cohort's ``train_labels``)."""
        return list(self.study.reader_labels or train_labels)

    def derived_targets(self, cohort) -> tuple[list[str], list[str]]:
        """(derived targets the study trains on, the readers they combine) for ``cohort``."""
        from ..preprocessing.targets import DERIVED_TARGETS

        derived = [label for label in (self.study.labels or []) if label in DERIVED_TARGETS]
        return derived, self.reader_labels(cohort.train_labels) if derived else []

    def mask_targets(self, cohort) -> list[str]:
        """Labels the study's models learn masks of: its training labels (the conditioned model's styles in place
        of it). Training slices and the lesion-extent region are taken over these, for every run alike."""
        labels = self.study.labels or cohort.train_labels
        targets = [label for label in labels if label != CONDITIONED]
        if CONDITIONED in labels:
            targets += [r for r in self.reader_labels(cohort.train_labels) if r not in targets]
        return targets


# Profile keys renamed so that one name has one meaning; a profile (or a results folder's profile.yaml) written
# before the rename is refused with the new name rather than read under the old one.
RENAMED_KEYS = {("cohort", "readers"): "reader_count", ("study", "readers"): "reader_labels"}


def _build(cls, data: dict | None, where: str):
    data = dict(data or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(names)})")
    return cls(**data)


def _profile_path(name_or_path: str | os.PathLike, relative_to: Path = PROFILE_DIR) -> Path:
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.yaml"
    elif not path.is_absolute() and not path.exists():
        path = relative_to / path
    if not path.exists():
        available = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"no profile {name_or_path} (available: {available})")
    return path


def _merge(base: dict, child: dict) -> dict:
    """Child keys override the base's; nested maps merge key by key, lists and values are replaced."""
    out = dict(base)
    for key, value in child.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def profile_data(name_or_path: str | os.PathLike, seen: tuple = ()) -> tuple[dict, Path]:
    """The profile's YAML as data, with ``extends: <profile>`` resolved (the base first, then this file's keys)."""
    path = _profile_path(name_or_path)
    if path.resolve() in seen:
        raise ValueError(f"{path}: 'extends' forms a cycle")
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: a profile is a YAML mapping")
    base_name = raw.pop("extends", None)
    if base_name:
        base, _ = profile_data(_profile_path(base_name, path.parent), (*seen, path.resolve()))
        base.pop("name", None), base.pop("description", None)
        raw = _merge(base, raw)
    return raw, path


def load_profile(name_or_path: str | os.PathLike) -> Profile:
    """Load ``profiles/<name>.yaml`` or a YAML file path into a validated ``Profile``."""
    raw, path = profile_data(name_or_path)
    known = {"name", "description", "cohort", "preprocess", "model", "train", "study", "departures", "assumptions"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"{path}: unknown sections {sorted(unknown)} (allowed: {sorted(known)})")
    renamed = [f"{section}.{key} is now {section}.{new}" for (section, key), new in RENAMED_KEYS.items()
               if key in (raw.get(section) or {})]
    if renamed:
        raise ValueError(f"{path}: {'; '.join(renamed)} (rename the keys in this file)")
    train_raw = dict(raw.get("train", {}))
    augment = _build(AugmentConfig, train_raw.pop("augment", None), f"{path}: train.augment")
    train = _build(TrainConfig, train_raw, f"{path}: train")
    train.augment = augment
    train.betas = tuple(train.betas)
    study = _build(StudySpec, raw.get("study"), f"{path}: study")
    unknown_modalities = set(study.modalities) - set(MODALITY_CHANNELS)
    if unknown_modalities:
        raise ValueError(f"{path}: unknown modalities {sorted(unknown_modalities)} (choose from {sorted(MODALITY_CHANNELS)})")
    if not study.background_fractions or any(not 0 <= f <= 1 for f in study.background_fractions):
        raise ValueError(f"{path}: study.background_fractions must be fractions in [0, 1], got {study.background_fractions}")
    return Profile(
        name=raw.get("name", path.stem), description=raw.get("description", ""),
        cohort=_build(CohortSpec, raw.get("cohort"), f"{path}: cohort"),
        preprocess=_build(PreprocessConfig, raw.get("preprocess"), f"{path}: preprocess"),
        model=_build(ModelConfig, raw.get("model"), f"{path}: model"),
        train=train, study=study,
        # a child profile removes an inherited departure with `key: null`
        departures={k: v for k, v in (raw.get("departures") or {}).items() if v is not None},
        assumptions=dict(raw.get("assumptions") or {}), path=str(path),
    )


def write_profile_snapshot(name_or_path: str | os.PathLike, target: Path) -> Path:
    """Write the resolved profile (``extends`` merged) as one YAML file, so a results folder is self-contained."""
    raw, path = profile_data(name_or_path)
    text = f"# snapshot of {path.name} as this study ran it ('extends' resolved)\n" + yaml.safe_dump(
        raw, sort_keys=False, allow_unicode=True, width=110)
    if not target.exists() or target.read_text() != text:
        target.write_text(text)
    return target
