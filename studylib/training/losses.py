"""The paper's hybrid loss: lambda * Dice + (1 - lambda) * BCE (eqs. 1-3), on logits; and its form for soft targets.

The paper's soft Dice, 1 - (2 sum(p y) + eps) / (sum p + sum y + eps), is minimal at the target only when the target is
binary: for a voxel with target 0.5 it still falls as p rises to 1 (MONAI issue 8094). For soft targets (the readers'
vote fraction) the intersection is written (|p|_1 + |y|_1 - |p - y|_1) / 2 (Wang & Blaschko, JDTLoss; MONAI's
DiceLoss ``soft_label=True``), which equals sum(p y) for a binary y and makes the loss |p - y|_1 / (|p|_1 + |y|_1 + eps):
zero, its minimum, exactly at p = y. BCE with a soft target is minimal at p = y as it stands.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def soft_dice_loss(probabilities: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - (2 sum(p y) + eps) / (sum p + sum y + eps), summed over every pixel of the batch (eq. 1)."""
    p = probabilities.float().reshape(-1)
    y = target.float().reshape(-1)
    return 1 - (2 * (p * y).sum() + eps) / (p.sum() + y.sum() + eps)


def soft_target_dice_loss(probabilities: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """The soft Dice for soft targets: intersection (|p| + |y| - |p - y|) / 2, so the loss is
    |p - y|_1 / (|p|_1 + |y|_1 + eps), minimal (0) at p = y; equal to ``soft_dice_loss`` for a binary target."""
    p = probabilities.float().reshape(-1)
    y = target.float().reshape(-1)
    intersection = (p.sum() + y.sum() - (p - y).abs().sum()) / 2
    return 1 - (2 * intersection + eps) / (p.sum() + y.sum() + eps)


def soft_target_intersection(prob_sum: float, target_sum: float, abs_difference_sum: float) -> float:
    """The soft-target intersection from sums over a volume: (sum p + sum y - sum |p - y|) / 2."""
    return (prob_sum + target_sum - abs_difference_sum) / 2


class HybridLoss(nn.Module):
    """lambda * Dice + (1 - lambda) * BCE; ``dice_weight`` is lambda (default 0.5); ``soft_target`` takes the Dice
    that is minimal at a soft target (``soft_target_dice_loss``) in place of the paper's."""

    def __init__(self, dice_weight: float = 0.5, eps: float = 1.0, soft_target: bool = False):
        super().__init__()
        if not 0.0 <= dice_weight <= 1.0:
            raise ValueError(f"dice_weight (lambda) must lie in [0, 1], got {dice_weight}")
        self.dice_weight = dice_weight
        self.eps = eps
        self.soft_target = soft_target

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of logits (N, 1, H, W) against a binary target of the same shape."""
        logits = logits.float()
        target = target.float()
        bce = F.binary_cross_entropy_with_logits(logits, target)
        dice = (soft_target_dice_loss if self.soft_target else soft_dice_loss)(torch.sigmoid(logits), target, self.eps)
        return self.dice_weight * dice + (1 - self.dice_weight) * bce


def hybrid_loss_from_sums(intersection: float, prob_sum: float, target_sum: float, bce_sum: float, pixels: int,
                          dice_weight: float = 0.5, eps: float = 1.0) -> float:
    """The hybrid loss of a whole volume from sums accumulated over its slices (eqs. 1-3 over the volume).

    Summing first makes the validation loss independent of how the volume's slices are batched: a batch of
    lesion-free slices must not reward an empty prediction with a Dice loss of 0.
    """
    dice = 1 - (2 * intersection + eps) / (prob_sum + target_sum + eps)
    return dice_weight * dice + (1 - dice_weight) * bce_sum / max(pixels, 1)
