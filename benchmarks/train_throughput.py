"""Training throughput: our trainer vs a naive loop (fp32, per-sample CPU augmentation via a DataLoader).

Prints images/s for both, their ratio, and on CUDA the achieved TFLOP/s and the fraction of the GPU's bf16 peak.
Usage: python benchmarks/train_throughput.py [--steps 30] [--size 224] [--widths 64,128,256,512] [--batch 8]
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from studylib.losses import HybridLoss
from studylib.models import UNet
from studylib.training import TrainConfig, train_model

BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "RTX 3090": 71.0}


class PerSampleAugmented(Dataset):
    """The naive reference: one sample at a time, augmented on the CPU in Python."""

    def __init__(self, images, masks):
        self.images, self.masks = images, masks

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        x, y = self.images[i:i + 1].float(), self.masks[i:i + 1].float()
        if torch.rand(1) < 0.5:
            x, y = x.flip(-1), y.flip(-1)
        if torch.rand(1) < 0.5:
            x, y = x.flip(-2), y.flip(-2)
        angle = (torch.rand(1).item() * 30 - 15) * math.pi / 180
        theta = torch.tensor([[[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0.0]]])
        grid = F.affine_grid(theta, list(x.shape), align_corners=False)
        return (F.grid_sample(x, grid, align_corners=False)[0],
                F.grid_sample(y, grid, mode="nearest", align_corners=False)[0])


def naive_images_per_s(model, images, masks, steps, batch, device) -> float:
    """fp32, DataLoader with per-sample CPU augmentation."""
    loader = DataLoader(PerSampleAugmented(images, masks), batch_size=batch, shuffle=True, num_workers=0)
    opt = torch.optim.Adam(model.parameters(), 1e-4)
    loss_fn = HybridLoss()
    model.to(device).train()
    done, start = 0, None
    while done < steps + 3:
        for x, y in loader:
            if done == 3:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                start = time.perf_counter()
            x, y = x.to(device), y.to(device)
            loss = loss_fn(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done >= steps + 3:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


def flops_per_image(model, size, channels) -> float:
    """Training FLOPs per image (forward + backward) counted with torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, channels, size, size)
    counter = FlopCounterMode(display=False)
    with counter:
        model.cpu()(x).sum().backward()
    return float(counter.get_total_flops())


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--widths", default="64,128,256,512")
    args = parser.parse_args()
    widths = tuple(int(w) for w in args.widths.split(","))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    n = args.steps * args.batch
    g = torch.Generator().manual_seed(0)
    images = torch.rand(n, 2, args.size, args.size, generator=g).half()
    masks = (torch.rand(n, 1, args.size, args.size, generator=g) > 0.95).to(torch.uint8)
    cfg = TrainConfig(epochs=1, batch_size=args.batch, patience=10)
    torch.manual_seed(0)
    model = UNet(2, widths, 2 * widths[-1])
    # warm-up epoch (cudnn autotuning, allocator), then the timed one
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        train_model(model, images, masks, [(images[:args.batch], masks[:args.batch])], cfg, tmp, progress=False)
    with tempfile.TemporaryDirectory() as tmp:
        cfg.epochs = 1
        result = train_model(UNet(2, widths, 2 * widths[-1]), images, masks, [(images[:args.batch], masks[:args.batch])],
                             cfg, tmp, progress=False)
    ours = result.log[-1]["images_per_s"]
    naive = naive_images_per_s(UNet(2, widths, 2 * widths[-1]), images, masks, args.steps, args.batch, device)
    print(f"device: {torch.cuda.get_device_name(0) if device.type == 'cuda' else 'cpu'}; model widths {widths}, "
          f"input {args.size}x{args.size}, batch {args.batch}")
    print(f"ours:  {ours:.1f} images/s")
    print(f"naive: {naive:.1f} images/s")
    print(f"ratio: {ours / naive:.2f}x")
    flops = flops_per_image(UNet(2, widths, 2 * widths[-1]), args.size, 2)
    print(f"training GFLOP per image: {flops / 1e9:.2f}; achieved {ours * flops / 1e12:.3f} TFLOP/s")
    if device.type == "cuda":
        name = torch.cuda.get_device_name(0)
        peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None)
        if peak:
            print(f"fraction of bf16 dense peak ({peak:.0f} TFLOP/s): {ours * flops / 1e12 / peak:.3f}")


if __name__ == "__main__":
    main()
