"""Time the multi-rater metric suite per patient (3 readers; 2 sets of 3 style predictions and 3 single predictions,
as the multirater profile scores them), and, given a results folder, its share of the whole aggregation.

    python benchmarks/multirater_speed.py [--results results/multirater]

Without ``--results``: synthetic patients on the quick grid (54 x 192 x 192) and a paper-sized one (100 x 512 x
512). With it: ``write_aggregate`` on that folder (the suite included), then the suite alone, and their ratio.
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

from studylib.reporting.readers.multirater import suite_rows


def lesion_reads(shape: tuple[int, int, int], count: int, rng: np.random.Generator) -> np.ndarray:
    """``count`` reads of one ellipsoidal lesion: each shifted by a voxel or two and grown or shrunk."""
    zz, yy, xx = np.ogrid[:shape[0], :shape[1], :shape[2]]
    centre = np.array(shape) / 2
    radii = np.array([6.0, shape[1] / 12, shape[2] / 14])
    lesion = ((zz - centre[0]) / radii[0]) ** 2 + ((yy - centre[1]) / radii[1]) ** 2 + ((xx - centre[2]) / radii[2]) ** 2 < 1
    reads = []
    for _ in range(count):
        read = ndimage.shift(lesion.astype(np.uint8), rng.integers(-2, 3, 3), order=0).astype(bool)
        reads.append(ndimage.binary_dilation(read) if rng.random() < 0.5 else ndimage.binary_erosion(read))
    return np.stack(reads)


def patient_seconds(shape: tuple[int, int, int], repeats: int = 3) -> float:
    """Seconds for the suite of every method of one patient (best of ``repeats``)."""
    rng = np.random.default_rng(0)
    readers = lesion_reads(shape, 3, rng)
    methods = [(lesion_reads(shape, 3, rng), True), (lesion_reads(shape, 3, rng), True)] + [
        (lesion_reads(shape, 1, rng), False) for _ in range(3)]
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for predictions, styles in methods:
            suite_rows({}, predictions, readers, styles)
        best = min(best, time.perf_counter() - start)
    return best


def aggregation_share(results: Path) -> None:
    """Time ``write_aggregate`` and the suite alone on a copy of ``results`` (the folder itself is not touched)."""
    from studylib.reporting.aggregate import write_aggregate
    from studylib.reporting.readers.multirater import write_multirater_metrics

    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / results.name
        shutil.copytree(results, copy, ignore=shutil.ignore_patterns("*.pt", "*.ipynb", "report"))
        start = time.perf_counter()
        write_aggregate(copy, figure_formats=("png",))
        total = time.perf_counter() - start
        start = time.perf_counter()
        table = write_multirater_metrics(copy)
        suite = time.perf_counter() - start
    patients = max(table.patient_id.nunique(), 1) if len(table) else 1
    rest = total - suite
    print(f"{results}: aggregation {total:.1f} s, of it the multi-rater suite {suite:.1f} s "
          f"({suite / patients:.2f} s per patient, {patients} patients); suite / rest of aggregation = {suite / rest:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--results", type=Path, help="a results folder with two or more readers")
    args = parser.parse_args()
    for shape in ((54, 192, 192), (100, 512, 512)):
        print(f"multi-rater suite, 5 methods x 9 metrics, {'x'.join(map(str, shape))}: "
              f"{patient_seconds(shape):.3f} s per patient")
    if args.results:
        aggregation_share(args.results)


if __name__ == "__main__":
    main()
