"""The document benchmark's section of the reports (pytest_medcode.reports.document_section): the summary's
``documents`` block from document records, and that block as terminal lines, report.md and report.html.

The records are test_document_scoring's four hand-scored documents and one failed call; the numbers shown are
worked out there by hand (micro P 4/9, R 4/7, F1 8/16; one set match in four; macro F1 the mean of 4/7, 1/2,
0 and 1).
"""

from __future__ import annotations

from typing import Any

import pytest

from pytest_medcode.codesystems import CodeSystem, load_system
from pytest_medcode.reports.document_section import (
    SYNTHETIC_NOTE,
    html_section,
    markdown_lines,
    section,
    terminal_lines,
)
from pytest_medcode.results.document_summary import summarize_documents
from test_document_scoring import records


@pytest.fixture(scope="module")
def icd10() -> CodeSystem:
    return load_system("icd10cm")


def block(icd10: CodeSystem, model: str = "m", synthetic: bool = False) -> dict[str, Any]:
    data = section(records(icd10, model, synthetic), 0, "doc-v1")
    assert data is not None
    return data


def test_the_block_counts_the_documents_and_holds_the_summarised_rows(icd10) -> None:
    done = records(icd10)
    data = section(done, 0, "doc-v1")
    assert data == {"n_documents": 5, "synthetic": False, "prompt_version": "doc-v1",
                    "results": summarize_documents(done, 0)}
    assert block(icd10, synthetic=True)["synthetic"] is True


def test_no_document_cases_no_section_anywhere() -> None:
    assert section([], 0, "doc-v1") is None
    assert terminal_lines(None) == [] and markdown_lines(None) == [] and html_section(None) == ""


@pytest.mark.parametrize("width", [60, 100, 160])
def test_terminal_lines_show_the_numbers_and_fit_the_width(icd10, width: int) -> None:
    lines = terminal_lines(block(icd10), width)
    assert lines[0] == "Document coding (5 cases, prompt doc-v1)"
    assert all(len(line) <= width for line in lines), [line for line in lines if len(line) > width]
    text = " ".join(" ".join(lines).split())  # a wrapped sentence read as one
    assert "m / icd10cm" in text and SYNTHETIC_NOTE.split()[0] not in text
    for value in ("25.0", "44.4", "57.1", "50.0 (", "51.8 (", "22.2", "11.1"):  # set match … fabricated
        assert value in text, value
    # I10: gold in two documents, found in one, never predicted wrongly: P 1, R 1/2, F1 2/3
    assert "per-code F1, most frequent gold codes — m / icd10cm: I10 67% (n=2), " in text


def test_synthetic_documents_are_said_to_be_synthetic_in_every_rendering(icd10) -> None:
    data = block(icd10, synthetic=True)
    assert any(line.startswith("SYNTHETIC documents:") for line in terminal_lines(data))
    assert f"**{SYNTHETIC_NOTE}**" in markdown_lines(data)
    assert "<strong>SYNTHETIC documents:" in html_section(data)


def test_markdown_is_a_table_a_model_name_cannot_break(icd10) -> None:
    lines = markdown_lines(block(icd10, model="a|b"))
    assert lines[:2] == ["## Document coding", ""]
    assert any(line.startswith("5 document cases, prompt `doc-v1`. Micro:") for line in lines)
    row = next(line for line in lines if line.startswith("| a\\|b / icd10cm |"))
    assert row.count(" | ") == 12  # 13 cells: the pipe in the name is escaped, not a column
    assert "### Per-code F1, most frequent gold codes — a|b / icd10cm" in lines


def test_html_escapes_the_model_name(icd10) -> None:
    page = html_section(block(icd10, model="<script>alert(1)</script>"))
    assert page.startswith('<section id="documents">\n<h2>Document coding</h2>') and page.endswith("</section>")
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt; / icd10cm" in page
    assert page.count("<table>") == 2  # the results and the per-code table
