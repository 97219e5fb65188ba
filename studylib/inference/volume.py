"""3D inference: predict every axial slice, map back to the CT grid, restack, threshold, write NIfTI.

A voxel is foreground when the model's probability is at least ``training.models.MASK_THRESHOLD``: the one
threshold of every predicted mask (validation during training, the masks written as NIfTI or DICOM SEG, the masks
scored).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..ingest.imageio import ImageGeometry, image_from_array, write_image
from ..preprocessing.slices import restore_slices
from ..training.models import MASK_THRESHOLD, conditioned_output, with_style_planes
from ..training.trainer import set_up_numerics


def prediction_stem(patient_id: str, model: str, conditioned: bool) -> str:
    """File stem of a patient's prediction: the patient id, or ``<patient>__<model>`` for each output of a
    conditioned model (``model`` is ``conditioned_<style>``)."""
    return f"{patient_id}__{model}" if conditioned else patient_id


PREDICTION_SUFFIX = ".nii.gz"


def prediction_file(folder: str | os.PathLike, stem: str) -> Path:
    """The mask file of a prediction stem in a predictions folder."""
    return Path(folder) / f"{stem}{PREDICTION_SUFFIX}"


def prediction_patient(stem: str) -> str:
    """The patient of a prediction file stem written by ``prediction_stem`` (or of its probability map's)."""
    return stem.removesuffix(PROBABILITY_SUFFIX).split("__")[0]


PROBABILITY_SUFFIX = "_prob"  # <stem>_prob.nii.gz: the probability map written beside a mask


def probability_stem(stem: str) -> str:
    """File stem of the probability map of the prediction ``stem``."""
    return f"{stem}{PROBABILITY_SUFFIX}"


def foreground(probabilities: np.ndarray) -> np.ndarray:
    """The predicted mask of a probability map: probability >= ``MASK_THRESHOLD``."""
    return probabilities >= MASK_THRESHOLD


@torch.no_grad()
def predict_slices(model: nn.Module, images: np.ndarray, channel_index: list[int], batch_size: int = 32,
                   device: str | torch.device = "cpu", precision: str = "fp32") -> torch.Tensor:
    """Sigmoid probabilities (z, S, S) for every axial slice of a cached patient (z, C, S, S).

    ``precision`` is the profile's (``TrainConfig.precision``), so the test sees the precision validation saw;
    denormals are flushed as in training (``set_up_numerics``).
    """
    device = torch.device(device)
    autocast = set_up_numerics(device, precision)
    model = model.to(device, memory_format=torch.channels_last).eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = torch.from_numpy(np.ascontiguousarray(images[start:start + batch_size][:, channel_index])).to(device).float()
        x = x.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=autocast):
            logits = model(x)
        out.append(torch.sigmoid(logits.float())[:, 0].cpu())
    return torch.cat(out) if out else torch.zeros((0,) + tuple(images.shape[-2:]))


def probability_volume(model: nn.Module, images: np.ndarray, channel_index: list[int], ct_geometry: ImageGeometry,
                       batch_size: int = 32, device="cpu", fit: str = "pad", precision: str = "fp32") -> np.ndarray:
    """3D probability map on the CT grid (z, y, x) from a cached patient's slices (``fit`` as they were cached)."""
    probs = predict_slices(model, images, channel_index, batch_size, device, precision)
    return restore_slices(probs, ct_geometry.shape_zyx[1:], fit).astype(np.float32)


def write_prediction(probabilities: np.ndarray, ct_geometry: ImageGeometry, out_dir: str | os.PathLike, name: str,
                     save_probabilities: bool = False) -> Path:
    """Write ``<name>.nii.gz`` (uint8 mask, ``foreground``) and optionally ``<name>_prob.nii.gz``, on the CT grid."""
    out_dir = Path(out_dir)
    mask = foreground(probabilities).astype(np.uint8)
    path = prediction_file(out_dir, name)
    write_image(image_from_array(mask, ct_geometry), path)
    if save_probabilities:
        write_image(image_from_array(probabilities.astype(np.float32), ct_geometry),
                    prediction_file(out_dir, probability_stem(name)))
    return path


def predict_styles(model: nn.Module, cached, channels: list[str], label: str, styles: list[str], device,
                   precision: str) -> list[tuple[str, np.ndarray]]:
    """(model name, 3D probabilities on the CT grid) of a test patient: one map named ``label``, or one per style
    of a style-conditioned model (named ``conditioned_<style>``)."""
    index = cached.channel_index(channels)
    geometry = cached.geometry
    if not styles:
        return [(label, probability_volume(model, cached.images, index, geometry, device=device, fit=cached.fit,
                                          precision=precision))]
    images = np.asarray(cached.images[:, index])
    return [(conditioned_output(style),
             probability_volume(model, with_style_planes(images, i, len(styles)), list(range(len(index) + len(styles))),
                                geometry, device=device, fit=cached.fit, precision=precision))
            for i, style in enumerate(styles)]
