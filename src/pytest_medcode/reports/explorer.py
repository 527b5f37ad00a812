"""The case explorer of ``report.html``: every case as compact JSON, and the one inline script that shows it.

The page's Content-Security-Policy runs this script only (by its SHA-256) and nothing else. The script
never writes HTML: every cell is set with ``textContent``, so a model's ``<script>`` answer stays text.
At 75,000 cases the page holds all of them, but the script draws one page of rows at a time, and the
data are columnar: model, system, kind of answer and variant as small integers, descriptions (repeated
across models) stored once in a string table, raw answers clipped to :data:`EXPLORER_ANSWER_LIMIT` characters.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytest_medcode.redaction import mask_credentials
from pytest_medcode.reports.tables import clip
from pytest_medcode.safetext import visible
from pytest_medcode.vocabulary import DIMENSIONS, ERROR_MIX, MIX_FAILED, error_kind

__all__ = ["EXPLORER_ANSWER_LIMIT", "EXPLORER_JS", "PAGE_ROWS", "ExplorerText", "explorer_data"]

#: Characters of a raw answer the explorer keeps (the rest is counted, and is in cases.parquet): the page holds
#: every case of the run, so this bounds its size (report.md's wrong answers keep more: markdown.py).
EXPLORER_ANSWER_LIMIT = 200
#: Rows drawn at a time.
PAGE_ROWS = 50

_VARIANT_DEFAULT = DIMENSIONS["variant"]


class ExplorerText:
    """The explorer's text of each distinct value: shown safely (:func:`visible`), a raw answer also masked
    and clipped. Filled as the records arrive (:meth:`add`), it takes that work off the end of a large run,
    where the reporting process would otherwise do it for every case; the page is the same without it."""

    def __init__(self) -> None:
        self._shown: dict[Any, str] = {}
        self._answers: dict[tuple[str, int | None], str] = {}  # answers repeat ("Code: M24.131")

    def shown(self, value: Any) -> str:
        """``value`` as the page shows it ("" for None), made once per distinct value."""
        text = self._shown.get(value)
        if text is None:
            text = self._shown[value] = "" if value is None else visible(value)
        return text

    def answer(self, record: dict[str, Any]) -> str:
        """The raw answer cell of ``record`` (or why its call failed): masked, made visible, clipped."""
        if error_kind(record) == MIX_FAILED:
            raw, total = f"(call failed) {record.get('error') or ''}", None
        else:
            raw, total = record.get("raw_answer") or "", record.get("answer_chars")
        shown = self._answers.get((raw, total))
        if shown is None:
            shown = self._answers[raw, total] = clip(visible(mask_credentials(raw)), EXPLORER_ANSWER_LIMIT, total)
        return shown

    def add(self, record: dict[str, Any]) -> None:
        """Make the text of one record's cells now."""
        for key in _SHOWN:
            self.shown(record.get(key))
        self.shown(record.get("variant") or _VARIANT_DEFAULT)
        self.answer(record)


_SHOWN = ("model", "system", "code", "description", "predicted_code", "predicted_description")


def explorer_data(records: Sequence[dict[str, Any]], text: ExplorerText | None = None) -> dict[str, Any]:
    """The explorer's JSON: lookup lists and one row per case
    ``[model, system, kind, variant, expected, description, predicted, predicted description, raw answer,
    confidence, declined]`` (the first four and the two descriptions as indexes; confidence None for none,
    declined 1 when the product abstained). ``text``: the cells' text made so far."""
    text = text if text is not None else ExplorerText()
    lists: dict[str, dict[Any, int]] = {"models": {}, "systems": {}, "variants": {}, "strings": {}}
    shown: dict[str, list[str]] = {name: [] for name in lists}
    kinds = {k: i for i, k in enumerate(ERROR_MIX)}

    def index(kind: str, value: Any) -> int:
        table = lists[kind]
        found = table.get(value)
        if found is None:
            found = table[value] = len(table)
            shown[kind].append(text.shown(value))
        return found

    rows = []
    for r in records:
        rows.append([
            index("models", r.get("model")),
            index("systems", r.get("system")),
            kinds[error_kind(r)],
            index("variants", r.get("variant") or _VARIANT_DEFAULT),
            text.shown(r.get("code")),
            index("strings", r.get("description")),
            text.shown(r.get("predicted_code")),
            # a code of another release: which one, in place of the description the scored release lacks
            index("strings", r.get("predicted_description") or r.get("release_note")),
            text.answer(r),
            None if r.get("confidence") is None else round(float(r["confidence"]), 3),
            1 if r.get("abstained") else 0,
        ])
    return {
        "models": shown["models"],
        "systems": shown["systems"],
        "kinds": list(ERROR_MIX),
        "variants": shown["variants"],
        "strings": shown["strings"],
        "page": PAGE_ROWS,
        "rows": rows,
    }


