"""report.html: one self-contained page, model output shown as text, checked in headless Chromium.

The browser check renders the report of a real run (the offline lookup coder beside a scripted
model served over HTTP and reached through litellm, which echoes the prompt's example code and
answers ``<script>alert(1)</script>`` once), asserts the page loads with no console message and
shows its tables and SVG charts, and saves ``screenshot.png`` in that run's folder. When the
environment variable ``MEDCODE_ARTIFACTS_DIR`` is set, the report and the screenshot are copied
there too, for CI to upload.

Chromium is the Debian package ``chromium``; without it the check skips locally and fails in CI.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from conftest import missing
from devtools import DevTools
from pytest_medcode.cli import main as medcode
from pytest_medcode.codesystems import load_system
from pytest_medcode.dataset.cases import select_codes
from pytest_medcode.paths import cache_root
from pytest_medcode.redaction import mask_credentials
from pytest_medcode.reports import charts, html, markdown, tables
from pytest_medcode.reports.explorer import EXPLORER_JS
from pytest_medcode.reports.page import CSP, esc
from pytest_medcode.results.aggregate import digit_position_rates
from pytest_medcode.results.stats import mcnemar_exact
from pytest_medcode.runs.folder import load_run
from pytest_medcode.testing.responders import mapping_responder
from pytest_medcode.testing.server import ScriptedServer
from pytest_medcode.vocabulary import ERROR_MIX, MIX_WRONG_VALID, answered, error_kind, format_p

TEST_FILE = "def test_code_query(medcode_case, medcode):\n    medcode.check(medcode_case)\n"
CHROMIUM_INSTALL = "apt-get update && apt-get install -y chromium"
SCRIPT = "<script>alert(1)</script>"
IMG = '<img src=x onerror="alert(2)">'
CACHE = cache_root()  # read before pytester points HOME at a temporary folder
#: Console output of the page: Chromium logs ``INFO:CONSOLE:1] "message", source: ...`` (older
#: builds ``CONSOLE(1)``) with --enable-logging=stderr, and "Uncaught ..." for exceptions.
CONSOLE = re.compile(r"CONSOLE[(:]|Uncaught")


# -- Chromium ----------------------------------------------------------------------------------


def find_chromium() -> str:
    """The Chromium binary; without one the check fails in CI (CI=true) and skips elsewhere."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    missing(f"headless Chromium is needed for the report browser check; install it with: {CHROMIUM_INSTALL}")


@pytest.fixture
def chromium() -> str:
    return find_chromium()


def test_missing_chromium_fails_in_ci_and_skips_elsewhere(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shutil, "which", lambda name: None)
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"install it with: apt-get update && apt-get install -y"):
        find_chromium()
    monkeypatch.delenv("CI")
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y chromium"):
        find_chromium()


def browse(binary: str, profile: Path, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless Chromium run with its own profile, nothing fetched in the background."""
    cmd = [
        binary, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-extensions", "--no-first-run",
        "--no-default-browser-check", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
        *args, url,
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def console_messages(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if CONSOLE.search(line)]


class _Page(HTMLParser):
    """Elements (tag, attributes) and visible text of a page, as a browser's DOM holds them."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.elements.append((tag, dict(attrs)))
        if tag in ("style", "title"):
            self._skip += 1

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "title") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)

    def ids(self) -> set[str]:
        return {a["id"] for _, a in self.elements if a.get("id")}

    def count(self, tag: str) -> int:
        return sum(1 for t, _ in self.elements if t == tag)


def parse(page: str) -> _Page:
    parser = _Page()
    parser.feed(page)
    parser.close()
    return parser


def test_console_errors_are_detected(chromium: str, tmp_path: Path) -> None:
    """The detector the browser check relies on sees a console error and an uncaught exception."""
    page = tmp_path / "bad.html"
    page.write_text('<!DOCTYPE html><p>x</p><script>console.error("boom"); throw new Error("bang")</script>')
    proc = browse(chromium, tmp_path / "profile", page.as_uri(), "--dump-dom")
    found = " ".join(console_messages(proc.stderr))
    assert "boom" in found and "Uncaught Error: bang" in found


