"""The training data of one run, read from the slice cache: which slices, stacked as tensors, once per style."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import torch

from ..preprocessing.cache import load_cached, select_training_slices
from .models import with_style_planes

Selection = list[tuple[str, list[int]]]  # (patient, slice indices)


def training_slices(cache_dir: Path, patients: list[str], labels: list[str], background: float,
                    seed: int) -> Selection:
    """(patient, slice indices) of the training set: slices holding any of ``labels`` plus background slices."""
    rng = np.random.default_rng(seed)
    chosen = [(pid, select_training_slices(load_cached(cache_dir, pid), labels, background, rng).tolist())
              for pid in patients]
    if not any(idx for _, idx in chosen):
        raise RuntimeError(f"no training slices with any of {labels} among {patients}")
    return chosen


def slices_digest(selection: Selection) -> str:
    """A short digest of a slice selection (equal digests: identical training inputs)."""
    return hashlib.sha1(json.dumps(selection).encode()).hexdigest()[:16]


def stack_slices(cache_dir: Path, selection: Selection, channels: list[str],
                 label: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Images (n, C, S, S) and masks (n, 1, S, S) of the selected slices for one training label (uint8 masks; a soft
    target's values in [0, 1] as float32)."""
    xs, ys = [], []
    for pid, idx in selection:
        if not idx:
            continue
        cached = load_cached(cache_dir, pid)
        xs.append(np.asarray(cached.images[idx][:, cached.channel_index(channels)]))
        ys.append(np.asarray(cached.labels[idx][:, [cached.label_names.index(label)]]))
        divisor = cached.label_divisor(label)
        if divisor != 1:  # a soft target (vote fraction) stored as counts
            ys[-1] = ys[-1].astype(np.float32) / np.float32(divisor)
    return torch.from_numpy(np.concatenate(xs)), torch.from_numpy(np.concatenate(ys))


def validation_volumes(cache_dir: Path, patients: list[str], channels: list[str],
                       label: str) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every slice of each validation patient: validation looks like the test."""
    return [stack_slices(cache_dir, [(pid, list(range(len(load_cached(cache_dir, pid).images))))],
                         channels, label) for pid in patients]


def styled_training_set(cache_dir: Path, selection: Selection, channels: list[str],
                        styles: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
    """The training set of a style-conditioned model: the selected slices once per style, with style planes."""
    pairs = [styled(stack_slices(cache_dir, selection, channels, style), i, len(styles)) for i, style in enumerate(styles)]
    return torch.cat([x for x, _ in pairs]), torch.cat([y for _, y in pairs])


def styled(volume: tuple[torch.Tensor, torch.Tensor], style: int, styles: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with the style planes of ``style`` appended (``models.with_style_planes``), masks unchanged."""
    images, masks = volume
    return torch.from_numpy(with_style_planes(images.numpy(), style, styles)), masks
