"""Verdicts follow from the numbers: results built so that each verdict class is the right one, and says why."""

import numpy as np
import pandas as pd
import pytest

from studylib.evaluation.claims import (
    BY_CONSTRUCTION,
    CONTRADICTED,
    FAILED_ARM,
    INCONCLUSIVE,
    MISSING,
    NOT_TESTABLE,
    REPLICATED,
    TOO_FEW,
    VERDICTS,
    central_claim,
    claims_table,
    verdict_counts,
)
from studylib.evaluation.paper import load_paper
from studylib.evaluation.statistics import smallest_testable_pairs


def _per_patient(dual: float, pet: float, ct: float, decline: tuple[float, float] = (0.3, 0.3), n: int = 8,
                 noise: float = 0.01, seed: int = 0, failed: tuple[str, ...] = ()) -> pd.DataFrame:
    """Per-patient DSC and volumes: each model scores ``level`` on its own label and ``level - decline`` on the
    other; model A predicts 30 ml, model B 10 ml; an arm in ``failed`` predicts (almost) nothing."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        pid = f"P{i:03d}"
        for label, drop in zip(("label_a", "label_b"), decline):
            for modality, level in (("dual", dual), ("pet", pet), ("ct", ct)):
                volume = (30.0 if label == "label_a" else 10.0) + rng.normal(0, 1)
                for gt in ("label_a", "label_b"):
                    dsc = (level if gt == label else level - drop) + rng.normal(0, noise)
                    if modality in failed:
                        dsc, volume = 0.0, 0.01
                    rows.append({"patient_id": pid, "modality": modality, "train_label": label, "ground_truth": gt,
                                 "dsc": dsc, "volume_pred_ml": volume,
                                 "volume_ref_ml": 30.0 if gt == "label_a" else 10.0})
    return pd.DataFrame(rows)


def _row(table: pd.DataFrame, key: str) -> pd.Series:
    return table.set_index("key").loc[key]


def test_rules_and_paper_effects():
    effects = load_paper().effects
    assert effects["decline_model_a"] == pytest.approx(16.14) and effects["decline_model_b"] == pytest.approx(18.92)
    assert effects["dual_over_pet"] == pytest.approx(8.40) and effects["symmetric_decline"] == pytest.approx(-2.78)
    assert smallest_testable_pairs(6, 0.05) == 8 and smallest_testable_pairs(1, 0.05) == 6


def test_claims_hold():
    table = claims_table(_per_patient(0.8, 0.7, 0.5))
    tested = table[table.claim != "agreement"]
    assert (tested.verdict == REPLICATED).all(), tested[["comparison", "verdict", "reason"]]
    assert set(table.verdict) <= set(VERDICTS)
    # six Table 1 comparisons judged together: 99.17 % intervals, Holm p beside them
    table1 = tested[tested.family == "Table 1"]
    assert len(table1) == 6 and np.allclose(table1.ci_level, 1 - 0.05 / 6) and (table1.p_holm < 0.05).all()
    dual_pet = _row(table, "dual_over_pet:label_a")
    assert dual_pet.ci_low > 0 and dual_pet.paper_difference == pytest.approx(8.40)
    assert "larger than the paper's +8.40" in dual_pet.reason  # ours: +10 points, a narrow CI
    assert _row(table, "symmetric_decline").verdict == REPLICATED
    agreement = table.set_index("claim").loc["agreement"]
    assert agreement.verdict == NOT_TESTABLE and agreement.why_not_testable == MISSING


def test_claims_contradicted_the_other_way():
    table = claims_table(_per_patient(0.5, 0.7, 0.8, decline=(-0.3, -0.3)))
    modality = table[table.claim == "modality_order"]
    assert (modality.verdict == CONTRADICTED).all() and modality.reason.str.contains("the other way").all()
    assert (modality.ci_high < 0).all()
    assert (table[table.claim == "own_ground_truth"].verdict == CONTRADICTED).all()


def test_inconclusive_when_the_interval_contains_zero():
    per_patient = _per_patient(0.7, 0.7, 0.5)
    # dual beats PET on every other patient by 6 points and loses on the rest by 5 (rows: patient, then label)
    dual_own = (per_patient.modality == "dual") & (per_patient.ground_truth == per_patient.train_label)
    pet_own = (per_patient.modality == "pet") & (per_patient.ground_truth == per_patient.train_label)
    offsets = np.repeat(np.tile([0.06, -0.05], 4), 2)
    per_patient.loc[dual_own, "dsc"] = per_patient.loc[pet_own, "dsc"].to_numpy() + offsets
    table = claims_table(per_patient)
    for label in ("label_a", "label_b"):
        row = _row(table, f"dual_over_pet:{label}")
        assert row.verdict == INCONCLUSIVE and row.ci_low < 0 < row.ci_high and "contains 0" in row.reason
    assert _row(table, "dual_over_ct:label_a").verdict == REPLICATED


def test_too_few_pairs_is_not_testable_with_the_family_size():
    table = claims_table(_per_patient(0.8, 0.7, 0.5, n=3))
    assert (table.verdict == NOT_TESTABLE).all()
    row = _row(table, "dual_over_pet:label_a")
    assert row.why_not_testable == TOO_FEW and "n = 3 < 8 for a family of 6" in row.reason
    # seven pairs are enough for a family of one (6), not for the six comparisons of Table 1 (8)
    table = claims_table(_per_patient(0.8, 0.7, 0.5, n=7))
    assert (table[table.family == "Table 1"].why_not_testable == TOO_FEW).all()
    assert _row(table, "symmetric_decline").verdict == REPLICATED


def test_failed_arm_is_not_testable_and_leaves_the_family():
    table = claims_table(_per_patient(0.8, 0.7, 0.5, failed=("ct",)))
    for key in ("dual_over_ct:label_a", "pet_over_ct:label_b"):
        row = _row(table, key)
        assert row.verdict == NOT_TESTABLE and row.why_not_testable == FAILED_ARM, row.reason
        assert "ct trained on" in row.reason and "8 of 8 patients" in row.reason
    central = central_claim(table)
    assert len(central) == 2 and (central.verdict == REPLICATED).all()
    assert np.allclose(central.ci_level, 1 - 0.05 / 2)  # the family is now the two dual > PET comparisons


def test_missing_modality_is_not_testable():
    per_patient = _per_patient(0.8, 0.7, 0.5)
    table = claims_table(per_patient[per_patient.modality != "ct"])
    row = _row(table, "dual_over_ct:label_a")
    assert row.verdict == NOT_TESTABLE and row.why_not_testable == MISSING and "modality ct" in row.reason
    assert _row(table, "dual_over_pet:label_a").verdict == REPLICATED


def test_volume_claim_holds_by_construction_when_labels_nest():
    per_patient = _per_patient(0.8, 0.7, 0.5)
    nested = pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(8)], "fraction_b_inside_a": 1.0})
    row = _row(claims_table(per_patient, nested), "a_broader_than_b")
    assert row.verdict == BY_CONSTRUCTION and "the labels nest" in row.reason and row.ci_low > 0
    overlapping = nested.assign(fraction_b_inside_a=0.6)
    assert _row(claims_table(per_patient, overlapping), "a_broader_than_b").verdict == REPLICATED
    text = verdict_counts(claims_table(per_patient, nested))
    assert f"1 {BY_CONSTRUCTION}" in text.split("Not evidence:")[1]


def test_symmetric_decline_by_equivalence():
    row = _row(claims_table(_per_patient(0.8, 0.7, 0.5, decline=(0.30, 0.05))), "symmetric_decline")
    assert row.verdict == CONTRADICTED and row.ci_low > 5
    row = _row(claims_table(_per_patient(0.8, 0.7, 0.5, decline=(0.30, 0.25), noise=0.03)), "symmetric_decline")
    assert row.verdict == INCONCLUSIVE and row.ci_low < 5 < row.ci_high, row
    row = _row(claims_table(_per_patient(0.8, 0.7, 0.5, decline=(0.16, 0.19))), "symmetric_decline")
    assert row.verdict == REPLICATED and "-2.78" in row.reason and np.isnan(row.p_value)


def test_one_seed_disagreeing_shows_in_the_stability():
    seeds = [_per_patient(0.8, 0.7, 0.5, seed=s).assign(seed=s) for s in (0, 1)]
    seeds.append(_per_patient(0.65, 0.7, 0.5, seed=2).assign(seed=2))  # dual below PET on this seed alone
    per_seed = pd.concat(seeds, ignore_index=True)
    table = claims_table(per_seed.groupby(["modality", "train_label", "ground_truth", "patient_id"], as_index=False)
                         [["dsc", "volume_pred_ml", "volume_ref_ml"]].mean(), per_seed=per_seed)
    row = _row(table, "dual_over_pet:label_a")
    assert row.verdict == REPLICATED and row.stability.startswith("2/3 seeds agree")
    assert "seed 2: contradicted" in row.stability
    assert _row(table, "dual_over_ct:label_a").stability == "3/3 seeds agree"
    # several seeds in the per-patient table itself are averaged per patient first
    assert claims_table(per_seed).verdict.tolist() == table.verdict.tolist()


def test_verdict_counts_keep_what_is_not_evidence_apart():
    table = claims_table(_per_patient(0.8, 0.7, 0.5, failed=("ct",)))
    text = verdict_counts(table)
    evidence, apart = text.split("Not evidence:")
    assert "replicated" in evidence and NOT_TESTABLE not in evidence
    assert f"4 {FAILED_ARM}" in apart and f"1 {MISSING}" in apart


def test_agreement_with_human_readers_is_compared_with_the_paper():
    agreement = pd.DataFrame({"kappa_voxel_body": [0.60, 0.65, 0.70, 0.66, 0.68, 0.62]})
    table = claims_table(_per_patient(0.8, 0.7, 0.5), agreement, synthetic_readers=False)
    assert table.set_index("claim").loc["agreement", "verdict"] == REPLICATED
    low = pd.DataFrame({"kappa_voxel_body": [0.2, 0.25, 0.3, 0.22, 0.28, 0.24]})
    table = claims_table(_per_patient(0.8, 0.7, 0.5), low, synthetic_readers=False)
    assert table.set_index("claim").loc["agreement", "verdict"] == CONTRADICTED
    # a wide interval around 0.66 is not evidence of the same agreement
    wide = pd.DataFrame({"kappa_voxel_body": [0.30, 0.95, 0.40, 0.90, 0.66, 0.75]})
    row = claims_table(_per_patient(0.8, 0.7, 0.5), wide, synthetic_readers=False).set_index("claim")
    assert row.loc["agreement", "verdict"] == INCONCLUSIVE and "straddles" in row.loc["agreement", "reason"]


def test_abstract_leads_with_the_central_claim_and_counts_apart(tmp_path):
    """The abstract reads what aggregation wrote (claims, Table 1 means, Table 2): nothing recomputed."""
    from pathlib import Path
    from types import SimpleNamespace

    from studylib.evaluation.statistics import summary_table
    from studylib.plans.results_folder import AGGREGATE, CLAIMS, SUMMARY_STATISTICS, TABLE2_MEAN
    from studylib.reporting.aggregate import read_claims, table2
    from studylib.reporting.chapters.abstract import abstract
    from studylib.reporting.chapters.claims import claims_markdown
    from studylib.reporting.context import ReportContext

    per_patient = _per_patient(0.8, 0.7, 0.5, failed=("ct",))
    nested = pd.DataFrame({"patient_id": [f"P{i:03d}" for i in range(8)], "fraction_b_inside_a": 1.0})
    (tmp_path / AGGREGATE).mkdir()
    claims_table(per_patient, nested).to_csv(tmp_path / AGGREGATE / CLAIMS, index=False)
    summary_table(per_patient, ["modality", "train_label", "ground_truth"], ["dsc"]).to_csv(
        tmp_path / AGGREGATE / SUMMARY_STATISTICS, index=False)
    table2(per_patient)[1].to_csv(tmp_path / AGGREGATE / TABLE2_MEAN)
    ctx = ReportContext(tmp_path, per_patient, [{}], SimpleNamespace(name="test", study=SimpleNamespace(folds=2)), {},
                        Path("cohort.json"), {"name": "built"}, claims=read_claims(tmp_path / AGGREGATE / CLAIMS))
    text = abstract(ctx)
    assert text.startswith("The paper's central claim") and "+8.40" in text
    means = per_patient[(per_patient.train_label == "label_a") & (per_patient.ground_truth == "label_a")].groupby(
        "modality").dsc.mean()
    assert f"Dual (CT+PET) {100 * means['dual']:.1f}%" in text and f"PET only {100 * means['pet']:.1f}%" in text
    assert "Cross-evaluation of the dual-input models" in text
    assert "replicated for `label_a` (+" in text and "% CI" in text
    assert text.index("Verdicts that are evidence") < text.index("We re-ran")
    assert f"1 {BY_CONSTRUCTION}" in text and f"4 {FAILED_ARM}" in text
    table = claims_markdown(ctx)
    assert "| seeds |" not in table and "| paper |" in table and "97.5 %: +" in table  # Table 1 without CT: m = 2


def test_one_failed_run_among_seeds_is_named_though_the_averaged_arm_passes():
    """A run that predicts nothing on one seed is listed by failed_runs; averaged with two good seeds its arm keeps
    enough volume for failed_arms, which is why the report names such runs apart."""
    from studylib.evaluation.claims import failed_arms, failed_runs

    seeds = [_per_patient(0.8, 0.7, 0.5, seed=s).assign(seed=s) for s in (0, 1)]
    seeds.append(_per_patient(0.8, 0.7, 0.5, seed=2, failed=("dual",)).assign(seed=2))
    per_run = pd.concat(seeds, ignore_index=True)
    per_run["run_id"] = per_run.modality + "__" + per_run.train_label + "__fold0__seed" + per_run.seed.astype(str)
    assert failed_runs(per_run) == ["dual__label_a__fold0__seed2", "dual__label_b__fold0__seed2"]
    averaged = per_run.groupby(["modality", "train_label", "ground_truth", "patient_id"], as_index=False)[
        ["dsc", "volume_pred_ml", "volume_ref_ml"]].mean()
    assert failed_arms(averaged) == {}
    assert failed_runs(per_run[per_run.seed < 2]) == []


def test_claims_across_families_say_which_family_a_claim_holds_for():
    """Each claim's verdict per family, and 'both', '<family> only' or 'neither' (replicated = holds); the agreement,
    which no model makes, is left out; a claim a family's table lacks is not testable there."""
    import pandas as pd

    from studylib.evaluation.claims import claims_across_families, holds_for

    ours = pd.DataFrame({"key": ["dual_over_pet:label_a", "decline_model_a", "gt_a_model_a_over_b", "agreement"],
                         "comparison": ["c1", "c2", "c3", "kappa"],
                         "verdict": ["replicated", "replicated", "inconclusive", "not testable"]})
    theirs = pd.DataFrame({"key": ["decline_model_a", "gt_a_model_a_over_b", "agreement"],
                           "comparison": ["c2", "c3", "kappa"],
                           "verdict": ["replicated", "contradicted", "not testable"]})
    table = claims_across_families({"unet": ours, "nnunet_2d": theirs})
    assert list(table.key) == ["dual_over_pet:label_a", "decline_model_a", "gt_a_model_a_over_b"]
    assert list(table.verdict_nnunet_2d) == ["not testable", "replicated", "contradicted"]
    assert list(table.holds_for) == ["unet only", "both", "neither"]
    assert holds_for({"unet": "replicated", "a": "replicated", "b": "inconclusive"}) == "unet, a only"
    assert holds_for({"unet": "replicated", "a": "replicated", "b": "replicated"}) == "all"
