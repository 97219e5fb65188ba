import numpy as np
import pandas as pd
import pytest
from scipy import stats

from studylib.evaluation.statistics import bootstrap_ci, holm, paired_comparisons, paired_test, summarise


def test_holm_known_values():
    np.testing.assert_allclose(holm([0.01, 0.04, 0.03]), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])


def test_summary_and_bootstrap():
    s = summarise([0.5, 0.7, 0.9])
    assert s["mean"] == pytest.approx(0.7) and s["sd"] == pytest.approx(0.2) and s["median"] == 0.7
    lo, hi = bootstrap_ci(np.linspace(0, 1, 50), seed=1)
    assert lo < 0.5 < hi and bootstrap_ci([0.3]) == (0.3, 0.3)


def test_paired_test_matches_scipy_and_effect_size():
    x = np.array([0.8, 0.7, 0.9, 0.85, 0.6, 0.75])
    y = x - np.array([0.1, 0.05, 0.2, 0.02, 0.15, -0.01])
    out = paired_test(x, y)
    assert out["p_value"] == pytest.approx(stats.wilcoxon(x, y).pvalue)
    assert 0 < out["rank_biserial"] <= 1
    df = pd.DataFrame({"patient_id": list(range(6)) * 2, "modality": ["dual"] * 6 + ["ct"] * 6, "dsc": np.r_[x, y]})
    table = paired_comparisons(df, "modality", [("dual", "ct")], "dsc", ["patient_id"])
    assert table.loc[0, "p_holm"] == pytest.approx(out["p_value"])


def test_non_inferiority_bound_is_the_one_sided_bootstrap_quantile():
    from studylib.evaluation.statistics import non_inferiority

    assert non_inferiority([-0.01] * 8, 0.02)["non_inferior"]  # a constant difference is its own bound
    assert non_inferiority([-0.01] * 8, 0.02)["lower_bound"] == pytest.approx(-0.01)
    assert not non_inferiority([-0.03] * 8, 0.02)["non_inferior"]
    assert non_inferiority([0.5], 0.02)["verdict"].startswith("not testable")
    d = np.random.default_rng(4).normal(0.0, 0.05, 15)
    rng = np.random.default_rng(0)  # the draws, written out: 10,000 resamples of 15 patients
    means = d[rng.integers(0, 15, size=(10000, 15))].mean(axis=1)
    result = non_inferiority(d, 0.02, level=0.95)
    assert result["lower_bound"] == pytest.approx(np.quantile(means, 0.05), abs=1e-12)
    assert result["non_inferior"] == (np.quantile(means, 0.05) > -0.02)
