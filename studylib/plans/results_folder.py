"""The results folder: created once its cohort has been read, and written file by file only when a file changes."""

from __future__ import annotations

import os
from pathlib import Path

from ..ingest.cohort import load_cohort


def results_folder(out: str | os.PathLike, cohort: str | None) -> Path:
    """The results folder, created once the given cohort has been read: a bad cohort (an id such as '../x') is
    refused before anything is written."""
    if cohort:
        load_cohort(cohort)
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_if_changed(path: Path, text: str) -> None:
    """Write ``text`` atomically unless the file already holds it (a finished study rewrites nothing)."""
    if path.exists() and path.read_text() == text:
        return
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
