"""Provenance recorded with every run and study: the git commit, Python and package versions, the device."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

import torch

REPO_ROOT = Path(__file__).resolve().parents[2]
RECORDED_PACKAGES = ("torch", "torchvision", "segmentation-models-pytorch", "SimpleITK", "numpy", "scipy", "pandas",
                     "scikit-learn", "papermill")


def git_commit() -> str:
    """The repository's HEAD commit (with '-dirty' for uncommitted changes), or 'unknown'."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO_ROOT, capture_output=True,
                               text=True).stdout.strip()
        return commit + ("-dirty" if dirty else "")
    except (subprocess.CalledProcessError, FileNotFoundError):
        return "unknown"


def environment_record() -> dict:
    """Git commit, Python and package versions, device: recorded in every run folder."""
    import importlib.metadata as md

    versions = {}
    for pkg in RECORDED_PACKAGES:
        try:
            versions[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            versions[pkg] = None
    device = "cuda:" + torch.cuda.get_device_name(0) if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)"
    return {"git_commit": git_commit(), "python": platform.python_version(), "platform": platform.platform(),
            "packages": versions, "device": device, "torch_threads": torch.get_num_threads()}
