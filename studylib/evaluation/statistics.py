"""Aggregation over patients (mean +- SD, median/IQR, bootstrap CI) and paired tests with Holm correction."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats


def bootstrap_ci(values, n_boot: int = 10000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean over patients."""
    values = np.asarray(values, float)
    if len(values) == 0:
        return float("nan"), float("nan")
    if len(values) == 1:
        return float(values[0]), float(values[0])
    rng = np.random.default_rng(seed)
    means = values[rng.integers(0, len(values), size=(n_boot, len(values)))].mean(axis=1)
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def hierarchical_bootstrap_ci(values, n_boot: int = 10000, level: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of the mean of ``values`` (patients, seeds): patients are drawn with replacement, then
    each drawn patient's seeds with replacement. One seed: the same draws and interval as ``bootstrap_ci``."""
    values = np.asarray(values, float)
    if values.ndim != 2:
        raise ValueError(f"values must be (patients, seeds), got shape {values.shape}")
    patients, seeds = values.shape
    if patients == 0 or seeds == 0:
        return float("nan"), float("nan")
    if patients == 1 and seeds == 1:
        return float(values[0, 0]), float(values[0, 0])
    rng = np.random.default_rng(seed)
    who = rng.integers(0, patients, size=(n_boot, patients))
    which = rng.integers(0, seeds, size=(n_boot, patients, seeds)) if seeds > 1 else np.zeros((n_boot, patients, 1), int)
    means = values[who[..., None], which].mean(axis=(1, 2))
    alpha = (1 - level) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def summarise(values, seed: int = 0) -> dict:
    """Mean, SD (ddof=1, the paper's form), median, IQR, bootstrap 95% CI, n."""
    v = np.asarray(values, float)
    lo, hi = bootstrap_ci(v, seed=seed)
    return {
        "n": int(len(v)), "mean": float(np.mean(v)) if len(v) else float("nan"),
        "sd": float(np.std(v, ddof=1)) if len(v) > 1 else 0.0,
        "median": float(np.median(v)) if len(v) else float("nan"),
        "q1": float(np.quantile(v, 0.25)) if len(v) else float("nan"),
        "q3": float(np.quantile(v, 0.75)) if len(v) else float("nan"),
        "ci_low": lo, "ci_high": hi,
    }


def summary_table(per_patient: pd.DataFrame, by: list[str], metrics: list[str]) -> pd.DataFrame:
    """One row per group and metric with the summary statistics over patients."""
    rows = []
    for keys, group in per_patient.groupby(by, sort=False):
        keys = keys if isinstance(keys, tuple) else (keys,)
        for metric in metrics:
            rows.append({**dict(zip(by, keys)), "metric": metric, **summarise(group[metric].to_numpy())})
    return pd.DataFrame(rows)


def mean_sd_text(values, scale: float = 100.0, digits: int = 2) -> str:
    """'mean ± SD' as the paper prints it (percent by default)."""
    s = summarise(values)
    return f"{scale * s['mean']:.{digits}f} ± {scale * s['sd']:.{digits}f}"


def holm(pvalues) -> np.ndarray:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    p = np.asarray(pvalues, float)
    order = np.argsort(p)
    m = len(p)
    adjusted = np.empty(m)
    running = 0.0
    for rank, idx in enumerate(order):
        running = max(running, (m - rank) * p[idx])
        adjusted[idx] = min(running, 1.0)
    return adjusted


def paired_test(x, y) -> dict:
    """Wilcoxon signed-rank test of paired values with the matched-pairs rank-biserial effect size."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    d = x - y
    nonzero = d[d != 0]
    out = {"n_pairs": int(len(d)), "mean_difference": float(d.mean()) if len(d) else float("nan"),
           "median_difference": float(np.median(d)) if len(d) else float("nan")}
    if len(nonzero) == 0:
        return {**out, "statistic": float("nan"), "p_value": 1.0, "rank_biserial": 0.0}
    ranks = stats.rankdata(np.abs(nonzero))
    w_plus, w_minus = ranks[nonzero > 0].sum(), ranks[nonzero < 0].sum()
    result = stats.wilcoxon(x, y, zero_method="wilcox")
    return {**out, "statistic": float(result.statistic), "p_value": float(result.pvalue),
            "rank_biserial": float((w_plus - w_minus) / (w_plus + w_minus))}


def paired_comparisons(per_patient: pd.DataFrame, group_col: str, pairs: list[tuple[str, str]], metric: str,
                       id_cols: list[str]) -> pd.DataFrame:
    """Paired Wilcoxon tests between groups over the same patients (matched on ``id_cols``), Holm-corrected."""
    rows = []
    for a, b in pairs:
        left = per_patient[per_patient[group_col] == a].set_index(id_cols)[metric]
        right = per_patient[per_patient[group_col] == b].set_index(id_cols)[metric]
        joined = pd.concat([left.rename("a"), right.rename("b")], axis=1, join="inner").dropna()
        if len(joined) == 0:
            continue
        rows.append({"metric": metric, "group_a": a, "group_b": b, **paired_test(joined["a"], joined["b"])})
    table = pd.DataFrame(rows)
    if len(table):
        table["p_holm"] = holm(table["p_value"].to_numpy())
    return table


def smallest_testable_pairs(family_size: int, alpha: float) -> int:
    """Fewest paired patients for which a two-sided exact Wilcoxon test, Holm-corrected over ``family_size`` tests,
    can reach ``alpha`` at all (every patient favouring one side gives p = 2 / 2^n)."""
    n = 1
    while family_size * 2.0 ** (1 - n) >= alpha:
        n += 1
    return n


def bonferroni_level(alpha: float, family_size: int) -> float:
    """Confidence level of each of ``family_size`` intervals that together cover with probability >= 1 - alpha."""
    return 1.0 - alpha / max(family_size, 1)


def seed_mean(per_patient: pd.DataFrame) -> pd.DataFrame:
    """Average repeated seeds per (model family, region, background, modality, train label, ground truth, patient)."""
    keys = [k for k in ("model_family", "region", "background_fraction") if k in per_patient]
    keys += ["modality", "train_label", "ground_truth", "patient_id"]
    numeric = per_patient.select_dtypes("number").columns.difference(["fold", "seed", *keys])
    return per_patient.groupby(keys, sort=False)[list(numeric)].mean().reset_index()


def non_inferiority(differences, margin: float, level: float = 0.95, n_boot: int = 10000, seed: int = 0) -> dict:
    """One-sided non-inferiority of a new method against a reference from paired differences (new - reference): the
    lower bound of the one-sided ``level`` percentile-bootstrap interval of the mean difference (the two-sided
    interval at 2 * level - 1) against -``margin``. Non-inferior when the bound lies above -``margin``."""
    d = np.asarray(differences, float)
    lower, _ = bootstrap_ci(d, n_boot, 2 * level - 1, seed)
    decided = len(d) >= 2
    return {"n_pairs": int(len(d)), "mean_difference": float(d.mean()) if len(d) else float("nan"),
            "lower_bound": lower, "margin": margin, "level": level,
            "non_inferior": bool(decided and lower > -margin),
            "verdict": ("not testable (fewer than 2 pairs)" if not decided else
                        "non-inferior" if lower > -margin else "non-inferiority not shown")}
