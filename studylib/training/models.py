"""Segmentation networks: the paper's dual-channel U-Net and segmentation-models-pytorch alternatives."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..preprocessing.targets import VOTE_FRACTION

# A voxel is foreground when the model's probability is at least this: the one threshold of every predicted mask
# (validation Dice during training, the masks written as NIfTI or DICOM SEG, the masks scored).
MASK_THRESHOLD = 0.5
CONDITIONED = "conditioned"  # the training label of one model trained on every reader's labels, told which style


def conditioned_output(style: str) -> str:
    """The name of a conditioned model's output for one reader style: ``conditioned_<style>``."""
    return f"{CONDITIONED}_{style}"


def is_conditioned_output(model: str) -> bool:
    """True for the name of a conditioned model's output (``conditioned_<style>``)."""
    return model.startswith(f"{CONDITIONED}_")


# Readers from which a study's models of reader styles keep their probability maps (calibration against the readers'
# vote fraction reads them; a two-reader study's vote fraction is 0, 1/2 or 1 and is not analysed).
MIN_READERS_FOR_PROBABILITIES = 3


def keeps_probabilities(label: str, readers: list[str]) -> bool:
    """Whether a run trained on ``label`` writes its probability maps beside its masks: a model of a reader's style,
    the conditioned model or the vote-fraction model, in a study of at least ``MIN_READERS_FOR_PROBABILITIES``
    readers."""
    return len(readers) >= MIN_READERS_FOR_PROBABILITIES and (label in readers or label in (CONDITIONED, VOTE_FRACTION))


def own_ground_truth(model: str) -> str:
    """The label a model is meant to reproduce: its training label, or the style of a conditioned model's output."""
    return model.removeprefix(f"{CONDITIONED}_")


class DoubleConv(nn.Sequential):
    """Two 3x3 convolutions, each followed by BatchNorm and ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True),
        )


class UNet(nn.Module):
    """Vanilla 2D U-Net (paper section 4.3): 4 encoder blocks + 2x2 max-pool, bottleneck, transposed-conv decoder.

    Returns logits; the sigmoid is applied in the loss and at inference (numerically stabler).
    """

    def __init__(self, in_channels: int = 2, widths: tuple[int, ...] = (64, 128, 256, 512), bottleneck: int | None = None,
                 out_channels: int = 1):
        super().__init__()
        bottleneck = bottleneck or 2 * widths[-1]
        self.encoders = nn.ModuleList()
        channels = in_channels
        for w in widths:
            self.encoders.append(DoubleConv(channels, w))
            channels = w
        self.pool = nn.MaxPool2d(2)
        self.bottleneck = DoubleConv(channels, bottleneck)
        self.upsamplers = nn.ModuleList()
        self.decoders = nn.ModuleList()
        channels = bottleneck
        for w in reversed(widths):
            self.upsamplers.append(nn.ConvTranspose2d(channels, w, 2, stride=2))
            self.decoders.append(DoubleConv(2 * w, w))
            channels = w
        self.head = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of shape (N, 1, H, W); H and W must be divisible by 2**len(widths)."""
        skips = []
        for encoder in self.encoders:
            x = encoder(x)
            skips.append(x)
            x = self.pool(x)
        x = self.bottleneck(x)
        for up, decoder, skip in zip(self.upsamplers, self.decoders, reversed(skips)):
            x = decoder(torch.cat([up(x), skip], dim=1))
        return self.head(x)


@dataclass
class ModelConfig:
    """Which network to build: ``unet`` (ours) or ``smp:<Architecture>:<encoder>`` (segmentation-models-pytorch)."""

    arch: str = "unet"
    widths: list[int] = field(default_factory=lambda: [64, 128, 256, 512])
    bottleneck: int = 1024
    encoder_weights: str | None = None


def build_model(config: ModelConfig, in_channels: int) -> nn.Module:
    """The model factory: one place that turns a configuration into a network."""
    if config.arch == "unet":
        return UNet(in_channels, tuple(config.widths), config.bottleneck)
    if config.arch.startswith("smp:"):
        import segmentation_models_pytorch as smp

        try:
            _, architecture, encoder = config.arch.split(":")
        except ValueError as err:
            raise ValueError(f"smp models are named 'smp:<Architecture>:<encoder>', got '{config.arch}'") from err
        if not hasattr(smp, architecture):
            raise ValueError(f"segmentation-models-pytorch has no architecture '{architecture}'")
        # encoder_weights=None by default: no download on machines without internet
        return getattr(smp, architecture)(encoder_name=encoder, encoder_weights=config.encoder_weights,
                                          in_channels=in_channels, classes=1)
    raise ValueError(f"unknown model '{config.arch}' (use 'unet' or 'smp:Unet:resnet34' etc.)")


class StyleConditioned(nn.Module):
    """A network told which reader's style to produce: one-hot style planes appended to the image channels.

    The input carries ``styles`` extra channels (``with_style_planes``); the style is read back as the extra
    channel with the largest mean and re-expanded into exact one-hot planes, so geometric augmentation, which
    warps every channel, cannot blur it.
    """

    def __init__(self, base: nn.Module, image_channels: int, styles: int):
        super().__init__()
        if styles < 2:
            raise ValueError(f"a style-conditioned model needs at least two styles, got {styles}")
        self.base, self.image_channels, self.styles = base, image_channels, styles

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        image, code = x[:, :self.image_channels], x[:, self.image_channels:]
        style = code.float().flatten(2).mean(-1).argmax(1)
        planes = F.one_hot(style, self.styles).to(image.dtype)[:, :, None, None].expand(-1, -1, *image.shape[-2:])
        return self.base(torch.cat([image, planes], dim=1))


def with_style_planes(images: np.ndarray, style: int, styles: int) -> np.ndarray:
    """Images (n, C, S, S) with ``styles`` constant planes appended, plane ``style`` set to 1 (the style input)."""
    planes = np.zeros((len(images), styles, *images.shape[-2:]), images.dtype)
    planes[:, style] = 1
    return np.concatenate([images, planes], axis=1)


def build_run_model(config: ModelConfig, in_channels: int, styles: int = 0) -> nn.Module:
    """The network of one run: ``build_model``, wrapped in ``StyleConditioned`` when it learns ``styles`` styles."""
    if not styles:
        return build_model(config, in_channels)
    return StyleConditioned(build_model(config, in_channels + styles), in_channels, styles)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
