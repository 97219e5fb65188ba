"""Markdown for the report: pipe tables whose widths follow their content, and the prose/table split of a section."""

from __future__ import annotations

import re
from collections.abc import Collection

import pandas as pd


def markdown_table(df: pd.DataFrame, index: bool = False, names: Collection[str] = ()) -> str:
    """A pipe table whose column widths follow its content, so that it wraps inside the page in the PDF.

    Column headers read as words (``n_patients`` -> ``n patients``), except those in ``names``: identifiers such
    as a model family (``nnunet_2d``), shown as written.

    Pandoc gives a pipe table relative column widths from the dashes of its separator line when a row is wider
    than the page; the dashes here are proportional to each column's longest word-wrapped content (header
    words included), capped; a table too wide for the page gets a separator long enough for pandoc to use them.
    """
    if index:
        df = df.reset_index()
    cols = [escape_markdown(str(c) if c in names else str(c).replace("_", " ")) for c in df.columns]
    rows = [[breakable(escape_markdown(f"{v:.4g}" if isinstance(v, float) else str(v))) for v in row]
            for row in df.itertuples(index=False)]
    widths = []
    for j, col in enumerate(cols):
        words = col.split() + [w for r in rows for w in re.split(r"[\s\u200b]+", r[j])]
        longest_word = max([len(w) for w in words] + [3])
        longest_cell = max([len(col)] + [len(r[j]) for r in rows])
        widths.append(max(longest_word, min(longest_cell, 30)) + 4)  # + cell padding
    # a narrow table keeps pandoc's natural widths; a wide one gets relative widths (the line exceeds 72 columns)
    wide = sum(widths) > 72
    scale = max(1.0, 100 / sum(widths)) if wide else 1.0
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("-" * max(3, round(w * scale)) for w in widths) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def breakable(text: str) -> str:
    """Allow line breaks after '_' and ';' in long identifiers and after the '-' of a range of numbers
    (``[619.9-706.1]``) (a zero-width space), so narrow cells wrap instead of running into the next one."""
    if "](" in text or "`" in text:
        return text
    return re.sub(r"(_|;|(?<=\d)-)(?=\w)", "\\1\u200b", text)


def _first_table_line(lines: list[str]) -> int:
    return next((i for i, line in enumerate(lines) if line.startswith("|")), len(lines))


def intro_of(text: str) -> str:
    """The prose before the first table of a section's Markdown (printed outside the table's float)."""
    lines = text.splitlines()
    return "\n".join(lines[:_first_table_line(lines)]).strip() + "\n"


NO_TABLE = "*No table for this study: the text above says why.*"


def table_of(text: str) -> str:
    """The tables of a section's Markdown, without the prose before the first one; ``NO_TABLE`` when it has none
    (a captioned float must hold something: Quarto's typst writer fails on an empty one)."""
    lines = text.splitlines()
    first = _first_table_line(lines)
    return ("\n".join(lines[first:]) if first < len(lines) else NO_TABLE) + "\n"


def escape_markdown(text: str) -> str:
    """Escape characters that Markdown would read as emphasis or table syntax in a plain-text cell.

    Cells that are Markdown on purpose (a link, inline code) are left as they are.
    """
    if "`" in text or ("[" in text and "](" in text):
        return text.replace("|", "\\|")
    return text.replace("\\", "\\\\").replace("*", "\\*").replace("_", "\\_").replace("|", "\\|")

