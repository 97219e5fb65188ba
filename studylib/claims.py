"""A verdict on each of the paper's claims, computed from per-patient results by rules written down first.

The rules (``VERDICT_RULES``) are printed in the report before any number. Each claim is one or more
directional comparisons of paired per-patient values; the tests of one family are Holm-corrected together.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .paper import load_paper
from .statistics import bootstrap_ci, holm, paired_test

ALPHA = 0.05
MIN_PATIENTS = 5
# "The same agreement" as the paper's kappa: within +-0.10, half the width of a Landis-Koch band (0.61-0.80 is
# "substantial"), so that a kappa called the same cannot change band by more than half of one. Written down
# before any kappa of a human-reader cohort was computed here.
AGREEMENT_MARGIN = 0.10

VERDICT_RULES = (
    f"**replicated**: the difference has the paper's direction and its Holm-corrected two-sided Wilcoxon p is "
    f"below {ALPHA}; **not replicated**: otherwise, which says whether the difference points the paper's way "
    f"(but is not significant) or the other way; **not testable here**: fewer than {MIN_PATIENTS} paired "
    "patients, a missing modality or label, or a claim this cohort cannot speak to (the agreement of the "
    "paper's human readers cannot be tested on simulated readers). Agreement with human readers is judged by "
    f"equivalence: **replicated** when the 95 % bootstrap CI of kappa lies within the paper's kappa ± "
    f"{AGREEMENT_MARGIN:.2f}, **not replicated** when it lies wholly outside that band, **inconclusive** when it "
    "straddles a bound (a wide interval is not evidence of the same agreement). Families corrected together: the modality "
    "comparisons of Table 1 (both labels), the four cross-evaluation comparisons of Table 2, and the volume "
    "comparison. Effect size: the matched-pairs rank-biserial r (+1: every patient favours the first named).")


@dataclass(frozen=True)
class Comparison:
    """'first > second' on ``metric`` over the same patients, as one claim of the paper states it."""

    claim: str
    family: str
    statement: str
    metric: str
    first: dict  # column filters selecting the first group, e.g. {"modality": "dual", "train_label": "label_a"}
    second: dict


def _select(per_patient: pd.DataFrame, filters: dict) -> pd.Series:
    mask = np.ones(len(per_patient), bool)
    for column, value in filters.items():
        mask &= (per_patient[column] == value).to_numpy()
    return per_patient[mask].set_index("patient_id")


def comparisons(labels: list[str], modalities: list[str]) -> list[Comparison]:
    """The directional comparisons that the paper's claims make, for the labels and inputs that were run."""
    out = []
    for label in labels:
        own = {"train_label": label, "ground_truth": label}
        for better, worse in (("dual", "pet"), ("dual", "ct"), ("pet", "ct")):
            if better in modalities and worse in modalities:
                out.append(Comparison("modality_order", "Table 1", f"{better} > {worse}, trained and tested on {label}",
                                      "dsc", {"modality": better, **own}, {"modality": worse, **own}))
    if "dual" in modalities and {"label_a", "label_b"} <= set(labels):
        for model, other in (("label_a", "label_b"), ("label_b", "label_a")):
            out.append(Comparison("own_ground_truth", "Table 2",
                                  f"model {model[-1].upper()} scores higher on GT {model[-1].upper()} than on GT "
                                  f"{other[-1].upper()}", "dsc",
                                  {"modality": "dual", "train_label": model, "ground_truth": model},
                                  {"modality": "dual", "train_label": model, "ground_truth": other}))
            out.append(Comparison("own_ground_truth", "Table 2",
                                  f"on GT {model[-1].upper()}, model {model[-1].upper()} beats model "
                                  f"{other[-1].upper()}", "dsc",
                                  {"modality": "dual", "train_label": model, "ground_truth": model},
                                  {"modality": "dual", "train_label": other, "ground_truth": model}))
        out.append(Comparison("a_broader_than_b", "volume", "model A predicts a larger volume than model B (dual)",
                              "volume_pred_ml", {"modality": "dual", "train_label": "label_a", "ground_truth": "label_a"},
                              {"modality": "dual", "train_label": "label_b", "ground_truth": "label_a"}))
    return out