# -- a real run to look at ---------------------------------------------------------------------


@pytest.fixture(scope="module")
def scripted_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Lookup and a scripted model side by side on ICD-10-CM and ICD-9-CM, in gate mode (its own
    pytest process, as in CI)."""
    answers: dict[str, str] = {}
    for code, description in load_system("icd10cm").billable_codes():
        answers.setdefault(description, code)
    knows = mapping_responder(answers)
    # The run asks the same 12 codes per system (seed 0): make the first two answers hostile.
    asked = [description for _, description in select_codes(load_system("icd10cm"), 12, 0, None)]
    hostile_answers = {asked[0]: SCRIPT, asked[1]: f"Code: M24.131 {IMG}"}

    def respond(request: Any) -> str:
        if "ICD9CM" in request.last_user_message:
            return "Code: 045.10"  # echoes the example code of the prompt's format line
        return hostile_answers.get(request.description) or knows(request)

    folder = tmp_path_factory.mktemp("scripted-run")
    (folder / "test_codes.py").write_text(TEST_FILE)
    with ScriptedServer(respond) as server:
        proc = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "--medcode-report-dir",
             "reports", "--model", "lookup", "--model", "openai/scripted", "--medcode-api-base",
             server.base_url, "--medcode-system", "icd10cm,icd9cm", "--medcode-sample", "12",
             "--medcode-fail-under", "exact_match=0.5", "test_codes.py"],
            cwd=folder, env={**os.environ, "MEDCODE_CACHE_DIR": str(CACHE)}, capture_output=True, text=True,
            timeout=300,
        )
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]  # misses ICD-9-CM: the gate fails
    return (folder / "reports" / "latest").resolve()


def test_report_html_in_headless_chromium(chromium: str, scripted_run: Path, tmp_path: Path) -> None:
    report = scripted_run / "report.html"
    assert report.is_file() and (scripted_run / "report.md").is_file()

    proc = browse(chromium, tmp_path / "profile", report.as_uri(), "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert console_messages(proc.stderr) == []
    dom = parse(proc.stdout)
    ids = dom.ids()
    assert {"headline", "headline-table", "chart-exact-match", "chart-error-mix", "chart-hierarchy",
            "chart-digit-positions", "table-exact-match", "gate-checks", "table-error-analysis-icd10cm",
            "table-error-analysis-icd9cm", "top-codes-0", "explorer-table", "config"} <= ids
    summary = json.loads((scripted_run / "summary.json").read_text())
    if any((summary.get("similarity") or {}).values()):  # METEOR/BERTScore computed where their extra is
        assert {"chart-meteor-0", "chart-bertscore-0", "table-similarity"} <= ids
    assert dom.count("table") >= 8 and dom.count("svg") >= 2
    confident = [r for r in summary.get("selective") or [] if r.get("curve")]
    if confident:  # straight-through coding: a risk-coverage and a reliability line per group with confidences
        assert {"chart-risk-coverage", "chart-reliability"} <= ids
    # bars, and one digit-position line per model x system (plus the straight-through charts' lines)
    assert dom.count("rect") >= 4 and dom.count("polyline") == 4 + 2 * len(confident)
    assert dom.count("script") == 2 and dom.count("img") == 0  # the explorer's data and code, nothing else
    assert not [a for _, attrs in dom.elements for a in attrs if a.lower().startswith("on")]
    assert dom.count("tr") >= 48  # the explorer drew the run's 48 cases
    text = " ".join(dom.text)
    assert SCRIPT in text and IMG in text  # the model's answers, drawn by the explorer as text
    assert "Gate FAILED" in text and "prompt example" in text

    shot = scripted_run / "screenshot.png"
    proc = browse(chromium, tmp_path / "profile", report.as_uri(), f"--screenshot={shot}",
                  "--window-size=1280,2000", "--hide-scrollbars")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert console_messages(proc.stderr) == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000
    artifacts = os.environ.get("MEDCODE_ARTIFACTS_DIR")
    if artifacts:
        shutil.copytree(scripted_run, Path(artifacts) / "report-browser-check", dirs_exist_ok=True)
    print(f"screenshot: {shot}")


def _document_records(model: str) -> list[dict[str, Any]]:
    """Twelve notes coded with a confidence per code: sure of the right codes, less of the added one."""
    out = []
    for i in range(12):
        predicted = ["E11.9", "I10"] + (["R69"] if i % 3 == 0 else [])
        gold = ["E11.9", "I10"]
        tp = 2
        out.append({"kind": "document", "model": model, "system": "icd10cm", "document": f"n{i}",
                    "outcome": "incorrect", "gold_codes": gold, "predicted_codes": predicted,
                    "n_codes": len(predicted), "true_positives": tp,
                    "false_positives": len(predicted) - tp, "false_negatives": 0, "set_match": len(predicted) == 2,
                    "precision": tp / len(predicted), "recall": 1.0, "f1": 2 * tp / (len(predicted) + 2),
                    "category_f1": 1.0, "n_invalid": 0, "n_fabricated": 0, "synthetic": True,
                    "code_confidences": [0.95 + i / 1000, 0.9, 0.4][:len(predicted)]})
    return out


def test_the_document_straight_through_section_in_headless_chromium(chromium: str, tmp_path: Path) -> None:
    """The documents' table and precision–coverage chart (a model name that is markup included) load with no
    console message, under the page's policy."""
    from pytest_medcode.reports import document_section

    hostile = "<b>m</b>"
    records = _document_records("openai/m") + _document_records(hostile)
    page = tmp_path / "report.html"
    page.write_text(html.render(records, {"documents": document_section.section(records, 0, "documents-v1")}, 0))
    proc = browse(chromium, tmp_path / "profile", page.as_uri(), "--dump-dom")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert console_messages(proc.stderr) == []
    dom = parse(proc.stdout)
    assert {"documents", "documents-straight-through", "chart-document-precision"} <= dom.ids()
    assert dom.count("polyline") == 2 and dom.count("b") == 0  # a line per model; the name drawn as text
    assert hostile in " ".join(dom.text)


