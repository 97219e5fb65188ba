import os
import warnings

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from studylib.inference.volume import probability_volume, write_prediction
from studylib.ingest.imageio import ImageGeometry
from studylib.training.augmentation import AugmentConfig, augment_batch
from studylib.training.losses import HybridLoss, soft_dice_loss
from studylib.training.models import ModelConfig, UNet, build_model
from studylib.training.trainer import CheckpointError, TrainConfig, load_checkpoint, train_model

os.environ["HF_HUB_OFFLINE"] = "1"


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_unet_shapes(channels):
    model = UNet(channels, (4, 8, 16, 32), 64)
    assert model(torch.zeros(2, channels, 64, 64)).shape == (2, 1, 64, 64)


def test_paper_unet_widths_and_smp_factory():
    paper = build_model(ModelConfig(), 2)
    assert [e[0].out_channels for e in paper.encoders] == [64, 128, 256, 512]
    assert paper.bottleneck[0].out_channels == 1024
    smp_model = build_model(ModelConfig(arch="smp:Unet:resnet18"), 2)
    assert smp_model(torch.zeros(1, 2, 64, 64)).shape == (1, 1, 64, 64)
    with pytest.raises(ValueError):
        build_model(ModelConfig(arch="smp:NoSuchNet:resnet18"), 2)


def test_hybrid_loss_hand_values():
    logits = torch.tensor([[[[0.0, 0.0]]]])  # p = 0.5 everywhere
    target = torch.tensor([[[[1.0, 0.0]]]])
    dice = 1 - (2 * 0.5 + 1) / (1.0 + 1 + 1)
    bce = float(np.log(2))
    assert float(soft_dice_loss(torch.sigmoid(logits), target)) == pytest.approx(dice)
    assert float(HybridLoss(0.5)(logits, target)) == pytest.approx(0.5 * dice + 0.5 * bce, rel=1e-6)
    assert float(HybridLoss(1.0)(logits, target)) == pytest.approx(dice)
    with pytest.raises(ValueError):
        HybridLoss(1.5)


def test_augmentation_keeps_image_and_mask_aligned():
    mask = torch.zeros(6, 1, 48, 48)
    mask[:, :, 10:30, 15:25] = 1
    image = torch.cat([mask, mask * 0.5], dim=1)
    g = torch.Generator().manual_seed(3)
    img_t, mask_t = augment_batch(image, mask, AugmentConfig(), g)
    agree = ((img_t[:, :1] > 0.5) == (mask_t > 0.5)).float().mean()
    assert agree > 0.99
    assert not torch.equal(mask_t, mask)


def _tiny_data(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(4, 2, 32, 32, generator=g) * 0.2
    y = torch.zeros(4, 1, 32, 32)
    for i in range(4):
        y[i, 0, 8 + i:20 + i, 10:22] = 1
    x[:, 1:] += y * 0.8
    return x, y


def test_tiny_model_overfits_four_synthetic_slices(tmp_path, quick_cohort):
    from studylib.ingest.cohort import load_cohort
    from studylib.preprocessing.cache import cache_patient
    from studylib.preprocessing.patient_on_ct import PreprocessConfig

    cached = cache_patient(load_cohort(quick_cohort).patient("P000"), PreprocessConfig(image_size=96, registration="none"),
                           tmp_path / "cache")
    li = cached.label_names.index("label_a")
    lesion = np.flatnonzero(np.asarray(cached.labels[:, li]).reshape(len(cached.labels), -1).sum(1) > 40)
    idx = lesion[np.linspace(0, len(lesion) - 1, 4).astype(int)]
    x = torch.from_numpy(np.asarray(cached.images[idx]).astype(np.float32))
    y = torch.from_numpy(np.asarray(cached.labels[idx][:, [li]]).astype(np.float32))
    cfg = TrainConfig(epochs=250, batch_size=4, lr=3e-3, patience=1000, augment=AugmentConfig(enabled=False))
    torch.manual_seed(0)
    result = train_model(UNet(2, (8, 16, 32, 64), 128), x, y, [(x, y)], cfg, tmp_path / "run", progress=False)
    assert max(r["val_dice"] for r in result.log) > 0.9


def test_resume_equals_uninterrupted(tmp_path):
    x, y = _tiny_data(1)
    cfg = TrainConfig(epochs=4, batch_size=2, lr=1e-3, patience=100)
    torch.manual_seed(0)
    full = train_model(UNet(2, (4, 8, 16, 32), 32), x, y, [(x, y)], cfg, tmp_path / "full", progress=False)
    torch.manual_seed(0)
    train_model(UNet(2, (4, 8, 16, 32), 32), x, y, [(x, y)], cfg, tmp_path / "killed", progress=False, stop_after_epoch=2)
    torch.manual_seed(123)  # a different process would start from other random weights
    resumed = train_model(UNet(2, (4, 8, 16, 32), 32), x, y, [(x, y)], cfg, tmp_path / "killed", progress=False)
    assert [r["val_loss"] for r in full.log] == pytest.approx([r["val_loss"] for r in resumed.log], abs=0)
    a = load_checkpoint(tmp_path / "full" / "last.pt")["model"]
    b = load_checkpoint(tmp_path / "killed" / "last.pt")["model"]
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_tampered_checkpoint_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    path = tmp_path / "evil.pt"
    torch.save({"model": Evil()}, path)
    with pytest.raises(CheckpointError, match="refusing"):
        load_checkpoint(path)
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "junk.pt")


