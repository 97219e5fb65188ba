"""A verdict on each of the paper's claims, computed from per-patient results by rules written down first.

The rules (``VERDICT_RULES``) are printed in the report before any number. Each claim is one or more paired
per-patient comparisons; a verdict follows from the bootstrap interval of the mean paired difference, at a level
adjusted for the comparisons judged together (a family), set against the paper's own difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from .paper import load_paper
from .statistics import bonferroni_level, bootstrap_ci, holm, paired_test, seed_mean, smallest_testable_pairs

ALPHA = 0.05
N_BOOT = 10000  # resamples of patients: >= 20 in each tail of the narrowest (Bonferroni-adjusted) interval here
# "The same agreement" as the paper's kappa: within +-0.10, half the width of a Landis-Koch band (0.61-0.80 is
# "substantial"), so that a kappa called the same cannot change band by more than half of one. Written down
# before any kappa of a human-reader cohort was computed here.
AGREEMENT_MARGIN = 0.10
# "Symmetric" declines (Table 2): the two declines differ by at most 5 DSC points. About a third of either of the
# paper's declines (16.14, 18.92) and nearly twice the paper's own difference (-2.78), so that the paper's numbers
# pass and a decline one and a half times the other's does not. Written down before any result was computed here.
SYMMETRY_MARGIN = 5.0
# An arm (modality x training label) that predicts nothing has not learned the task, so a comparison with it
# measures that failure, not the inputs or the labels. Near-empty: the predicted volume is below 1 % of the
# reference on a patient (a DSC below 0.05 where volumes are not recorded: a wrong but full-size prediction is a
# model that trained, and its scores are a result); failed: near-empty on more than half of its patients.
FAILED_VOLUME_FRACTION = 0.01
FAILED_DSC = 0.05
FAILED_SHARE = 0.5
# Labels nest when label B lies (almost) wholly inside label A on nearly every patient: then "model A predicts a
# larger volume" follows from the labels, whatever the models learned. 95 % leaves room for resampling at the
# boundary; 90 % of patients for one odd case.
NESTED_INSIDE = 0.95
NESTED_SHARE = 0.9

REPLICATED, CONTRADICTED, INCONCLUSIVE = "replicated", "contradicted", "inconclusive"
NOT_TESTABLE, BY_CONSTRUCTION = "not testable", "holds by construction"
VERDICTS = (REPLICATED, CONTRADICTED, INCONCLUSIVE, NOT_TESTABLE, BY_CONSTRUCTION)
EVIDENCE = (REPLICATED, CONTRADICTED, INCONCLUSIVE)  # the verdicts that speak for or against the paper
TOO_FEW, FAILED_ARM, MISSING = "too few pairs", "arm failed to train", "missing modality or label"
CENTRAL_CLAIM = "dual_over_pet"  # the paper's central claim: fusing CT with PET beats PET alone

COLUMNS = ["key", "claim", "family", "comparison", "metric", "n_patients", "first_mean", "second_mean",
           "mean_difference", "ci_level", "ci_low", "ci_high", "paper_difference", "margin", "rank_biserial",
           "p_value", "p_holm", "verdict", "why_not_testable", "reason", "stability"]
CLAIM_TEXT_COLUMNS = ["key", "claim", "family", "comparison", "metric", "verdict", "why_not_testable", "reason",
                      "stability"]

_PAPER = load_paper()
VERDICT_RULES = (
    "Each comparison is a paired per-patient difference, first minus second (3D DSC in points, volume in ml); a "
    "patient's value is its mean over seeds. The mean difference gets a percentile bootstrap CI (patients "
    f"resampled {N_BOOT:,} times) at the level 1 − {ALPHA}/m for a family of m comparisons judged together "
    "(Bonferroni), so that the chance of any wrong verdict in a family stays at or below "
    f"{ALPHA}. Families: the modality comparisons of Table 1 (both labels together), the four own-ground-truth "
    "comparisons of Table 2, the volume comparison, the symmetric decline. Intervals are Bonferroni's because Holm's "
    "step-down has no matching intervals (those consistent with it say nothing beyond the sign of a rejected "
    "difference); the two-sided Wilcoxon p, Holm-corrected within the family, stands beside each as a check, and the "
    "reason says when the two disagree. "
    "**replicated**: the CI lies wholly above 0 (the paper's direction); the reason says whether the paper's own "
    "difference (from its Table 1 or Table 2 means) lies inside the CI (compatible), above it (ours is smaller) or "
    "below it (ours is larger). **contradicted**: the CI lies wholly below 0 (the other way). **inconclusive**: the "
    "CI contains 0 (the data cannot tell the direction; not evidence against the paper). "
    "**not testable**, with its reason, and left out of the family: *missing modality or label* (not run); *arm "
    "failed to train*: a model (modality × training label) whose predictions on its own label are near-empty "
    f"(predicted volume below {100 * FAILED_VOLUME_FRACTION:g} % of the reference; DSC below {FAILED_DSC} where "
    f"volumes are not recorded) on more than {100 * FAILED_SHARE:g} % of its patients: a comparison with a model "
    "that predicts nothing measures that failure, not the inputs or the labels; *too few pairs*: fewer than the "
    f"smallest n for which an exact two-sided Wilcoxon test, Holm-corrected over the family's m, can reach {ALPHA} "
    f"(m · 2^(1−n) < {ALPHA}: {smallest_testable_pairs(1, ALPHA)} pairs for m = 1, "
    f"{smallest_testable_pairs(6, ALPHA)} for m = 6); below it no data could be significant, and a bootstrap "
    "interval of so few patients is too narrow to trust. "
    f"**holds by construction** (not evidence): where the cohort's labels nest (label B at least "
    f"{100 * NESTED_INSIDE:g} % inside label A on at least {100 * NESTED_SHARE:g} % of patients), model A predicting "
    "a larger volume than model B follows from the labels, whatever the models learned; its interval is still shown. "
    f"The symmetric decline (Table 2: model A loses {_PAPER.effects['decline_model_a']:.2f} points from GT A to GT B, "
    f"model B {_PAPER.effects['decline_model_b']:.2f} from GT B to GT A) is judged by equivalence on the per-patient "
    f"difference of the two declines: **replicated** when its 95 % CI lies within ±{SYMMETRY_MARGIN:g} points (about "
    "a third of either decline, fixed before any result), "
    "**contradicted** when it lies wholly outside, **inconclusive** when it straddles a bound (the paper's own "
    f"difference is {_PAPER.effects['symmetric_decline']:+.2f}; a 95 % interval is stricter than the 90 % of two "
    "one-sided tests). Agreement with human readers likewise: **replicated** when the 95 % bootstrap CI of kappa lies "
    f"within the paper's kappa ± {AGREEMENT_MARGIN:.2f}, **contradicted** when it lies wholly outside, "
    "**inconclusive** when it straddles a bound; simulated readers make it not testable. With several seeds, each "
    "comparison is judged again on each seed alone by the same rules; the seeds column says how many agree.")


@dataclass(frozen=True)
class Comparison:
    """One claim of the paper as a paired per-patient comparison: first > second, or first ≈ second."""

    key: str
    claim: str
    family: str
    statement: str
    metric: str
    first: tuple[dict, ...]  # column filters of one group, or of two: the first group's value minus the second's
    second: tuple[dict, ...]
    effect: str | None = None  # the paper's own difference (a name of paper.yaml's effects)
    margin: float | None = None  # judged by equivalence within +-margin, not by direction

    def arms(self) -> list[tuple[str, str]]:
        """The models (modality, training label) the comparison uses."""
        return sorted({(g["modality"], g["train_label"]) for g in (*self.first, *self.second)})


def _group(modality: str, model: str, ground_truth: str) -> dict:
    return {"modality": modality, "train_label": model, "ground_truth": ground_truth}


def comparisons(labels: list[str]) -> list[Comparison]:
    """Every comparison the paper's claims make; Table 1's for each label trained and scored on itself."""
    out = []
    for label in labels:
        for better, worse in (("dual", "pet"), ("dual", "ct"), ("pet", "ct")):
            effect = f"{better}_over_{worse}"
            out.append(Comparison(f"{effect}:{label}", "modality_order", "Table 1",
                                  f"{better} > {worse}, trained and tested on {label}", "dsc",
                                  (_group(better, label, label),), (_group(worse, label, label),), effect))
    for model, other in (("label_a", "label_b"), ("label_b", "label_a")):
        m, o = model[-1], other[-1]
        out.append(Comparison(f"decline_model_{m}", "own_ground_truth", "Table 2",
                              f"model {m.upper()} scores higher on GT {m.upper()} than on GT {o.upper()}", "dsc",
                              (_group("dual", model, model),), (_group("dual", model, other),), f"decline_model_{m}"))
        out.append(Comparison(f"gt_{m}_model_{m}_over_{o}", "own_ground_truth", "Table 2",
                              f"on GT {m.upper()}, model {m.upper()} beats model {o.upper()}", "dsc",
                              (_group("dual", model, model),), (_group("dual", other, model),),
                              f"gt_{m}_model_{m}_over_{o}"))
    out.append(Comparison("a_broader_than_b", "a_broader_than_b", "volume",
                          "model A predicts a larger volume than model B (dual)", "volume_pred_ml",
                          (_group("dual", "label_a", "label_a"),), (_group("dual", "label_b", "label_a"),)))
    out.append(Comparison("symmetric_decline", "symmetric_decline", "Table 2 symmetry",
                          "model A's decline from GT A to GT B ≈ model B's from GT B to GT A (dual)", "dsc",
                          (_group("dual", "label_a", "label_a"), _group("dual", "label_a", "label_b")),
                          (_group("dual", "label_b", "label_b"), _group("dual", "label_b", "label_a")),
                          "symmetric_decline", SYMMETRY_MARGIN))
    return out


def _select(per_patient: pd.DataFrame, filters: dict) -> pd.DataFrame:
    mask = np.ones(len(per_patient), bool)
    for column, value in filters.items():
        mask &= (per_patient[column] == value).to_numpy()
    return per_patient[mask].set_index("patient_id")


def _side(per_patient: pd.DataFrame, groups: tuple[dict, ...], metric: str) -> pd.Series:
    values = [_select(per_patient, g)[metric] for g in groups]
    return values[0] if len(values) == 1 else values[0] - values[1]  # a decline: patients in both groups only


def paired_sides(per_patient: pd.DataFrame, c: Comparison) -> pd.DataFrame:
    """Per patient (index), the first and the second side of ``c``; patients missing either are left out."""
    return pd.concat([_side(per_patient, c.first, c.metric).rename("first"),
                      _side(per_patient, c.second, c.metric).rename("second")], axis=1, join="inner").dropna()


def missing_inputs(per_patient: pd.DataFrame, c: Comparison) -> str:
    """What of ``c``'s modalities and labels is not in the results ('' when all is)."""
    absent = {f"{column.replace('_', ' ')} {value}" for g in (*c.first, *c.second) for column, value in g.items()
              if not (per_patient[column] == value).any()}
    return ", ".join(sorted(absent))


