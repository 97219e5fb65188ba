"""Time all per-patient metrics on a 512x512x100 volume (target: under 3 s on 2 cores)."""

import time

import numpy as np
from scipy import ndimage

from studylib.evaluation.metrics import agreement, patient_metrics


def main() -> None:
    rng = np.random.default_rng(0)
    shape = (100, 512, 512)
    ref = np.zeros(shape, bool)
    zz, yy, xx = np.ogrid[:shape[0], :shape[1], :shape[2]]
    ref |= ((zz - 50) / 12.0) ** 2 + ((yy - 250) / 30.0) ** 2 + ((xx - 200) / 25.0) ** 2 < 1
    pred = ndimage.shift(ref.astype(np.uint8), (1, 3, -2), order=0).astype(bool)
    pred |= ((zz - 20) / 4.0) ** 2 + ((yy - 100) / 8.0) ** 2 + ((xx - 400) / 8.0) ** 2 < 1  # a false positive
    body = np.zeros(shape, bool)
    body[:, 50:460, 30:480] = True
    spacing = (2.5, 0.9, 0.9)
    patient_metrics(pred[:10], ref[:10], spacing)  # warm-up
    start = time.perf_counter()
    out = patient_metrics(pred, ref, spacing, body=body)
    agreement(pred, ref, spacing, body)
    seconds = time.perf_counter() - start
    print(f"all metrics + agreement, 512x512x100: {seconds:.2f} s (target 3 s: ratio {seconds / 3:.2f})")
    print({k: round(v, 3) for k, v in out.items() if isinstance(v, float)})
    del rng


if __name__ == "__main__":
    main()