def test_inference_writes_ct_geometry(tmp_path):
    geometry = ImageGeometry((40, 30, 5), (0.9, 0.9, 2.5), (-10.0, 5.0, 100.0))
    images = np.random.default_rng(0).random((5, 2, 32, 32)).astype(np.float16)
    probs = probability_volume(UNet(2, (4, 8, 16, 32), 32), images, [0, 1], geometry)
    assert probs.shape == (5, 30, 40)
    path = write_prediction(probs, geometry, tmp_path, "P1", save_probabilities=True)
    img = sitk.ReadImage(str(path))
    assert img.GetSize() == (40, 30, 5)
    np.testing.assert_allclose(img.GetSpacing(), (0.9, 0.9, 2.5))
    np.testing.assert_allclose(img.GetOrigin(), (-10.0, 5.0, 100.0))
    assert (tmp_path / "P1_prob.nii.gz").exists()


def test_step_budget_sets_epochs():
    cfg = TrainConfig(epochs=20, batch_size=8, steps=100)
    assert cfg.epochs_for(80) == 10 and cfg.epochs_for(160) == 5 and cfg.epochs_for(200) == 4
    assert TrainConfig(epochs=7).epochs_for(1000) == 7


def test_convergence_rule():
    from studylib.training.trainer import convergence

    def lr(i, n):  # the cosine schedule of a 12-epoch run at epoch i
        return 0.005 * 0.5 * (1 + np.cos(np.pi * i / n))

    flat = [{"train_loss": 0.3 + 0.001 * (i % 2), "val_dice": 0.7, "val_loss": 0.4, "lr": lr(i, 12)} for i in range(12)]
    falling = [{"train_loss": 1.0 - 0.06 * i, "val_dice": 0.05 * i, "val_loss": 1.0 - 0.05 * i, "lr": lr(i, 12)}
               for i in range(12)]
    assert convergence(flat, "val_dice")["converged"]
    assert convergence(flat, "val_loss")["converged"]
    result = convergence(falling, "val_dice")
    assert not result["converged"] and "still falling" in result["reason"]
    # stopped by patience is not convergence: flat, but stopped at half its schedule (learning rate not annealed)
    stopped = [{**r, "lr": lr(i, 24)} for i, r in enumerate(flat)]
    result = convergence(stopped, "val_dice", stopped_early=True)
    assert not result["converged"] and result["stopped_by_patience"]
    assert "learning rate still" in result["reason"] and "stopped by patience" in result["reason"]
    assert not convergence(flat[:5], "val_dice")["converged"]


def test_validation_counts_every_slice_of_each_volume():
    from studylib.training.losses import HybridLoss
    from studylib.training.trainer import evaluate_volumes

    class AllPositive(torch.nn.Module):
        def forward(self, x):
            return torch.full((len(x), 1, *x.shape[-2:]), 10.0)

    y = torch.zeros(4, 1, 8, 8)
    y[0, 0, :4, :4] = 1  # one lesion slice, three lesion-free slices
    x = torch.zeros(4, 2, 8, 8)
    _, dice = evaluate_volumes(AllPositive(), [(x, y)], HybridLoss(0.5), 2, torch.device("cpu"), False)
    assert dice == pytest.approx(2 * 16 / (256 + 16))  # the lesion-free slices' false positives count


