"""Command line: ``python -m studylib {synth,synth-sweep,cohort,prepare,run,aggregate,study,rerun,predict,score,
export,nnunet,report}``."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path


def _synth(args) -> int:
    from .synthetic import generate_cohort

    out = generate_cohort(args.out, args.patients, args.seed, args.scale, args.mri, args.overwrite, jobs=args.jobs,
                          reader_count=args.reader_count)
    print(f"synthetic cohort written to {out}")
    return 0


def _synth_sweep(args) -> int:
    from .reporting.cohort_qa import save_reader_sweep
    from .synthetic.sweep import drawn_range, reader_sweep

    table = reader_sweep(args.seed, args.patients, args.scale, args.label, args.parameter, args.values, jobs=args.jobs)
    summary = save_reader_sweep(table, Path(args.out), f"{args.label}.{args.parameter}",
                                drawn_range(args.label, args.parameter))
    print(summary.to_string(index=False))
    return 0


def _rerun(args) -> int:
    from .pipeline.rerun import matched, rerun

    table = rerun(args.run_dir, args.out, args.threads)
    for row in table.itertuples():
        state = "identical" if row.identical else f"DIFFERS (max |difference| {row.max_abs_difference:.3g} in {row.worst_column})"
        print(f"{row.file}: {state}")
    print(f"({table.note.iloc[0]}; re-run in {table.rerun.iloc[0]})")
    return 0 if matched(table) else 1


def _cohort_init(args) -> int:
    from .ingest.cohort import init_cohort

    labels = {}
    for item in args.label or []:
        if "=" not in item:
            raise ValueError(f"--label takes NAME=FILE, got '{item}'")
        name, fname = item.split("=", 1)
        labels[name] = fname
    spec, skipped = init_cohort(args.dir, args.ct, args.pet, labels, args.out, mri=args.mri, name=args.name,
                                require_all_labels=not args.allow_missing_labels, disease=args.disease,
                                description=args.description)
    print(f"{len(spec['patients'])} patients -> {args.out}")
    for line in skipped:
        print(f"skipped {line}")
    return 0


def _prepare(args) -> int:
    from .pipeline.study import prepare_study

    print(f"prepared {prepare_study(args.profile, args.out, args.cohort, args.jobs)}")
    return 0


def _executor(args):
    from .pipeline.executors import make_executor

    return make_executor(args.executor, args.jobs, args.ray_address, args.threads, args.runs_per_gpu)


def _add_executor_options(p) -> None:
    p.add_argument("--executor", choices=["local", "ray"], default="local",
                   help="where runs execute: local worker processes (default) or an existing Ray cluster")
    p.add_argument("--ray-address", help="Ray cluster address host:port (default: auto, on a cluster node)")
    p.add_argument("--threads", type=int, help="CPU threads per run on Ray (local: cores / jobs)")
    p.add_argument("--runs-per-gpu", type=int, default=4, help="Ray: runs that share one GPU (default 4)")


def _run(args) -> int:
    from .pipeline.study import run_grid

    record = run_grid(args.results, args.jobs, executor=_executor(args))
    print(json.dumps({k: record[k] for k in ("runs", "finished", "skipped_as_done")}, indent=1))
    return 1 if record["failed"] else 0


def _aggregate(args) -> int:
    from .pipeline.study import aggregate_study

    aggregate_study(args.results)
    print(f"tables and figures in {Path(args.results) / 'aggregate'}")
    return 0


def _study(args) -> int:
    from .pipeline.study import run_study

    record = run_study(args.profile, args.out, args.cohort, args.jobs, executor=_executor(args))
    print(json.dumps({k: record[k] for k in ("runs", "finished", "skipped_as_done", "wall_seconds")}, indent=1))
    return 1 if record["failed"] else 0


def _predict(args) -> int:
    from .pipeline.predict import predict_cohort

    table = predict_cohort(args.model, args.cohort, args.out, patients=args.patient, save_probabilities=args.probabilities,
                           dicom_seg=args.dicom_seg)
    print(f"predictions written to {args.out}" + (f"; metrics in {Path(args.out) / 'metrics.csv'}" if table is not None else ""))
    return 0


def _score(args) -> int:
    from .pipeline.score import ScoreRequest, score_predictions
    from .plans.results_folder import EXTERNAL_RECORD

    request = ScoreRequest(Path(args.predictions), args.family, args.target, args.fold, args.modality,
                           args.resample_nearest)
    out = score_predictions(args.results, request)
    record = json.loads((out / EXTERNAL_RECORD).read_text())
    for pid, made in record["conversions"].items():
        print(f"{pid}: {'; '.join(made)}")
    print(f"scored {len(record['patients'])} test patients of fold {args.fold} as {args.family} ({args.modality}, "
          f"trained on {args.target}) into {out}; run `python -m studylib aggregate --results {args.results}` to "
          "add them to the tables and the claims")
    return 0


def _export_nnunet(args) -> int:
    from .pipeline.nnunet_export import export_nnunet

    for folder in export_nnunet(args.results, args.out, args.modality, args.dataset_id, args.pet_normalization):
        print(f"nnU-Net raw dataset: {folder}")
    return 0


def _nnunet(args) -> int:
    from .pipeline.nnunet_baseline import NnunetSettings, run_nnunet

    settings = NnunetSettings(args.configuration, args.trainer, args.epochs, args.iterations, args.device,
                              args.modality, args.pet_normalization, args.python or sys.executable, args.data_workers,
                              not args.no_mirroring, args.memory_target_gb)
    for folder in run_nnunet(args.results, settings, args.fold, args.target, executor=_executor(args)):
        print(f"scored: {folder}")
    print(f"run `python -m studylib aggregate --results {args.results}` to add {settings.family()} to the tables")
    return 0


def _report(args) -> int:
    from .reporting.report import render_report

    path = render_report(args.results, force_fallback=args.fallback)
    print(f"report: {path}")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    parser = argparse.ArgumentParser(prog="python -m studylib", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("synth", help="generate the synthetic PET-CT osteomyelitis cohort")
    p.add_argument("--out", required=True)
    p.add_argument("--patients", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale", default="paper", choices=["paper", "quick"])
    p.add_argument("--mri", action="store_true", help="also generate a STIR-like MRI channel")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--jobs", type=int, default=None, help="parallel processes (default: all cores)")
    p.add_argument("--reader-count", type=int, default=2,
                   help="simulated readers (label_a sensitive, label_b specific, then reader_3.. alternating styles)")
    p.set_defaults(func=_synth)

    from .synthetic import DEVELOPMENT_SEED
    from .synthetic.sweep import SWEEP_LABEL, SWEEP_PARAMETER, SWEEP_VALUES

    p = sub.add_parser("synth-sweep", help="re-read the same synthetic images with one reader parameter swept")
    p.add_argument("--out", required=True)
    p.add_argument("--patients", type=int, default=8)
    p.add_argument("--seed", type=int, default=DEVELOPMENT_SEED, help="cohort seed (default: the development seed)")
    p.add_argument("--scale", default="quick", choices=["paper", "quick"])
    p.add_argument("--label", default=SWEEP_LABEL)
    p.add_argument("--parameter", default=SWEEP_PARAMETER)
    p.add_argument("--values", type=float, nargs="+", default=list(SWEEP_VALUES))
    p.add_argument("--jobs", type=int, default=None)
    p.set_defaults(func=_synth_sweep)

    p = sub.add_parser("rerun", help="re-execute one finished run from its folder and compare the results")
    p.add_argument("run_dir")
    p.add_argument("--out", help="folder for the re-run (default: <results>/reruns/<run_id>)")
    p.add_argument("--threads", type=int, help="CPU threads (default: the count recorded with the run)")
    p.set_defaults(func=_rerun)

    p = sub.add_parser("cohort", help="cohort descriptions")
    csub = p.add_subparsers(dest="cohort_command", required=True)
    c = csub.add_parser("init", help="map a folder of patient folders into cohort.json (no copying)")
    c.add_argument("dir")
    c.add_argument("--ct", required=True)
    c.add_argument("--pet", required=True)
    c.add_argument("--mri")
    c.add_argument("--label", action="append", help="NAME=FILE (repeatable)")
    c.add_argument("--name")
    c.add_argument("--out", required=True)
    c.add_argument("--allow-missing-labels", action="store_true")
    c.add_argument("--disease", help="what the cohort shows, e.g. 'soft-tissue sarcoma' (shown in the report)")
    c.add_argument("--description", help="how it was made: raters, crops, scanners (shown in the report)")
    c.set_defaults(func=_cohort_init)

    p = sub.add_parser("prepare", help="stage 1: profile snapshot, cohort, slice cache, splits, plan, cohort QA")
    p.add_argument("--profile", default="quick")
    p.add_argument("--cohort", help="cohort.json (default: the profile's synthetic cohort)")
    p.add_argument("--out", required=True)
    p.add_argument("--jobs", type=int, default=1)
    p.set_defaults(func=_prepare)

    p = sub.add_parser("run", help="stage 2: every planned run of a prepared results folder (resumable)")
    p.add_argument("--results", required=True)
    p.add_argument("--jobs", type=int, default=1, help="local runs at once (they share the GPU if there is one)")
    _add_executor_options(p)
    p.set_defaults(func=_run)

    p = sub.add_parser("aggregate", help="stage 3: tables, tests and figures of the finished runs")
    p.add_argument("--results", required=True)
    p.set_defaults(func=_aggregate)

    p = sub.add_parser("study", help="all stages: prepare, run, aggregate")
    p.add_argument("--profile", default="quick")
    p.add_argument("--cohort", help="cohort.json (default: the profile's synthetic cohort)")
    p.add_argument("--out", default="results/quick")
    p.add_argument("--jobs", type=int, default=1, help="local runs at once (they share the GPU if there is one)")
    _add_executor_options(p)
    p.set_defaults(func=_study)

    p = sub.add_parser("predict", help="apply a trained run's model to a cohort or patient")
    p.add_argument("--model", required=True, help="a run folder (holds best.pt and params.json)")
    p.add_argument("--cohort", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--patient", action="append", help="only these patients (repeatable)")
    p.add_argument("--probabilities", action="store_true", help="also write probability maps")
    p.add_argument("--dicom-seg", action="store_true",
                   help="also write each prediction as a DICOM SEG referencing the patient's CT series (DICOM input)")
    p.set_defaults(func=_predict)

    p = sub.add_parser("score", help="score another model's predictions of a fold's test patients like our runs")
    p.add_argument("--results", required=True, help="a prepared results folder (its folds, cache and labels)")
    p.add_argument("--predictions", required=True,
                   help="folder of <patient_id>.nii.gz masks, one per test patient of the fold, on the CT grid")
    p.add_argument("--family", required=True, help="the model family, e.g. nnunet_2d (a row group in the tables)")
    p.add_argument("--target", required=True, help="the training target the model stands for, e.g. label_a")
    p.add_argument("--fold", type=int, required=True)
    p.add_argument("--modality", default="dual", help="the input the model saw: ct, pet or dual (default dual)")
    p.add_argument("--resample-nearest", action="store_true",
                   help="resample predictions on another grid onto the CT grid (nearest neighbour) instead of an error")
    p.set_defaults(func=_score)

    p = sub.add_parser("export", help="export a prepared results folder for another framework")
    esub = p.add_subparsers(dest="export_command", required=True)
    e = esub.add_parser("nnunet", help="nnU-Net v2 raw datasets (one per training target) on the study's folds")
    e.add_argument("--results", required=True, help="a prepared results folder")
    e.add_argument("--out", required=True, help="the nnUNet_raw folder to write the datasets into")
    e.add_argument("--modality", default="dual", help="input channels: ct, pet or dual (default dual)")
    e.add_argument("--dataset-id", type=int, default=500,
                   help="the first target's dataset is id + 1 (default 500: Dataset501_..., Dataset502_...)")
    e.add_argument("--pet-normalization", choices=["CT", "zscore"], default="CT",
                   help="nnU-Net's normalisation of the PET channel: CT (global, like HU; default) or zscore (per image)")
    e.set_defaults(func=_export_nnunet)

    p = sub.add_parser("nnunet", help="the nnU-Net v2 baseline on the study's folds: train, predict, score")
    p.add_argument("--results", required=True, help="a prepared results folder")
    p.add_argument("--configuration", default="2d", choices=["2d", "3d_fullres"])
    p.add_argument("--trainer", default="nnUNetTrainer", help="an nnU-Net trainer class (e.g. nnUNetTrainer_100epochs)")
    p.add_argument("--epochs", type=int, help="epoch budget (default: the trainer's)")
    p.add_argument("--iterations", type=int, help="training iterations per epoch (default: the trainer's, 250)")
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--fold", type=int, action="append", help="only these folds (repeatable; default all)")
    p.add_argument("--target", action="append", help="only these training targets (repeatable; default all)")
    p.add_argument("--modality", default="dual")
    p.add_argument("--pet-normalization", choices=["CT", "zscore"], default="CT")
    p.add_argument("--python", help="the Python that has nnunetv2 (default: this one)")
    p.add_argument("--data-workers", type=int, default=2, help="nnU-Net augmentation processes (nnUNet_n_proc_DA); 0: no worker processes (also in prediction)")
    p.add_argument("--no-mirroring", action="store_true",
                   help="no test-time mirroring in validation and prediction (4x faster in 2D; a smoke test's budget)")
    p.add_argument("--memory-target-gb", type=float,
                   help="nnU-Net's -gpu_memory_target: plan smaller patches and batches for this much GPU memory "
                        "(default: nnU-Net's 8 GB); on a CPU it sets the work per iteration")
    p.add_argument("--jobs", type=int, default=1, help="folds trained at once on this machine (default 1)")
    _add_executor_options(p)  # on Ray, --runs-per-gpu 1 gives each fold a whole GPU
    p.set_defaults(func=_nnunet)

    p = sub.add_parser("report", help="render the report from a results folder")
    p.add_argument("--results", default="results/quick")
    p.add_argument("--fallback", action="store_true", help="use the fallback renderer even if quarto exists")
    p.set_defaults(func=_report)

    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ANTICIPATED as err:
        if args.debug:
            raise
        print(f"error: {one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; the same command resumes", file=sys.stderr)
        return 130


# Failures a user can cause or meet (bad input, I/O, a refused checkpoint, a failed registration or run, a locked
# results folder: CohortError, ImageReadError, SplitError are ValueErrors; CheckpointError, RegistrationError,
# ResultsLockedError are RuntimeErrors): one line naming the file or patient. Anything else is a bug and keeps
# its traceback.
ANTICIPATED = (ValueError, OSError, RuntimeError, subprocess.SubprocessError)


def one_line(err: BaseException) -> str:
    """The error's message on one line (an OSError's file name included)."""
    if isinstance(err, OSError) and err.filename and str(err.filename) not in str(err):
        text = f"{err.strerror or err}: {err.filename}"
    else:
        text = str(err) or type(err).__name__
    return " ".join(text.split())


if __name__ == "__main__":
    raise SystemExit(main())