def _verdict(n: int, difference: float, p_holm: float) -> tuple[str, str]:
    if n < MIN_PATIENTS:
        return "not testable here", f"{n} paired patients (< {MIN_PATIENTS})"
    if difference > 0 and p_holm < ALPHA:
        return "replicated", f"the paper's direction, Holm p = {p_holm:.3g}"
    if difference > 0:
        return "not replicated", f"the paper's direction but not significant (Holm p = {p_holm:.3g})"
    if difference < 0 and p_holm < ALPHA:
        return "not replicated", f"the opposite direction, significant (Holm p = {p_holm:.3g})"
    return "not replicated", f"no difference in the paper's direction (Holm p = {p_holm:.3g})"


def claims_table(per_patient: pd.DataFrame, agreement: pd.DataFrame | None = None,
                 synthetic_readers: bool = True) -> pd.DataFrame:
    """One row per tested comparison (and one for the agreement), with statistic, effect size and verdict."""
    labels = sorted(per_patient.train_label.unique())
    modalities = sorted(per_patient.modality.unique())
    rows = []
    for c in comparisons(labels, modalities):
        a, b = _select(per_patient, c.first)[c.metric], _select(per_patient, c.second)[c.metric]
        joined = pd.concat([a.rename("a"), b.rename("b")], axis=1, join="inner").dropna()
        test = paired_test(joined["a"], joined["b"]) if len(joined) else {
            "n_pairs": 0, "mean_difference": float("nan"), "p_value": float("nan"), "rank_biserial": float("nan")}
        scale = 100.0 if c.metric == "dsc" else 1.0
        rows.append({"claim": c.claim, "family": c.family, "comparison": c.statement, "metric": c.metric,
                     "n_patients": test["n_pairs"], "first_mean": scale * joined["a"].mean() if len(joined) else np.nan,
                     "second_mean": scale * joined["b"].mean() if len(joined) else np.nan,
                     "mean_difference": scale * test["mean_difference"], "rank_biserial": test["rank_biserial"],
                     "p_value": test["p_value"]})
    table = pd.DataFrame(rows, columns=["claim", "family", "comparison", "metric", "n_patients", "first_mean",
                                        "second_mean", "mean_difference", "rank_biserial", "p_value"])
    table["p_holm"] = np.nan
    for _, index in table.groupby("family").groups.items():
        testable = [i for i in index if table.loc[i, "n_patients"] >= MIN_PATIENTS and np.isfinite(table.loc[i, "p_value"])]
        if testable:
            table.loc[testable, "p_holm"] = holm(table.loc[testable, "p_value"].to_numpy())
    verdicts = [_verdict(int(r.n_patients), r.mean_difference, r.p_holm) for r in table.itertuples()]
    table["verdict"] = [v for v, _ in verdicts]
    table["reason"] = [why for _, why in verdicts]
    return pd.concat([table, pd.DataFrame([agreement_claim(agreement, synthetic_readers)])], ignore_index=True)


def agreement_claim(agreement: pd.DataFrame | None, synthetic_readers: bool) -> dict:
    """The paper's kappa beside ours: testable only with human readers, by equivalence within ``AGREEMENT_MARGIN``."""
    kappa = load_paper().kappa
    row = {"claim": "agreement", "family": "agreement", "comparison": f"annotation agreement kappa = {kappa}",
           "metric": "kappa_voxel_body"}
    if agreement is None or agreement.empty or "kappa_voxel_body" not in agreement:
        return {**row, "verdict": "not testable here", "reason": "the cohort has one annotation"}
    values = agreement["kappa_voxel_body"].dropna().to_numpy()
    low, high = bootstrap_ci(values) if len(values) > 1 else (np.nan, np.nan)
    row.update(n_patients=len(values), first_mean=float(values.mean()), second_mean=kappa,
               mean_difference=float(values.mean() - kappa))
    if synthetic_readers:
        return {**row, "verdict": "not testable here",
                "reason": f"simulated readers: kappa {values.mean():.2f} (95 % CI {low:.2f}-{high:.2f}) is an outcome "
                          "of the reader models, not a measurement of the paper's readers"}
    lower, upper = kappa - AGREEMENT_MARGIN, kappa + AGREEMENT_MARGIN
    interval = f"kappa {values.mean():.2f}, 95 % CI {low:.2f}-{high:.2f}"
    if lower <= low and high <= upper:
        return {**row, "verdict": "replicated", "reason": f"{interval} lies within {lower:.2f}-{upper:.2f}"}
    if high < lower or low > upper:
        return {**row, "verdict": "not replicated", "reason": f"{interval} lies outside {lower:.2f}-{upper:.2f}"}
    return {**row, "verdict": "inconclusive",
            "reason": f"{interval} straddles the equivalence band {lower:.2f}-{upper:.2f}"}
