"""The committed notebooks are what tools/make_notebooks.py generates (edit the generator, then regenerate)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_committed_notebooks_equal_the_generated_ones(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_notebooks.py"), str(tmp_path)], check=True,
                   capture_output=True)
    generated = sorted(p.name for p in tmp_path.glob("*.ipynb"))
    assert generated == sorted(p.name for p in (ROOT / "notebooks").glob("*.ipynb"))
    stale = [name for name in generated if (tmp_path / name).read_bytes() != (ROOT / "notebooks" / name).read_bytes()]
    assert not stale, f"notebooks/{stale} differ from tools/make_notebooks.py: run `python tools/make_notebooks.py`"


def test_the_run_notebook_builds_its_parameters_by_keyword():
    source = (ROOT / "tools" / "make_notebooks.py").read_text()
    assert "RunParams(cohort=cohort," in source  # a field added to RunParams cannot shift the others
