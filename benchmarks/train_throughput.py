"""Training throughput, side by side in one run: the committed trainer, a naive loop, and N trainers sharing the device.

Prints images/s for each, the ratios between them, their ratios to the H100 targets of issue 14 (one run
>= 900 images/s; N concurrent runs >= 1,700 images/s in total, paper U-Net, 224x224, batch 8) and, on CUDA, the
fraction of the GPU's dense bf16 peak. Targets are H100 figures: on any other device the ratios are printed for
orientation only.

The committed trainer is timed on its own epochs after a warm-up epoch (CUDA-graph capture, cuDNN autotuning);
each of the N concurrent trainers does the same in its own process, all start their timed epochs together (a
barrier), and the total is the sum of their rates (the time window over which they overlapped is printed).

Usage: python benchmarks/train_throughput.py [--steps 40] [--epochs 3] [--size 224] [--widths 64,128,256,512]
       [--batch 8] [--concurrent 4] [--skip-naive]
On a 2-core CPU, a quick sanity run: --size 112 --widths 8,16,32,64 --steps 10 --concurrent 2
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import tempfile
import time

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from studylib.plans.profiles import load_profile
from studylib.training.losses import HybridLoss
from studylib.training.models import UNet
from studylib.training.trainer import TrainConfig, train_model

BF16_PEAK_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0, "L4": 121.0, "RTX 3090": 71.0}
TARGET_ONE_RUN = 900.0  # images/s, H100, paper U-Net, batch 8 (issue 14)
TARGET_CONCURRENT = 1700.0  # images/s in total over N runs sharing one H100


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


def synthetic_batch_data(steps: int, batch: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random fp16 images and sparse uint8 masks, ``steps`` batches' worth (the cache's dtypes)."""
    g = torch.Generator().manual_seed(seed)
    n = steps * batch
    images = torch.rand(n, 2, size, size, generator=g).half()
    masks = (torch.rand(n, 1, size, size, generator=g) > 0.95).to(torch.uint8)
    return images, masks


def naive_images_per_s(model, images, masks, steps, batch, device) -> float:
    """fp32, DataLoader with per-sample CPU augmentation, a host sync per step (``loss.item()``)."""
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
            loss.item()
            done += 1
            if done >= steps + 3:
                break
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - start)


PRECISION = load_profile("paper").train.precision  # the trainer as the paper profile runs it (bf16)


def trainer_rates(widths: tuple[int, ...], steps: int, batch: int, size: int, epochs: int, threads: int | None,
                  barrier=None) -> dict:
    """The committed trainer (its defaults for the device): images/s of each timed epoch, and the timed window.

    A one-epoch warm-up on the same model object comes first (CUDA-graph capture, cuDNN autotuning), then, after
    every concurrent trainer has warmed up (``barrier``), ``epochs`` timed epochs of a fresh run.
    """
    if threads:
        torch.set_num_threads(threads)
    images, masks = synthetic_batch_data(steps, batch, size)
    val = [(images[:batch], masks[:batch])]
    torch.manual_seed(0)
    model = UNet(2, widths, 2 * widths[-1])
    with tempfile.TemporaryDirectory() as tmp:
        train_model(model, images, masks, val, TrainConfig(epochs=1, batch_size=batch, threads=threads,
                                                           precision=PRECISION), tmp, progress=False)
    if barrier is not None:
        barrier.wait()
    began = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        result = train_model(model, images, masks, val, TrainConfig(epochs=epochs, batch_size=batch, patience=10 ** 6,
                                                                    threads=threads, precision=PRECISION), tmp,
                             progress=False)
    return {"rates": [r["images_per_s"] for r in result.log], "window": (began, time.time())}


def _concurrent_worker(args) -> dict:
    return trainer_rates(*args)


def concurrent_rates(n: int, widths, steps, batch, size, epochs, threads) -> list[dict]:
    """``n`` committed trainers in ``n`` processes on the same device, timed together after their warm-ups."""
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, context.Pool(n) as pool:
        barrier = manager.Barrier(n)
        return pool.map(_concurrent_worker, [(widths, steps, batch, size, epochs, threads, barrier)] * n)


def flops_per_image(model, size, channels) -> float:
    """Training FLOPs per image (forward + backward) counted with torch.utils.flop_counter."""
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, channels, size, size)
    counter = FlopCounterMode(display=False)
    with counter:
        model.cpu()(x).sum().backward()
    return float(counter.get_total_flops())


def median(values: list[float]) -> float:
    """Median of a short list."""
    return float(torch.tensor(values).median())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="optimiser steps per epoch")
    parser.add_argument("--epochs", type=int, default=2, help="timed epochs per trainer (after one warm-up epoch)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--widths", default="64,128,256,512")
    parser.add_argument("--concurrent", type=int, default=4, help="trainers sharing the device (0: skip)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads per trainer (default: torch's)")
    parser.add_argument("--skip-naive", action="store_true")
    args = parser.parse_args()
    widths = tuple(int(w) for w in args.widths.split(","))
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else \
        f"cpu ({args.threads or torch.get_num_threads()} threads per trainer)"
    flops = flops_per_image(UNet(2, widths, 2 * widths[-1]), args.size, 2)
    peak = next((v for k, v in BF16_PEAK_TFLOPS.items() if k in name), None) if device.type == "cuda" else None
    is_h100 = "H100" in name

    one = trainer_rates(widths, args.steps, args.batch, args.size, args.epochs, args.threads)
    ours = median(one["rates"])
    naive = None
    if not args.skip_naive:
        images, masks = synthetic_batch_data(args.steps, args.batch, args.size)
        naive = naive_images_per_s(UNet(2, widths, 2 * widths[-1]), images, masks, args.steps, args.batch, device)
    shared = concurrent_rates(args.concurrent, widths, args.steps, args.batch, args.size, args.epochs, args.threads) \
        if args.concurrent > 0 else []

    print(f"device: {name}; model widths {widths}, input {args.size}x{args.size}, batch {args.batch}; "
          f"training GFLOP per image {flops / 1e9:.2f}")
    print("| variant | images/s | x naive | x target | TFLOP/s | fraction of bf16 peak |")
    print("|---|---|---|---|---|---|")

    def row(label: str, rate: float, target: float | None) -> None:
        vs_naive = f"{rate / naive:.2f}" if naive else "-"
        vs_target = f"{rate / target:.2f}" + ("" if is_h100 else " (H100 target)") if target else "-"
        frac = f"{rate * flops / 1e12 / peak:.3f}" if peak else "-"
        print(f"| {label} | {rate:.1f} | {vs_naive} | {vs_target} | {rate * flops / 1e12:.2f} | {frac} |")

    if naive:
        row("naive loop (fp32, per-sample CPU augmentation, host sync per step)", naive, None)
    row("committed trainer, one run", ours, TARGET_ONE_RUN)
    if shared:
        per_run = [median(r["rates"]) for r in shared]
        row(f"committed trainer, each of {len(shared)} concurrent runs (median)", median(per_run), None)
        row(f"committed trainer, {len(shared)} concurrent runs in total", sum(per_run), TARGET_CONCURRENT)
        overlap = min(r["window"][1] for r in shared) - max(r["window"][0] for r in shared)
        print(f"\nconcurrent runs' timed epochs overlapped for {max(overlap, 0):.1f} s "
              f"(the total is meaningful when this is most of each run's timed span)")


if __name__ == "__main__":
    main()
