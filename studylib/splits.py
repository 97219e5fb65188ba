"""Patient-wise cross-validation splits (train/val/test per fold), leak-free, fixed by seed."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np


class SplitError(ValueError):
    """Splits that leak patients or do not match the cohort."""


def make_splits(patient_ids: list[str], folds: int = 5, val_fraction: float = 0.125, seed: int = 0,
                strata: dict[str, str] | None = None) -> list[dict[str, list[str]]]:
    """K-fold over patients: each fold tests 1/k of them, and the rest split into train/val (7:1 of 8).

    With k = 5 this gives the paper's 7:1:2 ratios. ``strata`` (patient -> group) spreads groups over folds.
    """
    ids = sorted(patient_ids)
    if len(set(ids)) != len(ids):
        raise SplitError("duplicate patient ids")
    if folds < 2 or folds > len(ids):
        raise SplitError(f"need 2 <= folds <= patients, got folds={folds} for {len(ids)} patients")
    largest_test = -(-len(ids) // folds)
    if len(ids) - largest_test < 2:  # the patients outside a fold's test set must fill train and validation
        raise SplitError(f"{len(ids)} patients in {folds} folds leave {len(ids) - largest_test} patient(s) outside the "
                         f"largest test set ({largest_test}), but every fold needs at least one training and one "
                         f"validation patient: add patients or use more folds (at most {len(ids)})")
    rng = np.random.default_rng(seed)
    order = list(rng.permutation(ids))
    if strata:
        order.sort(key=lambda p: strata.get(p, ""))  # stable: random within stratum, grouped by stratum
    test_sets = [order[i::folds] for i in range(folds)]
    splits = []
    for k in range(folds):
        rest = [p for p in order if p not in test_sets[k]]
        rest = list(np.random.default_rng([seed, k]).permutation(rest))
        n_val = max(1, int(round(val_fraction * len(rest))))
        splits.append({"train": sorted(rest[n_val:]), "val": sorted(rest[:n_val]), "test": sorted(test_sets[k])})
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


def write_splits(splits: list[dict[str, list[str]]], out_dir: str | os.PathLike) -> tuple[Path, Path]:
    """Write ``splits.json`` and nnU-Net's ``splits_final.json`` (train = train + val, val = our test)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ours = out_dir / "splits.json"
    ours.write_text(json.dumps(splits, indent=1))
    nnunet = out_dir / "splits_final.json"
    nnunet.write_text(json.dumps([{"train": sorted(f["train"] + f["val"]), "val": f["test"]} for f in splits], indent=1))
    return ours, nnunet


def load_or_make_splits(out_dir: str | os.PathLike, patient_ids: list[str], folds: int, seed: int,
                        strata: dict[str, str] | None = None) -> list[dict[str, list[str]]]:
    """Splits are written once: reuse ``splits.json`` when it matches the cohort, else create it."""
    path = Path(out_dir) / "splits.json"
    if path.exists():
        splits = json.loads(path.read_text())
        check_splits(splits, sorted(patient_ids))
        if len(splits) != folds:
            raise SplitError(f"{path} has {len(splits)} folds but the profile asks for {folds}; use a new --out")
        return splits
    splits = make_splits(patient_ids, folds, seed=seed, strata=strata)
    write_splits(splits, out_dir)
    return splits