#: Filters (selects, outcome buttons, free text), sortable columns and paging over the JSON rows.
EXPLORER_JS = r"""(function () {
"use strict";
var src = document.getElementById("explorer-data");
var root = document.getElementById("explorer");
if (!src || !root) { return; }
var D = JSON.parse(src.textContent), R = D.rows, S = D.strings, PAGE = D.page;
var st = {model: -1, system: -1, variant: -1, kind: -1, q: "", sort: -1, dir: 1, page: 0, conf: -1};
var view = [], hay = null;
function $(id) { return document.getElementById(id); }
function val(r, c) {
  switch (c) {
    case 0: return D.models[r[0]];
    case 1: return D.systems[r[1]];
    case 2: return D.kinds[r[2]];
    case 3: return D.variants[r[3]];
    case 5: case 7: return S[r[c]];
    case 9: return r[9] === null ? -1 : r[9];
    default: return r[c];
  }
}
function line(r) {
  var parts = [];
  for (var c = 0; c < 9; c++) { parts.push(val(r, c)); }
  return parts.join("\u0001").toLowerCase();
}
function apply() {
  var q = st.q.toLowerCase().trim(), out = [];
  if (q && hay === null) { hay = R.map(line); }
  for (var i = 0; i < R.length; i++) {
    var r = R[i];
    if ((st.model >= 0 && r[0] !== st.model) || (st.system >= 0 && r[1] !== st.system) ||
        (st.kind >= 0 && r[2] !== st.kind) || (st.variant >= 0 && r[3] !== st.variant)) { continue; }
    if (q && hay[i].indexOf(q) < 0) { continue; }
    if (st.conf >= 0 && (r[9] === null || r[9] < st.conf || r[10])) { continue; }
    out.push(i);
  }
  if (st.sort >= 0) {
    var c = st.sort, d = st.dir;
    out.sort(function (a, b) {
      var x = val(R[a], c), y = val(R[b], c);
      return x < y ? -d : (x > y ? d : a - b);
    });
  }
  view = out;
  st.page = 0;
  draw();
}
function cell(tr, text, cls) {
  var td = document.createElement("td");
  td.textContent = text;
  if (cls) { td.className = cls; }
  tr.appendChild(td);
}
var COLS = JSON.parse(root.getAttribute("data-columns"));
function draw() {
  var body = $("explorer-rows"), start = st.page * PAGE, end = Math.min(view.length, start + PAGE);
  var frag = document.createDocumentFragment();
  for (var i = start; i < end; i++) {
    var r = R[view[i]], tr = document.createElement("tr");
    tr.className = "kind-" + r[2];
    for (var k = 0; k < COLS.length; k++) {
      var c = COLS[k];
      if (c === 9) {
        cell(tr, r[9] === null ? "" : r[9].toFixed(3) + (r[10] ? " (declined)" : ""), "num");
        continue;
      }
      cell(tr, val(r, c), c === 8 ? "raw" : (c === 4 || c === 6 ? "code" : ""));
    }
    frag.appendChild(tr);
  }
  body.textContent = "";
  body.appendChild(frag);
  var pages = Math.max(1, Math.ceil(view.length / PAGE));
  $("explorer-status").textContent = view.length ?
    ("Cases " + (start + 1).toLocaleString() + "\u2013" + end.toLocaleString() + " of " +
     view.length.toLocaleString() + " shown (" + R.length.toLocaleString() + " in the run) \u00b7 page " +
     (st.page + 1) + " of " + pages) :
    ("No case matches (" + R.length.toLocaleString() + " in the run)");
  $("explorer-prev").disabled = st.page === 0;
  $("explorer-next").disabled = st.page >= pages - 1;
  var heads = root.querySelectorAll("th button[data-col]");
  for (var h = 0; h < heads.length; h++) {
    var col = +heads[h].getAttribute("data-col");
    heads[h].setAttribute("aria-sort", col === st.sort ? (st.dir > 0 ? "ascending" : "descending") : "none");
  }
  var chips = root.querySelectorAll("button[data-kind]");
  for (var j = 0; j < chips.length; j++) {
    chips[j].setAttribute("aria-pressed", String(+chips[j].getAttribute("data-kind") === st.kind));
  }
}
function select(id, key) {
  var el = $(id);
  if (el) { el.addEventListener("change", function () { st[key] = +el.value; apply(); }); }
}
select("explorer-model", "model");
select("explorer-system", "system");
select("explorer-variant", "variant");
$("explorer-q").addEventListener("input", function (e) { st.q = e.target.value; apply(); });
var conf = $("explorer-conf");
if (conf) {
  conf.addEventListener("input", function () {
    var v = parseFloat(conf.value);
    st.conf = isNaN(v) ? -1 : v;
    apply();
  });
}
root.addEventListener("click", function (e) {
  var b = e.target.closest("button");
  if (!b) { return; }
  if (b.hasAttribute("data-kind")) {
    var k = +b.getAttribute("data-kind");
    st.kind = st.kind === k ? -1 : k;
    apply();
  } else if (b.hasAttribute("data-col")) {
    var c = +b.getAttribute("data-col");
    st.dir = st.sort === c ? -st.dir : 1;
    st.sort = c;
    apply();
  } else if (b.id === "explorer-prev" && st.page > 0) {
    st.page--; draw();
  } else if (b.id === "explorer-next" && (st.page + 1) * PAGE < view.length) {
    st.page++; draw();
  }
});
root.hidden = false;
apply();
})();
"""