def _mostly_empty(group: pd.DataFrame) -> tuple[int, int, str] | None:
    """(empty, scored, rule) when a model's own-label predictions are (almost) empty on most patients, else None."""
    if {"volume_pred_ml", "volume_ref_ml"} <= set(group):
        group = group[group.volume_ref_ml > 0]  # no reference volume: nothing to fall short of
        empty = group.volume_pred_ml < FAILED_VOLUME_FRACTION * group.volume_ref_ml
        what = f"predicted volume below {100 * FAILED_VOLUME_FRACTION:g} % of the reference"
    else:
        empty = group.dsc < FAILED_DSC
        what = f"DSC below {FAILED_DSC}"
    if len(group) and empty.sum() > FAILED_SHARE * len(group):
        return int(empty.sum()), len(group), what
    return None


def failed_arms(per_patient: pd.DataFrame) -> dict[tuple[str, str], str]:
    """Models (modality, training label) that predict (almost) nothing on their own label on most patients."""
    own = per_patient[per_patient.ground_truth == per_patient.train_label]
    out = {}
    for (modality, label), group in own.groupby(["modality", "train_label"]):
        failed = _mostly_empty(group)
        if failed:
            out[(modality, label)] = f"{modality} trained on {label}: {failed[2]} on {failed[0]} of {failed[1]} patients"
    return out


