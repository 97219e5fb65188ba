"""`score`: another model's prediction folder scored like our runs, and the family it joins in the aggregate."""

import json
import shutil

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from studylib.cli import main

RUN = "dual__{label}__fold{fold}__seed0__bg10"  # the tiny profile's primary runs (background 10 %)


@pytest.fixture()
def study_copy(tiny_study, tmp_path):
    """A copy of the tiny study to score into (a results folder can be moved: its paths are relative)."""
    out, _ = tiny_study
    copy = tmp_path / "results"
    shutil.copytree(out, copy)
    return copy


def run_predictions(results, label="label_a", fold=0):
    """The prediction folder of one of our dual runs (one <patient_id>.nii.gz per test patient)."""
    return results / "runs" / RUN.format(label=label, fold=fold) / "predictions"


def copied(folder, to):
    """A writable copy of a prediction folder."""
    shutil.copytree(folder, to)
    return to


def score(results, predictions, *extra, family="other", target="label_a", fold=0):
    """``python -m studylib score`` through the CLI; its exit status."""
    return main(["score", "--results", str(results), "--predictions", str(predictions), "--family", family,
                 "--target", target, "--fold", str(fold), *extra])


def scored_rows(results, family="other", target="label_a", fold=0, modality="dual"):
    return pd.read_csv(results / "external" / f"{family}__{modality}__{target}__fold{fold}" / "per_patient.csv",
                       dtype={"patient_id": str})


def rewrite(path, transform):
    """Rewrite a NIfTI file through ``transform(image) -> image``."""
    sitk.WriteImage(transform(sitk.ReadImage(str(path))), str(path))


def assert_same_scores(ours: pd.DataFrame, theirs: pd.DataFrame) -> None:
    """Every metric of every (patient, ground truth, region) equal."""
    keys = ["patient_id", "ground_truth", "region"]
    metrics = [c for c in ours.columns if c in theirs.columns and c not in
               keys + ["run_id", "model_family", "seed", "modality", "train_label", "fold", "background_fraction"]]
    a = ours.sort_values(keys).reset_index(drop=True)[keys + metrics]
    b = theirs.sort_values(keys).reset_index(drop=True)[keys + metrics]
    pd.testing.assert_frame_equal(a, b)


def test_scoring_our_own_predictions_reproduces_our_rows_and_joins_the_aggregate(study_copy, capsys):
    """One scoring function: our runs' prediction folders, scored as another family, give exactly our per-patient
    rows; after aggregation Tables 1-2 gain the family's rows and the claims are judged per family."""
    for label in ("label_a", "label_b"):
        for fold in (0, 1):
            assert score(study_copy, run_predictions(study_copy, label, fold), family="copy_of_unet", target=label,
                         fold=fold) == 0
            ours = pd.read_csv(study_copy / "runs" / RUN.format(label=label, fold=fold) / "per_patient.csv",
                               dtype={"patient_id": str})
            assert_same_scores(ours, scored_rows(study_copy, "copy_of_unet", label, fold))
    record = json.loads((study_copy / "external" / "copy_of_unet__dual__label_a__fold0" / "score.json").read_text())
    test = json.loads((study_copy / "splits.json").read_text())[0]["test"]
    assert record["patients"] == test and record["conversions"] == {} and record["mask_threshold"] == 0.5
    assert record["predictions"] == "runs/dual__label_a__fold0__seed0__bg10/predictions"  # inside: travels with it
    assert "scored 3 test patients of fold 0 as copy_of_unet" in capsys.readouterr().out

    assert main(["aggregate", "--results", str(study_copy)]) == 0
    agg = study_copy / "aggregate"
    table1 = pd.read_csv(agg / "table1_label_a.csv")
    assert list(table1.input) == ["CT only", "PET only", "Dual (CT+PET)", "Dual (CT+PET), copy_of_unet"]
    assert table1.dsc.iloc[3] == table1.dsc.iloc[2]  # the same masks, the same cell
    table2 = pd.read_csv(agg / "table2_mean.csv", index_col=0)
    assert list(table2.index) == ["model label_a", "model label_b", "copy_of_unet label_a", "copy_of_unet label_b"]
    np.testing.assert_array_equal(table2.iloc[:2].to_numpy(), table2.iloc[2:].to_numpy())
    per_patient_all = pd.read_csv(agg / "per_patient_all.csv")
    assert "copy_of_unet" not in set(per_patient_all.run_id.str.split("__").str[0])  # ours only; theirs apart
    by_family = pd.read_csv(agg / "claims_by_family.csv")
    assert set(by_family.model_family) == {"unet", "copy_of_unet"}
    across = pd.read_csv(agg / "claims_across_families.csv")
    assert {"verdict_unet", "verdict_copy_of_unet", "holds_for"} <= set(across.columns)
    assert "agreement" not in set(across.key)
    # the copy has only the dual input: the modality claims cannot be tested on it
    modality_rows = across[across.key.str.startswith("dual_over_pet")]
    assert set(modality_rows.verdict_copy_of_unet) == {"not testable"}
    assert set(modality_rows.holds_for) <= {"unet only", "neither"}
    claims = pd.read_csv(agg / "claims.csv")
    assert len(claims) == (by_family.model_family == "unet").sum()  # claims.csv stays our U-Net's

    from studylib.reporting.chapters.claims import claims_per_family_markdown
    from studylib.reporting.context import ReportContext

    text = claims_per_family_markdown(ReportContext.load(study_copy))
    assert "`copy_of_unet`" in text and "holds for" in text
    assert "- `copy_of_unet`: predictions scored as given (no training recorded)" in text  # what its verdicts rest on
    assert "| unet | copy\\_of\\_unet | holds for |" in text  # family names as written, not as words


