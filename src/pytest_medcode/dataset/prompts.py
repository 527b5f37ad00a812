"""The question put to the model: the authors' exact prompt by default.

Templates use ``{system}`` (the system as the authors' code writes it: ICD9CM, ICD10CM, CPT),
``{description}`` and ``{example}`` (the sample code shown in the format line).
"""

from __future__ import annotations

import string
from dataclasses import dataclass
from pathlib import Path

PAPER = (
    "What is the most correct {system} billing code for this description: <{description}>.\n"
    "Only generate a single, VALID {system} billing code. Do not explain. "
    "ALWAYS respond in the following format:\n"
    "Code: {example}"
)
PRESENTATION = (
    "What is the most correct {system} billing code for this description: <{description}>.\n"
    "Only generate a single, VALID {system} billing code. Do not explain. "
    "ALWAYS respond in the following format:\n"
    "Code: {system}: {example}"
)
BUILTIN = {"paper": PAPER, "presentation": PRESENTATION}
FIELDS = frozenset({"system", "description", "example"})


class TemplateError(ValueError):
    """A prompt template that cannot be used; the message is one line."""


@dataclass(frozen=True)
class PromptTemplate:
    name: str  # "paper", "presentation" or the file path
    text: str

    def render(self, system: str, description: str, example: str) -> str:
        return self.text.format(system=system, description=description, example=example)

    def messages(self, system: str, description: str, example: str) -> list[dict[str, str]]:
        """Chat messages: one user turn, as the authors sent it."""
        return [{"role": "user", "content": self.render(system, description, example)}]


def validate(text: str, origin: str) -> None:
    try:
        fields = [(f, spec, conv) for _, f, spec, conv in string.Formatter().parse(text) if f is not None]
    except ValueError as exc:
        raise TemplateError(f"prompt template {origin}: {exc} (write literal braces as {{{{ and }}}})") from None
    names = {f for f, _, _ in fields}
    dressed = sorted({"{" + f + (f"!{conv}" if conv else "") + (f":{spec}" if spec else "") + "}"
                      for f, spec, conv in fields if spec or conv})
    if dressed:  # '{description!x}', '{description:>99999999999}' would fail (or eat memory) case by case
        raise TemplateError(f"prompt template {origin}: placeholders take no conversion or format spec "
                            f"({', '.join(dressed)}); write {{system}}, {{description}}, {{example}}")
    unknown = sorted(n for n in names if n not in FIELDS)
    if unknown:
        raise TemplateError(
            f"prompt template {origin}: unknown placeholder(s) {', '.join('{' + n + '}' for n in unknown)}; "
            f"use {{system}}, {{description}}, {{example}}"
        )
    if "description" not in names:
        raise TemplateError(f"prompt template {origin}: it never uses {{description}}")


def load_template(value: str) -> PromptTemplate:
    """``paper``, ``presentation`` or the path of a template file."""
    if value in BUILTIN:
        return PromptTemplate(value, BUILTIN[value])
    path = Path(value)
    if not path.is_file():
        raise TemplateError(f"--medcode-prompt {value!r}: not 'paper', 'presentation' or a readable file")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TemplateError(f"prompt template {path}: cannot read it ({exc.__class__.__name__})") from None
    validate(text, str(path))
    return PromptTemplate(str(path), text)


#: The document prompt's version: it is part of every document request, so a changed prompt is a new
#: cache key and a run records which prompt its numbers came from.
DOCUMENT_PROMPT_VERSION = "documents-v1"
DOCUMENT_PROMPT = (
    "You are a medical coder. Assign every {system} billing code that this clinical note supports.\n"
    "Code only conditions the note states as present; do not code conditions it denies, rules out or "
    "only mentions as absent. Use VALID, billable {system} codes. Do not explain.\n"
    "Note:\n<{description}>\n"
    "ALWAYS respond in the following format, one code per line:\n"
    "Codes:\n{example}"
)


def document_messages(system: str, text: str, example: str) -> list[dict[str, str]]:
    """The chat messages a document case sends: one user turn (:data:`DOCUMENT_PROMPT`)."""
    return [{"role": "user", "content": DOCUMENT_PROMPT.format(system=system, description=text, example=example)}]
