"""Shared fixtures: a small synthetic cohort generated once per session."""

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("MPLBACKEND", "Agg")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # each pytest-xdist worker gets its share of the cores, its subprocesses too (a run sets its own threads):
    # OpenMP threads of two workers spinning on the same cores slowed a training test sevenfold
    _threads = max(1, (os.cpu_count() or 1) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    os.environ.setdefault("OMP_NUM_THREADS", str(_threads))
    import torch

    torch.set_num_threads(_threads)

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


def uses_tiny_study(item: pytest.Item) -> bool:
    """Whether a test needs the shared tiny study."""
    return "tiny_study" in getattr(item, "fixturenames", ())


def pytest_itemcollected(item):
    """Under pytest-xdist (``make test``: ``-n 2 --dist loadgroup``) every test of the shared tiny study runs on one
    worker, so the study is run once; the other tests fill the other worker. Marked here, before xdist's own
    ``pytest_collection_modifyitems`` turns the group into the test's id."""
    if uses_tiny_study(item):
        item.add_marker(pytest.mark.xdist_group("tiny_study"))


def pytest_collection_modifyitems(items):
    """The tiny study's tests first: the longest unit of work starts at once (the same order on every worker)."""
    items.sort(key=lambda item: not uses_tiny_study(item))  # stable: otherwise the files' order


def needs_realdata():
    """Skip marker for tests that need ../shared/realdata."""
    return pytest.mark.skipif(not REALDATA.exists(), reason=f"real data not present at {REALDATA}")
