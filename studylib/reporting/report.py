"""Rendering the report: Quarto when it is on PATH, else a fallback renderer; the entry point of ``studylib report``.

The Quarto document (``report/index.qmd``) holds prose and thin calls into the chapter modules
(``studylib/reporting/chapters/``, one per chapter); nothing here trains. When ``quarto`` is not on PATH, the same
document is parsed into a notebook, executed with nbclient and exported to a self-contained HTML file with nbconvert
(the fallback), with Quarto's cross-references (``@fig-...``, ``@tbl-...``) numbered the way Quarto numbers them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from ..plans.results_folder import REPORT, VIEWER
from ..plans.results_lock import results_lock
from .context import ReportContext
from .viewer import write_viewer_pages

REPORT_DIR = Path(__file__).resolve().parents[2] / "report"


@dataclass
class QmdCell:
    """A cell of a Quarto document: markdown text, or python code with its ``#|`` options."""

    kind: str
    source: str
    options: dict = field(default_factory=dict)


def parse_qmd(text: str) -> tuple[dict, list[QmdCell]]:
    """Split a .qmd into its YAML front matter and cells (python chunks with parsed ``#|`` options)."""
    front = {}
    if text.startswith("---"):
        end = text.index("\n---", 3)
        front = yaml.safe_load(text[3:end]) or {}
        text = text[end + 4:]
    cells: list[QmdCell] = []
    pattern = re.compile(r"^```\{python\}[^\n]*\n(.*?)^```\s*$", re.S | re.M)
    pos = 0
    for m in pattern.finditer(text):
        md = text[pos:m.start()].strip()
        if md:
            cells.append(QmdCell("markdown", md))
        body = m.group(1)
        opt_lines = [ln[3:] for ln in body.splitlines() if ln.startswith("#| ")]
        code = "\n".join(ln for ln in body.splitlines() if not ln.startswith("#|"))
        options = yaml.safe_load("\n".join(opt_lines)) if opt_lines else {}
        cells.append(QmdCell("code", code.strip(), options or {}))
        pos = m.end()
    tail = text[pos:].strip()
    if tail:
        cells.append(QmdCell("markdown", tail))
    return front, cells


def cross_references(cells: list[QmdCell]) -> tuple[dict[str, str], list[str]]:
    """Quarto-style numbering of ``fig-``/``tbl-`` labels, and every ``@ref`` used in the text."""
    numbers, counters = {}, {"fig": 0, "tbl": 0}
    for cell in cells:
        label = cell.options.get("label") if cell.kind == "code" else None
        if label and label.split("-")[0] in counters:
            kind = label.split("-")[0]
            counters[kind] += 1
            numbers[label] = f"{'Figure' if kind == 'fig' else 'Table'} {counters[kind]}"
    refs = [r for cell in cells if cell.kind == "markdown" for r in re.findall(r"@((?:fig|tbl)-[\w-]+)", cell.source)]
    return numbers, refs


def _fallback_render(results: Path, out_html: Path) -> Path:
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    front, cells = parse_qmd((REPORT_DIR / "index.qmd").read_text())
    numbers, refs = cross_references(cells)
    missing = sorted(set(refs) - set(numbers))
    if missing:
        raise ValueError(f"unresolved cross-references in index.qmd: {missing}")

    def resolve(text: str) -> str:
        return re.sub(r"@((?:fig|tbl)-[\w-]+)", lambda m: numbers[m.group(1)], text)

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    title = f"# {front.get('title', 'Report')}\n\n*{front.get('subtitle', '')}*\n\n" \
            "> Rendered with the fallback renderer (nbclient + nbconvert): `quarto` was not found on PATH."
    nb.cells.append(nbformat.v4.new_markdown_cell(title))
    plan = []
    for cell in cells:
        if cell.kind == "markdown":
            nb.cells.append(nbformat.v4.new_markdown_cell(resolve(cell.source)))
            continue
        code = cell.source
        if "parameters" in (cell.options.get("tags") or []):
            # the kernel runs in the report folder: the results folder is named relatively, so it can move
            code += f"\nresults = {os.path.relpath(results, out_html.parent)!r}"
        nb.cells.append(nbformat.v4.new_code_cell(code))
        plan.append((len(nb.cells) - 1, cell))
        for key in ("tbl-cap", "fig-cap"):
            if key in cell.options:
                label = cell.options.get("label", "")
                nb.cells.append(nbformat.v4.new_markdown_cell(f"**{numbers.get(label, '')}.** {cell.options[key]}"))
    out_html.parent.mkdir(parents=True, exist_ok=True)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(out_html.parent)}}).execute()
    # asis cells print Markdown: turn their output into markdown cells, as Quarto does
    for index, cell in reversed(plan):
        if cell.options.get("output") == "asis":
            text = "".join(o.get("text", "") for o in nb.cells[index].outputs if o.get("output_type") == "stream")
            nb.cells[index] = nbformat.v4.new_markdown_cell(resolve(text))
    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input = True
    exporter.exclude_input_prompt = True
    exporter.exclude_output_prompt = True
    body, _ = exporter.from_notebook_node(nb)
    out_html.parent.mkdir(parents=True, exist_ok=True)
    out_html.write_text(body)
    nbformat.write(nb, out_html.with_suffix(".ipynb"))
    return out_html


def render_report(results: str | os.PathLike, force_fallback: bool = False) -> Path:
    """Render ``report/`` for a results folder: Quarto (HTML + typst PDF) when available, else the fallback HTML; then
    a viewer page per test patient in ``report/viewer/`` (``viewer.write_viewer_pages``)."""
    results = Path(results).resolve()
    ReportContext.load(results)  # fail early with a clear message
    out_dir = results / REPORT
    with results_lock(results):
        if shutil.which("quarto") and not force_fallback:
            env = {**os.environ, "PETCT_RESULTS": str(results)}
            subprocess.run(["quarto", "render", str(REPORT_DIR), "--output-dir", str(out_dir)], check=True, env=env)
            html = out_dir / "index.html"
        else:
            html = _fallback_render(results, out_dir / "index.html")
        write_viewer_pages(results, out_dir / VIEWER)  # after rendering: the pages the report links to
        return html



__all__ = ["render_report", "parse_qmd", "cross_references"]
