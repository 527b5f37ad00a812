"""Command-line options and ini keys, parsed once into a frozen :class:`Settings`.

Every ``--medcode-*`` option has an ini twin (``medcode_*``); the command line wins. Validation
happens here, at configure time, so a bad value stops the run with one line (exit 4) before any
model is asked anything.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from pytest_medcode.api import CoderOptions
from pytest_medcode.asking.budget import parse_limits
from pytest_medcode.asking.pricing import Price, PriceError, parse_prices
from pytest_medcode.codesystems import BUNDLED, SYSTEMS, name_user_system
from pytest_medcode.codesystems.user import NAME as USER_SYSTEM_NAME
from pytest_medcode.redaction import public_url
from pytest_medcode.results.gate import GateSpec
from pytest_medcode.results.rules import (
    DEFAULT_ALPHA,
    DEFAULT_MAX_ERROR_RATE,
    MAX_ALPHA,
    parse_max_drops,
    parse_thresholds,
)

DEFAULT_SAMPLE = 200  # per system: the size of the study's manually graded subsample


@dataclass(frozen=True)
class Option:
    name: str  # without the leading dashes
    help: str
    default: Any
    metavar: str
    append: bool = False
    flag: bool = False

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def ini(self) -> str:
        return self.dest if self.name.startswith("medcode") else f"medcode_{self.dest}"


OPTIONS: list[Option] = [
    Option("model", "model to benchmark, repeatable: lookup (offline retrieval), any litellm name "
           "(gpt-4, gemini/gemini-pro, openai/NAME with --medcode-api-base), rag:MODEL, verify:MODEL, "
           "python:package.module:function, local:smollm2", None, "NAME", append=True),
    Option("medcode-system", "comma list of code systems: " + ", ".join(SYSTEMS), ",".join(BUNDLED), "LIST"),
    Option("medcode-sample", "codes per system, drawn with --medcode-seed; 'all' for every billable code",
           str(DEFAULT_SAMPLE), "N|all"),
    Option("medcode-seed", "seed for sampling", "0", "S"),
    Option("medcode-codes", "your own list of codes (CSV/TSV/Parquet: code, optional system and count; "
           "count makes --medcode-sample a frequency-weighted draw)", None, "FILE"),
    Option("medcode-codeset", "a code table file for a system, e.g. cpt=cpt.csv (code and description "
           "columns); repeatable. A NAME that is not built in adds your own system (optional parent and "
           "billable columns; NAME:TITLE=PATH names it TITLE in the prompt), asked with --medcode-system NAME",
           None, "SYSTEM[:TITLE]=PATH", append=True),
    Option("medcode-prompt", "prompt template: paper (the authors' exact prompt), presentation, or a file "
           "with {system} {description} {example}", "paper", "NAME|PATH"),
    Option("medcode-temperature", "sampling temperature; a comma list (0.2,0.6,1.0) sweeps it as a case "
           "dimension", "0.2", "T[,T...]"),
    Option("medcode-max-tokens", "max tokens per answer", "50", "N"),
    Option("medcode-api-base", "OpenAI-compatible endpoint for the models (e.g. http://127.0.0.1:8000/v1)",
           None, "URL"),
    Option("medcode-timeout", "seconds per model call", "30", "S"),
    Option("medcode-attempts", "attempts per model call before the case ends as an error (a rate limit uses "
           "none: it is waited out within --medcode-max-wait)", "3", "N"),
    Option("medcode-max-wait", "seconds one model call may wait in all between its attempts: rate limits "
           "(429, Retry-After) are waited out until then; 0: one attempt, no wait", "600", "S"),
    Option("medcode-concurrency", "model calls in flight at once", "16", "N"),
    Option("medcode-report-dir", "where run folders are written", "reports", "DIR"),
    Option("medcode-cache", "response cache file (SQLite), shared by runs and xdist workers",
           ".medcode/responses.sqlite3", "PATH"),
    Option("medcode-no-cache", "neither read nor keep answers from earlier runs ('1' in the ini)", None, "",
           flag=True),
    Option("medcode-rpm", "model calls started per minute, for the whole run (all workers)", None, "N"),
    Option("medcode-retry-errors", "ask again the cases whose calls failed for good in earlier runs (a 400, an "
           "empty answer: the failures the cache keeps)", None, "",
           flag=True),
    Option("medcode-no-preflight", "skip the probe request that checks each API model, endpoint and key "
           "before the first case", None, "", flag=True),
    Option("medcode-circuit-breaker", "stop asking a model after K identical failures in a row that another "
           "attempt cannot fix (bad key, unknown model, quota, unreachable endpoint); 0: never", "5", "K"),
    Option("medcode-show-failures", "failing cases shown in full in the summary; the rest are tallied (all "
           "still fail). 'all' for pytest's full listing, as -v, --tb or -r also give", "10", "N|all"),
    # Money (asking/pricing.py, asking/budget.py, results/costs.py).
    Option("medcode-price", "a model's price in USD per million input/output tokens, repeatable; wins over "
           "litellm's price map: gpt-4=30/60, openai/my-model=0.5/1.5 (rag:X and verify:X pay X's price)", None,
           "MODEL=IN/OUT", append=True),
    Option("medcode-max-cost", "budget in USD: no call starts that could take the run's spend past it; "
           "MODEL=USD for one model; repeatable. Cases left unasked end as errors a rerun asks", None,
           "[MODEL=]USD", append=True),
    Option("medcode-estimate", "print the calls, tokens and cost range of the run without asking anything "
           "(exit 0)", None, "", flag=True),
    # The release gate (gate.py). Any of these turns on gate mode: wrong codes stop being test
    # failures and the exit status is the gate's verdict.
    Option("medcode-fail-under", "gate: fail when a rate is below its limit, per model and system; comma "
           "list, repeatable: exact_match=0.45,valid=0.9,icd10cm:exact_match=0.3", None, "[SYSTEM:]METRIC=X",
           append=True),
    Option("medcode-fail-over", "gate: fail when a lower-is-better rate is above its limit: fabricated=0.1",
           None, "[SYSTEM:]METRIC=X", append=True),
    Option("medcode-baseline", "gate: a recorded run (folder or cases.parquet) to pair cases with and test "
           "for regressions (exact_match=2pp unless --medcode-max-drop says otherwise)", None, "RUN"),
    Option("medcode-max-drop", "gate: largest tolerated drop against the baseline, failing only when also "
           "significant: exact_match=2pp,digit_match=0.01", None, "METRIC=MARGIN", append=True),
    Option("medcode-alpha", "gate: significance level of the regression tests (default 0.05)", None, "A"),
    Option("medcode-max-error-rate", "gate: largest share of failed model calls per model and system "
           "(default 0.05)", None, "X"),
    # Coders and robustness.
    Option("medcode-rag-k", "rag:MODEL: candidate codes retrieved for the model to choose from", "15", "K"),
    Option("medcode-verify-rounds", "verify:MODEL: follow-ups when an answer names no existing billable "
           "code", "2", "N"),
    Option("medcode-variant", "comma list of description variants, each a case dimension: "
           "exact, abbrev, synonym, typo, reorder, lay", "exact", "LIST"),
    Option("medcode-repeats", "ask each case K times (self-consistency is reported)", "1", "K"),
    # Scoring.
    Option("medcode-profile", "how answers are read and scored: default (whole codes, existence in the "
           "table), or paper (the authors' first-match regexes and billable-list validity; README, Profiles)",
           "default", "default|paper"),
    Option("medcode-bertscore-model", "BERTScore model: a Hugging Face name or a local path (default: the "
           "bundled all-MiniLM-L6-v2, offline)", None, "NAME_OR_PATH"),
    Option("medcode-bertscore-device", "device for BERTScore, e.g. cpu, cuda, cuda:1 (default: cuda when "
           "available)", None, "DEVICE"),
    Option("medcode-no-similarity", "skip the METEOR/BERTScore pass at the end of the session (faster; the "
           "columns stay empty)", None, "", flag=True),
    # The document benchmark (benchmarks/test_document_coding.py).
    Option("medcode-documents", "documents to code into sets of codes (JSONL/CSV/Parquet: id, text, codes, "
           "system); without it the document benchmark uses synthetic notes", None, "FILE"),
    Option("medcode-document-sample", "documents per run: synthetic notes generated with --medcode-seed, or a "
           "seeded draw from --medcode-documents; 'all' for every document of the file", "50", "N|all"),
    # Provider batch APIs.
    Option("medcode-batch", "send the uncached questions of openai/ models (and OpenAI-compatible endpoints "
           "with /v1/batches) through the provider's Batch API instead of streaming them; a killed run "
           "re-attaches to its batches ('medcode batch status')", None, "", flag=True),
]


def addoptions(parser: pytest.Parser) -> None:
    group = parser.getgroup("medcode", "medical code querying benchmark")
    for opt in OPTIONS:
        help_text = f"{opt.help}. Default: {opt.default!r}" if opt.default is not None else opt.help
        if opt.flag:
            group.addoption(f"--{opt.name}", dest=opt.dest, action="store_true", default=None, help=help_text)
        else:
            group.addoption(
                f"--{opt.name}",
                dest=opt.dest,
                action="append" if opt.append else "store",
                default=None,
                metavar=opt.metavar,
                help=help_text,
            )
        if opt.append:  # one call per literal: pytest types ``type`` as a literal or a TypeForm
            parser.addini(opt.ini, help=opt.help, type="linelist", default=None)
        else:
            parser.addini(opt.ini, help=opt.help, type="string", default=None)


@dataclass(frozen=True)
class Settings:
    models: tuple[str, ...]
    systems: tuple[str, ...]
    sample: int | None  # None: every billable code
    seed: int
    codes_file: Path | None
    codesets: dict[str, Path] = field(hash=False)
    prompt: str
    temperature: float
    max_tokens: int
    api_base: str | None
    timeout: float
    attempts: int
    concurrency: int
    report_dir: Path
    explicit: bool  # any medcode option given: validate user files eagerly
    cache: Path | None = None  # None: --medcode-no-cache
    rpm: float | None = None
    retry_errors: bool = False
    gate: GateSpec = field(default_factory=GateSpec)
    rag_k: int = 15
    verify_rounds: int = 2
    variants: tuple[str, ...] = ("exact",)
    temperatures: tuple[float, ...] = ()  # more than one: a sweep (``temperature`` is the first)
    repeats: int = 1
    profile: str = "default"  # scoring profile: default | paper
    bertscore_model: str | None = None  # None: the bundled offline model
    bertscore_device: str | None = None
    similarity: bool = True  # False: --medcode-no-similarity
    preflight: bool = True  # False: --medcode-no-preflight
    circuit_breaker: int = 5  # identical setup failures in a row that stop asking a model; 0: never
    max_wait: float = 600.0  # --medcode-max-wait: seconds one call may wait between attempts in all
    show_failures: int | None = 10  # None: every failure in pytest's own summary
    documents_file: Path | None = None  # --medcode-documents; None: synthetic notes
    document_sample: int | None = 50  # None: every document of the file
    prices: dict[str, Price] = field(default_factory=dict, hash=False)  # --medcode-price, by model name
    max_cost: dict[str, float] = field(default_factory=dict, hash=False)  # "*" for the run, else per model
    estimate: bool = False  # --medcode-estimate: count and price, ask nothing
    batch: bool = False  # --medcode-batch: batch-capable models go through the provider's Batch API

    def coder_options(self) -> CoderOptions:
        """The part of the configuration a coder may see (:func:`~pytest_medcode.asking.coders.resolve_coder`)."""
        return CoderOptions(api_base=self.api_base, timeout=self.timeout, codesets=self.codesets,
                            rag_k=self.rag_k, verify_rounds=self.verify_rounds)

    def to_dict(self) -> dict[str, Any]:
        """What a report records of the configuration (no secrets exist in Settings)."""
        return {
            "models": list(self.models),
            "systems": list(self.systems),
            "sample": self.sample,
            "seed": self.seed,
            "codes_file": str(self.codes_file) if self.codes_file else None,
            "codesets": {k: str(v) for k, v in self.codesets.items()},
            "prompt": self.prompt,
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "api_base": public_url(self.api_base),
            "timeout": self.timeout,
            "attempts": self.attempts,
            "max_wait": self.max_wait,
            "concurrency": self.concurrency,
            "cache": str(self.cache) if self.cache else None,
            "rpm": self.rpm,
            "retry_errors": self.retry_errors,
            "gate": self.gate.to_dict(),
            "rag_k": self.rag_k,
            "verify_rounds": self.verify_rounds,
            "variants": list(self.variants),
            "temperatures": list(self.temperatures) or [self.temperature],
            "repeats": self.repeats,
            "profile": self.profile,
            "bertscore_model": self.bertscore_model,
            "bertscore_device": self.bertscore_device,
            "similarity": self.similarity,
            "preflight": self.preflight,
            "circuit_breaker": self.circuit_breaker,
            "documents_file": str(self.documents_file) if self.documents_file else None,
            "document_sample": self.document_sample,
            "prices": {m: p.to_dict() for m, p in self.prices.items()},
            "max_cost": dict(self.max_cost),
        }


def _raw(config: pytest.Config, opt: Option) -> tuple[Any, bool]:
    """The option's value (command line, then ini, then default) and whether the user gave it."""
    value = config.getoption(opt.dest)
    if value not in (None, []):
        return value, True
    ini = config.getini(opt.ini)
    if ini not in (None, [], ""):
        return ini, True
    return opt.default, False