def failed_runs(per_run: pd.DataFrame) -> list[str]:
    """Runs (one fold, one seed) whose own-label predictions are (almost) empty on most of their test patients, by
    the rule of ``failed_arms`` applied to each run instead of to the seed-averaged arm."""
    own = per_run[per_run.ground_truth == per_run.train_label]
    return sorted(run for run, group in own.groupby("run_id") if _mostly_empty(group))


def labels_nest(agreement: pd.DataFrame | None) -> str:
    """Why label B counts as inside label A on nearly every patient ('' when the labels do not nest)."""
    if agreement is None or "fraction_b_inside_a" not in agreement:
        return ""
    inside = agreement["fraction_b_inside_a"].dropna()
    nested = int((inside >= NESTED_INSIDE).sum())
    if len(inside) == 0 or nested < NESTED_SHARE * len(inside):
        return ""
    return f"label B lies at least {100 * NESTED_INSIDE:g} % inside label A on {nested} of {len(inside)} patients"


def _measure(per_patient: pd.DataFrame, c: Comparison) -> tuple[dict, np.ndarray]:
    """The row of ``c`` before any verdict, and its per-patient differences (in the table's units)."""
    joined = paired_sides(per_patient, c)
    scale = 100.0 if c.metric == "dsc" else 1.0
    d = scale * (joined["first"] - joined["second"]).to_numpy()
    row = {"key": c.key, "claim": c.claim, "family": c.family, "comparison": c.statement, "metric": c.metric,
           "n_patients": len(d), "first_mean": scale * joined["first"].mean() if len(d) else np.nan,
           "second_mean": scale * joined["second"].mean() if len(d) else np.nan,
           "mean_difference": float(d.mean()) if len(d) else np.nan,
           "paper_difference": _PAPER.effects.get(c.effect, np.nan) if c.effect else np.nan,
           "margin": c.margin if c.margin is not None else np.nan, "why_not_testable": "", "reason": ""}
    if c.margin is None and len(d):  # a Wilcoxon p tests a difference, which an equivalence claim does not state
        test = paired_test(joined["first"], joined["second"])
        row.update(rank_biserial=test["rank_biserial"], p_value=test["p_value"])
    return row, d