#: The two screen sizes the pages are checked at: a desktop window and a phone held upright.
SCREENS = [pytest.param(1400, 900, False, id="desktop-1400"), pytest.param(390, 844, True, id="phone-390")]
ROWS = "[...document.querySelectorAll('#explorer-rows tr')].map(tr => [...tr.cells].map(td => td.textContent))"
STATUS = "document.getElementById('explorer-status').textContent"


def test_devtools_sees_csp_violations_and_exceptions(chromium: str, tmp_path: Path) -> None:
    """The DevTools check's error list catches a script the page's policy refuses, and a thrown error."""
    page = tmp_path / "csp.html"
    page.write_text(f'<!DOCTYPE html><meta http-equiv="Content-Security-Policy" content="{esc(CSP)}">'
                    "<p>x</p><script>document.title = 'ran'</script>")
    thrower = tmp_path / "throw.html"
    thrower.write_text('<!DOCTYPE html><p>x</p><script>throw new Error("bang")</script>')
    with DevTools(chromium, tmp_path / "profile") as tab:
        tab.open(page.as_uri(), 800, 600)
        assert tab.evaluate("document.title") != "ran"
        assert any("Content Security Policy" in e for e in tab.errors), tab.errors
        tab.errors.clear()
        tab.open(thrower.as_uri(), 800, 600)
        assert any("bang" in e for e in tab.errors), tab.errors


