"""The vote-fraction target: a Dice minimal at a soft target (not at its rounding), the soft target in the cache."""

import numpy as np
import pytest
import torch

from studylib.training.losses import HybridLoss, soft_dice_loss, soft_target_dice_loss


def _soft_target(seed: int, shape=(2, 1, 8, 8), readers: int = 3) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.integers(0, readers + 1, shape) / readers).float()


@pytest.mark.parametrize("seed", range(10))
def test_soft_target_dice_is_minimal_at_the_soft_target(seed):
    y = _soft_target(seed)
    p = y.clone().requires_grad_(True)
    loss = soft_target_dice_loss(p, y)
    loss.backward()
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-7)
    assert float(p.grad.abs().max()) == 0.0  # stationary at p = y
    rng = np.random.default_rng(seed + 100)
    for _ in range(20):  # every nearby prediction scores worse
        q = (y + torch.from_numpy(rng.normal(0, 0.05, y.shape)).float()).clamp(0, 1)
        assert float(soft_target_dice_loss(q, y)) > float(loss.detach())
    # the paper's Dice is not minimal there: rounding the soft voxels up lowers it (MONAI issue 8094)
    rounded_up = torch.where(y > 0, torch.ones_like(y), y)
    assert float(soft_dice_loss(rounded_up, y)) < float(soft_dice_loss(y, y))
    assert float(soft_target_dice_loss(rounded_up, y)) > float(loss.detach())


def test_soft_target_dice_equals_the_papers_for_binary_targets():
    rng = np.random.default_rng(0)
    y = torch.from_numpy(rng.random((3, 1, 6, 6)) < 0.3).float()
    p = torch.from_numpy(rng.random((3, 1, 6, 6))).float()
    assert float(soft_target_dice_loss(p, y)) == pytest.approx(float(soft_dice_loss(p, y)), abs=1e-6)
    # by hand: |p - y| / (|p| + |y| + eps)
    expected = float((p - y).abs().sum() / (p.sum() + y.sum() + 1.0))
    assert float(soft_target_dice_loss(p, y)) == pytest.approx(expected, abs=1e-6)


def test_hybrid_loss_for_soft_targets_is_minimal_at_the_targets_logits():
    y = _soft_target(1).clamp(0.05, 0.95)  # finite logits
    at_target = torch.logit(y)
    soft, paper = HybridLoss(0.5, soft_target=True), HybridLoss(0.5)
    rng = np.random.default_rng(2)
    for _ in range(20):
        moved = at_target + torch.from_numpy(rng.normal(0, 0.3, y.shape)).float()
        assert float(soft(moved, y)) > float(soft(at_target, y))
    # the paper's form prefers pushing the soft voxels' logits up
    pushed = torch.where((y > 0.05) & (y < 0.95), at_target + 0.05, at_target)
    assert float(paper(pushed, y)) < float(paper(at_target, y))
    assert float(soft(pushed, y)) > float(soft(at_target, y))


def test_vote_fraction_is_cached_exactly_and_read_back_as_a_soft_target(tmp_path, quick_cohort):
    from studylib.ingest.cohort import load_cohort
    from studylib.preprocessing.cache import cache_patient, load_cached, load_native
    from studylib.preprocessing.patient_on_ct import PreprocessConfig
    from studylib.training.data import stack_slices

    record = load_cohort(quick_cohort).patient("P000")
    config = PreprocessConfig(image_size=32, registration="none")
    cache_patient(record, config, tmp_path, derived=["union", "vote_fraction"], reader_labels=["label_a", "label_b"])
    cached = load_cached(tmp_path, "P000")
    assert cached.label_divisor("vote_fraction") == 2 and cached.label_divisor("union") == 1
    slices = [("P000", list(range(len(cached.images))))]
    _, fraction = stack_slices(tmp_path, slices, ["ct", "pet"], "vote_fraction")
    _, a = stack_slices(tmp_path, slices, ["ct", "pet"], "label_a")
    _, b = stack_slices(tmp_path, slices, ["ct", "pet"], "label_b")
    assert fraction.dtype == torch.float32 and a.dtype == torch.uint8
    assert torch.equal(fraction, (a.float() + b.float()) / 2) and float(fraction.max()) == 1.0
    assert set(torch.unique(fraction).tolist()) <= {0.0, 0.5, 1.0} and (fraction == 0.5).any()
    labels, _ = load_native(tmp_path, "P000")
    assert "vote_fraction" not in labels and "union" in labels  # never scored as a ground truth