def _against_paper(low: float, high: float, paper: float) -> str:
    if not np.isfinite(paper):
        return ""
    if low <= paper <= high:
        return f"; compatible with the paper's {paper:+.2f} (inside the CI)"
    return f"; {'smaller' if paper > high else 'larger'} than the paper's {paper:+.2f} (outside the CI)"


def direction_verdict(low: float, high: float, paper: float, p_holm: float) -> tuple[str, str]:
    """replicated / contradicted / inconclusive from the CI of first minus second, with the paper's difference."""
    if low > 0:
        verdict, why = REPLICATED, "the CI lies above 0 (the paper's direction)"
    elif high < 0:
        verdict, why = CONTRADICTED, "the CI lies below 0 (the other way)"
    else:
        verdict, why = INCONCLUSIVE, "the CI contains 0"
    why += _against_paper(low, high, paper)
    if np.isfinite(p_holm) and (verdict != INCONCLUSIVE) != (p_holm < ALPHA):
        why += f"; the Holm-corrected Wilcoxon p = {p_holm:.2g} disagrees"
    return verdict, why


def equivalence_verdict(low: float, high: float, margin: float, paper: float) -> tuple[str, str]:
    """replicated / contradicted / inconclusive for 'the same within ±margin' from the CI of the difference."""
    paper_text = f" (the paper's: {paper:+.2f})" if np.isfinite(paper) else ""
    if -margin <= low and high <= margin:
        return REPLICATED, f"the CI lies within ±{margin:g}{paper_text}"
    if high < -margin or low > margin:
        return CONTRADICTED, f"the CI lies wholly outside ±{margin:g}{paper_text}"
    return INCONCLUSIVE, f"the CI straddles a bound of ±{margin:g}{paper_text}"


def _not_testable(row: dict, kind: str, detail: str) -> None:
    row.update(verdict=NOT_TESTABLE, why_not_testable=kind, reason=f"{kind} ({detail})")
    if kind != TOO_FEW:  # a difference with a model that predicts nothing (or is absent) is no effect to show
        row.update(mean_difference=np.nan, rank_biserial=np.nan, p_value=np.nan)


