"""The nnU-Net v2 baseline on CPU with a tiny budget: export, plan, train one fold, predict, score, aggregate.

Needs nnunetv2 (the ``[nnunet]`` extra) in this Python, or the Python named by NNUNET_PYTHON; skipped otherwise.
"""

import json
import os
import shutil
import sys

import pandas as pd
import pytest

from studylib.pipeline.nnunet_baseline import NnunetSettings, nnunet_available, run_nnunet

PYTHON = os.environ.get("NNUNET_PYTHON", sys.executable)

pytestmark = pytest.mark.skipif(not nnunet_available(PYTHON),
                                reason=f"nnunetv2 is not importable by {PYTHON} (pip install -e '.[nnunet]', or set "
                                       "NNUNET_PYTHON to a Python that has it)")


@pytest.mark.slow
def test_nnunet_2d_tiny_budget_on_one_fold_joins_the_aggregate(tiny_study, tmp_path):
    from studylib.cli import main

    out, _ = tiny_study
    results = tmp_path / "results"
    shutil.copytree(out, results)
    settings = NnunetSettings(configuration="2d", trainer="nnUNetTrainer_1epoch", iterations_per_epoch=2,
                              device="cpu", python=PYTHON, data_workers=0, mirroring=False, memory_target_gb=0.2)
    scored = run_nnunet(results, settings, folds=[0], targets=["label_a"])
    assert [p.name for p in scored] == ["nnunet_2d__dual__label_a__fold0"]
    record = json.loads((scored[0] / "score.json").read_text())
    split = json.loads((results / "splits.json").read_text())[0]
    assert record["patients"] == split["test"]  # the patients scored are exactly our test patients
    training = record["training"]
    assert training["trainer"] == "nnUNetTrainer_1epoch" and training["epochs"] == 1
    assert training["iterations_per_epoch"] == 2 and training["configuration"] == "2d" and training["device"] == "cpu"
    assert training["settings"]["trainer"] == "nnUNetTrainer_1epoch" and training["test_time_mirroring"] is False
    # planned for 0.2 GB: batches of 2 (the 8 GB default plans 20 here), under the plans' own name
    assert training["plans"] == "nnUNetPlans_0.2GB" and training["batch_size"] == 2 and training["settings"][
        "memory_target_gb"] == 0.2
    # nnU-Net trained on our training patients and validated on our validation patients, never a test patient
    preprocessed = results / "nnunet" / "preprocessed" / "Dataset501_petct_dual_label_a"
    assert json.loads((preprocessed / "splits_final.json").read_text())[0] == {"train": split["train"],
                                                                               "val": split["val"]}
    fold_dir = next((results / "nnunet" / "results" / "Dataset501_petct_dual_label_a").glob("*__nnUNetPlans_0.2GB__2d/fold_0"))
    validated = sorted(p.name.removesuffix(".nii.gz") for p in (fold_dir / "validation").glob("*.nii.gz"))
    assert validated == split["val"]

    assert main(["aggregate", "--results", str(results)]) == 0
    table1 = pd.read_csv(results / "aggregate" / "table1_label_a.csv")
    assert "Dual (CT+PET), nnunet_2d" in set(table1.input)
    across = pd.read_csv(results / "aggregate" / "claims_across_families.csv")
    assert {"verdict_unet", "verdict_nnunet_2d", "holds_for"} <= set(across.columns)
    from studylib.reporting.chapters.claims import family_budget

    patch = "x".join(str(v) for v in training["patch_size"])
    assert family_budget(results, "nnunet_2d").startswith(
        f"nnUNetTrainer_1epoch, 2d, 1 epoch(s) of 2 iterations (batches of 2 patches of {patch}, planned for 0.2 GB) on cpu")
