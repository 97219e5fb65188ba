"""Study profiles: configuration as data (``profiles/*.yaml``) parsed into typed dataclasses."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from .augmentation import AugmentConfig
from .models import ModelConfig
from .preprocessing import PreprocessConfig
from .training import TrainConfig

PROFILE_DIR = Path(__file__).resolve().parent.parent / "profiles"
MODALITY_CHANNELS = {"ct": ["ct"], "pet": ["pet"], "dual": ["ct", "pet"], "dual_mri": ["ct", "pet", "mri"]}


@dataclass
class CohortSpec:
    """The synthetic cohort a profile generates when no ``--cohort`` is given."""

    patients: int = 20
    seed: int = 0
    scale: str = "paper"
    with_mri: bool = False


@dataclass
class StudySpec:
    """The experimental grid."""

    modalities: list[str] = field(default_factory=lambda: ["ct", "pet", "dual"])
    folds: int = 5
    seeds: list[int] = field(default_factory=lambda: [0])
    labels: list[str] | None = None
    nsd_tolerance_mm: float = 2.0


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
    path: str = ""

    def as_dict(self) -> dict:
        """JSON-friendly view."""
        return asdict(self)


def _build(cls, data: dict | None, where: str):
    data = dict(data or {})
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)} (allowed: {sorted(names)})")
    return cls(**data)


def load_profile(name_or_path: str | os.PathLike) -> Profile:
    """Load ``profiles/<name>.yaml`` or a YAML file path into a validated ``Profile``."""
    path = Path(name_or_path)
    if not path.suffix:
        path = PROFILE_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        available = sorted(p.stem for p in PROFILE_DIR.glob("*.yaml"))
        raise FileNotFoundError(f"no profile {name_or_path} (available: {available})")
    raw = yaml.safe_load(path.read_text()) or {}
    train_raw = dict(raw.get("train", {}))
    augment = _build(AugmentConfig, train_raw.pop("augment", None), f"{path}: train.augment")
    train = _build(TrainConfig, train_raw, f"{path}: train")
    train.augment = augment
    train.betas = tuple(train.betas)
    study = _build(StudySpec, raw.get("study"), f"{path}: study")
    unknown_modalities = set(study.modalities) - set(MODALITY_CHANNELS)
    if unknown_modalities:
        raise ValueError(f"{path}: unknown modalities {sorted(unknown_modalities)} (choose from {sorted(MODALITY_CHANNELS)})")
    return Profile(
        name=raw.get("name", path.stem), description=raw.get("description", ""),
        cohort=_build(CohortSpec, raw.get("cohort"), f"{path}: cohort"),
        preprocess=_build(PreprocessConfig, raw.get("preprocess"), f"{path}: preprocess"),
        model=_build(ModelConfig, raw.get("model"), f"{path}: model"),
        train=train, study=study, departures=dict(raw.get("departures") or {}), path=str(path),
    )
