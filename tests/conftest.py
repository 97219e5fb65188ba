"""Shared fixtures: a small synthetic cohort generated once per session."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "sts_petct_ibsi"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def quick_cohort(tmp_path_factory) -> Path:
    """Four quick-scale synthetic patients (seed 0)."""
    from studylib.synthetic import generate_cohort

    return generate_cohort(tmp_path_factory.mktemp("cohort") / "synthetic", patients=4, seed=0, scale="quick",
                           progress=False)


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """The tiny end-to-end study (tests/tiny_profile.yaml), run once per session: (results folder, study record).

    Shared: a test that writes into it works on a copy."""
    from studylib.pipeline.study import run_study

    out = tmp_path_factory.mktemp("study") / "results"
    record = run_study(str(ROOT / "tests" / "tiny_profile.yaml"), out, jobs=2, progress=False)
    return out, record


def needs_realdata():
    """Skip marker for tests that need ../shared/realdata."""
    return pytest.mark.skipif(not REALDATA.exists(), reason=f"real data not present at {REALDATA}")