@pytest.mark.parametrize(("width", "height", "mobile"), SCREENS)
def test_case_explorer_filters_by_typing_and_clicking(
    chromium: str, scripted_run: Path, tmp_path: Path, width: int, height: int, mobile: bool
) -> None:
    """The report in Chromium with real key and mouse input: the headline, then the explorer filtered by
    typing into its search box, by clicking an outcome and sorted by clicking a column title."""
    records = load_run(scripted_run).records
    wrong_valid = sum(1 for r in records if error_kind(r) == MIX_WRONG_VALID)
    assert 0 < wrong_valid < len(records)
    report = (scripted_run / "report.html").as_uri()
    with DevTools(chromium, tmp_path / "profile") as tab:
        tab.open(report, width, height, mobile)
        headline = tab.evaluate("document.getElementById('headline').innerText")
        assert "best is lookup" in headline and "McNemar p=" in headline and "Gate FAILED" in headline
        assert "unknown" in headline  # neither coder reports a price
        shots = [tab.screenshot(tmp_path / f"report-top-{width}.png")]
        assert tab.evaluate(STATUS).startswith(f"Cases 1–{len(records)} of {len(records)} shown")

        tab.type("#explorer-q", "alert(1)")
        rows = tab.evaluate(ROWS)
        assert len(rows) == 1 and rows[0][-2] == SCRIPT  # the answer, as text (then its confidence column)
        assert tab.evaluate("document.querySelectorAll('img').length") == 0
        shots.append(tab.screenshot(tmp_path / f"report-search-{width}.png"))

        tab.open(report, width, height, mobile)
        tab.click(f'button[data-kind="{ERROR_MIX.index(MIX_WRONG_VALID)}"]')
        rows = tab.evaluate(ROWS)
        assert len(rows) == wrong_valid and {r[2] for r in rows} == {MIX_WRONG_VALID}
        assert tab.evaluate(STATUS).startswith(f"Cases 1–{wrong_valid} of {wrong_valid} shown")
        tab.click('button[data-col="4"]')  # sort by the expected code
        expected = [r[3] for r in tab.evaluate(ROWS)]
        assert expected == sorted(expected) and len(expected) == wrong_valid
        tab.click('button[data-col="4"]')
        assert [r[3] for r in tab.evaluate(ROWS)] == sorted(expected, reverse=True)
        tab.click(f'button[data-kind="{ERROR_MIX.index(MIX_WRONG_VALID)}"]')  # again: the filter is off
        assert len(tab.evaluate(ROWS)) == len(records)
        search_right = tab.evaluate("document.getElementById('explorer-q').getBoundingClientRect().right")
        assert search_right <= width
        assert tab.evaluate("document.documentElement.scrollWidth") <= width  # wide tables scroll in place
        shots.append(tab.screenshot(tmp_path / f"report-explorer-{width}.png"))
        assert tab.errors == []
    for shot in shots:
        assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        keep_artifact(shot)


def keep_artifact(shot: Path) -> None:
    """Print where a screenshot is; copy it to ``MEDCODE_ARTIFACTS_DIR`` too when CI sets it."""
    print(f"screenshot: {shot}")
    artifacts = os.environ.get("MEDCODE_ARTIFACTS_DIR")
    if artifacts:
        folder = Path(artifacts) / "browser-check"
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy2(shot, folder / shot.name)


