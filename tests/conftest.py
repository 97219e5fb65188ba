"""Shared fixtures: a small synthetic cohort generated once per session."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

REALDATA = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "sts_petct_ibsi"


@pytest.fixture(scope="session")
def quick_cohort(tmp_path_factory) -> Path:
    """Four quick-scale synthetic patients (seed 0)."""
    from studylib.synthetic import generate_cohort

    return generate_cohort(tmp_path_factory.mktemp("cohort") / "synthetic", patients=4, seed=0, scale="quick",
                           progress=False)


def needs_realdata():
    """Skip marker for tests that need ../shared/realdata."""
    return pytest.mark.skipif(not REALDATA.exists(), reason=f"real data not present at {REALDATA}")


@pytest.fixture(scope="session")
def tiny_study(tmp_path_factory):
    """The tiny profile's study, every stage run (shared: a test that writes into it works on a copy)."""
    from studylib.pipeline.study import run_study

    out = tmp_path_factory.mktemp("study") / "results"
    profile = Path(__file__).resolve().parent / "tiny_profile.yaml"
    record = run_study(str(profile), out, jobs=2, progress=False)
    return out, record
