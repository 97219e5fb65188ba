import json
import os
import re
import sys
from pathlib import Path

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml

from studylib.reporting import aggregate
from studylib.reporting.report import cross_references, parse_qmd

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("path", sorted((ROOT / "notebooks").glob("*.ipynb")), ids=lambda p: p.name)
def test_notebooks_committed_clean(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name} has outputs"
    tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"


def test_quarto_project_is_valid():
    config = yaml.safe_load((ROOT / "report" / "_quarto.yml").read_text())
    assert {"html", "typst"} <= set(config["format"])
    front, cells = parse_qmd((ROOT / "report" / "index.qmd").read_text())
    assert front["title"] and front["jupyter"] == "python3"
    code = [c for c in cells if c.kind == "code"]
    assert code and all(isinstance(c.options, dict) for c in code)
    allowed = {"label", "tbl-cap", "fig-cap", "output", "tags", "echo"}
    for c in code:
        assert set(c.options) <= allowed, c.options
        label = c.options.get("label")
        if label:
            assert re.fullmatch(r"(fig|tbl)-[a-z0-9-]+", label)
            assert ("fig-cap" in c.options) == label.startswith("fig-")
            assert ("tbl-cap" in c.options) == label.startswith("tbl-")
    numbers, refs = cross_references(cells)
    assert refs and set(refs) <= set(numbers), set(refs) - set(numbers)
    labels = [c.options["label"] for c in code if "label" in c.options]
    assert len(labels) == len(set(labels))


@pytest.mark.slow
def test_study_end_to_end_and_report(tiny_study):
    out, record = tiny_study
    assert record["failed"] == [] and record["finished"] == record["runs"] == 12
    for run in (out / "runs").iterdir():
        summary = json.loads((run / "summary.json").read_text())
        assert summary["environment"]["git_commit"] and summary["wall_seconds"] > 0
        # the cost a side-by-side comparison reads (benchmarks/nnunet_side_by_side.py)
        assert 0 < summary["train_seconds"] < summary["wall_seconds"] and summary["predict_seconds_per_patient"] > 0
        assert summary["peak_rss_mb"] > 100 and summary["peak_gpu_mb"] >= 0.0
        assert (run / "run.ipynb").exists() and list((run / "predictions").glob("*.nii.gz"))
    splits = json.loads((out / "splits.json").read_text())
    for fold in splits:
        assert not set(fold["train"]) & set(fold["test"]) and not set(fold["val"]) & set(fold["test"])
    assert (out / "splits_final.json").exists()
    # tables hold numbers only, and equal what the per-run CSVs give
    for label in ("label_a", "label_b"):
        table = pd.read_csv(out / "aggregate" / f"table1_{label}.csv")
        assert aggregate.is_complete(table)
        for _, row in table.iterrows():
            raw = pd.concat(pd.read_csv(p) for p in (out / "runs").glob(f"{row['modality']}__{label}__fold*__seed0*/per_patient.csv"))
            dsc = raw[(raw.ground_truth == label) & (raw.region == "full")]["dsc"]
            assert row["dsc"] == f"{100 * dsc.mean():.2f} ± {100 * dsc.std(ddof=1):.2f}"
    t2 = pd.read_csv(out / "aggregate" / "table2_mean.csv", index_col=0)
    raw = pd.concat(pd.read_csv(p) for p in (out / "runs").glob("dual__label_b__fold*__seed0*/per_patient.csv"))
    full = raw[raw.region == "full"]
    assert t2.loc["model label_b", "GT label_a"] == pytest.approx(full[full.ground_truth == "label_a"]["dsc"].mean())
    assert set(raw.region) == {"full", "lesion_extent"}
    # models A and B of one cell train on the identical slice set; every run says whether it converged
    summaries = {run.name: json.loads((run / "summary.json").read_text()) for run in (out / "runs").iterdir()}
    for name, summary in summaries.items():
        twin = summaries[name.replace("label_a", "label_b")]
        assert summary["train_slices_digest"] == twin["train_slices_digest"]
        assert summary["n_train_slices"] == twin["n_train_slices"]
        assert isinstance(summary["converged"], bool) and summary["reason"]
    for name in ("figure2_overlay", "figure3_models", "table2_heatmap", "training_curves", "registration_qa"):
        png = out / "aggregate" / f"{name}.png"
        assert png.exists() and png.stat().st_size > 1000, name
    # a second run trains nothing
    from studylib.pipeline.study import run_study

    again = run_study(str(ROOT / "tests" / "tiny_profile.yaml"), out, jobs=1, progress=False)
    assert again["skipped_as_done"] == 12


