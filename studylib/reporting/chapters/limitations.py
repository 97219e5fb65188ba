"""The report's Limitations chapter (report/index.qmd): written from the results folder."""

from __future__ import annotations

import json

import pandas as pd

from ...evaluation.paper import load_paper
from ...evaluation.statistics import smallest_testable_pairs
from ...ingest.cohort import load_cohort
from ...plans.results_folder import AGGREGATE, CONVERGENCE, LOCALISATION, SPLITS
from ...plans.runs import parse_run_id
from ...synthetic.generate import generator_settings
from .. import aggregate as agg
from ..context import ReportContext
from .methods import nsd_text


def limitations_markdown(ctx: ReportContext) -> str:
    """What the tables can and cannot show, written from this results folder (seeds, folds, validation patients,
    power, cohort, scale, precision and hardware, the CT-only arm, boundary metrics, regions)."""
    from ...evaluation.claims import ALPHA, failed_runs

    pp, profile, items = ctx.per_patient, ctx.profile, []
    seeds = sorted({s["params"]["seed"] for s in ctx.summaries if "params" in s})
    if len(seeds) == 1:
        items.append(f"**Training variance is not measured.** Every cell was trained with one seed ({seeds[0]}): how "
                     "much a model's scores move with its random initialisation and batch order is unknown, and each "
                     "test compares one trained model per fold with another, not the two methods.")
    else:
        items.append(f"**Seeds.** Each cell was trained with {len(seeds)} seeds ({', '.join(map(str, seeds))}); "
                     "per-patient values are averaged over seeds before the tests, which treat patients, not seeds, "
                     "as the unit.")
    splits_path = ctx.results / SPLITS
    if splits_path.exists():
        splits = json.loads(splits_path.read_text())
        val = sorted({len(f["val"]) for f in splits})
        test = sorted({len(f["test"]) for f in splits})
        few = " Model selection on so few volumes is noisy: a checkpoint can win by one patient's luck." if min(val) < 3 else ""
        items.append(f"**Model selection.** {len(splits)} folds; in each, {'-'.join(map(str, val))} validation "
                     f"patient(s) choose every run's checkpoint and stopping epoch, and {'-'.join(map(str, test))} "
                     f"are tested.{few}")
    tested = ctx.claims[ctx.claims.family != "agreement"] if len(ctx.claims) else ctx.claims
    if len(tested):
        family = int(tested.groupby("family").size().max())
        need = smallest_testable_pairs(family, ALPHA)
        n = pp.patient_id.nunique()
        items.append(f"**Power.** {n} test patients. With up to {family} comparisons corrected together (Holm), no "
                     f"comparison can reach p < {ALPHA} with fewer than {need} paired patients, whatever the data; "
                     "below that a row is not testable, and an inconclusive verdict (an interval holding 0) means "
                     "underpowered or no difference, never refuted.")
    synthetic = "synthetic" in ctx.cohort_spec
    if synthetic:
        reader_count = generator_settings(ctx.cohort_spec)["reader_count"]
        items.append(f"**A synthetic cohort.** Patients, scanners and {reader_count} readers are simulated from literature "
                     "values (listed under Data): the tables say how the method behaves on this simulation, not on "
                     "patients. Agreement between the readers is an outcome of the reader models, so the paper's kappa "
                     "cannot be tested; scanner, protocol and reader variation beyond the simulation are not "
                     "represented.")
        items.append(development_limitation(int(ctx.cohort_spec["synthetic"].get("seed", -1))))
    else:
        disease = ctx.cohort_spec.get("disease", "a disease the cohort description does not name")
        annotations = len(ctx.cohort_spec.get("train_labels", ctx.labels))
        items.append(f"**A real cohort of {pp.patient_id.nunique()} test patients** ({disease}) with {annotations} "
                     "annotation(s): its readers are not the paper's, and conclusions about osteomyelitis hold only "
                     "as far as the cohort shows osteomyelitis.")
    if profile.name != "paper" and profile.departures:
        shown = "; ".join(f"`{k}`" for k in list(profile.departures)[:6])
        items.append(f"**Scale.** Profile `{profile.name}` departs from the paper in {len(profile.departures)} "
                     f"setting{'s' if len(profile.departures) > 1 else ''} ({shown}{'; ...' if len(profile.departures) > 6 else ''}; reasons in the departures "
                     "table). The paper-scale profile has not run in this results folder: its numbers are not these.")
    items.append(hardware_limitation(ctx))
    failed = failed_runs(ctx.per_run) if len(ctx.per_run) and "run_id" in ctx.per_run else []
    if failed:
        runs = ctx.per_run.run_id.nunique()
        items.append(f"**Runs that failed to train.** {len(failed)} of {runs} runs predicted (almost) nothing on most "
                     f"of their test patients ({', '.join(f'`{r}`' for r in failed)}). Their scores stay in the seed "
                     "means of Tables 1-2 and of the claims; the failed-arm rule judges each seed-averaged arm, so one "
                     "failed run among its seeds lowers an arm's values without making its comparisons not testable. "
                     "The stability column gives the verdict on each seed alone.")
    items += ct_arm_limitations(ctx)
    own = agg.own_rows(pp)
    empty = agg.empty_predictions(own)
    if empty:
        items.append(f"**Boundary metrics.** {empty} of {len(own)} test predictions (each model on its own label) are "
                     "empty; their HD95 and ASSD are scored as the volume diagonal, so these are summarised by median "
                     "and IQR with the empty count beside them, never by a mean.")
    items.append(f"**NSD tolerance** {nsd_text(ctx)}. The `lesion_extent` region is ground-truth-informed: it crops "
                 "each test volume to the z-extent of that patient's own labels, so it cannot show whether a model "
                 "finds the lesion; the primary analysis is the `full` volume.")
    return "\n".join(f"- {item}" for item in items) + "\n"


