"""The prompt: the authors' exact text, and checked custom templates."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_medcode.dataset.prompts import TemplateError, load_template


def test_paper_prompt_is_the_authors_text() -> None:
    text = load_template("paper").render("ICD10CM", "Type 2 diabetes mellitus without complications", "M24.131")
    assert text == (
        "What is the most correct ICD10CM billing code for this description: "
        "<Type 2 diabetes mellitus without complications>.\n"
        "Only generate a single, VALID ICD10CM billing code. Do not explain. "
        "ALWAYS respond in the following format:\nCode: M24.131"
    )


def test_presentation_variant_names_the_system_in_the_format_line() -> None:
    assert load_template("presentation").render("CPT", "x", "84120").endswith("Code: CPT: 84120")


def test_custom_template(tmp_path: Path) -> None:
    path = tmp_path / "t.txt"
    path.write_text("Give the {system} code for {description}. Example: {example}")
    assert load_template(str(path)).render("ICD9CM", "Cholera", "045.10") == (
        "Give the ICD9CM code for Cholera. Example: 045.10"
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("What is {descripton}?", "unknown placeholder"),
        ("What is the code?", "never uses {description}"),
        ("What is {description", "literal braces"),
    ],
)
def test_bad_templates(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "t.txt"
    path.write_text(content)
    with pytest.raises(TemplateError, match=message.replace("{", r"\{").replace("}", r"\}")):
        load_template(str(path))


def test_unknown_template_name() -> None:
    with pytest.raises(TemplateError, match="not 'paper', 'presentation'"):
        load_template("papr")
