"""The one papermill launcher: a study notebook executed in a subprocess (its own kernel), its output logged."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from ..plans.provenance import REPO_ROOT
from ..reporting.figures import FILE_BACKEND

NOTEBOOKS = REPO_ROOT / "notebooks"


def execute_notebook(notebook: str, output: Path, parameters: dict, cwd: Path, log: Path | None = None,
                     env: dict | None = None) -> None:
    """Execute ``notebooks/<notebook>`` into ``output`` with papermill, from ``cwd`` (where relative parameters
    resolve, so the executed notebook names no absolute path); RuntimeError naming the log when it fails.

    ``log`` defaults to ``output`` with the suffix ``.log``; ``env`` is added to this process's environment. The
    notebooks write their figures to files and display those: matplotlib draws with ``FILE_BACKEND`` unless
    MPLBACKEND is set.
    """
    output.parent.mkdir(parents=True, exist_ok=True)
    log = log or output.with_suffix(".log")
    cmd = [sys.executable, "-m", "papermill", os.path.relpath(NOTEBOOKS / notebook, cwd), os.path.relpath(output, cwd),
           "--kernel", "python3", "--no-progress-bar", "-y", json.dumps(parameters)]
    with open(log, "w") as out:
        proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, env={"MPLBACKEND": FILE_BACKEND, **os.environ, **(env or {})}, cwd=cwd)
    if proc.returncode != 0:
        raise RuntimeError(f"notebook {notebook} failed (log: {os.path.relpath(log, cwd)})")
