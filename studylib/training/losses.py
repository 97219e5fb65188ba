"""The paper's hybrid loss: lambda * Dice + (1 - lambda) * BCE (eqs. 1-3), on logits."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def soft_dice_loss(probabilities: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    """1 - (2 sum(p y) + eps) / (sum p + sum y + eps), summed over every pixel of the batch (eq. 1)."""
    p = probabilities.float().reshape(-1)
    y = target.float().reshape(-1)
    return 1 - (2 * (p * y).sum() + eps) / (p.sum() + y.sum() + eps)


class HybridLoss(nn.Module):
    """lambda * Dice + (1 - lambda) * BCE; ``dice_weight`` is lambda (default 0.5)."""

    def __init__(self, dice_weight: float = 0.5, eps: float = 1.0):
        super().__init__()
        if not 0.0 <= dice_weight <= 1.0:
            raise ValueError(f"dice_weight (lambda) must lie in [0, 1], got {dice_weight}")
        self.dice_weight = dice_weight
        self.eps = eps

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Loss of logits (N, 1, H, W) against a binary target of the same shape."""
        logits = logits.float()
        target = target.float()
        bce = F.binary_cross_entropy_with_logits(logits, target)
        dice = soft_dice_loss(torch.sigmoid(logits), target, self.eps)
        return self.dice_weight * dice + (1 - self.dice_weight) * bce


def hybrid_loss_from_sums(intersection: float, prob_sum: float, target_sum: float, bce_sum: float, pixels: int,
                          dice_weight: float = 0.5, eps: float = 1.0) -> float:
    """The hybrid loss of a whole volume from sums accumulated over its slices (eqs. 1-3 over the volume).

    Summing first makes the validation loss independent of how the volume's slices are batched: a batch of
    lesion-free slices must not reward an empty prediction with a Dice loss of 0.
    """
    dice = 1 - (2 * intersection + eps) / (prob_sum + target_sum + eps)
    return dice_weight * dice + (1 - dice_weight) * bce_sum / max(pixels, 1)