@pytest.mark.slow
def test_fallback_report_renders_offline(tiny_study):
    from studylib.reporting.report import render_report

    out, _ = tiny_study
    html = render_report(out, force_fallback=True)
    text = html.read_text()
    assert "fallback renderer" in text
    assert "data:image/png;base64" in text  # figures embedded: no network needed
    assert "Table 1" in text and "Figure 1" in text and "@tbl-" not in text and "@fig-" not in text
    assert "nan" not in re.sub(r"<[^>]+>", " ", text).lower().split()
    assert "What replicates" in text and "Holm" in text
    # every captioned table and figure holds something (a two-reader study has no truth or calibration tables: the
    # float says so; an empty float made Quarto's typst writer fail)
    rendered = nbformat.read(html.with_suffix(".ipynb"), as_version=4).cells
    for before, caption in zip(rendered, rendered[1:]):
        if caption.cell_type == "markdown" and re.match(r"\*\*(Table|Figure) \d+\.\*\*", caption.source):
            assert before.source.strip() if before.cell_type == "markdown" else before.outputs, caption.source[:60]
    # every test patient has a viewer page beside the report, linked by a relative path, Niivue beside it
    pages = sorted(p.name for p in (html.parent / "viewer").glob("*.html"))
    assert pages == sorted(f"{pid}.html" for split in json.loads((out / "splits.json").read_text())
                           for pid in split["test"])
    assert all(f'href="viewer/{page}"' in text for page in pages)
    assert (html.parent / "viewer" / "niivue.umd.js").exists() and (html.parent / "viewer" / "NIIVUE_LICENSE").exists()
    ctx = __import__("studylib.reporting.context", fromlist=["ReportContext"]).ReportContext.load(out)
    assert ctx.claims.verdict.isin(["replicated", "contradicted", "inconclusive", "not testable",
                                    "holds by construction"]).all()
    assert len(ctx.claims) >= 4


def test_limitations_follow_the_study(tiny_study):
    """The limitations section is written from the results: seeds, cohort kind, validation patients, power."""
    import copy

    from studylib.evaluation.statistics import smallest_testable_pairs
    from studylib.reporting.chapters.limitations import limitations_markdown
    from studylib.reporting.context import ReportContext

    out, _ = tiny_study
    ctx = ReportContext.load(out)
    text = limitations_markdown(ctx)
    assert "Training variance is not measured" in text and "one seed (0)" in text
    assert "A synthetic cohort" in text and "The CT-only arm" in text and "ground-truth-informed" in text
    assert "validation patient(s)" in text and "Power." in text
    assert "Settings frozen before this cohort" in text and "(seed 0)" in text  # the tiny study's cohort seed
    development = copy.copy(ctx)
    development.cohort_spec = {**ctx.cohort_spec, "synthetic": {**ctx.cohort_spec["synthetic"], "seed": 1000}}
    assert "The development cohort" in limitations_markdown(development)
    several = copy.copy(ctx)
    several.summaries = [{**s, "params": {**s["params"], "seed": seed}} for s in ctx.summaries for seed in (0, 1, 2)]
    text = limitations_markdown(several)
    assert "3 seeds (0, 1, 2)" in text and "Training variance is not measured" not in text
    real = copy.copy(ctx)
    real.cohort_spec = {**{k: v for k, v in ctx.cohort_spec.items() if k != "synthetic"}, "disease": "sarcoma"}
    text = limitations_markdown(real)
    assert "A real cohort" in text and "sarcoma" in text and "A synthetic cohort" not in text
    assert smallest_testable_pairs(6, 0.05) == 8 and smallest_testable_pairs(1, 0.05) == 6


