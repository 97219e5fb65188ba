"""Patient-wise cross-validation splits (train/val/test per fold), leak-free, fixed by seed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from .results_folder import NNUNET_SPLITS, SPLITS


class SplitError(ValueError):
    """Splits that leak patients or do not match the cohort."""


# Model selection (best checkpoint, early stopping) follows the validation patients of a fold: with one of them
# the monitored score jumped between Dice 0.00 and 0.69 from epoch to epoch. Three is the fewest a fold gets.
VAL_PATIENTS = 3


def make_splits(patient_ids: list[str], folds: int = 5, val_patients: int = VAL_PATIENTS, seed: int = 0,
                strata: dict[str, str] | None = None) -> list[dict[str, list[str]]]:
    """K-fold over patients: each fold tests 1/k of them; ``val_patients`` of the rest validate, the others train.

    ``strata`` (patient -> group) spreads groups over the folds' test sets.
    """
    ids = sorted(patient_ids)
    if len(set(ids)) != len(ids):
        raise SplitError("duplicate patient ids")
    if folds < 2 or folds > len(ids):
        raise SplitError(f"need 2 <= folds <= patients, got folds={folds} for {len(ids)} patients")
    if val_patients < 1:
        raise SplitError(f"study.val_patients must be at least 1, got {val_patients}")
    largest_test = -(-len(ids) // folds)
    if len(ids) - largest_test < val_patients + 1:  # the patients outside a fold's test set fill train and validation
        raise SplitError(f"{len(ids)} patients in {folds} folds leave {len(ids) - largest_test} patient(s) outside the "
                         f"largest test set ({largest_test}), but every fold needs at least one training and "
                         f"{val_patients} validation patient(s): add patients, use more folds or fewer validation "
                         f"patients (study.val_patients)")
    rng = np.random.default_rng(seed)
    order = [str(p) for p in rng.permutation(ids)]  # plain str, not numpy's (messages and equality with json)
    if strata:
        order.sort(key=lambda p: strata.get(p, ""))  # stable: random within stratum, grouped by stratum
    test_sets = [order[i::folds] for i in range(folds)]
    splits = []
    for k in range(folds):
        rest = [p for p in order if p not in test_sets[k]]
        rest = [str(p) for p in np.random.default_rng([seed, k]).permutation(rest)]
        splits.append({"train": sorted(rest[val_patients:]), "val": sorted(rest[:val_patients]),
                       "test": sorted(test_sets[k])})
    check_splits(splits, ids)
    return splits


def check_splits(splits: list[dict[str, list[str]]], patient_ids: list[str] | None = None) -> None:
    """Assert no patient is in two of train/val/test of one fold and every patient is tested exactly once."""
    tested: list[str] = []
    for k, fold in enumerate(splits):
        sets = {name: set(fold[name]) for name in ("train", "val", "test")}
        for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
            overlap = sets[a] & sets[b]
            if overlap:
                raise SplitError(f"fold {k}: patients {sorted(overlap)} are in both {a} and {b}")
        if not sets["train"] or not sets["val"] or not sets["test"]:
            raise SplitError(f"fold {k}: an empty train/val/test set")
        tested += fold["test"]
    if patient_ids is not None and sorted(tested) != sorted(patient_ids):
        raise SplitError("the test sets do not cover every patient exactly once")


def nnunet_splits(splits: list[dict[str, list[str]]]) -> list[dict[str, list[str]]]:
    """nnU-Net's folds from ours: its ``train`` is our training patients, its ``val`` our validation patients.

    nnU-Net chooses configurations, ensembles and postprocessing on its ``val``: that must never be our test set,
    so our test patients appear in neither list (they are predicted separately).
    """
    return [{"train": sorted(f["train"]), "val": sorted(f["val"])} for f in splits]


def check_nnunet_splits(nnunet: list[dict[str, list[str]]], splits: list[dict[str, list[str]]]) -> None:
    """SplitError unless every fold of ``nnunet`` is ``nnunet_splits(splits)``: val = our validation, no test patient."""
    if len(nnunet) != len(splits):
        raise SplitError(f"nnU-Net splits have {len(nnunet)} folds, ours {len(splits)}")
    for k, (theirs, ours) in enumerate(zip(nnunet, splits)):
        leaked = sorted(set(ours["test"]) & set(theirs["train"] + theirs["val"]))
        if leaked:
            raise SplitError(f"fold {k}: test patients {leaked} are in nnU-Net's train or val")
        if sorted(theirs["val"]) != sorted(ours["val"]) or sorted(theirs["train"]) != sorted(ours["train"]):
            raise SplitError(f"fold {k}: nnU-Net's train/val are not our training/validation patients")


def write_splits(splits: list[dict[str, list[str]]], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``splits.json`` and nnU-Net's ``splits_final.json`` (``nnunet_splits``: its val = our validation)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ours = out_dir / SPLITS
    ours.write_text(json.dumps(splits, indent=1))
    return ours, write_nnunet_splits(splits, out_dir)


def write_nnunet_splits(splits: list[dict[str, list[str]]], out_dir: str | os.PathLike) -> Path:
    """Write ``splits_final.json`` from our splits unless it already holds them (an older file is corrected)."""
    path = Path(out_dir) / NNUNET_SPLITS
    text = json.dumps(nnunet_splits(splits), indent=1)
    if not path.exists() or path.read_text() != text:
        path.write_text(text)
    return path


def load_or_make_splits(out_dir: str | os.PathLike, patient_ids: list[str], folds: int, seed: int,
                        strata: dict[str, str] | None = None,
                        val_patients: int = VAL_PATIENTS) -> list[dict[str, list[str]]]:
    """Splits are written once: reuse ``splits.json`` when it matches the cohort and the profile, else create it."""
    path = Path(out_dir) / SPLITS
    if path.exists():
        splits = json.loads(path.read_text())
        check_splits(splits, sorted(patient_ids))
        if len(splits) != folds:
            raise SplitError(f"{path} has {len(splits)} folds but the profile asks for {folds}; use a new --out")
        if any(len(fold["val"]) != val_patients for fold in splits):
            raise SplitError(f"{path} has {sorted({len(f['val']) for f in splits})} validation patient(s) per fold but "
                             f"the profile asks for {val_patients} (study.val_patients); use a new --out")
        # a results folder written before splits_final.json validated on our validation patients gets it rewritten
        write_nnunet_splits(splits, out_dir)
        return splits
    splits = make_splits(patient_ids, folds, val_patients=val_patients, seed=seed, strata=strata)
    write_splits(splits, out_dir)
    return splits
