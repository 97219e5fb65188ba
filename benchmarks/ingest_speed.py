"""Time synthetic generation, ingestion (+registration, preprocessing, cache) and CPU inference at paper scale.

Targets: 20 paper-scale patients (1-1.25 mm slices) generated in under 4 minutes and under 800 MB on 2 cores;
the lesion-slice budget of the paper scale beside the paper's 3,259 training slices; one paper-scale patient
ingested + registered + preprocessed in under 20 s; CPU inference time reported for the paper model.
Usage: python benchmarks/ingest_speed.py [--patients 20]
"""

import argparse
import json
import subprocess
import tempfile
import time
from pathlib import Path

import torch

from studylib.evaluation.paper import load_paper
from studylib.inference.volume import probability_volume
from studylib.ingest.cohort import load_cohort
from studylib.preprocessing.cache import cache_patient
from studylib.preprocessing.patient_on_ct import PreprocessConfig
from studylib.synthetic import generate_cohort
from studylib.training.models import ModelConfig, build_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2, help="generation processes (the target is for 2 cores)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        start = time.perf_counter()
        generate_cohort(tmp / "cohort", args.patients, 0, "paper", progress=False, jobs=args.jobs)
        gen = time.perf_counter() - start
        size_mb = int(subprocess.run(["du", "-sm", str(tmp / "cohort")], capture_output=True, text=True).stdout.split()[0])
        print(f"generate {args.patients} paper-scale patients: {gen:.1f} s (target 240 s: ratio {gen / 240:.2f}); "
              f"{size_mb} MB on disk (target 800 MB: ratio {size_mb / 800:.2f})")
        synth = json.loads((tmp / "cohort" / "cohort.json").read_text())["synthetic"]
        per_patient = synth["lesion_slices_total"]["any_reader"] / args.patients
        train_share = 14 / 20  # the paper's 7:1:2 split of 20 patients
        estimate = per_patient * args.patients * train_share
        paper = load_paper().training_slices
        print(f"lesion slices (any reader): {per_patient:.0f} per patient; totals "
              f"{synth['lesion_slices_total']}; training slices of a 7:1:2 split ~{estimate:.0f} "
              f"(paper {paper:,}: ratio {estimate / paper:.2f})")
        cohort = load_cohort(tmp / "cohort")
        times = []
        for pid in cohort.patient_ids[:3]:
            start = time.perf_counter()
            cached = cache_patient(cohort.patient(pid), PreprocessConfig(), tmp / "cache")
            times.append(time.perf_counter() - start)
            print(f"ingest+register+preprocess {pid} ({'x'.join(map(str, cached.meta['ct_geometry']['size']))}): "
                  f"{times[-1]:.1f} s (target 20 s: ratio {times[-1] / 20:.2f})")
        model = build_model(ModelConfig(), 2).eval()
        torch.set_num_threads(2)
        start = time.perf_counter()
        probs = probability_volume(model, cached.images, [0, 1], cached.geometry, batch_size=16)
        print(f"CPU inference, paper U-Net, {probs.shape[0]} slices at 224x224 -> {probs.shape[1]}x{probs.shape[2]}: "
              f"{time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
