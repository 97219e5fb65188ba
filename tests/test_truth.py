"""Truth-anchored answers: the reads' actual rates, STAPLE's estimates of them, and the closest-supervision rule."""

import numpy as np
import pytest
import SimpleITK as sitk

from studylib.evaluation.statistics import bootstrap_ci, hierarchical_bootstrap_ci
from studylib.evaluation.truth import MIN_PAIRED_PATIENTS, box_mask, closest_supervision, read_rates
from studylib.preprocessing.targets import staple_consensus, staple_estimate


def _random_masks(rng, shape=(5, 12, 12), n=3, p=0.3):
    return [rng.random(shape) < p for _ in range(n)]


@pytest.mark.parametrize("seed", range(20))
def test_read_rates_match_their_definition(seed):
    rng = np.random.default_rng(seed)
    read, truth = _random_masks(rng, n=2, p=rng.uniform(0.0, 0.5))
    within = rng.random(read.shape) < 0.7 if seed % 2 else np.ones(read.shape, bool)
    sens, spec = read_rates(read, truth, None if seed % 2 == 0 else within)
    t, r = truth[within], read[within]
    expected_sens = (r & t).sum() / t.sum() if t.sum() else float(not r.any())
    expected_spec = (~r & ~t).sum() / (~t).sum() if (~t).sum() else 1.0
    assert sens == pytest.approx(expected_sens, abs=1e-12) and spec == pytest.approx(expected_spec, abs=1e-12)


def test_staple_estimate_is_simpleitks_filter_and_the_consensus():
    rng = np.random.default_rng(3)
    truth = np.zeros((6, 20, 20), bool)
    truth[1:5, 5:14, 5:14] = True
    # a sensitive read, a specific one, and a noisy one
    reads = [truth | (rng.random(truth.shape) < 0.05), truth & (rng.random(truth.shape) < 0.7),
             truth ^ (rng.random(truth.shape) < 0.03)]
    estimate = staple_estimate(reads, margin=None)
    staple = sitk.STAPLEImageFilter()
    staple.SetForegroundValue(1.0)
    probability = sitk.GetArrayFromImage(staple.Execute([sitk.GetImageFromArray(m.astype(np.uint8)) for m in reads]))
    assert np.array_equal(estimate.probability, probability.astype(np.float32))
    assert estimate.sensitivity == pytest.approx(staple.GetSensitivity())
    assert estimate.specificity == pytest.approx(staple.GetSpecificity())
    # the read that misses 30 % of the truth is estimated the least sensitive, the one adding 5 % the least specific
    assert np.argmin(estimate.sensitivity) == 1 and np.argmin(estimate.specificity) == 0
    assert np.array_equal(staple_consensus(reads, margin=None), (probability > 0.5).astype(np.uint8))


def test_staple_estimate_of_identical_reads_is_perfect_and_of_nothing_is_nan():
    a = np.zeros((4, 10, 10), bool)
    a[1:3, 2:6, 2:6] = True
    estimate = staple_estimate([a, a, a])
    assert estimate.sensitivity == pytest.approx((1.0,) * 3) and estimate.specificity == pytest.approx((1.0,) * 3)
    # the box is the union grown by the margin, clipped to the volume
    assert box_mask(a.shape, estimate.box).all()
    empty = staple_estimate([np.zeros_like(a)] * 3)
    assert np.isnan(empty.sensitivity).all() and not empty.probability.any()


def test_hierarchical_bootstrap_with_one_seed_is_the_patient_bootstrap():
    values = np.random.default_rng(0).random(9)
    assert hierarchical_bootstrap_ci(values[:, None], 2000) == bootstrap_ci(values, 2000)
    constant = np.full((5, 3), 0.25)
    assert hierarchical_bootstrap_ci(constant) == pytest.approx((0.25, 0.25))
    # seeds add their spread: patients identical, seeds differing -> an interval around the mean
    spread = np.tile([0.0, 1.0], (6, 1))
    lo, hi = hierarchical_bootstrap_ci(spread)
    assert lo < 0.5 < hi


def test_closest_supervision_decides_only_when_every_interval_lies_above_zero():
    rng = np.random.default_rng(1)
    base = rng.uniform(0.4, 0.6, size=(12, 1))
    table, verdict = closest_supervision({"a": base + 0.2, "b": base, "c": base - 0.1})
    assert verdict.decided and verdict.candidate == "a" and verdict.tied == ["a"]
    assert list(table.supervision) == ["a", "b", "c"]
    assert table.set_index("supervision").loc["c", "difference_to_candidate"] == pytest.approx(0.3)
    # b differs from a by noise around 0: tied, no single closest
    noisy = base + rng.normal(0, 0.05, size=base.shape)
    noisy -= noisy.mean() - base.mean() - 0.001
    table, verdict = closest_supervision({"a": base, "b": noisy, "c": base - 0.3})
    assert not verdict.decided and set(verdict.tied) == {"a", "b"} and "tied" in verdict.text
    row = table.set_index("supervision").loc[verdict.tied[1]]
    assert row.difference_ci_low <= 0 <= row.difference_ci_high
    # too few patients: no verdict even for a large difference
    _, verdict = closest_supervision({"a": np.ones((MIN_PAIRED_PATIENTS - 1, 1)), "b": np.zeros((1, 1))})
    assert not verdict.decided and verdict.text.startswith("no verdict")
    with pytest.raises(ValueError, match="not paired"):
        closest_supervision({"a": np.ones((3, 1)), "b": np.ones((4, 1))})


def test_model_scores_pair_supervisions_on_common_patients_and_seeds():
    import pandas as pd

    from studylib.reporting.readers.truth import model_scores

    rows = [{"modality": "dual", "train_label": label, "seed": seed, "patient_id": pid, "ground_truth": gt,
             "dsc": 0.1 * seed + (0.5 if label == "a" else 0.3)}
            for label in ("a", "b") for seed in (0, 1) for pid in ("P1", "P2", "P3") for gt in ("truth", "a")
            if not (label == "b" and pid == "P3")]
    scores = model_scores(pd.DataFrame(rows))["dual"]
    assert set(scores) == {"a", "b"} and scores["a"].shape == (2, 2)  # P3 lacks b: left out of both
    assert np.allclose(scores["a"] - scores["b"], 0.2) and np.allclose(scores["a"][:, 1] - scores["a"][:, 0], 0.1)


def test_own_reader_differences_pair_each_style_with_its_readers_decoupled_model():
    import pandas as pd

    from studylib.reporting.readers.conditioned import own_reader_differences

    rows = []
    for pid, (c, d) in {"P1": (0.7, 0.6), "P2": (0.5, 0.55)}.items():
        rows += [{"modality": "dual", "patient_id": pid, "ground_truth": "r1", "train_label": "conditioned_r1", "dsc": c},
                 {"modality": "dual", "patient_id": pid, "ground_truth": "r1", "train_label": "r1", "dsc": d},
                 {"modality": "dual", "patient_id": pid, "ground_truth": "r2", "train_label": "r1", "dsc": 0.0}]
    table = own_reader_differences(pd.DataFrame(rows), ["r1", "r2"])
    assert list(table.reader) == ["r1", "r1"] and table.difference.tolist() == pytest.approx([0.1, -0.05])