def test_validation_loss_does_not_depend_on_batching():
    """An empty prediction must not win on lesion-free batches: the loss is taken over the whole volume."""
    from studylib.training.losses import HybridLoss
    from studylib.training.trainer import evaluate_volumes

    class Empty(torch.nn.Module):
        def forward(self, x):
            return torch.full((len(x), 1, *x.shape[-2:]), -10.0)

    y = torch.zeros(8, 1, 8, 8)
    y[0, 0, :4, :4] = 1
    x = torch.zeros(8, 2, 8, 8)
    small, _ = evaluate_volumes(Empty(), [(x, y)], HybridLoss(0.5), 1, torch.device("cpu"), False)
    large, _ = evaluate_volumes(Empty(), [(x, y)], HybridLoss(0.5), 8, torch.device("cpu"), False)
    assert small == pytest.approx(large)
    assert small > 0.45  # the Dice half of the loss is ~1 for an empty prediction of a non-empty volume


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_precision_comes_from_the_profile_not_the_cpu(tmp_path, monkeypatch, precision):
    """The same autocast in training, validation and inference whether or not the CPU has bf16 instructions;
    a CPU without them only adds a recorded (and warned) departure."""
    from studylib.training import trainer as training

    x, y = _tiny_data(2)
    images = x.numpy().astype(np.float16)
    geometry = ImageGeometry((32, 32, 4), (1.0, 1.0, 1.0), (0.0, 0.0, 0.0))
    seen = {}
    for has_bf16 in (True, False):
        monkeypatch.setattr(training, "cpu_has_bf16", lambda has_bf16=has_bf16: has_bf16)
        monkeypatch.setattr(training, "_warned_departures", set())
        model = UNet(2, (4, 8, 16, 32), 32)
        dtypes = []  # the dtype of the first convolution's output: bfloat16 exactly when autocast ran
        model.encoders[0][0].register_forward_hook(lambda module, args, out, dtypes=dtypes: dtypes.append(out.dtype))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            train_model(model, x, y, [(x, y)], TrainConfig(epochs=1, batch_size=4, precision=precision),
                        tmp_path / f"{precision}_{has_bf16}", progress=False)
            probability_volume(model, images, [0, 1], geometry, precision=precision)
        departs = precision == "bf16" and not has_bf16
        assert sum("without avx512_bf16" in str(w.message) for w in caught) == departs  # warned once, not twice
        record = training.numerics_record(torch.device("cpu"), precision)
        assert record["precision"] == precision and (record["precision_departure"] is not None) == departs
        assert record["denormals_flushed"] and set(record["cpu"]) == {"model", "avx512_bf16", "amx_bf16"}
        seen[has_bf16] = set(dtypes)
    assert seen[True] == seen[False] == {torch.bfloat16 if precision == "bf16" else torch.float32}


def test_profiles_state_their_precision():
    from studylib.plans.profiles import load_profile

    assert load_profile("paper").train.precision == "bf16"
    for name in ("quick", "quick_dev", "quick_real", "multirater"):
        assert load_profile(name).train.precision == "fp32", name
    assert "denormal" in load_profile("paper").assumptions["numerics.denormals"]
    with pytest.raises(ValueError, match="train.precision"):
        TrainConfig(precision="fp16")
    with pytest.raises(TypeError):
        TrainConfig(bf16=True)  # the old switch is gone: profiles state a precision


DENORMAL_PROBE = """
import sklearn.metrics  # brings its own libgomp, loaded before torch's: the flush must reach torch's threads
import torch
from studylib.training.trainer import DENORMAL_BITS, configure_cpu_numerics

torch.set_num_threads(4)


def survivors():
    # a ~1e-39 float32 from integer bits, halved in one parallel op over 4 chunks (one per intra-op thread)
    x = torch.full((4 * 65536,), DENORMAL_BITS, dtype=torch.int32).view(torch.float32)
    return ((x * 0.5).view(torch.int32) != 0).view(4, -1).any(1).tolist()


before = survivors()  # starts the OpenMP threads while denormals are still kept: the hard case
flushed = configure_cpu_numerics()  # what train_model and predict_slices call
print(before, survivors(), flushed)
"""


def test_denormals_are_flushed_on_every_intra_op_thread():
    """In a fresh process whose OpenMP threads already run, a denormal halved on any of 4 threads becomes zero."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", DENORMAL_PROBE], capture_output=True, text=True, check=True).stdout
    assert out.split("\n")[0] == "[True, True, True, True] [False, False, False, False] True"
