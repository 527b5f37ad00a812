"""Everything the terminal shows of a run: the overview table, the study's tables (reports/tables.py), the
variant / temperature pivots, self-consistency, the model-call line and the gate's verdict."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pytest_medcode.reports.tables import build_tables, deployment_rows, format_cell, merge_error_tables
from pytest_medcode.reports.text import DEFAULT_WIDTH, fitted, usd, wrapped
from pytest_medcode.results.consistency import pivot
from pytest_medcode.safetext import visible
from pytest_medcode.vocabulary import DIMENSIONS

TOP_CODES_SHOWN = 5


def _pct(est: dict[str, Any], ci: bool = False) -> str:
    if est["value"] is None:
        return "-"
    text = f"{100 * est['value']:.1f}%"
    if ci:
        text += f" ({100 * est['low']:.1f}–{100 * est['high']:.1f})"
    return text


def _num(est: dict[str, Any]) -> str:
    return "-" if est["value"] is None else f"{est['value']:.2f}"


def _dim(value: Any) -> str:
    return "-" if value is None else (f"{value:g}" if isinstance(value, float) else str(value))


# The study's finding first: exact match, fabricated codes and echoes of the prompt's example, with intervals.
HEADERS = ("model", "system", "n", "exact match (95% CI)", "fabricated (95% CI)", "example echo (95% CI)",
           "outdated (95% CI)", "valid", "codes/answer", "length", "digits", "errors")
COMPACT = 6  # the columns of the -q table: up to the example echo


def table_rows(groups: list[dict[str, Any]]) -> list[tuple[str, ...]]:
    return [
        (
            g["model"], g["system"], str(g["answered"]), _pct(g["exact_match"], ci=True),
            _pct(g["fabricated"], ci=True), _pct(_echo(g), ci=True), _pct(_other_release(g), ci=True),
            _pct(g["valid"]),
            _num(g["codes_per_answer"]), _pct(g["length_match"]), _pct(g["digit_match"]), str(g["errors"]),
        )
        for g in groups
    ]


def release_line(summary: dict[str, Any]) -> str | None:
    """``code sets: icd10cm 2026 (April 1, 2026); icd10pcs FY2024 (...)``: which year's codes the run scored."""
    versions = {n: v for n, v in (summary.get("code_systems") or {}).items() if v}
    return "code sets: " + "; ".join(f"{n} {v}" for n, v in versions.items()) if versions else None


def _other_release(group: dict[str, Any]) -> dict[str, Any]:
    """The outdated-code estimate; a system with one release (or a run recorded before) shows "-"."""
    return group.get("outdated") or {"value": None}


def _echo(group: dict[str, Any]) -> dict[str, Any]:
    """The example-echo estimate; a run recorded before it was kept shows "-"."""
    return group.get("example_echo") or {"value": None}


def render_table(groups: list[dict[str, Any]], width: int = DEFAULT_WIDTH, compact: bool = False) -> list[str]:
    """The one-line-per-(model, system) overview, stacked in blocks when wider than ``width``; ``compact``:
    only the study's three rates (and failed calls, if any), the table ``-q`` prints."""
    # Case dimensions (variant, temperature sweep) become columns after "system" when the run has them.
    dims = [d for d in DIMENSIONS if any(d in g for g in groups)]
    # -q: failed calls only when there were any (a column of zeros would push the table past 100 columns).
    errors = [len(HEADERS) - 1] if any(g.get("errors") for g in groups) else []
    keep = [*range(COMPACT), *errors] if compact else range(len(HEADERS))
    headers = (*HEADERS[:2], *dims, *(HEADERS[i] for i in keep if i >= 2))
    body = [(*r[:2], *(_dim(g.get(d)) for d in dims), *(r[i] for i in keep if i >= 2))
            for g, r in zip(groups, table_rows(groups))]
    return fitted(headers, body, left=2 + len(dims), width=width)


def similarity_lines(tables: dict[str, Any], width: int = DEFAULT_WIDTH) -> list[str]:
    """Both similarity tables in one, long format for a terminal: rows model × metric (two padded columns,
    whatever the names' lengths), columns systems.

    (summary.json keeps the study's wide layout: model × (metric × system).)"""
    scorable, everything = tables["similarity"], tables["similarity_all"]
    systems = list(dict.fromkeys(c["system"] for c in scorable["columns"]))
    titles = {c["system"]: c["title"].split(" ", 1)[1] for c in scorable["columns"]}
    body = []
    for source, suffix in ((scorable, ""), (everything, ", all answered")):
        metric_of = {c["metric"]: c["title"].split(" ", 1)[0] for c in source["columns"]}
        for row in source["rows"]:
            cells = {(c["metric"], c["system"]): cell for c, cell in zip(source["columns"], row["cells"])}
            for metric, title in metric_of.items():
                body.append([row["title"], f"{title}{suffix}",
                             *(format_cell(cells.get((metric, s)), "score") for s in systems)])
    if not body:
        return []
    title = f"{scorable['title']}: over cases whose predicted code has a description; 'all answered': unresolved = 0"
    return [*wrapped(title, width), *fitted(["model", "metric", *(titles[s] for s in systems)], body, 2, width)]