def test_predict_cli_on_trained_run(tiny_study, tmp_path):
    from studylib.cli import main

    out, _ = tiny_study
    run = out / "runs" / "dual__label_a__fold0__seed0__bg10"
    code = main(["predict", "--model", str(run), "--cohort", str(out / "cohort"), "--out", str(tmp_path),
                 "--patient", "P000"])
    assert code == 0 and (tmp_path / "predictions" / "P000.nii.gz").exists()
    assert set(pd.read_csv(tmp_path / "metrics.csv").ground_truth) == {"label_a", "label_b", "truth"}


def test_predict_scores_a_test_patient_as_the_run_did(tiny_study, tmp_path):
    """One score_patient: predicting a run's own test patient reproduces the run's rows (both regions)."""
    from studylib.pipeline.predict import predict_cohort

    out, _ = tiny_study
    run = out / "runs" / "dual__label_a__fold0__seed0__bg10"
    assert json.loads((run / "summary.json").read_text())["mask_targets"] == ["label_a", "label_b"]
    pid = json.loads((out / "splits.json").read_text())[0]["test"][0]
    scored = predict_cohort(run, out / "cohort", tmp_path, patients=[pid])
    study = pd.read_csv(run / "per_patient.csv")
    study = study[study.patient_id == pid].reset_index(drop=True)
    metrics = [c for c in study.columns if c in scored.columns and c not in ("patient_id", "ground_truth", "region")]
    keys = ["ground_truth", "region"]
    pd.testing.assert_frame_equal(scored[keys + metrics].reset_index(drop=True), study[keys + metrics])


def test_predict_a_patient_without_labels(tiny_study, tmp_path, capsys):
    """The README's 'apply to new patients': a patient without any label is predicted, not scored."""
    from studylib.cli import main

    out, _ = tiny_study
    cohort = out / "cohort"
    spec = json.loads((cohort / "cohort.json").read_text())
    spec["root"] = str(cohort)
    spec["patients"] = {"NEW1": {**{k: v for k, v in spec["patients"]["P001"].items() if k != "meta"}, "labels": {}}}
    (tmp_path / "cohort.json").write_text(json.dumps(spec))
    run = out / "runs" / "dual__label_a__fold0__seed0__bg10"
    assert main(["predict", "--model", str(run), "--cohort", str(tmp_path / "cohort.json"), "--out",
                 str(tmp_path / "pred")]) == 0
    assert (tmp_path / "pred" / "predictions" / "NEW1.nii.gz").exists()
    assert not (tmp_path / "pred" / "metrics.csv").exists() and "metrics" not in capsys.readouterr().out


