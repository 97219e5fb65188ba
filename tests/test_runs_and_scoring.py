"""Run ids are built and read in one place; a patient is scored in one way (the mask at the one threshold)."""

import numpy as np
import pytest

from studylib.evaluation.scoring import lesion_extent, score_patient
from studylib.inference.volume import foreground
from studylib.plans.runs import RunCell, parse_run_id, run_id
from studylib.training.models import MASK_THRESHOLD


@pytest.mark.parametrize("cell", [RunCell("dual", "label_a", 0, 0), RunCell("dual_mri", "conditioned", 4, 12, 0.1),
                                  RunCell("ct", "consensus", 1, 3, 0.25)])
def test_run_id_round_trips(cell):
    assert parse_run_id(run_id(cell.modality, cell.label, cell.fold, cell.seed, cell.background_fraction)) == cell


@pytest.mark.parametrize("name", ["dual__label_a", "dual__label_a__fold0", "dual__label_a__foldx__seed0",
                                  "dual__label_a__fold0__seed0__bg", "dual__label_a__fold0__seed0__bg0",
                                  "dual__label_a__fold00__seed0", "dual__label_a__fold0__seed0__x10"])
def test_parse_run_id_refuses_other_names(name):
    with pytest.raises(ValueError, match="run folder name"):
        parse_run_id(name)


def test_score_patient_thresholds_once_and_crops_to_the_extent_labels():
    probabilities = np.zeros((6, 4, 4), np.float32)
    probabilities[2, 1, 1] = MASK_THRESHOLD  # at the threshold: foreground
    probabilities[4, 1, 1] = np.nextafter(MASK_THRESHOLD, 0, dtype=np.float32)  # just below: background
    assert foreground(probabilities).sum() == 1
    reference = {"a": np.zeros((6, 4, 4), bool), "b": np.zeros((6, 4, 4), bool)}
    reference["a"][2, 1, 1] = True
    reference["b"][1:4, 0, 0] = True
    body = np.ones((6, 4, 4), bool)
    rows = score_patient(probabilities, reference, body, (1.0, 1.0, 1.0), ["a"], 1.0)
    assert [(r["region"], r["ground_truth"]) for r in rows] == [("full", "a"), ("full", "b"),
                                                                ("lesion_extent", "a"), ("lesion_extent", "b")]
    assert rows[0]["dsc"] == 1.0
    assert lesion_extent([reference["a"]]) == slice(2, 3)  # only "a" chooses the region, whichever label is scored
    assert rows[3]["volume_ref_ml"] < rows[1]["volume_ref_ml"]
