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