def _axis_lines(results: Sequence[dict[str, Any]]) -> list[str]:
    """For systems whose characters are axes (ICD-10-PCS): which axis each model gets wrong most."""
    out = [f"  {row.get('model')} · {row.get('system')}: {row['most_missed_axis']['axis']} "
           f"({100 * row['most_missed_axis']['value']:.1f}% matched)"
           for row in results if row.get("most_missed_axis")]
    return ["Most missed axis (the character position answers match least often)", *out] if out else []


def _top_code_lines(tables: dict[str, Any], width: int = DEFAULT_WIDTH) -> list[str]:
    out = []
    for entry in tables.get("top_codes") or []:
        # Codes returned more than once, and the prompt's example code: a list of singletons says nothing.
        codes = [c for c in entry.get("codes") or [] if c.get("count", 0) > 1 or c.get("is_example")]
        if not codes:
            continue
        shown = ", ".join(
            f"{c['code']}{'*' if c.get('is_example') else ''} {c['per_1000']:.0f}" for c in codes[:TOP_CODES_SHOWN]
        )
        out += wrapped(f"  {entry['model']} · {entry['system']}: {shown}", width, indent="    ")
    if out:
        out[:0] = wrapped("Most returned codes, per 1,000 prompts (* = the prompt's own example code)", width)
    return out


def _has_values(table: dict[str, Any]) -> bool:
    return any(c and c.get("value") is not None for r in table["rows"] for c in r["cells"])


def render_summary(summary: dict[str, Any], width: int = DEFAULT_WIDTH, compact: bool = False) -> list[str]:
    """Everything the terminal shows of a run: header notes, the overview, the study's tables, top codes;
    no line wider than ``width``. ``compact`` (``-q``): the overview's first columns only."""
    if compact:
        return render_table(summary.get("results") or [], width, compact=True)
    from pytest_medcode.scoring.session_metrics import describe

    results = summary.get("results") or []
    tables = summary.get("tables") or build_tables(results)
    lines: list[str] = []
    profile = (summary.get("config") or {}).get("profile") or summary.get("profile")
    if profile:
        lines.append(f"scoring profile: {profile}")
    lines += describe(summary.get("similarity"))  # one line each, as promised: a reason is not cut
    if lines:
        lines.append("")
    lines += render_table(results, width)
    lines.append("")
    blocks: list[list[str]] = [_paper_lines(tables["exact_match"], width)]
    if _has_values(tables["similarity"]) or _has_values(tables["similarity_all"]):
        blocks.append(similarity_lines(tables, width))
    errors = tables.get("error_analysis") or []
    merged = merge_error_tables(errors)
    blocks += [_paper_lines(t, width) for t in ([merged] if merged is not None else errors)]
    blocks.append(_axis_lines(results))
    blocks.append(_top_code_lines(tables, width))
    for block in blocks:
        if block:
            lines += [*block, ""]
    lines += wrapped(
        "Rates over answered cases, 95% Wilson intervals; means with a seeded bootstrap (2,000 resamples). "
        "example echo: the answer is the prompt's own example code. errors: failed calls, not scored.", width)
    return lines


def _paper_lines(table: dict[str, Any], width: int) -> list[str]:
    """One of the study's tables (reports/tables.py) as text no wider than ``width``: the title wrapped, the
    columns (systems or models) stacked in blocks beside the row titles when they do not fit."""
    header = [table.get("row_header", ""), *(c["title"] for c in table["columns"])]
    body = [[r["title"], *(format_cell(c, r["kind"]) for c in r["cells"])] for r in table["rows"]]
    return [*wrapped(table["title"], width), *fitted(header, body, 1, width)] if body else []


# -- what a run varies: pivots and self-consistency ---------------------------------------------------