def _judge(per_patient: pd.DataFrame, agreement: pd.DataFrame | None) -> pd.DataFrame:
    """One row per comparison of the paper's claims with its interval, p and verdict (no seeds, no agreement)."""
    labels = sorted(label for label in per_patient.train_label.unique()
                    if ((per_patient.train_label == label) & (per_patient.ground_truth == label)).any())
    failed, nested = failed_arms(per_patient), labels_nest(agreement)
    planned = comparisons(labels)
    rows, diffs = [], []
    for c in planned:
        row, d = _measure(per_patient, c)
        broken = [failed[arm] for arm in c.arms() if arm in failed]
        if missing := missing_inputs(per_patient, c):
            _not_testable(row, MISSING, f"no {missing} in the results")
        elif broken:
            _not_testable(row, FAILED_ARM, "; ".join(broken))
        rows.append(row)
        diffs.append(d)
    for family in dict.fromkeys(r["family"] for r in rows):
        members = [i for i, r in enumerate(rows) if r["family"] == family and not r["why_not_testable"]]
        m = len(members)  # a missing or failed comparison leaves the family: it is not tested
        need, level = smallest_testable_pairs(m, ALPHA), bonferroni_level(ALPHA, m)
        for i in members:
            if rows[i]["n_patients"] < need:
                _not_testable(rows[i], TOO_FEW, f"n = {rows[i]['n_patients']} < {need} for a family of {m}")
        judged = [i for i in members if not rows[i]["why_not_testable"]]
        with_p = [i for i in judged if np.isfinite(rows[i].get("p_value", np.nan))]
        for i, p in zip(with_p, holm([rows[i]["p_value"] for i in with_p]) if with_p else []):
            rows[i]["p_holm"] = float(p)
        for i in judged:
            row, c = rows[i], planned[i]
            # an equivalence claim is its own family of one: 95 %, the same as the agreement's interval
            low, high = bootstrap_ci(diffs[i], n_boot=N_BOOT, level=level)
            row.update(ci_level=level, ci_low=low, ci_high=high)
            if c.margin is not None:
                row["verdict"], row["reason"] = equivalence_verdict(low, high, c.margin, row["paper_difference"])
            else:
                row["verdict"], row["reason"] = direction_verdict(low, high, row["paper_difference"],
                                                                  row.get("p_holm", np.nan))
            if c.key == "a_broader_than_b" and nested:
                shown = "" if low > 0 else "; the models' volumes do not even show it"
                row["verdict"], row["reason"] = BY_CONSTRUCTION, f"the labels nest: {nested}{shown}"
    return pd.DataFrame(rows, columns=COLUMNS).assign(stability="")


def stability(per_seed: pd.DataFrame, agreement: pd.DataFrame | None, table: pd.DataFrame) -> list[str]:
    """Per row of ``table``: how many seeds, each judged alone by the same rules, give its verdict."""
    seeds = sorted(per_seed.seed.unique())
    if len(seeds) < 2:
        return [""] * len(table)
    each = {s: _judge(per_seed[per_seed.seed == s], agreement).set_index("key").verdict for s in seeds}
    out = []
    for key, verdict in zip(table.key, table.verdict):
        seen = {s: each[s].get(key, NOT_TESTABLE) for s in seeds}
        agree = sum(v == verdict for v in seen.values())
        detail = "" if agree == len(seeds) else " (" + "; ".join(f"seed {s}: {v}" for s, v in seen.items()) + ")"
        out.append(f"{agree}/{len(seeds)} seeds agree{detail}")
    return out


