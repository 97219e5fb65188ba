"""CPU speed of the quick profile's training step and validation, with and without flushing denormals, fp32 and bf16.

Prints, as Markdown tables with before/after ratios (before: denormals kept, as before `configure_cpu_numerics`;
after: flushed to zero):

- the trainer's step (`training.train_epoch`: augmentation, forward, hybrid loss, backward, Adam) of the quick
  profile's U-Net (112 px, widths 8-64, bottleneck 128, batch 8, dual input, one thread, channels-last), in fp32 and
  with bf16 autocast, for fresh weights and for weights that make the network compute on denormals;
- validation of one epoch (`training.evaluate_volumes` over one whole quick-sized volume of 120 slices, fp32).

Weights with denormals: a checkpoint of a quick-profile run (`--checkpoint results/quick/runs/<run>/best.pt`), or,
without one, a stand-in: fresh weights whose BatchNorm scales and shifts are multiplied by 1e-20, the way decayed
channels shrink, so that about a sixth of the activations and of their gradients are denormal (the fractions
measured for the weights used are printed). Adam runs with lr = 0 so every timed step sees the same weights.
Timings are the minimum over rounds that alternate the variants (a shared machine adds noise, never removes
work); the median is printed beside it. About a minute on one core (50 s on an AMD EPYC).

Usage: python benchmarks/cpu_speed.py [--checkpoint PATH] [--rounds 10] [--steps 3] [--slices 120]
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time

import torch

from studylib.plans.profiles import load_profile
from studylib.training.losses import HybridLoss
from studylib.training.models import build_model
from studylib.training.trainer import (
    cpu_features,
    denormals_flushed,
    evaluate_volumes,
    load_checkpoint,
    train_epoch,
)

TINY = torch.finfo(torch.float32).tiny  # the smallest normal float32: nonzero values below it are denormal


def quick_data(n: int, size: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Random fp16 images in [0, 1] and uint8 masks with one square lesion per slice (the cache's dtypes)."""
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(n, 2, size, size, generator=g).half()
    masks = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    masks[:, :, size // 3:size // 2, size // 3:size // 2] = 1
    return images, masks


def denormal_standin(model: torch.nn.Module) -> torch.nn.Module:
    """A copy whose BatchNorm scales and shifts are multiplied by 1e-20: many activations and gradients denormal."""
    model = copy.deepcopy(model)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight.mul_(1e-20)
                module.bias.mul_(1e-20)
    return model


def denormal_fractions(model: torch.nn.Module, images: torch.Tensor, masks: torch.Tensor) -> tuple[float, float]:
    """(fraction of layer outputs, fraction of their gradients) that are denormal in one fp32 training step."""
    model = copy.deepcopy(model).train()
    counts = {"out": [0, 0], "grad": [0, 0]}

    def tally(kind: str, t: torch.Tensor) -> None:
        a = t.detach().abs()
        counts[kind][0] += int(((a > 0) & (a < TINY)).sum())
        counts[kind][1] += a.numel()

    def hook(module, args, out):
        tally("out", out)
        if out.requires_grad:
            out.register_hook(lambda grad: tally("grad", grad))

    layers = (torch.nn.Conv2d, torch.nn.ConvTranspose2d, torch.nn.BatchNorm2d)
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, layers)]
    flushed = denormals_flushed()
    torch.set_flush_denormal(False)  # count what the network produces when nothing is flushed
    HybridLoss(0.5)(model(images[:8].float()), masks[:8].float()).backward()
    torch.set_flush_denormal(flushed)
    for h in handles:
        h.remove()
    return counts["out"][0] / max(counts["out"][1], 1), counts["grad"][0] / max(counts["grad"][1], 1)


def set_flush(flush: bool) -> None:
    """Flush denormals (or keep them) on this thread, and check that it took (one thread: no intra-op pool)."""
    torch.set_flush_denormal(flush)
    if denormals_flushed() != flush:
        raise RuntimeError(f"could not {'flush' if flush else 'keep'} denormals on this CPU")


