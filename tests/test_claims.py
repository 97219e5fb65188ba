"""Verdicts follow from the numbers: results built so that a claim holds, and so that it fails."""

import numpy as np
import pandas as pd

from studylib.claims import claims_table


def _per_patient(dual: float, pet: float, ct: float, own: float, other: float, n: int = 8) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        pid = f"P{i:03d}"
        for label in ("label_a", "label_b"):
            for modality, level in (("dual", dual), ("pet", pet), ("ct", ct)):
                for gt in ("label_a", "label_b"):
                    dsc = (level if gt == label else level - own + other) + rng.normal(0, 0.01)
                    volume = (30.0 if label == "label_a" else 10.0) + rng.normal(0, 1)
                    rows.append({"patient_id": pid, "modality": modality, "train_label": label, "ground_truth": gt,
                                 "dsc": dsc, "volume_pred_ml": volume})
    return pd.DataFrame(rows)


def test_claims_hold():
    table = claims_table(_per_patient(0.8, 0.7, 0.5, own=0.8, other=0.5))
    tested = table[table.claim != "agreement"]
    assert (tested.verdict == "replicated").all(), tested[["comparison", "verdict", "reason"]]
    assert table.set_index("claim").loc["agreement", "verdict"] == "not testable here"


def test_claims_fail_with_reasons():
    table = claims_table(_per_patient(0.5, 0.7, 0.8, own=0.5, other=0.8))
    modality = table[table.claim == "modality_order"]
    assert (modality.verdict == "not replicated").all()
    assert modality.reason.str.contains("opposite direction").all()
    own = table[table.claim == "own_ground_truth"]
    assert (own.verdict == "not replicated").any()


def test_too_few_patients_is_not_testable():
    table = claims_table(_per_patient(0.8, 0.7, 0.5, own=0.8, other=0.5, n=3))
    assert (table.verdict == "not testable here").all()


def test_agreement_with_human_readers_is_compared_with_the_paper():
    agreement = pd.DataFrame({"kappa_voxel_body": [0.60, 0.65, 0.70, 0.66, 0.68, 0.62]})
    table = claims_table(_per_patient(0.8, 0.7, 0.5, own=0.8, other=0.5), agreement, synthetic_readers=False)
    assert table.set_index("claim").loc["agreement", "verdict"] == "replicated"
    low = pd.DataFrame({"kappa_voxel_body": [0.2, 0.25, 0.3, 0.22, 0.28, 0.24]})
    table = claims_table(_per_patient(0.8, 0.7, 0.5, own=0.8, other=0.5), low, synthetic_readers=False)
    assert table.set_index("claim").loc["agreement", "verdict"] == "not replicated"
    # a wide interval around 0.66 is not evidence of the same agreement
    wide = pd.DataFrame({"kappa_voxel_body": [0.30, 0.95, 0.40, 0.90, 0.66, 0.75]})
    row = claims_table(_per_patient(0.8, 0.7, 0.5, own=0.8, other=0.5), wide, synthetic_readers=False).set_index("claim")
    assert row.loc["agreement", "verdict"] == "inconclusive" and "straddles" in row.loc["agreement", "reason"]