def _pct1(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def render_pivot(results: Sequence[dict[str, Any]], dimension: str, width: int = DEFAULT_WIDTH) -> list[str]:
    """Exact match with one column per value of ``dimension`` (how each coder degrades)."""
    fields, values, rows = pivot(results, dimension)
    label = "t=" if dimension == "temperature" else ""
    headers = [*fields, *(f"{label}{_dim(v)}" for v in values)]
    body = [(*map(_dim, row[:-1]), *map(_pct1, row[-1])) for row in rows]
    return fitted(headers, body, left=len(fields), width=width)


def render_consistency(rows: Sequence[dict[str, Any]], width: int = DEFAULT_WIDTH) -> list[str]:
    """The self-consistency section: agreement across repeats and exact match per repeat."""
    if not rows:
        return []
    dims = [d for d, default in DIMENSIONS.items() if any(r[d] != default for r in rows)]
    headers = ["model", "system", *dims, "cases", "K", "agreement", "unanimous", "majority vote",
               "any (pass@K)", "exact per repeat"]
    body = []
    for r in rows:
        body.append((
            r["model"], r["system"], *(_dim(r[d]) for d in dims),
            str(r["cases"]), str(r["repeats"]), _pct1(r["agreement"]), _pct1(r["unanimous"]["value"]),
            _pct1(r["majority_exact"]["value"]), _pct1(r["any_exact"]["value"]),
            " ".join(_pct1(v) for v in r["exact_per_repeat"]),
        ))
    return fitted(headers, body, left=2 + len(dims), width=width)


def dimension_lines(summary: dict[str, Any], width: int = DEFAULT_WIDTH) -> list[str]:
    """Exact match by variant / temperature, and self-consistency across repeats, when the run varies them."""
    lines: list[str] = []
    for dimension in DIMENSIONS:
        if any(dimension in row for row in summary["results"]):
            title = f"exact match by {dimension}"
            if dimension == "variant" and summary.get("synonym_source"):
                title += f" (synonyms: {summary['synonym_source']})"
            lines += ["", *wrapped(title, width), *render_pivot(summary["results"], dimension, width)]
    if summary.get("consistency"):
        lines += ["", *wrapped("self-consistency over repeats (agreement: share of a case's answers that match "
                               "its most frequent code)", width), *render_consistency(summary["consistency"], width)]
    return lines


def model_calls_line(queries: dict[str, Any]) -> str | None:
    """``model calls: 40 asked in 3.1 s, 260 from the cache, 2 retries, 1 failed``; None when no cached
    coder ran (a lookup-only run asks nothing worth counting)."""
    if not (queries["asked"] or queries["cache_hits"] or queries.get("not_asked")):
        return None
    took = f" in {queries['phase_s']:.1f} s" if queries["asked"] and queries.get("phase_s") else ""
    not_asked = f", {queries['not_asked']} not asked" if queries.get("not_asked") else ""
    return (f"model calls: {queries['asked']} asked{took}, {queries['cache_hits']} from the cache, "
            f"{queries['retries']} retries, {queries['errors']} failed{not_asked}")


def failure_reason_lines(failures: dict[str, list[list[Any]]]) -> list[str]:
    """Each model's most frequent reasons for a failed call, with their counts; an API's words are untrusted
    bytes, so their control characters are shown as ``\\xNN``."""
    lines = []
    for model, reasons in failures.items():
        lines.append(f"failed calls of {visible(model)}:")
        # one line each: a reason is not cut, its line breaks are spaces
        lines.extend(f"  {n:,} × {' '.join(visible(reason).split())}" for reason, n in reasons)
        if any(str(reason).startswith("not asked:") for reason, _ in reasons):
            lines.append("  cases not asked are not kept: after the fix, a rerun asks only those")
    return lines


def deployment_lines(deployments: Sequence[dict[str, Any]] | None) -> list[str]:
    """``deployments of MODEL:`` and one line per deployment (--medcode-router): cases, answers, exact match."""
    lines: list[str] = []
    for model, label, cases, answered, errors, cached, exact in deployment_rows(deployments)[1]:
        header = f"deployments of {visible(model)}:"
        if header not in lines:
            lines.append(header)
        lines.append(f"  {visible(label)}: {cases} cases, {answered} answered, {errors} failed, {cached} from the "
                     f"cache, exact match {exact}")
    return lines


def cost_lines(costs: dict[str, Any] | None, width: int = DEFAULT_WIDTH) -> list[str]:
    """One compact block: per model its calls, tokens and cost, the cache's savings, the budget; each entry
    wrapped to ``width``."""
    if not costs:
        return []
    return [line for entry in _cost_entries(costs) for line in wrapped(entry, width, indent="    ")]


def _cost_entries(costs: dict[str, Any]) -> list[str]:
    out = [f"cost: {usd(costs['total_usd'])} spent on model calls, {usd(costs['avoided_usd'])} avoided by the cache"]
    for m in costs["models"]:
        price = m["price"]
        where = (f"{price['source']} ${price['input_per_m']:g}/${price['output_per_m']:g} per 1M"
                 if price else "no price: --medcode-price MODEL=IN/OUT")
        out.append(f"  {m['model']}: {m['calls']} calls, {m['prompt_tokens']:,} + {m['completion_tokens']:,} tokens, "
                   f"{usd(m['cost_usd'])}; {m['cache_hits']} cache hits, {usd(m['avoided_usd'])} avoided ({where})")
    budget = costs.get("budget")
    if budget:
        for b in budget["limits"]:
            scope = "run" if b["scope"] is None else b["scope"]
            out.append(f"  budget ({scope}): {usd(b['spent_usd'])} of {usd(b['limit_usd'])} spent, "
                       f"{usd(b['left_usd'])} left")
        if budget["not_asked"]:
            out.append(f"  {budget['not_asked']} case(s) not asked: the budget would have been passed; a rerun "
                       "with a higher --medcode-max-cost asks only them")
    return out
