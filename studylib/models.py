"""Segmentation networks: the paper's dual-channel U-Net and segmentation-models-pytorch alternatives."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn


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


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
