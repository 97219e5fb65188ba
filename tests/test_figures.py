"""Figures are files a re-run must reproduce: the same data gives the same bytes."""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd


def test_a_redrawn_figure_writes_the_same_bytes(tmp_path):
    """The strip plot's jitter is seeded (and NumPy's global generator left as it was), and SVG files carry no date
    and fixed element ids: drawing the same per-patient table twice writes identical PNG and SVG files."""
    import matplotlib

    matplotlib.use("Agg")
    from studylib.reporting.figures import distribution_figure, save_figure

    table = pd.DataFrame({"modality": ["ct", "pet", "dual"] * 8, "dsc": np.linspace(0, 1, 24)})
    digests = []
    for attempt in ("first", "second"):
        np.random.seed(len(attempt))  # a different global state each time: the figure must not depend on it
        before = np.random.get_state()[1].copy()
        files = save_figure(distribution_figure(table, "dsc", "modality"), tmp_path / attempt / "dsc", ("png", "svg"))
        assert (np.random.get_state()[1] == before).all()
        digests.append([hashlib.sha1(f.read_bytes()).hexdigest() for f in files])
    assert digests[0] == digests[1]