def time_variants(variants: dict, rounds: int) -> dict:
    """Seconds of each variant per round, the variants alternating within each round (after one warm-up call)."""
    for run in variants.values():
        run()
    times = {name: [] for name in variants}
    for _ in range(rounds):
        for name, run in variants.items():
            start = time.perf_counter()
            run()
            times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", help="a quick-profile run's best.pt or last.pt (weights after training)")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--steps", type=int, default=3, help="training steps per timed call")
    parser.add_argument("--slices", type=int, default=120, help="slices of the validation volume")
    args = parser.parse_args()
    torch.set_num_threads(1)
    profile = load_profile("quick")
    size = profile.preprocess.image_size
    torch.manual_seed(0)
    fresh = build_model(profile.model, 2)
    if args.checkpoint:
        state = load_checkpoint(args.checkpoint)["model"]
        late = build_model(profile.model, state["encoders.0.0.weight"].shape[1])
        late.load_state_dict(state)
        late_name = f"checkpoint {args.checkpoint}"
    else:
        late, late_name = denormal_standin(fresh), "denormal stand-in (BatchNorm x 1e-20)"
    if late.encoders[0][0].in_channels != 2:
        raise SystemExit("the benchmark feeds dual (CT + PET) slices: give a dual-input checkpoint")
    train_images, train_masks = quick_data(64, size)
    val_volume = quick_data(args.slices, size, seed=1)
    weights = {"fresh": fresh, "late": late}
    fractions = {name: denormal_fractions(model, train_images, train_masks) for name, model in weights.items()}

    config = copy.deepcopy(profile.train)
    config.lr = 0.0  # every timed step sees the same weights (Adam does the same work)
    loss_fn = HybridLoss(config.dice_weight)
    device = torch.device("cpu")

    def train_steps(model: torch.nn.Module, optimizer, precision: str, flush: bool, seed: list[int]):
        def run() -> None:
            set_flush(flush)
            model.train()
            seed[0] += 1
            generator = torch.Generator().manual_seed(seed[0])
            batches = [torch.randperm(len(train_images), generator=generator)[:config.batch_size]
                       for _ in range(args.steps)]
            train_epoch(model, optimizer, loss_fn, train_images, train_masks, batches, config, device,
                        precision == "bf16", generator, False)
        return run

    def validate(model: torch.nn.Module, flush: bool):
        def run() -> None:
            set_flush(flush)
            evaluate_volumes(model, [val_volume], loss_fn, config.batch_size, device, False)
        return run

    step_variants, val_variants = {}, {}
    for name, base in weights.items():
        for precision in ("fp32", "bf16"):
            model = copy.deepcopy(base).to(memory_format=torch.channels_last)
            optimizer = torch.optim.Adam(model.parameters(), lr=0.0, betas=tuple(config.betas),
                                         weight_decay=config.weight_decay)
            for flush in (False, True):
                step_variants[(name, precision, flush)] = train_steps(model, optimizer, precision, flush, [0])
        model = copy.deepcopy(base).to(memory_format=torch.channels_last)
        for flush in (False, True):
            val_variants[(name, flush)] = validate(model, flush)
    started = time.perf_counter()
    step_times = time_variants(step_variants, args.rounds)
    val_times = time_variants(val_variants, args.rounds)
    seconds = time.perf_counter() - started

    cpu = cpu_features()
    print(f"CPU: {cpu['model']} (avx512_bf16: {cpu['avx512_bf16']}, amx_bf16: {cpu['amx_bf16']}); torch "
          f"{torch.__version__}; one thread; Python {platform.python_version()}")
    print(f"late weights: {late_name}")
    for name, (out, grad) in fractions.items():
        print(f"denormal share, {name} weights (fp32, nothing flushed): {100 * out:.1f} % of layer outputs, "
              f"{100 * grad:.1f} % of their gradients")
    print(f"\nTraining step (ms; min over {args.rounds} rounds of {args.steps} steps, median in brackets); "
          "before: denormals kept, after: flushed\n")
    print("| weights | precision | before: kept | after: flushed | before/after | x fp32 (flushed) |")
    print("|---|---|---|---|---|---|")

    def ms(times: list[float], per: int) -> tuple[float, float]:
        return 1000 * min(times) / per, 1000 * statistics.median(times) / per

    for name in weights:
        for precision in ("fp32", "bf16"):
            kept = ms(step_times[(name, precision, False)], args.steps)
            flushed = ms(step_times[(name, precision, True)], args.steps)
            fp32 = ms(step_times[(name, "fp32", True)], args.steps)
            print(f"| {name} | {precision} | {kept[0]:.1f} ({kept[1]:.1f}) | {flushed[0]:.1f} ({flushed[1]:.1f}) | "
                  f"{kept[0] / flushed[0]:.2f} | {fp32[0] / flushed[0]:.2f} |")
    print(f"\nValidation per epoch: one volume of {args.slices} slices, fp32 (s; min over {args.rounds} rounds, "
          "median in brackets)\n")
    print("| weights | before: kept | after: flushed | before/after |")
    print("|---|---|---|---|")
    for name in weights:
        kept, flushed = val_times[(name, False)], val_times[(name, True)]
        print(f"| {name} | {min(kept):.2f} ({statistics.median(kept):.2f}) | {min(flushed):.2f} "
              f"({statistics.median(flushed):.2f}) | {min(kept) / min(flushed):.2f} |")
    print(f"\n({seconds:.0f} s of timed work)")
    torch.set_flush_denormal(True)


if __name__ == "__main__":
    main()
