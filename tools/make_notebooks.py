"""Write the study notebooks (committed without outputs, kernel python3). Run: python tools/make_notebooks.py [FOLDER]"""

import sys
from pathlib import Path

import nbformat as nbf

from studylib.pipeline.notebooks import AGGREGATE_NOTEBOOK, COHORT_NOTEBOOK, RUN_NOTEBOOK, VIEWER_NOTEBOOK

HERE = Path(__file__).resolve().parent.parent / "notebooks"


def notebook(cells):
    nb = nbf.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    out = []
    for number, (kind, src, *tags) in enumerate(cells):
        cell = nbf.v4.new_markdown_cell(src) if kind == "md" else nbf.v4.new_code_cell(src)
        cell.id = f"cell-{number:02d}"  # stable ids: regenerating a notebook changes only what changed
        if tags:
            cell.metadata["tags"] = tags
        out.append(cell)
    nb.cells = out
    return nb


COHORT = [
    ("md", "# 01 - Cohort\nLoads a cohort and its preprocessing cache, draws QA figures (label A/B overlays, "
           "registration before/after, intensity histograms) and the rater-agreement table."),
    ("code", 'cohort = "results/quick/cohort"\ncache_dir = "results/quick/cache"\nout_dir = "results/quick/cohort_qa"', "parameters"),
    ("code", "from pathlib import Path\nimport pandas as pd\nfrom studylib.ingest.cohort import load_cohort\n"
             "from studylib.plans.results_folder import READER_SWEEP_FIGURE\nfrom studylib.reporting import cohort_qa\n\nc = load_cohort(cohort)\nprint(c.name, len(c.patient_ids), 'patients; labels:', list(c.labels))"),
    ("md", "## Rater agreement\nDice(A, B), voxel Cohen's kappa (whole volume and within the body), volumes."),
    ("code", "agreement = cohort_qa.write_agreement(c, Path(cache_dir), Path(out_dir))\nagreement"),
    ("md", "## QA figures (label A red, label B blue)"),
    ("code", "figures = cohort_qa.write_patient_figures(c, Path(cache_dir), Path(out_dir), limit=6)\n"
             "from IPython.display import Image, display\nfor f in figures[:3]:\n    display(Image(filename=str(f)))"),
    ("code", "hist = cohort_qa.write_histograms(c, Path(out_dir))\ndisplay(Image(filename=str(hist)))"),
    ("md", "## Reader sweep (synthetic cohorts)\nThe same images read again with label B's uptake threshold swept: "
           "agreement, the A/B volume ratio r and the ceiling 2/(1+r) of the off-diagonal cells of Table 2."),
    ("code", "sweep = cohort_qa.write_reader_sweep(c, Path(out_dir), progress=False)\n"
             "if sweep is not None:\n    display(sweep)\n    display(Image(filename=str(Path(out_dir) / f'{READER_SWEEP_FIGURE}.png')))"),
]

TRAIN_EVAL = [
    ("md", "# 02 - Train and evaluate one run\nOne run = (cohort, modality, training label, fold, seed, profile). "
           "Trains, predicts every test patient of the fold in 3D, and evaluates against every label of the cohort."),
    ("code", 'cohort = "results/quick/cohort/cohort.json"\ncache_dir = "results/quick/cache"\nprofile = "quick"\n'
             'splits = "results/quick/splits.json"\nmodality = "dual"\nlabel = "label_a"\nfold = 0\nseed = 0\n'
             'run_dir = "results/quick/runs/dual__label_a__fold0__seed0"\nthreads = 1\nbackground_fraction = 0.0\n'
             'progress = True', "parameters"),
    ("code", "from pathlib import Path\nfrom studylib.pipeline.run import execute_run\nfrom studylib.plans.results_folder import RUN_PER_PATIENT, RUN_TRAINING_LOG\n"
             "from studylib.plans.runs import RunParams\n"
             "params = RunParams(cohort=cohort, cache_dir=cache_dir, profile=profile, splits=splits, modality=modality,\n"
             "                   label=label, fold=int(fold), seed=int(seed), run_dir=run_dir, threads=threads,\n"
             "                   background_fraction=float(background_fraction))\n"
             "summary = execute_run(params, progress=progress)\n"
             "{k: summary[k] for k in ('run_id', 'n_train_slices', 'train_slices_digest', 'best_epoch', 'epochs_run', "
             "'converged', 'reason', 'wall_seconds')}"),
    ("md", "## Training curve"),
    ("code", "import pandas as pd\nfrom studylib.reporting.figures import training_curves_figure\n"
             "log = pd.read_csv(Path(run_dir) / RUN_TRAINING_LOG)\n"
             "fig = training_curves_figure({params.run_id: log}, params.run_id)"),
    ("md", "## Per-patient 3D metrics against every label"),
    ("code", "per_patient = pd.read_csv(Path(run_dir) / RUN_PER_PATIENT)\n"
             "per_patient[['patient_id', 'region', 'ground_truth', 'dsc', 'iou', 'sensitivity', 'specificity', 'hd95', "
             "'lesion_f1']]"),
]