@pytest.mark.parametrize(("width", "height", "mobile"), SCREENS)
def test_history_page_in_chromium(
    chromium: str, scripted_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], width: int,
    height: int, mobile: bool
) -> None:
    """``medcode history`` over the reports folder of the gated run: the table, the page, its failed gate."""
    out = tmp_path / "history.html"
    assert medcode(["history", str(scripted_run.parent), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert scripted_run.name in printed and "FAILED" in printed and "lookup / icd10cm" in printed
    with DevTools(chromium, tmp_path / "profile") as tab:
        tab.open(out.as_uri(), width, height, mobile)
        assert tab.evaluate("document.querySelectorAll('#history-table tbody tr.failed').length") == 1
        assert tab.evaluate("document.querySelectorAll('#chart-history polyline').length") == 4
        assert tab.evaluate("document.querySelectorAll('script').length") == 0
        assert tab.evaluate("document.documentElement.scrollWidth") <= width
        shot = tab.screenshot(tmp_path / f"history-{width}.png")
        assert tab.errors == []
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    keep_artifact(shot)


def test_the_run_folder_reports_agree(scripted_run: Path) -> None:
    summary = json.loads((scripted_run / "summary.json").read_text())
    page = (scripted_run / "report.html").read_text()
    md = (scripted_run / "report.md").read_text()
    assert summary["gate"]["passed"] is False
    assert "Gate FAILED" in page and "**FAILED**" in md
    # 12 prompts per system and model; the scripted model answers 045.10 to all of them.
    assert "| 045.10 | 1000.0 | 12 |" in md and "the prompt's example code" in md
    assert SCRIPT not in page and "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e" in page
    assert SCRIPT in [row[8] for row in explorer_json(page)["rows"]]
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in md and SCRIPT not in md


# -- the renderer on real records --------------------------------------------------------------


@pytest.fixture
def lookup_records(pytester: pytest.Pytester) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    pytester.makepyfile(test_codes=TEST_FILE)
    result = pytester.runpytest("-p", "no:cacheprovider", "--medcode-no-similarity", "--medcode-report-dir",
                                "reports",
                                "--medcode-system", "icd10cm", "--medcode-sample", "30")
    assert result.ret == 0
    run = load_run(pytester.path / "reports" / "latest")
    assert run.summary is not None
    return run.records, run.summary


HOSTILE = [SCRIPT, IMG, "</td></tr></table><h1>x</h1>", '"><svg onload=alert(3)>', "javascript:alert(4)",
           "<!--", "]]>", "&amp;lt;", "｜pipe|and`tick`"]  # noqa: RUF001 (a full-width pipe on purpose)


def hostile(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for i, r in enumerate(records):
        evil = HOSTILE[i % len(HOSTILE)]
        r = dict(r)
        if i % 3 == 0:
            r.update(raw_answer=f"Code: {evil}", predicted_code=evil, codes=[evil], exact_match=False,
                     outcome="incorrect", predicted_description=evil, fabricated=True)
        if i % 3 == 1:
            r.update(outcome="error", raw_answer=None, error=f"APIError {evil} key=sk-abcdef1234567890XYZ",
                     exact_match=None)
        r["description"] = r["description"] + evil
        r["model"] = f"m{evil}" if i < 15 else "other"
        out.append(r)
    return out


def explorer_json(page: str) -> dict[str, Any]:
    """The case explorer's data block of a page, as the page's script reads it."""
    blocks = re.findall(r'<script type="application/json" id="explorer-data">(.*?)</script>', page, re.S)
    assert len(blocks) == 1
    return json.loads(blocks[0])


def test_everything_untrusted_is_escaped(lookup_records) -> None:
    records, summary = lookup_records
    summary = {**summary, "run_id": SCRIPT, "prompt_template": IMG, "results": None, "tables": None}
    page = html.render(hostile(records), summary)
    dom = parse(page)
    allowed = {"html", "head", "meta", "title", "style", "body", "main", "header", "h1", "h2", "h3", "p",
               "section", "div", "span", "em", "b", "table", "thead", "tbody", "tr", "th", "td", "ul", "li",
               "pre", "svg", "g", "line", "rect", "text", "polyline", "polygon", "circle", "label", "select",
               "option", "input", "button", "noscript", "script"}
    assert {t for t, _ in dom.elements} <= allowed
    assert [a for t, a in dom.elements if t == "script"] == [{"type": "application/json", "id": "explorer-data"}, {}]
    assert not [a for _, attrs in dom.elements for a in attrs if a.lower().startswith("on")]
    assert page.count("</script>") == 2  # no answer ends the data block early
    data = explorer_json(page)
    shown = " ".join(" ".join(map(str, row)) for row in data["rows"]) + " ".join(data["strings"] + data["models"])
    text = " ".join(dom.text)
    for evil in HOSTILE:
        assert evil in shown
    assert SCRIPT in text  # the run id, in the page's own text
    assert "sk-abcdef1234567890XYZ" not in page and "sk-***" in page


def test_the_page_is_self_contained(lookup_records) -> None:
    records, summary = lookup_records
    page = html.render(records, summary)
    inline = re.findall(r"<script>(.*?)</script>", page, re.S)
    assert inline == [EXPLORER_JS]
    digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
    csp = CSP + f"; script-src 'sha256-{digest}'"
    assert f'<meta http-equiv="Content-Security-Policy" content="{esc(csp)}">' in page
    assert re.findall(r"https?://[^\s\"'<>]+", page) == ["http://www.w3.org/2000/svg"] * page.count("<svg")
    for tag in ("<link", "<img", "<iframe", "<object", "@import", "url(", "innerHTML", "eval(", "fetch("):
        assert tag not in page


def test_similarity_histograms_only_when_scored(lookup_records) -> None:
    records, summary = lookup_records
    assert "chart-meteor" not in html.render(records, summary)
    scored = [{**r, "meteor": (i % 10) / 10, "bertscore": None if i % 4 else 0.9}
              for i, r in enumerate(records)]
    fresh = {**summary, "results": None, "tables": None}  # rebuilt from the scored records
    page = html.render(scored, fresh)
    dom = parse(page)
    assert {"chart-meteor-0", "chart-bertscore-0", "table-similarity"} <= dom.ids()
    assert "METEOR / BERTScore, mean (95% CI)" in page
    md = markdown.render(scored, fresh)
    assert "## METEOR / BERTScore, mean (95% CI)" in md and "METEOR ICD-10-CM" in md


def test_top_codes_count_per_1000_and_flag_the_example(lookup_records) -> None:
    records, summary = lookup_records
    echoed = [{**r, "predicted_code": "M24.131"} if i < 9 else r for i, r in enumerate(records)]
    _, built = tables.run_tables(echoed, None)
    top = built["top_codes"][0]["codes"][0]
    assert (top["code"], top["count"], top["per_1000"], top["is_example"]) == ("M24.131", 9, 300.0, True)
    page = html.render(echoed, {**summary, "results": None, "tables": None})
    assert 'M24.131<span class="badge example">prompt example</span>' in page
    assert "| M24.131 | 300.0 | 9 |" in markdown.render(echoed, {**summary, "results": None, "tables": None})


def test_digit_positions_are_shares_by_position(lookup_records) -> None:
    records, _ = lookup_records
    half = [{**r, "digit_positions": [True, False]} if i % 2 else {**r, "digit_positions": [True, True, True]}
            for i, r in enumerate(records)]
    rates = digit_position_rates(answered(half))
    assert [{k: p[k] for k in ("position", "value", "n")} for p in rates] == [
        {"position": 1, "value": 1.0, "n": 30},
        {"position": 2, "value": 0.5, "n": 30},
        {"position": 3, "value": 1.0, "n": 15},
    ]


def test_markdown_cells_are_escaped() -> None:
    assert markdown.cell("a|b\n<script>`x`*y*") == "a\\|b &lt;script&gt;\\`x\\`\\*y\\*"
    assert mask_credentials("Bearer abcdefghij and https://u:p@h/x and api_key=secretvalue") == (
        "Bearer *** and https://***@h/x and api_key=***"
    )


@pytest.mark.parametrize(("ci", "in_ci"), [("true", True), ("1", True), ("yes", True), ("false", False), ("", False)])
def test_a_missing_optional_piece_is_one_failing_line_in_ci_and_a_skip_elsewhere(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, in_ci: bool
) -> None:
    """The shared helper behind the WordNet, Chromium, BERTScore-model and local-LLM checks, in a real session."""
    monkeypatch.setenv("CI", ci)
    pytester.makepyfile(
        "from conftest import missing\n\n"
        "def test_needs_it():\n"
        "    missing('WordNet for METEOR; apt-get install -y wordnet-base')\n"
    )
    result = pytester.runpytest("-p", "no:cacheprovider", "-rs")
    if in_ci:
        result.assert_outcomes(failed=1)
        result.stdout.fnmatch_lines(["missing in CI: WordNet for METEOR; apt-get install -y wordnet-base"])
        assert "Traceback" not in result.stdout.str() and "def test_needs_it" not in result.stdout.str()
    else:
        result.assert_outcomes(skipped=1)
        result.stdout.fnmatch_lines(["SKIPPED * WordNet for METEOR; apt-get install -y wordnet-base"])


def test_headline_names_the_best_model_with_a_paired_test_and_the_cost(lookup_records) -> None:
    """A second model that misses every third case: the headline ranks lookup first, tests the lead with
    McNemar over the paired cases, and adds up the cost of each row's calls as the run's total is."""
    records, summary = lookup_records
    other = [{**r, "model": "other", "cache_hit": i >= 20, "attempts": 1, "prompt_tokens": 10,
              "completion_tokens": 2, "cost_usd": 0.002 if i < 10 or i >= 20 else None,
              **({"exact_match": False, "outcome": "incorrect", "predicted_code": "A00.0"} if i % 3 == 0 else {})}
             for i, r in enumerate(records)]
    page = html.render(records + other, {**summary, "results": None, "tables": None})
    lost = sum(1 for r in other if r["exact_match"] is False)
    assert lost == 10
    expected_p = format_p(mcnemar_exact(lost, 0))
    assert (f"best is <b>lookup</b> with exact match 100.0% (88.6–100.0), {100 * lost / 30:.1f} pp ahead of other "
            f"(66.7%); paired over 30 cases ({lost} won, 0 lost), McNemar p={expected_p}: a real difference") in page
    assert html.cost_text(records) == "-"  # lookup makes no model call
    assert html.cost_text(other) == "unknown ($0.0200 avoided)"  # ten calls of unknown cost: no partial sum
    assert html.cost_text(other[:10]) == "$0.0200"
    assert html.cost_text(other[20:]) == "$0.00 ($0.0200 avoided)"
    assert '<td class="num">unknown ($0.0200 avoided)</td>' in page
    # One colour per model · system, the same in the headline, the bars and the digit lines.
    colors = charts.series_colors([{"model": "lookup", "system": "icd10cm"}, {"model": "other", "system": "icd10cm"}])
    for color in colors.values():
        assert page.count(f"background:{color}") == 1 and f'fill="{color}" fill-opacity="0.8"' in page
        assert f'stroke="{color}"' in page
    assert page.count('stroke-dasharray="7 4"') == 2  # the second line is dashed, in the chart and its legend


def test_empty_sections_are_left_out_and_similarity_models_named(lookup_records) -> None:
    records, summary = lookup_records
    bare = [{**r, "digit_positions": None, "hierarchy_level": None} for r in records]
    page = html.render(bare, {**summary, "results": None, "tables": None})
    ids = parse(page).ids()
    assert "chart-digit-positions" not in ids and "chart-hierarchy" not in ids and "similarity" not in ids
    assert {"headline", "chart-error-mix", "cases"} <= ids and 'id="gate"' not in page
    scored = [{**r, "meteor": 0.5, "bertscore": 0.9} for r in records]
    named = {**summary, "results": None, "tables": None, "config": {**summary["config"], "bertscore_model": None},
             "similarity": {"meteor": {"available": True, "label": "METEOR (nltk, WordNet synonyms)"},
                            "bertscore": {"available": True, "label": "BERTScore F1 (sentence-transformers/x)",
                                          "model": "sentence-transformers/x"}}}
    page = html.render(scored, named)
    assert "Scored with: METEOR (nltk, WordNet synonyms); BERTScore F1 (sentence-transformers/x)." in page
    assert "<td>bertscore_model</td><td>BERTScore F1 (sentence-transformers/x) (the default)</td>" in page
