"""The shell every page of pytest-medcode shares (``report.html``, ``history.html``): the Content-Security-Policy,
escaping, the style sheet and the document around a page's sections.

Nothing is fetched at view time: CSS is inline and the charts are SVG (:mod:`pytest_medcode.reports.svg`). A
page's policy forbids every script but the ones it names by their SHA-256 (:func:`page_csp`), so even a bug
in escaping could not run what a model wrote. Data for a script rides in a ``<script type="application/json">``
block whose ``<``, ``>`` and ``&`` are JSON escapes (:func:`json_script`); everything else that comes from a
model, a code table or the user goes through :func:`esc`.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import re
from collections.abc import Sequence
from typing import Any

from pytest_medcode.safetext import visible

__all__ = ["CSP", "CSS", "document", "esc", "json_script", "page_csp"]

#: No scripts, no fetches; inline styles and data: images only.
CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'"


def page_csp(*scripts: str) -> str:
    """:data:`CSP` that also runs exactly these inline scripts (by their SHA-256), nothing else."""
    if not scripts:
        return CSP
    hashes = " ".join(
        f"'sha256-{base64.b64encode(hashlib.sha256(s.encode('utf-8')).digest()).decode()}'" for s in scripts
    )
    return f"{CSP}; script-src {hashes}"


_JSON_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "\u2028": "\\u2028", "\u2029": "\\u2029"}


def json_script(data: Any, element_id: str) -> str:
    """Data for a page's script as a ``<script type="application/json">`` block. ``<``, ``>`` and ``&`` are
    written as JSON escapes, so no text inside (a model's ``</script>``) can end the block or open a tag."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    text = re.sub("[<>&\u2028\u2029]", lambda m: _JSON_ESCAPES[m.group()], text)
    return f'<script type="application/json" id="{esc(element_id)}">{text}</script>'


CSS = """
:root { color-scheme: light; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: #1b1f24; background: #fff; margin: 0; }
main { max-width: 1200px; margin: 0 auto; padding: 24px 32px 48px; }
h1 { font-size: 24px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 36px 0 8px; border-bottom: 1px solid #d0d7de; padding-bottom: 4px; }
h3 { font-size: 15px; margin: 18px 0 6px; }
p.meta, p.note { color: #57606a; margin: 4px 0; }
table { border-collapse: collapse; margin: 8px 0 12px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d0d7de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #f6f8fa; font-weight: 600; }
td.num { text-align: right; white-space: nowrap; }
td.raw, td.code { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: 12.5px;
                  white-space: pre-wrap; word-break: break-word; max-width: 460px; }
.gate { border-radius: 6px; padding: 12px 16px; margin: 16px 0; border: 1px solid; }
.gate.pass { background: #dafbe1; border-color: #4ac26b; }
.gate.fail { background: #ffebe9; border-color: #ff8182; }
.gate .verdict { font-size: 17px; font-weight: 700; }
tr.fail td { background: #fff5f5; }
.badge { display: inline-block; padding: 0 6px; border-radius: 10px; font-size: 11.5px; margin-left: 4px; }
.badge.example { background: #fff8c5; border: 1px solid #d4a72c; }
.badge.fabricated { background: #ffebe9; border: 1px solid #ff8182; }
.grid { display: flex; flex-wrap: wrap; gap: 12px 28px; }
.grid > div { flex: 0 0 auto; }
svg.chart { display: block; margin: 8px 0; background: #fff; }
svg text { font: 12px system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; fill: #1b1f24; }
svg .axis { stroke: #d0d7de; stroke-width: 1; }
svg .ci { stroke: #1b1f24; stroke-width: 1.5; }
pre { background: #f6f8fa; padding: 8px 12px; white-space: pre-wrap; word-break: break-word; }
ul.warnings li { color: #9a6700; }
.swatch { display: inline-block; width: 10px; height: 10px; border-radius: 2px; margin-right: 6px; }
#headline .lead { font-size: 16px; margin: 6px 0; }
#headline .gate { margin: 10px 0; }
.scroll { overflow-x: auto; max-width: 100%; }
#explorer .filters { display: flex; flex-wrap: wrap; gap: 8px 14px; align-items: center; margin: 8px 0; }
#explorer input[type=search] { min-width: 220px; padding: 4px 6px; font: inherit; }
#explorer select { font: inherit; padding: 3px; }
#explorer button { font: inherit; cursor: pointer; border: 1px solid #d0d7de; background: #f6f8fa;
                   border-radius: 12px; padding: 2px 10px; }
#explorer button[aria-pressed=true] { background: #0969da; color: #fff; border-color: #0969da; }
#explorer th button { border: 0; background: none; padding: 0; font-weight: 600; border-radius: 0; }
#explorer th button[aria-sort=ascending]::after { content: " \\25B2"; }
#explorer th button[aria-sort=descending]::after { content: " \\25BC"; }
#explorer table { width: 100%; min-width: 880px; }
#explorer td { font-size: 13px; }
#explorer .pager { display: flex; gap: 10px; align-items: center; flex-wrap: wrap; }
#explorer .pager button { border-radius: 4px; }
@media (max-width: 600px) {
  main { padding: 12px 10px 32px; }
  svg.chart { max-width: 100%; height: auto; }
  table { display: block; overflow-x: auto; max-width: 100%; }
  .grid > div { max-width: 100%; }
  pre { max-width: 100%; overflow-x: auto; }
  #explorer input[type=search] { min-width: 0; width: 100%; }
}
"""


def esc(value: Any) -> str:
    """Any value as safe HTML text (quotes too, so it is also safe inside attributes), control characters
    shown as ``\\xNN`` (HTML escaping leaves ESC and BEL in the file, and in a terminal that prints it)."""
    return html.escape(visible(value), quote=True)


def document(title: str, body: Sequence[str], *, extra_css: str = "", scripts: Sequence[str] = ()) -> str:
    """A whole page: the policy (running exactly ``scripts``), ``title``, :data:`CSS` then ``extra_css``, the
    non-empty parts of ``body`` and the scripts, in that order."""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f'<meta http-equiv="Content-Security-Policy" content="{esc(page_csp(*scripts))}">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>{esc(title)}</title>",
            f"<style>{CSS}{extra_css}</style>",
            "</head><body><main>",
            *[part for part in body if part],
            *[f"<script>{script}</script>" for script in scripts],
            "</main></body></html>",
            "",
        ]
    )