def test_refused_checkpoint_is_one_line(tiny_study, tmp_path, capsys):
    import shutil

    from studylib.cli import main

    out, _ = tiny_study
    run = tmp_path / "results" / "runs" / "dual__label_a__fold0__seed0__bg10"
    shutil.copytree(out / "runs" / run.name, run)
    params = json.loads((run / "params.json").read_text())
    (run / "params.json").write_text(json.dumps({**params, **{k: os.path.relpath(out / params[k], run.parent.parent)
                                                              for k in ("cohort", "cache_dir", "profile", "splits")}}))
    (run / "best.pt").write_bytes(b"not a checkpoint")
    assert main(["predict", "--model", str(run), "--cohort", str(out / "cohort"), "--out", str(tmp_path / "p")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: refusing checkpoint") and str(run / "best.pt") in err and "\n" not in err


@pytest.mark.slow
def test_single_label_study_reports(quick_cohort, tmp_path):
    """A cohort with one training label: the study runs and the report renders (no rater agreement to state)."""
    from studylib.pipeline.study import run_study
    from studylib.reporting.report import render_report

    spec = json.loads((quick_cohort / "cohort.json").read_text())
    spec.update(root=str(quick_cohort), train_labels=["label_a"])
    (tmp_path / "cohort.json").write_text(json.dumps(spec))
    (tmp_path / "one_label.yaml").write_text(f"extends: {ROOT / 'tests' / 'tiny_profile.yaml'}\nname: one_label\n"
                                             "study: {modalities: [dual]}\n")
    record = run_study(str(tmp_path / "one_label.yaml"), tmp_path / "results", str(tmp_path / "cohort.json"),
                       progress=False)
    assert record["failed"] == [] and record["finished"] == 2
    text = render_report(tmp_path / "results", force_fallback=True).read_text()
    assert "single label" in text and "Table 1" in text


@pytest.mark.slow
def test_predict_writes_dicom_seg_that_reads_back(tiny_study, tmp_path, capsys):
    """predict --dicom-seg on the DICOM patient STS_002: the SEG references its CT and reads back as the mask."""
    import pydicom
    import SimpleITK as sitk

    from studylib.cli import main
    from studylib.evaluation.metrics import confusion_counts, dice
    from studylib.ingest.dicom import choose_series
    from studylib.preprocessing.patient_on_ct import load_patient_on_ct

    from .conftest import REALDATA

    if not REALDATA.exists():
        pytest.skip(f"real data not present at {REALDATA}")
    dicom = REALDATA / "dicom_STS_002"
    spec = {"name": "sts-dicom", "root": str(dicom), "channels": {"ct": "CT", "pet": "PET"}, "labels": {"gtv": "GTV"},
            "train_labels": ["gtv"], "patients": {"STS_002": {"ct": "CT/image", "pet": "PET/image",
                                                              "labels": {"gtv": "rtstruct:GTV_Mass_CT:CT/mask/RS.dcm"}}}}
    (tmp_path / "dicom.json").write_text(json.dumps(spec))
    run = tiny_study[0] / "runs" / "dual__label_b__fold0__seed0__bg10"
    assert main(["predict", "--model", str(run), "--cohort", str(tmp_path / "dicom.json"), "--out",
                 str(tmp_path / "pred"), "--dicom-seg"]) == 0
    seg_path = tmp_path / "pred" / "predictions" / "STS_002.seg.dcm"
    nifti = sitk.GetArrayFromImage(sitk.ReadImage(str(tmp_path / "pred" / "predictions" / "STS_002.nii.gz")))
    ct_files = choose_series(dicom / "CT" / "image", "CT")
    assert pydicom.dcmread(seg_path).ReferencedSeriesSequence[0].SeriesInstanceUID == \
        pydicom.dcmread(ct_files[0]).SeriesInstanceUID
    spec["patients"]["STS_002"]["labels"] = {"gtv": f"seg:label_b:{seg_path}"}
    (tmp_path / "back.json").write_text(json.dumps(spec))
    from studylib.ingest.cohort import load_cohort

    back = load_patient_on_ct(load_cohort(tmp_path / "back.json").patient("STS_002"), registration="none")
    assert np.array_equal(back.labels["gtv"], nifti)
    if nifti.any():
        assert dice(confusion_counts(back.labels["gtv"], nifti)) == 1.0
    for column in pd.read_csv(tmp_path / "pred" / "metrics.csv").columns:  # no DICOM identity in the tables
        assert "patientname" not in column.lower().replace("_", "")
    # a NIfTI cohort cannot get a SEG: the error names the patient and its CT file
    capsys.readouterr()
    assert main(["predict", "--model", str(run), "--cohort", str(tiny_study[0] / "cohort"), "--out",
                 str(tmp_path / "nifti"), "--patient", "P000", "--dicom-seg"]) == 2
    assert "P000" in capsys.readouterr().err


def test_cli_bad_input_is_a_clear_error(tmp_path, capsys):
    from studylib.cli import main

    assert main(["synth", "--out", str(tmp_path / "x"), "--patients", "0"]) == 2
    assert "patients" in capsys.readouterr().err


def _absolute_paths_in(folder: Path) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file() and path.suffix in {".json", ".csv", ".ipynb", ".yaml", ".log", ".md", ".html"}:
            text = path.read_text(errors="ignore")
            if path.suffix == ".log":  # a log may quote an installed package's traceback (ipykernel's shutdown
                # race, ipython/ipykernel#1518, logs one now and then): the environment's paths, not the folder's
                text = text.replace(sys.prefix, "<env>").replace(sys.base_prefix, "<python>")
            for marker in (str(folder), str(ROOT), "/tmp/"):
                # an absolute path starts the string or follows a quote, a space or '=' (not '..')
                if re.search(r"(^|[\s\"'=(])" + re.escape(marker), text, re.M):
                    found.append(f"{path.relative_to(folder)}: {marker}")
    return found


@pytest.mark.slow
def test_results_travel(tiny_study, tmp_path):
    """No absolute path inside a results folder; moved elsewhere, its report still renders from it."""
    import shutil

    from studylib.reporting.report import render_report

    out, _ = tiny_study
    assert _absolute_paths_in(out) == []
    moved = tmp_path / "elsewhere" / "results"
    shutil.copytree(out, moved)
    html = render_report(moved, force_fallback=True)
    assert html.is_relative_to(moved) and "Table 1" in html.read_text()


@pytest.mark.slow
def test_reviewer_reruns_one_run(tiny_study, tmp_path):
    """Notebook 02 with its defaults plus overrides, and `rerun`, reproduce the study's run byte for byte."""
    import shutil
    import subprocess
    import sys

    from studylib.pipeline.rerun import matched, rerun

    out, _ = tiny_study
    run = out / "runs" / "pet__label_b__fold1__seed0__bg10"
    params = json.loads((run / "params.json").read_text())
    overrides = {k: params[k] for k in ("cohort", "cache_dir", "profile", "splits", "modality", "label", "fold",
                                        "background_fraction")}
    overrides["run_dir"] = "reviewer/pet__label_b__fold1__seed0__bg10"
    args = [x for k, v in overrides.items() for x in ("-p", k, str(v))]
    subprocess.run([sys.executable, "-m", "papermill", str(ROOT / "notebooks" / "02_train_eval.ipynb"),
                    str(tmp_path / "out.ipynb"), *args, "--kernel", "python3"], cwd=out, check=True,
                   capture_output=True)
    reviewer = out / overrides["run_dir"]
    assert (reviewer / "per_patient.csv").read_bytes() == (run / "per_patient.csv").read_bytes()
    shutil.rmtree(out / "reviewer")

    table = rerun(run, tmp_path / "rr" / "runs" / run.name)
    assert matched(table), table
    # a tampered run: its best.pt replaced by another run's
    copy = tmp_path / "tampered" / "runs" / run.name
    shutil.copytree(run, copy)
    shutil.copy(out / "runs" / "pet__label_a__fold1__seed0__bg10" / "best.pt", copy / "best.pt")
    (copy / "params.json").write_text(json.dumps({**params, **{k: os.path.relpath(out / params[k], copy.parent.parent)
                                                               for k in ("cohort", "cache_dir", "profile", "splits")}}))
    table = rerun(copy, tmp_path / "rr2" / "runs" / run.name)
    assert not matched(table)
    assert not table.set_index("file").loc["best.pt", "identical"]


@pytest.mark.slow
def test_stage_commands_resume_a_finished_study(tiny_study, capsys):
    from studylib.cli import main

    out, _ = tiny_study
    written = {p: p.stat().st_mtime_ns for p in (out / "plan.json", out / "preprocess.csv", out / "profile.yaml",
                                                 out / "splits.json")}
    assert main(["prepare", "--profile", str(ROOT / "tests" / "tiny_profile.yaml"), "--out", str(out)]) == 0
    assert {p: p.stat().st_mtime_ns for p in written} == written  # a finished study rewrites nothing
    assert main(["run", "--results", str(out), "--jobs", "1"]) == 0
    assert '"skipped_as_done": 12' in capsys.readouterr().out
    assert (out / "failures.json").read_text().strip() == "[]"
    assert main(["aggregate", "--results", str(out)]) == 0
    assert (out / "aggregate" / "convergence.csv").exists() and (out / "aggregate" / "regions.csv").exists()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_ray_executor_equals_local(tiny_study, tmp_path):
    """A Ray head on loopback re-executes two runs of the study; results equal the local executor's, byte for byte."""
    import shutil
    import subprocess
    import sys

    import ray

    from studylib.pipeline.executors import RayExecutor
    from studylib.pipeline.study import run_grid

    out, _ = tiny_study
    copy = tmp_path / "results"
    shutil.copytree(out, copy)
    chosen = ["ct__label_a__fold0__seed0__bg10", "dual__label_b__fold1__seed0__bg10"]
    for run in chosen:
        shutil.rmtree(copy / "runs" / run)
    threads = json.loads((out / "runs" / chosen[0] / "params.json").read_text())["threads"]
    ray_cli = str(Path(sys.executable).parent / "ray")
    port = _free_port()
    started = subprocess.run([ray_cli, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                              "--num-cpus=2", "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats"],
                             capture_output=True, text=True)
    assert started.returncode == 0, f"ray start failed:\n{started.stdout[-2000:]}\n{started.stderr[-2000:]}"
    try:
        record = run_grid(copy, progress=False, executor=RayExecutor(f"127.0.0.1:{port}", threads=threads))
    finally:
        ray.shutdown()
        subprocess.run([ray_cli, "stop", "--force"], capture_output=True)
    assert record["failed"] == [] and record["skipped_as_done"] == 10
    assert record["execution"]["executor"] == "ray" and record["execution"]["runs_per_gpu"] == 0
    for run in chosen:
        for name in ("per_patient.csv", "training_log.csv"):
            ours, local = pd.read_csv(copy / "runs" / run / name), pd.read_csv(out / "runs" / run / name)
            pd.testing.assert_frame_equal(ours.drop(columns=["seconds", "images_per_s"], errors="ignore"),
                                          local.drop(columns=["seconds", "images_per_s"], errors="ignore"))
        assert (copy / "runs" / run / "best.pt").exists()
        summary = json.loads((copy / "runs" / run / "summary.json").read_text())
        assert summary["execution"]["executor"] == "ray"
    local_summary = json.loads((out / "runs" / chosen[0] / "summary.json").read_text())
    assert local_summary["execution"]["executor"] == "local"


@pytest.mark.slow
def test_cohort_and_aggregate_notebooks_run_with_their_defaults(tiny_study, tmp_path):
    """Notebooks 01 and 03, as committed, complete against a finished study at their default location."""
    import subprocess
    import sys

    out, _ = tiny_study
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "quick").symlink_to(out)
    for name in ("01_cohort.ipynb", "03_aggregate.ipynb"):
        subprocess.run([sys.executable, "-m", "papermill", str(ROOT / "notebooks" / name), str(tmp_path / name),
                        "--kernel", "python3"], cwd=tmp_path, check=True, capture_output=True)
        assert nbformat.read(tmp_path / name, as_version=4).cells


@pytest.mark.slow
def test_multireader_study_side_by_side(tmp_path):
    """Three readers: consensus targets and the conditioned model run on the decoupled models' folds and slices;
    the tables show each model against every reader, the consensus and the truth; disagreement maps are written."""
    import SimpleITK as sitk

    from studylib.pipeline.study import run_study
    from studylib.preprocessing.cache import load_cached, load_native
    from studylib.reporting.report import render_report

    out = tmp_path / "results"
    record = run_study(str(ROOT / "tests" / "tiny_multirater.yaml"), out, jobs=2, progress=False)
    assert record["failed"] == [] and record["finished"] == 16
    labels, _ = load_native(out / "cache", "P000")
    assert {"label_a", "label_b", "reader_3", "truth", "consensus", "union", "intersection"} <= set(labels)
    assert np.array_equal(labels["union"], labels["label_a"] | labels["label_b"] | labels["reader_3"])
    pp = pd.read_csv(out / "aggregate" / "per_patient_all.csv")
    styles = {"conditioned_label_a", "conditioned_label_b", "conditioned_reader_3"}
    assert styles | {"label_a", "label_b", "reader_3", "consensus", "union", "intersection", "vote_fraction"} == set(
        pp.train_label)
    assert "vote_fraction" not in set(pp.ground_truth)  # a soft target is learnt, never scored against
    assert {"consensus", "truth", "reader_3"} <= set(pp.ground_truth)
    for fold in (0, 1):  # one slice set per fold for every model, the conditioned one included
        digests = {json.loads(p.read_text())["train_slices_digest"]
                   for p in out.glob(f"runs/dual__*__fold{fold}__seed0__bg10/summary.json")}
        assert len(digests) == 1
    conditioned = json.loads((out / "runs" / "dual__conditioned__fold0__seed0__bg10" / "summary.json").read_text())
    assert set(conditioned["metrics"]) == styles
    table2 = pd.read_csv(out / "aggregate" / "table2.csv", index_col=0)
    assert {f"model {s}" for s in styles} <= set(table2.index)
    disagreement = pd.read_csv(out / "aggregate" / "disagreement.csv")
    assert set(disagreement.models) == {"decoupled", "conditioned"} and disagreement.patient_id.nunique() == 6
    fractions = disagreement.model_disagreement_in_reader_disagreement.dropna()
    assert ((fractions >= 0) & (fractions <= 1)).all()
    count = sitk.ReadImage(str(out / "aggregate" / "disagreement" / "P000__readers.nii.gz"))
    assert count.GetSize() == tuple(load_cached(out / "cache", "P000").meta["ct_geometry"]["size"])
    assert sitk.GetArrayFromImage(count).max() <= 3
    suite = pd.read_csv(out / "aggregate" / "multirater_metrics.csv", dtype={"patient_id": str})
    assert set(suite.method) == {"decoupled", "conditioned", "consensus", "union", "intersection", "vote_fraction"}
    assert suite.patient_id.nunique() == 6 and (suite.readers == 3).all()
    metrics = suite.groupby("method").metric.agg(set)
    assert "dice_each" in metrics["decoupled"] and "dice_each" in metrics["conditioned"]
    assert "dice_each" not in metrics["consensus"] and len(metrics["consensus"]) == 8
    assert (suite[suite.metric == "ged_v"].value >= -1e-12).all()
    assert suite[(suite.method == "union") & (suite.metric == "s_ncc")].value.isna().all()  # one prediction
    summary = pd.read_csv(out / "aggregate" / "multirater_summary.csv")
    assert set(summary.method) == set(suite.method)
    # truth-anchored tables, calibration against reader disagreement, the conditioned network's non-inferiority
    staple = pd.read_csv(out / "aggregate" / "truth_staple.csv")
    assert set(staple.reader) == {"label_a", "label_b", "reader_3"} and staple.patient_id.nunique() == 6
    assert staple[["actual_sensitivity", "actual_specificity"]].stack().between(0, 1).all()
    truth = pd.read_csv(out / "aggregate" / "truth_dice.csv")
    assert styles | {"label_a", "consensus", "vote_fraction"} <= set(truth.supervision)
    verdicts = pd.read_csv(out / "aggregate" / "truth_verdict.csv")
    assert len(verdicts) == 2 and verdicts.candidate.isin(truth.supervision).all()
    calibration = pd.read_csv(out / "aggregate" / "calibration_summary.csv")
    assert set(calibration.family) == {"decoupled", "conditioned", "vote_fraction"}
    assert calibration.ece_pooled.between(0, 1).all() and calibration.brier_patient_mean.between(0, 1).all()
    assert (out / "aggregate" / "reliability_diagram.png").exists() and (out / "aggregate" / "disagreement_roc.png").exists()
    noninferiority = pd.read_csv(out / "aggregate" / "conditioned_noninferiority.csv")
    assert len(noninferiority) == 4 and noninferiority.n_pairs.max() == 6
    assert (pd.read_csv(out / "aggregate" / "conditioned_cost.csv").conditioned_seconds > 0).all()
    html = render_report(out, force_fallback=True).read_text()
    assert "Decision rule (fixed before the numbers)" in html and "Reliability diagram" in html
    assert "STAPLE&#x27;s estimated sensitivity" in html or "STAPLE's estimated sensitivity" in html
    assert "conditioned model, style" in html and "Every style model against every reader" in html
    assert "Reader and model disagreement per input" in html
    assert "multi-rater field" in html and "HM-IoU" in html


def test_multirater_report_table():
    """One report row per input and method, metrics in the suite's order; a metric a method lacks is blank."""
    from studylib.reporting.chapters.multirater import multirater_table

    summary = pd.DataFrame({"modality": ["dual"] * 3, "method": ["decoupled", "decoupled", "union"],
                            "metric": ["dice_each", "ged_v", "ged_v"], "text": ["0.5 ± 0.1", "0.2 ± 0.1", "0.3 ± 0.1"]})
    table = multirater_table(summary)
    assert list(table.columns) == ["input", "method", "GED (V)", "Dice each"]
    assert list(table.method) == ["decoupled models (one per reader)", "model of the union"]
    assert table.loc[1, "Dice each"] == "" and table.loc[0, "Dice each"] == "0.5 ± 0.1"

