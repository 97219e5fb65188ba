"""The report's Markdown: table widths, break points, the float of a section without a table."""

import re

import pandas as pd

from studylib.reporting.markdown import NO_TABLE, breakable, markdown_table, table_of


def test_ranges_and_identifiers_may_break_but_signs_and_links_stay():
    zwsp = "\u200b"
    assert breakable("659.1 [619.9-706.1]") == f"659.1 [619.9-{zwsp}706.1]"
    assert breakable("label_a;b") == f"label_{zwsp}a;{zwsp}b"
    assert breakable("-0.5") == "-0.5" and breakable("a-b") == "a-b"
    assert breakable("[a_b](x_y.html)") == "[a_b](x_y.html)"


def test_a_wide_table_of_intervals_gets_equal_relative_widths():
    """A table wider than the page gets a separator of at least 100 dashes (pandoc then uses relative widths), and
    columns holding the same intervals get the same share."""
    df = pd.DataFrame({f"column {k}": ["659.1 [619.9-706.1]"] for k in range(6)})
    separator = markdown_table(df).splitlines()[1]
    dashes = [len(part) for part in separator.strip("|").split("|")]
    assert len(set(dashes)) == 1 and sum(dashes) >= 100  # wide: relative widths, equal here


def test_a_section_without_a_table_still_fills_its_float():
    assert table_of("Only prose here.\n\nMore prose.") == NO_TABLE + "\n"
    text = "Intro.\n\n| a | b |\n|---|---|\n| 1 | 2 |\n"
    assert table_of(text).startswith("| a | b |") and not re.search("Intro", table_of(text))
