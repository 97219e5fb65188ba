"""Batched geometric augmentation on the model's device (section 4.1.2): flips, rotation, small affine."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class AugmentConfig:
    """Augmentation ranges (defaults: the paper's flips and +-15 degrees, plus a small affine)."""

    flip_p: float = 0.5
    rotation_deg: float = 15.0
    scale: float = 0.1
    translation: float = 0.05
    shear_deg: float = 5.0
    enabled: bool = True


def random_affine_matrices(n: int, config: AugmentConfig, generator: torch.Generator, device) -> torch.Tensor:
    """(n, 2, 3) matrices in normalised coordinates combining flips, rotation, scale, shear, translation.

    Drawn on the generator's device (a CUDA generator keeps the draw on the GPU: no host round trip).
    """
    on = generator.device

    def uniform(lo, hi):
        return torch.rand(n, generator=generator, device=on) * (hi - lo) + lo

    flip_x = torch.where(torch.rand(n, generator=generator, device=on) < config.flip_p, -1.0, 1.0)
    flip_y = torch.where(torch.rand(n, generator=generator, device=on) < config.flip_p, -1.0, 1.0)
    angle = uniform(-config.rotation_deg, config.rotation_deg) * math.pi / 180
    scale = uniform(1 - config.scale, 1 + config.scale)
    shear = uniform(-config.shear_deg, config.shear_deg) * math.pi / 180
    tx = uniform(-config.translation, config.translation) * 2
    ty = uniform(-config.translation, config.translation) * 2
    cos, sin = torch.cos(angle), torch.sin(angle)
    rot = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)
    one, zero = torch.ones(n, device=on), torch.zeros(n, device=on)
    shear_m = torch.stack([torch.stack([one, torch.tan(shear)], -1), torch.stack([zero, one], -1)], -2)
    flip = torch.diag_embed(torch.stack([flip_x, flip_y], -1))
    linear = rot @ shear_m @ flip / scale[:, None, None]
    theta = torch.cat([linear, torch.stack([tx, ty], -1)[..., None]], dim=-1)
    return theta.to(device)


def augment_batch(images: torch.Tensor, masks: torch.Tensor, config: AugmentConfig,
                  generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply one random affine per sample to images (bilinear) and masks (nearest), with one grid per batch."""
    if not config.enabled:
        return images, masks
    theta = random_affine_matrices(images.shape[0], config, generator, images.device).to(images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    out_images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out_masks = F.grid_sample(masks.to(images.dtype), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out_images, out_masks