def claims_table(per_patient: pd.DataFrame, agreement: pd.DataFrame | None = None,
                 synthetic_readers: bool = True, per_seed: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per comparison of the paper's claims (and one for the agreement): difference, CI, p and verdict.

    ``per_patient`` has one row per patient and group (seeds averaged; several seeds in a ``seed`` column are
    averaged here). ``per_seed``, the same rows before seed averaging, adds the stability of each verdict over seeds.
    """
    if "seed" in per_patient and per_patient.seed.nunique() > 1:
        per_patient = seed_mean(per_patient)
    table = _judge(per_patient, agreement)
    if per_seed is not None and "seed" in per_seed:
        table["stability"] = stability(per_seed, agreement, table)
    agreement_row = pd.DataFrame([agreement_claim(agreement, synthetic_readers)], columns=COLUMNS)
    return pd.concat([table, agreement_row], ignore_index=True)


def agreement_claim(agreement: pd.DataFrame | None, synthetic_readers: bool) -> dict:
    """The paper's kappa beside ours: testable only with human readers, by equivalence within ``AGREEMENT_MARGIN``."""
    kappa = _PAPER.kappa
    row = {"key": "agreement", "claim": "agreement", "family": "agreement",
           "comparison": f"annotation agreement kappa = {kappa}", "metric": "kappa_voxel_body", "stability": "",
           "why_not_testable": ""}
    if agreement is None or agreement.empty or "kappa_voxel_body" not in agreement:
        return {**row, "verdict": NOT_TESTABLE, "why_not_testable": MISSING,
                "reason": f"{MISSING} (the cohort has one annotation)"}
    values = agreement["kappa_voxel_body"].dropna().to_numpy()
    low, high = bootstrap_ci(values, n_boot=N_BOOT) if len(values) > 1 else (np.nan, np.nan)
    # the interval of ours minus the paper's, so that it reads against the margin like the symmetric decline's
    row.update(n_patients=len(values), first_mean=float(values.mean()), second_mean=kappa,
               mean_difference=float(values.mean() - kappa), margin=AGREEMENT_MARGIN, ci_level=0.95,
               ci_low=low - kappa, ci_high=high - kappa)
    if synthetic_readers:
        return {**row, "verdict": NOT_TESTABLE, "why_not_testable": "simulated readers",
                "reason": f"simulated readers (kappa {values.mean():.2f}, 95 % CI {low:.2f}-{high:.2f}, is an outcome "
                          "of the reader models, not a measurement of the paper's readers)"}
    verdict, why = equivalence_verdict(row["ci_low"], row["ci_high"], AGREEMENT_MARGIN, np.nan)
    return {**row, "verdict": verdict,
            "reason": f"kappa {values.mean():.2f}, 95 % CI {low:.2f}-{high:.2f}; ours minus the paper's {kappa}: {why}"}


def central_claim(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of the paper's central claim (dual > PET), one per label."""
    return table[table.key.astype(str).str.startswith(f"{CENTRAL_CLAIM}:")]


def interval_text(row: pd.Series, digits: int = 1) -> str:
    """'+3.1 points, 99.2 % CI +1.0 to +5.2, n = 8' for a judged row; the reason for one not tested."""
    if row.verdict == NOT_TESTABLE or not np.isfinite(row.ci_low):
        return str(row.reason)
    unit = " points" if row.metric == "dsc" else (" ml" if row.metric.endswith("_ml") else "")
    return (f"{row.mean_difference:+.{digits}f}{unit}, {100 * row.ci_level:.1f} % CI {row.ci_low:+.{digits}f} to "
            f"{row.ci_high:+.{digits}f}, n = {int(row.n_patients)}")


def verdict_counts(table: pd.DataFrame) -> str:
    """The verdicts counted by class, evidence apart from what is not evidence (by construction, not testable)."""
    counts = table.verdict.value_counts()
    evidence = ", ".join(f"{counts[v]} {v}" for v in EVIDENCE if v in counts) or "none"
    text = f"Verdicts that are evidence: {evidence}."
    apart = []
    if BY_CONSTRUCTION in counts:
        apart.append(f"{counts[BY_CONSTRUCTION]} {BY_CONSTRUCTION}")
    if NOT_TESTABLE in counts:
        kinds = table[table.verdict == NOT_TESTABLE].why_not_testable.value_counts()
        apart.append(f"{counts[NOT_TESTABLE]} {NOT_TESTABLE} (" + ", ".join(f"{n} {k}" for k, n in kinds.items()) + ")")
    if apart:
        text += f" Not evidence: {'; '.join(apart)}."
    return text


def holds_for(verdicts: dict[str, str]) -> str:
    """Which families a claim holds for (verdict replicated): 'both', 'neither', '<family> only', or a list."""
    holders = [family for family, verdict in verdicts.items() if verdict == REPLICATED]
    if len(holders) == len(verdicts):
        return "both" if len(verdicts) == 2 else "all"
    if not holders:
        return "neither" if len(verdicts) == 2 else "none"
    return f"{', '.join(holders)} only"


def claims_across_families(tables: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """One row per claim (the agreement, which no model makes, left out): each family's verdict and which families
    it holds for. ``tables``: each family's ``claims_table``, the study's own first."""
    first = next(iter(tables.values()))
    rows = []
    for key, comparison in zip(first.key, first.comparison):
        if key == "agreement":
            continue
        verdicts = {}
        for family, table in tables.items():
            row = table[table.key == key]
            verdicts[family] = str(row.verdict.iloc[0]) if len(row) else NOT_TESTABLE
        rows.append({"key": key, "comparison": comparison, **{f"verdict_{f}": v for f, v in verdicts.items()},
                     "holds_for": holds_for(verdicts)})
    return pd.DataFrame(rows)