AGGREGATE = [
    ("md", "# 03 - Aggregate\nTable 1 (modality ablation), Table 2 (cross-evaluation), paired statistics and figures, "
           "from the per-run CSVs of a results folder."),
    ("code", 'results = "results/quick"\nprofile = "quick"', "parameters"),
    ("code", "from pathlib import Path\nimport pandas as pd\nfrom studylib.plans.results_folder import AGGREGATE\nfrom studylib.reporting import aggregate\n"
             "written = aggregate.write_aggregate(results)\nfigures = aggregate.write_overlay_figures(results)\n"
             "pp = aggregate.seed_mean(aggregate.collect_per_patient(results))"),
    ("md", "## Table 1: modality ablation"),
    ("code", "for label in sorted(pp.train_label.unique()):\n    print(label)\n    display(aggregate.table1(pp, label))"),
    ("md", "## Table 2: cross-evaluation matrix (dual input)"),
    ("code", "if pp.train_label.nunique() > 1:\n    display(aggregate.table2(pp)[0])"),
    ("md", "## Figures"),
    ("code", "from IPython.display import Image, display\n"
             "for name in ('figure2_overlay', 'figure3_models', 'table2_heatmap', 'training_curves'):\n"
             "    p = Path(results) / AGGREGATE / f'{name}.png'\n    if p.exists():\n        display(Image(filename=str(p)))"),
]

VIEWER = [
    ("md", "# 04 - Look at the patients\nThe worst and the best test patient of every model family (3D DSC against "
           "the label the model reproduces, first seed, from `aggregate/per_patient_all.csv`), each in Niivue: CT "
           "(bone or soft-tissue window) with PET fused (colour map, SUV range and opacity adjustable), every label, "
           "every model family's prediction from the fold that tested the patient and the disagreement maps, each a "
           "layer to switch on or off; axial, coronal, sagittal; click for CT HU, SUV and each layer's value under "
           "the crosshair. The viewer (ipyniivue) carries its JavaScript: it works offline. Run `python -m studylib "
           "aggregate` first."),
    ("code", 'results = "results/quick"\npatients = ""  # comma-separated ids; empty: the worst and best of each family\n'
             "max_viewers = 12  # a browser keeps about 16 WebGL canvases alive at once\nmax_voxels = 4000000",
     "parameters"),
    ("code", "from pathlib import Path\nimport pandas as pd\nfrom IPython.display import Markdown, display\n"
             "from studylib.reporting import aggregate\n"
             "from studylib.reporting.notebook_viewer import patient_viewer, patients_to_open\n\n"
             "per_run = aggregate.primary(aggregate.read_per_patient(Path(results) / 'aggregate' / "
             "'per_patient_all.csv'), results)\n"
             "chosen = patients_to_open(per_run)\n"
             "if patients:\n"
             "    chosen = pd.DataFrame({'patient_id': [p.strip() for p in patients.split(',')], 'reason': 'asked for'})\n"
             "left_out = chosen.iloc[int(max_viewers):]\nchosen = chosen.iloc[:int(max_viewers)]\n"
             "if len(left_out):\n"
             "    print(f'not opened (max_viewers={max_viewers}):', ', '.join(left_out.patient_id))\nchosen"),
    ("md", "## Viewers\nEach viewer shows the patient's CT grid cropped to the body; above `max_voxels` it is also "
           "downsampled for display, as the line above the viewer says (the metrics were computed at full "
           "resolution)."),
    ("code", "viewers = {}\nfor patient_id, reason in zip(chosen.patient_id, chosen.reason):\n"
             "    display(Markdown(f'### {patient_id}: {reason}'))\n"
             "    viewers[patient_id] = patient_viewer(results, patient_id, max_voxels=int(max_voxels))\n"
             "    display(viewers[patient_id])"),
]

NOTEBOOKS = {COHORT_NOTEBOOK: COHORT, RUN_NOTEBOOK: TRAIN_EVAL, AGGREGATE_NOTEBOOK: AGGREGATE,
             VIEWER_NOTEBOOK: VIEWER}


def write_notebooks(folder: Path = HERE) -> list[Path]:
    """Write every study notebook into ``folder`` (the repository's ``notebooks/`` by default)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, cells in NOTEBOOKS.items():
        nbf.write(notebook(cells), folder / name)
    return [folder / name for name in NOTEBOOKS]


if __name__ == "__main__":
    for path in write_notebooks(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print("wrote", path)