def development_limitation(cohort_seed: int) -> str:
    """Whether this synthetic cohort confirms the settings or is the one they were chosen on."""
    from ...synthetic import DEVELOPMENT_SEED

    if cohort_seed == DEVELOPMENT_SEED:
        return (f"**The development cohort.** This is cohort seed {DEVELOPMENT_SEED}, on which the profile's settings "
                "and the reader models were chosen: its numbers informed those choices and confirm nothing.")
    return (f"**Settings frozen before this cohort.** The profile's settings and the reader models were chosen on the "
            f"development cohort (seed {DEVELOPMENT_SEED}); this cohort (seed {cohort_seed}) did not inform them, "
            "unless the profile's comments say otherwise.")


def hardware_limitation(ctx: ReportContext) -> str:
    """The precision (the profile's) and the machines the runs computed on, with their CPU features."""
    executions = [s.get("execution", {}) for s in ctx.summaries]
    precisions = sorted({str(e.get("precision", "bf16" if e.get("bf16") else "fp32")) for e in executions})
    machines = set()
    for summary, e in zip(ctx.summaries, executions):
        cpu = e.get("cpu") or {}
        flags = [f for f in ("avx512_bf16", "amx_bf16") if cpu.get(f)]
        machines.add(f"{summary.get('environment', {}).get('device', 'unknown')}"
                     + (f", {cpu['model']} ({', '.join(flags) if flags else 'no bf16 instructions'})" if cpu.get("model") else ""))
    departures = sorted({e["precision_departure"] for e in executions if e.get("precision_departure")})
    flushed = {e.get("denormals_flushed") for e in executions}
    text = (f"**Precision and hardware.** The profile sets the precision ({', '.join(precisions)}); the runs computed "
            f"on {'; '.join(sorted(machines))}"
            + (", denormals flushed to zero" if flushed == {True} else "") + ". ")
    if departures:
        text += f"This machine departed from the profile's precision: {'; '.join(departures)}. "
    return text + ("CPU results repeat bit for bit on one machine. Another CPU's kernels round in another order, "
                   "and training then takes another path: the numbers can move well beyond their last digits, and "
                   "GPU kernels are not bit-deterministic by default. Compare verdicts across machines, and seeds for "
                   "the spread of a number.")


def ct_arm_limitations(ctx: ReportContext) -> list[str]:
    """Why the CT-only arm scores what it scores, with the evidence this study has."""
    pp = ctx.per_patient
    if "ct" not in set(pp.modality):
        return []
    means = agg.own_rows(pp).groupby(["train_label", "modality"])["dsc"].mean()
    parts = [f"`{label}`: CT {100 * means[(label, 'ct')]:.1f} % against PET {100 * means[(label, 'pet')]:.1f} %"
             for label in ctx.labels if (label, "ct") in means and (label, "pet") in means]
    paper_ct = load_paper().table1["ct"]["dsc"].mean
    evidence = []
    contrast = ct_sign_contrast(ctx)
    if len(contrast):
        evidence.append(f"the CT signs are visible in this cohort (involved marrow {contrast.involved_marrow.min():.0f}-"
                        f"{contrast.involved_marrow.max():.0f} CT noise SDs above healthy marrow, lytic destruction "
                        f"{contrast.lytic_destruction.min():.0f}-{contrast.lytic_destruction.max():.0f} SDs below "
                        "cortex): the signs stand out of the noise, so a CT-only model could in principle see them")
    localisation = ctx.results / AGGREGATE / LOCALISATION
    if localisation.exists():
        table = pd.read_csv(localisation)
        ct = table[table.modality == "ct"]
        if len(ct):
            evidence.append("on the lesion's side of the body (chance 0.5): " + ", ".join(
                f"`{r.train_label}` no prediction at all ({r.n_empty} empty)" if pd.isna(r.mean_on_lesion_side) else
                f"`{r.train_label}` {r.mean_on_lesion_side:.2f} of the predicted voxels ({r.n_empty} empty "
                "predictions)" for r in ct.itertuples()))
    convergence = ctx.results / AGGREGATE / CONVERGENCE
    if convergence.exists():
        table = pd.read_csv(convergence)
        ct = table[table.run_id.map(lambda r: parse_run_id(r).modality == "ct")]
        if len(ct):
            evidence.append(f"{int(ct.converged.fillna(False).astype(bool).sum())} of {len(ct)} CT-only runs converged "
                            "by the written rule")
    text = (f"**The CT-only arm** ({'; '.join(parts) or 'no CT/PET pair'}; the paper: {paper_ct:.1f} % DSC). Likely "
            "causes: the method at this scale (a small network, a short schedule, 2D slices), model selection on few "
            "validation volumes, and, for the specific label, a criterion (strong uptake) that CT cannot show.")
    if evidence:
        text += " Evidence here: " + "; ".join(evidence) + "."
    return [text]


def ct_sign_contrast(ctx: ReportContext) -> pd.DataFrame:
    """Per synthetic patient: how far the CT signs of infection stand out of the CT noise (in noise SDs)."""
    if "synthetic" not in ctx.cohort_spec or not ctx.cohort_path.is_file():
        return pd.DataFrame()
    cohort = load_cohort(ctx.cohort_path)
    rows = []
    for pid in cohort.patient_ids:
        meta = cohort.patient(pid).read_meta()
        if not meta:
            continue
        noise, hu, signs = meta["ct_noise_hu"], meta["hu"], meta["ct_signs_hu"]
        rows.append({"patient_id": pid, "involved_marrow": (signs["involved_marrow"] - hu["marrow"]) / noise,
                     "lytic_destruction": (hu["cortex"] - signs["lytic"]) / noise})
    return pd.DataFrame(rows)

