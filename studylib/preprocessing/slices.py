"""Axial slices to the network's square input size and back (the inverse restores probabilities to the CT grid)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def square_padding(height: int, width: int) -> tuple[int, int, int, int]:
    """(top, bottom, left, right) zero padding that makes a height x width slice square, centred."""
    side = max(height, width)
    top, left = (side - height) // 2, (side - width) // 2
    return top, side - height - top, left, side - width - left


def resize_slices(volume: np.ndarray, size: int, is_mask: bool = False, fit: str = "pad") -> np.ndarray:
    """Resize axial slices (z, [C,] H, W) to size x size: bilinear (antialiased) images, nearest masks.

    ``fit="pad"`` first pads a non-square slice to a square with zeros (the normalised background), so
    anatomy keeps its aspect ratio; ``"stretch"`` resizes each axis on its own.
    """
    squeeze = volume.ndim == 3
    tensor = torch.from_numpy(np.ascontiguousarray(volume[:, None] if squeeze else volume)).float()
    if fit == "pad" and tensor.shape[-2] != tensor.shape[-1]:
        top, bottom, left, right = square_padding(*tensor.shape[-2:])
        tensor = F.pad(tensor, (left, right, top, bottom))
    elif fit not in ("pad", "stretch"):
        raise ValueError(f"preprocess.fit must be 'pad' or 'stretch', got {fit!r}")
    if tuple(tensor.shape[-2:]) == (size, size):
        out = tensor
    elif is_mask:
        out = F.interpolate(tensor, size=(size, size), mode="nearest-exact")
    else:
        antialias = size < tensor.shape[-1]
        out = F.interpolate(tensor, size=(size, size), mode="bilinear", align_corners=False, antialias=antialias)
    out = out[:, 0] if squeeze else out
    return out.numpy().astype(np.uint8 if is_mask else np.float32)


def restore_slices(probabilities: torch.Tensor | np.ndarray, shape_hw: tuple[int, int], fit: str = "pad") -> np.ndarray:
    """Map (z, S, S) probabilities back to the CT slice size (z, H, W): the inverse of ``resize_slices``."""
    tensor = torch.as_tensor(probabilities).float()[:, None]
    height, width = shape_hw
    if fit == "pad" and height != width:
        top, _, left, _ = square_padding(height, width)
        side = max(height, width)
        if tuple(tensor.shape[-2:]) != (side, side):
            tensor = F.interpolate(tensor, size=(side, side), mode="bilinear", align_corners=False)
        return tensor[:, 0, top:top + height, left:left + width].numpy()
    if tuple(tensor.shape[-2:]) != tuple(shape_hw):
        tensor = F.interpolate(tensor, size=tuple(shape_hw), mode="bilinear", align_corners=False)
    return tensor[:, 0].numpy()