def _number(kind: Callable[[str], Any], flag: str, low: float | None = None, high: float | None = None):
    def parse(value: str) -> Any:
        try:
            number = kind(str(value).strip())
            if not math.isfinite(number):  # nan passes every bound check; inf is no setting either
                raise ValueError
        except ValueError:
            what = "whole number" if kind is int else "finite number"
            raise pytest.UsageError(f"{flag} {value!r}: expected a {what}") from None
        if (low is not None and number < low) or (high is not None and number > high):
            bounds = f"at least {low}" if high is None else f"between {low} and {high}"
            raise pytest.UsageError(f"{flag} {value!r}: must be {bounds}")
        return number

    return parse


def _systems(value: str, user: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The selected systems: built-in ones, and the user's own given a table with --medcode-codeset."""
    names = tuple(dict.fromkeys(s.strip().lower() for s in str(value).split(",") if s.strip()))
    unknown = [n for n in names if n not in SYSTEMS and n not in user]
    if unknown or not names:
        hint = "" if not unknown or not USER_SYSTEM_NAME.match(unknown[0]) else (
            f" (or bring its table with --medcode-codeset {unknown[0]}=PATH)")
        raise pytest.UsageError(
            f"--medcode-system {value!r}: unknown system {', '.join(unknown) or '(none)'}; "
            f"choose from {', '.join((*SYSTEMS, *user))}{hint}"
        )
    return names


def _squeezed(name: str) -> str:
    return "".join(ch for ch in name if ch.isalnum())


def _codesets(values: list[str]) -> dict[str, Path]:
    """``SYSTEM[:TITLE]=PATH`` items; a user system's title is handed to the code systems (the prompt)."""
    out: dict[str, Path] = {}
    for value in values:
        head, sep, path = value.partition("=")
        name, colon, title = head.partition(":")
        name, title = name.strip().lower(), title.strip()
        if not sep or not path.strip():
            raise pytest.UsageError(f"--medcode-codeset {value!r}: expected SYSTEM=PATH, e.g. cpt=cpt.csv")
        if name not in SYSTEMS:
            if not USER_SYSTEM_NAME.match(name):
                raise pytest.UsageError(
                    f"--medcode-codeset {value!r}: a system name is a letter, then letters, digits, - or _ "
                    f"(up to 40), e.g. loinc=loinc.csv; built in: {', '.join(SYSTEMS)}")
            twin = next((n for n in SYSTEMS if _squeezed(n) == _squeezed(name)), None)
            if twin is not None:
                raise pytest.UsageError(
                    f"--medcode-codeset {value!r}: {name!r} reads as the built-in {twin}; to use your own table "
                    f"for it write --medcode-codeset {twin}=PATH, else choose another name")
        elif colon:
            raise pytest.UsageError(
                f"--medcode-codeset {value!r}: {name} is built in and the prompt names it "
                f"{SYSTEMS[name].prompt_name}; a title is for your own systems (choose another name)")
        if colon and not title:
            raise pytest.UsageError(f"--medcode-codeset {value!r}: empty title after ':'")
        if name in out:
            raise pytest.UsageError(f"--medcode-codeset {value!r}: {name} is given twice")
        out[name] = Path(path.strip()).expanduser()
        if name not in SYSTEMS:
            name_user_system(name, title or None)
    return out


def _flag(value: Any) -> bool:
    """A store_true option, or its ini twin written as 1/true/yes."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _shown(value: Any) -> int | None:
    """``--medcode-show-failures``: a count, or ``all`` (None: show everything, as pytest does)."""
    text = str(value).strip().lower()
    if text == "all":
        return None
    try:
        number = int(text)
    except ValueError:
        number = -1
    if number < 0:
        raise pytest.UsageError(f"--medcode-show-failures {value!r}: expected a whole number (0 or more) or 'all'")
    return number



def _api_base(value: str | None) -> str | None:
    """An http(s) URL with a host, or nothing: a typo must not cost hundreds of failed calls."""
    if not value or not str(value).strip():
        return None
    url = str(value).strip()
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        ok = False
    if not ok:
        shown = url if "@" not in url and "?" not in url else public_url(url)  # no secret in an error line
        raise pytest.UsageError(f"--medcode-api-base {shown!r}: expected an http(s) URL with a host, "
                                "e.g. http://127.0.0.1:8000/v1")
    return url


def _gate(values: dict[str, Any], user: tuple[str, ...] = ()) -> GateSpec:
    """The gate options → a GateSpec; a bad value is a one-line UsageError naming the option."""
    known = (*SYSTEMS, *user)
    names = ("medcode_fail_under", "medcode_fail_over", "medcode_baseline", "medcode_max_drop",
             "medcode_alpha", "medcode_max_error_rate")
    if all(values[n] in (None, [], "") for n in names):
        return GateSpec()
    parsed: dict[str, Any] = {}
    for dest, parse in (
        ("medcode_fail_under", lambda v: parse_thresholds(v, "under", known)),
        ("medcode_fail_over", lambda v: parse_thresholds(v, "over", known)),
        ("medcode_max_drop", parse_max_drops),
    ):
        try:
            parsed[dest] = parse(values[dest] or [])
        except ValueError as exc:
            raise pytest.UsageError(f"--{dest.replace('_', '-')} {exc}") from None
    baseline = Path(values["medcode_baseline"]).expanduser() if values["medcode_baseline"] else None
    if parsed["medcode_max_drop"] and baseline is None:
        raise pytest.UsageError("--medcode-max-drop needs --medcode-baseline RUN (the run to compare with)")
    if baseline is not None and not baseline.exists():
        raise pytest.UsageError(f"--medcode-baseline {baseline}: no such run folder or file")
    alpha = values["medcode_alpha"]
    alpha = DEFAULT_ALPHA if alpha in (None, "") else _number(float, "--medcode-alpha", 0.0, MAX_ALPHA)(alpha)
    if alpha <= 0:
        raise pytest.UsageError("--medcode-alpha 0: must be above 0 (e.g. 0.05)")
    rate = values["medcode_max_error_rate"]
    return GateSpec(
        fail_under=parsed["medcode_fail_under"],
        fail_over=parsed["medcode_fail_over"],
        baseline=baseline,
        max_drops=parsed["medcode_max_drop"],
        alpha=alpha,
        max_error_rate=DEFAULT_MAX_ERROR_RATE if rate in (None, "") else (
            _number(float, "--medcode-max-error-rate", 0.0, 1.0)(rate)),
        active=True,
    )


def _sample(value: str) -> int | None:
    if str(value).strip().lower() == "all":
        return None
    return _number(int, "--medcode-sample", 1)(value)


def parse_settings(config: pytest.Config) -> Settings:
    values: dict[str, Any] = {}
    explicit = False
    for opt in OPTIONS:
        values[opt.dest], given = _raw(config, opt)
        explicit = explicit or given
    models = tuple(dict.fromkeys(m.strip() for m in (values["model"] or ["lookup"]) if m.strip()))
    if not models:
        raise pytest.UsageError("--model: empty model name")
    temperatures = _temperatures(values["medcode_temperature"])
    codesets = _codesets(values["medcode_codeset"] or [])
    user = tuple(n for n in codesets if n not in SYSTEMS)
    return Settings(
        models=models,
        systems=_systems(values["medcode_system"], user),
        sample=_sample(values["medcode_sample"]),
        seed=_number(int, "--medcode-seed")(values["medcode_seed"]),
        codes_file=Path(values["medcode_codes"]).expanduser() if values["medcode_codes"] else None,
        codesets=codesets,
        prompt=str(values["medcode_prompt"]),
        temperature=temperatures[0],
        max_tokens=_number(int, "--medcode-max-tokens", 1)(values["medcode_max_tokens"]),
        api_base=_api_base(values["medcode_api_base"]),
        timeout=_number(float, "--medcode-timeout", 0.1)(values["medcode_timeout"]),
        attempts=_number(int, "--medcode-attempts", 1, 100)(values["medcode_attempts"]),
        max_wait=_number(float, "--medcode-max-wait", 0)(values["medcode_max_wait"]),
        concurrency=_number(int, "--medcode-concurrency", 1, 4096)(values["medcode_concurrency"]),
        report_dir=Path(values["medcode_report_dir"]).expanduser(),
        explicit=explicit,
        cache=None if _flag(values["medcode_no_cache"]) else Path(values["medcode_cache"]).expanduser(),
        rpm=_number(float, "--medcode-rpm", 0.01)(values["medcode_rpm"]) if values["medcode_rpm"] else None,
        retry_errors=_flag(values["medcode_retry_errors"]),
        gate=_gate(values, user),
        rag_k=_number(int, "--medcode-rag-k", 1, 200)(values["medcode_rag_k"]),
        verify_rounds=_number(int, "--medcode-verify-rounds", 0, 10)(values["medcode_verify_rounds"]),
        variants=_variants(values["medcode_variant"]),
        temperatures=temperatures if len(temperatures) > 1 else (),
        repeats=_number(int, "--medcode-repeats", 1, 100)(values["medcode_repeats"]),
        profile=_profile(values["medcode_profile"]),
        bertscore_model=str(values["medcode_bertscore_model"]).strip() or None
        if values["medcode_bertscore_model"] else None,
        bertscore_device=str(values["medcode_bertscore_device"]).strip() or None
        if values["medcode_bertscore_device"] else None,
        similarity=not _flag(values["medcode_no_similarity"]),
        preflight=not _flag(values["medcode_no_preflight"]),
        circuit_breaker=_number(int, "--medcode-circuit-breaker", 0, 1_000_000)(values["medcode_circuit_breaker"]),
        show_failures=_shown(values["medcode_show_failures"]),
        documents_file=Path(values["medcode_documents"]).expanduser() if values["medcode_documents"] else None,
        document_sample=_document_sample(values["medcode_document_sample"]),
        prices=_prices(values["medcode_price"] or []),
        max_cost=_max_cost(values["medcode_max_cost"] or []),
        estimate=_flag(values["medcode_estimate"]),
        batch=_flag(values["medcode_batch"]),
    )


def _document_sample(value: str) -> int | None:
    if str(value).strip().lower() == "all":
        return None
    return _number(int, "--medcode-document-sample", 1)(value)


def _prices(values: list[str]) -> dict[str, Price]:
    try:
        return parse_prices(values)
    except PriceError as exc:
        raise pytest.UsageError(f"--medcode-price {exc}") from None


def _max_cost(values: list[str]) -> dict[str, float]:
    try:
        return parse_limits(values)
    except ValueError as exc:
        raise pytest.UsageError(f"--medcode-max-cost {exc}") from None


def _profile(value: str) -> str:
    from pytest_medcode.scoring.codes import PROFILES

    name = str(value).strip().lower()
    if name not in PROFILES:
        raise pytest.UsageError(f"--medcode-profile {value!r}: choose from {', '.join(PROFILES)}")
    return name


def _temperatures(value: str) -> tuple[float, ...]:
    """``0.2`` or a sweep ``0.2,0.6,1.0`` (order kept, repeats dropped)."""
    parse = _number(float, "--medcode-temperature", 0.0, 2.0)
    items = [v for v in str(value).split(",") if v.strip()]
    if not items:
        raise pytest.UsageError(f"--medcode-temperature {value!r}: expected a number or a comma list")
    return tuple(dict.fromkeys(parse(v) for v in items))


def _variants(value: str) -> tuple[str, ...]:
    from pytest_medcode.dataset.variants import VariantError, parse_variants

    try:
        return parse_variants(str(value))
    except VariantError as exc:
        raise pytest.UsageError(str(exc)) from None