def test_probabilities_are_thresholded_and_the_conversion_stated(study_copy, tmp_path, capsys):
    """A float map in [0, 1] is read as probabilities, thresholded at MASK_THRESHOLD (stated), and scores as the
    mask it thresholds to."""
    folder = copied(run_predictions(study_copy), tmp_path / "probabilities")
    for path in folder.glob("*.nii.gz"):
        rewrite(path, lambda image: sitk.Cast(image, sitk.sitkFloat32) * 0.55 + 0.3)  # mask 1 -> 0.85, 0 -> 0.3
    assert score(study_copy, folder) == 0
    out = capsys.readouterr().out
    assert "probabilities thresholded at 0.5 (foreground: >= 0.5)" in out
    ours = pd.read_csv(study_copy / "runs" / RUN.format(label="label_a", fold=0) / "per_patient.csv",
                       dtype={"patient_id": str})
    assert_same_scores(ours, scored_rows(study_copy))


def test_a_prediction_on_another_grid_is_refused_or_resampled_when_asked(study_copy, tmp_path, capsys):
    folder = copied(run_predictions(study_copy), tmp_path / "moved")
    first = sorted(folder.glob("*.nii.gz"))[0]
    rewrite(first, lambda image: sitk.Resample(image, [n // 2 for n in image.GetSize()], sitk.Transform(),
                                               sitk.sitkNearestNeighbor, image.GetOrigin(),
                                               [2 * s for s in image.GetSpacing()], image.GetDirection()))
    assert score(study_copy, folder) == 2
    err = capsys.readouterr().err
    assert f"{first} is not on the CT grid" in err and "prediction: size" in err and "CT: size" in err
    assert "--resample-nearest" in err
    assert not (study_copy / "external").exists()  # nothing written for a refused folder
    assert score(study_copy, folder, "--resample-nearest") == 0
    assert "resampled onto the CT grid (nearest neighbour)" in capsys.readouterr().out
    rows = scored_rows(study_copy)
    assert rows.patient_id.nunique() == 3 and rows.dsc.notna().all()


def test_bad_prediction_folders_get_one_line_errors_naming_the_file(study_copy, tmp_path, capsys):
    split = json.loads((study_copy / "splits.json").read_text())[0]
    source = run_predictions(study_copy)

    missing = copied(source, tmp_path / "missing")
    (missing / f"{split['test'][0]}.nii.gz").unlink()
    assert score(study_copy, missing) == 2
    assert f"missing {split['test'][0]}.nii.gz" in capsys.readouterr().err

    extra = copied(source, tmp_path / "extra")  # a training patient's prediction: not ours to score in this fold
    shutil.copy(extra / f"{split['test'][0]}.nii.gz", extra / f"{split['train'][0]}.nii.gz")
    assert score(study_copy, extra) == 2
    err = capsys.readouterr().err
    assert f"not test patients of the fold: {split['train'][0]}.nii.gz" in err and "trained or validated" in err

    multiclass = copied(source, tmp_path / "multiclass")
    path = multiclass / f"{split['test'][1]}.nii.gz"
    rewrite(path, lambda image: sitk.Cast(image, sitk.sitkUInt8) + 2)  # classes 2 (and 3 where the lesion is)
    assert score(study_copy, multiclass) == 2
    err = capsys.readouterr().err
    assert f"{path}: integer labels 2" in err and "binary mask" in err

    logits = copied(source, tmp_path / "logits")
    path = logits / f"{split['test'][2]}.nii.gz"
    rewrite(path, lambda image: sitk.Cast(image, sitk.sitkFloat32) * 8.0 - 4.0)
    assert score(study_copy, logits) == 2
    err = capsys.readouterr().err
    assert f"{path}: float values from -4 to" in err and "outside [0, 1]" in err

    assert score(study_copy, source, family="unet") == 2
    assert "the study's own U-Net" in capsys.readouterr().err
    assert score(study_copy, source, target="label_c") == 2
    assert "training target 'label_c' is not one the study trains on (label_a, label_b)" in capsys.readouterr().err
    assert score(study_copy, source, fold=2) == 2
    assert "fold 2: the study has folds 0-1" in capsys.readouterr().err
    assert score(study_copy, tmp_path / "nowhere") == 2
    assert "no such folder of predictions" in capsys.readouterr().err
    assert not (study_copy / "external").exists()
