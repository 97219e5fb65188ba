"""`export nnunet`: nnU-Net v2 raw datasets of a results folder on the study's folds, images on the CT grid."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from studylib.cli import main


def test_export_writes_one_dataset_per_target_on_our_folds(tiny_study, tmp_path, capsys):
    from studylib.ingest.cohort import load_cohort
    from studylib.ingest.imageio import same_grid
    from studylib.preprocessing.cache import load_native
    from studylib.preprocessing.patient_on_ct import load_patient_on_ct

    results, _ = tiny_study
    out = tmp_path / "nnUNet_raw"
    assert main(["export", "nnunet", "--results", str(results), "--out", str(out)]) == 0
    assert "Dataset501_petct_dual_label_a" in capsys.readouterr().out
    datasets = sorted(p.name for p in out.glob("Dataset*"))
    assert datasets == ["Dataset501_petct_dual_label_a", "Dataset502_petct_dual_label_b"]
    splits = json.loads((results / "splits.json").read_text())
    patients = sorted(p for fold in splits for p in fold["test"])
    cohort = load_cohort(results / "cohort" / "cohort.json")
    for name, target in zip(datasets, ("label_a", "label_b")):
        dataset = out / name
        spec = json.loads((dataset / "dataset.json").read_text())
        assert spec["channel_names"] == {"0": "CT", "1": "CT"} and spec["labels"] == {"background": 0, target: 1}
        assert spec["numTraining"] == len(patients) and spec["file_ending"] == ".nii.gz"
        images = sorted(p.name for p in (dataset / "imagesTr").iterdir())
        assert images == sorted(f"{p}_{c:04d}.nii.gz" for p in patients for c in (0, 1))
        assert all((dataset / "imagesTr" / f).is_symlink() for f in images)  # linked, not copied
        # the split check: nnU-Net's val is our validation set, no test patient in its train or val; the test
        # patients of each fold are apart, to be predicted
        nnunet = json.loads((dataset / "splits_final.json").read_text())
        for k, (ours, theirs) in enumerate(zip(splits, nnunet)):
            assert theirs == {"train": ours["train"], "val": ours["val"]}
            assert not set(ours["test"]) & set(theirs["train"] + theirs["val"])
            tested = sorted(p.name for p in (dataset / "imagesTs" / f"fold{k}").iterdir())
            assert tested == sorted(f"{p}_{c:04d}.nii.gz" for p in ours["test"] for c in (0, 1))
        pid = patients[0]
        ct = sitk.ReadImage(str(dataset / "imagesTr" / f"{pid}_0000.nii.gz"))
        pet = sitk.ReadImage(str(dataset / "imagesTr" / f"{pid}_0001.nii.gz"))
        label = sitk.ReadImage(str(dataset / "labelsTr" / f"{pid}.nii.gz"))
        assert same_grid(ct, pet) and same_grid(ct, label)
        labels, _ = load_native(results / "cache", pid)
        np.testing.assert_array_equal(sitk.GetArrayFromImage(label), labels[target].astype(np.uint8))
        # the PET our models saw (registered as the cache recorded, in SUV, before normalisation)
        on_ct = load_patient_on_ct(cohort.patient(pid), "none", labels=[])
        np.testing.assert_allclose(sitk.GetArrayFromImage(pet), on_ct.channels["pet"], rtol=0, atol=1e-5)


def test_export_pet_only_and_zscore_pet(tiny_study, tmp_path):
    results, _ = tiny_study
    out = tmp_path / "raw"
    assert main(["export", "nnunet", "--results", str(results), "--out", str(out), "--modality", "pet",
                 "--pet-normalization", "zscore", "--dataset-id", "700"]) == 0
    dataset = out / "Dataset701_petct_pet_label_a"
    assert json.loads((dataset / "dataset.json").read_text())["channel_names"] == {"0": "PET"}
    assert {p.name.split("_")[-1] for p in (dataset / "imagesTr").iterdir()} == {"0000.nii.gz"}
    # the one channel is the PET
    first = sorted((dataset / "imagesTr").iterdir())[0]
    assert first.resolve() == (out / "images" / first.name.replace("_0000", "_0001")).resolve()


@pytest.mark.parametrize("args, message", [
    (["--modality", "mri"], "unknown modality 'mri'"),
    (["--dataset-id", "999"], "three digits"),
])
def test_export_refuses_bad_options(tiny_study, tmp_path, capsys, args, message):
    results, _ = tiny_study
    assert main(["export", "nnunet", "--results", str(results), "--out", str(tmp_path / "raw"), *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("target", ["0", "-1", "nan"])
def test_nnunet_refuses_a_memory_target_that_is_not_positive(tmp_path, capsys, target):
    """Refused before anything is exported or planned: one error line, nothing written."""
    assert main(["nnunet", "--results", str(tmp_path), "--memory-target-gb", target, "--device", "cpu"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "memory target" in err and "\n" not in err
    assert not any(tmp_path.iterdir())


class RecordingExecutor:
    """An executor that runs nothing: it records the folds it is given and fails the ones it is told to."""

    name, threads = "recording", 1

    def __init__(self, failing: set[str]):
        self.failing, self.items = failing, []

    def record(self) -> dict:
        return {"executor": self.name}

    def execute(self, runs, run_one):
        for item in runs:
            self.items.append(item)
            yield item, RuntimeError("no GPU left") if item.run_id in self.failing else None


def test_nnunet_folds_go_to_the_study_executor(tiny_study, tmp_path, monkeypatch):
    """Planning runs here; every (target, fold) goes to the executor as one picklable task (Ray ships them); a
    failing fold is named after the others ran."""
    import pickle
    import shutil

    from studylib.pipeline import nnunet_baseline
    from studylib.pipeline.nnunet_baseline import NnunetSettings, run_nnunet, train_fold

    results = tmp_path / "results"
    shutil.copytree(tiny_study[0], results, ignore=shutil.ignore_patterns("*.pt", "*.ipynb"))
    planned = []
    monkeypatch.setattr(nnunet_baseline, "nnunet_available", lambda python: True)
    monkeypatch.setattr(nnunet_baseline, "drive", lambda settings, env, *args: planned.append(args[:3]))
    settings = NnunetSettings(device="cpu")
    executor = RecordingExecutor(failing=set())
    scored = run_nnunet(results, settings, executor=executor)
    assert planned == [("plan", "501", "2d"), ("plan", "502", "2d")]  # each dataset planned before any fold
    assert [p.name for p in scored] == [f"nnunet_2d__dual__{t}__fold{k}" for t in ("label_a", "label_b") for k in (0, 1)]
    assert [(i.dataset_id, i.target, i.fold) for i in executor.items] == [
        (501, "label_a", 0), (501, "label_a", 1), (502, "label_b", 0), (502, "label_b", 1)]
    assert pickle.loads(pickle.dumps(executor.items[0])) == executor.items[0] and pickle.dumps(train_fold)
    with pytest.raises(RuntimeError, match=r"nnunet_2d__dual__label_b__fold1: no GPU left"):
        run_nnunet(results, settings, targets=["label_b"], executor=RecordingExecutor({"nnunet_2d__dual__label_b__fold1"}))
