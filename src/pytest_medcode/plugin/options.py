"""Command-line options and ini keys, parsed once into a frozen :class:`Settings`.

Every ``--medcode-*`` option has an ini twin (``medcode_*``); the command line wins. Each option is one
:class:`~pytest_medcode.results.options.Option` in :data:`OPTIONS`: its help, default, bounds and parser;
the gate's and ``--medcode-profile`` are the declarations the ``medcode`` command adds too. Validation
happens here, at configure time, so a bad value stops the run with one line (exit 4) before any model is
asked anything.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from pytest_medcode.api import CoderOptions
from pytest_medcode.asking.budget import parse_limits
from pytest_medcode.asking.pricing import Price, parse_prices
from pytest_medcode.codesystems import (
    BUNDLED,
    SYSTEMS,
    choose_release,
    chosen_release,
    name_user_system,
    release_of,
)
from pytest_medcode.codesystems.user import NAME as USER_SYSTEM_NAME
from pytest_medcode.redaction import public_url
from pytest_medcode.results.gate import GateSpec
from pytest_medcode.results.options import (
    ROUTER,
    Number,
    Option,
    add_options,
    gate_options,
    profile_option,
    read_flag,
)

DEFAULT_SAMPLE = 200  # per system: the size of the study's manually graded subsample
CHANGED = "changed"  # --medcode-sample changed: the codes the chosen release added or retitled


def _systems(value: str, user: tuple[str, ...] = ()) -> tuple[str, ...]:
    """The selected systems: built-in ones, and the user's own given a table with --medcode-codeset."""
    names = tuple(dict.fromkeys(s.strip().lower() for s in str(value).split(",") if s.strip()))
    unknown = [n for n in names if n not in SYSTEMS and n not in user]
    if unknown or not names:
        raise pytest.UsageError(
            f"--medcode-system {value!r}: unknown system {', '.join(unknown) or '(none)'}; "
            f"choose from {', '.join((*SYSTEMS, *user))}{_bring_hint(unknown)}"
        )
    return names


def _bring_hint(unknown: list[str]) -> str:
    """An unknown name that could be the user's own system: say how to bring its table."""
    if not unknown or not USER_SYSTEM_NAME.match(unknown[0]):
        return ""
    return f" (or bring its table with --medcode-codeset {unknown[0]}=PATH)"


def _targets(value: Any) -> tuple[float, ...]:
    """``0.95,0.99`` or ``95%,99%`` → target accuracies, each above 0 and at most 1 (order kept, repeats dropped)."""
    from pytest_medcode.results.rules import parse_target

    targets = [parse_target(part) for part in str(value).split(",") if part.strip()]
    if not targets:
        raise ValueError(f"{value!r}: give at least one target accuracy, e.g. 0.95")
    return tuple(dict.fromkeys(targets))


def _squeezed(name: str) -> str:
    return "".join(ch for ch in name if ch.isalnum())


def _codesets(values: list[str]) -> dict[str, Path]:
    """``SYSTEM[:TITLE]=PATH`` items; a user system's title is handed to the code systems (the prompt)."""
    out: dict[str, Path] = {}
    for value in values:
        name, title, path = _codeset(value)
        if name in out:
            raise ValueError(f"{value!r}: {name} is given twice")
        out[name] = path
        if name not in SYSTEMS:
            name_user_system(name, title or None)
    return out


def _codeset(value: str) -> tuple[str, str, Path]:
    """One ``SYSTEM[:TITLE]=PATH`` item → its system's name, its title ("" for none) and the table's path."""
    head, sep, path = value.partition("=")
    name, colon, title = head.partition(":")
    name, title = name.strip().lower(), title.strip()
    if not sep or not path.strip():
        raise ValueError(f"{value!r}: expected SYSTEM=PATH, e.g. cpt=cpt.csv")
    problem = _own_name_problem(name) if name not in SYSTEMS else (
        f"{name} is built in and the prompt names it {SYSTEMS[name].prompt_name}; a title is for your own "
        "systems (choose another name)" if colon else None)
    if problem is not None:
        raise ValueError(f"{value!r}: {problem}")
    if colon and not title:
        raise ValueError(f"{value!r}: empty title after ':'")
    return name, title, Path(path.strip()).expanduser()


def _own_name_problem(name: str) -> str | None:
    """Why ``name`` cannot name the user's own system (None: it can)."""
    if not USER_SYSTEM_NAME.match(name):
        return ("a system name is a letter, then letters, digits, - or _ (up to 40), e.g. loinc=loinc.csv; "
                f"built in: {', '.join(SYSTEMS)}")
    twin = next((n for n in SYSTEMS if _squeezed(n) == _squeezed(name)), None)
    if twin is None:
        return None
    return (f"{name!r} reads as the built-in {twin}; to use your own table for it write --medcode-codeset "
            f"{twin}=PATH, else choose another name")


def _releases(values: list[str]) -> dict[str, str]:
    """``SYSTEM=RELEASE`` items (``icd10cm=2024``); each is handed to the code systems, the rest are reset to
    their default so a setting never outlives the run that gave it."""
    out: dict[str, str] = {}
    for value in values:
        name, sep, key = (part.strip() for part in value.partition("="))
        name = name.lower()
        if not sep or not name or not key:
            raise ValueError(f"{value!r}: expected SYSTEM=RELEASE, e.g. icd10cm=2024")
        if name not in SYSTEMS:
            raise ValueError(f"{value!r}: {name} is not a built-in code system; a table you bring has one release "
                             "(systems with releases: "
                             + ", ".join(n for n, s in SYSTEMS.items() if len(s.releases) > 1) + ")")
        if name in out and out[name] != key:
            raise ValueError(f"{value!r}: {name} is given two releases")
        out[name] = key
    for name, key in out.items():  # every one checked (ReleaseError: one line) before any is chosen
        release_of(name, key)
    for name in SYSTEMS:
        choose_release(name, out.get(name))
    return out


def _recorded_releases(settings: Settings, _given: dict[str, str]) -> dict[str, str]:
    """The release each selected bundled system was asked in: given or default, always written down."""
    chosen = {name: chosen_release(name) for name in settings.systems if name in SYSTEMS}
    return {name: release.key for name, release in chosen.items() if release is not None}


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


def _temperatures(value: str) -> tuple[float, ...]:
    """``0.2`` or a sweep ``0.2,0.6,1.0`` (order kept, repeats dropped)."""
    items = [v for v in str(value).split(",") if v.strip()]
    if not items:
        raise ValueError(f"{value!r}: expected a number or a comma list")
    return tuple(dict.fromkeys(TEMPERATURE.read(v) for v in items))


def _variants(value: str) -> tuple[str, ...]:
    from pytest_medcode.dataset.variants import VariantError, parse_variants

    try:
        return parse_variants(str(value))
    except VariantError as exc:
        raise pytest.UsageError(str(exc)) from None


def _models(values: list[str]) -> tuple[str, ...]:
    models = tuple(dict.fromkeys(m.strip() for m in (values or ["lookup"]) if m.strip()))
    if not models:
        raise pytest.UsageError("--model: empty model name")
    return models


def _path(value: Any) -> Path:
    return Path(value).expanduser()


def _file(value: Any) -> Path | None:
    """A file the user named; an empty value names none."""
    return Path(value).expanduser() if value else None


def _text(value: Any) -> str | None:
    return str(value).strip() or None if value else None


def _off(value: Any) -> bool:
    """A ``--medcode-no-X`` flag → whether X stays on."""
    return not read_flag(value)


TEMPERATURE = Number(float, 0.0, 2.0)

#: pytest's alone among the gate's options: ``medcode compare`` takes the baseline as an argument.
BASELINE = Option("medcode-baseline", "gate: a recorded run (folder or cases.parquet) to pair cases with and "
                  "test for regressions (exact_match=2pp unless --medcode-max-drop says otherwise)", None, "RUN",
                  parse=_file)
#: The gate's options: ``medcode compare`` adds the same declarations (results/options.gate_options).
GATE: tuple[Option, ...] = (*gate_options("medcode-", label="gate: "), BASELINE)
#: Read once the user's own systems are known (--medcode-codeset).
SYSTEM = Option("medcode-system", "comma list of code systems: " + ", ".join(SYSTEMS), ",".join(BUNDLED), "LIST",
                setting="systems")

OPTIONS: tuple[Option, ...] = (
    Option("model", "model to benchmark, repeatable: lookup (offline retrieval), any litellm name "
           "(gpt-4, gemini/gemini-pro, openai/NAME with --medcode-api-base), rag:MODEL, verify:MODEL, "
           "python:package.module:function, local:smollm2", None, "NAME", append=True, parse=_models,
           setting="models"),
    SYSTEM,
    Option("medcode-release", "the release of a code system to ask and score against, repeatable: "
           "icd10cm=2024 (2024, 2025, 2026; default 2026), icd10pcs=2025 (2024: all sections, the default; "
           "2025: section 0); 'medcode systems' lists them", None, "SYSTEM=RELEASE", append=True, parse=_releases,
           setting="releases"),
    Option("medcode-sample", "codes per system, drawn with --medcode-seed; 'all' for every billable code; "
           "'changed' for the billable codes added or retitled in the chosen release (--medcode-release) since "
           "the one before", str(DEFAULT_SAMPLE), "N|all|changed", number=Number(int, 1),
           words=(("all", None), (CHANGED, CHANGED))),
    Option("medcode-seed", "seed for sampling", "0", "S", number=Number(int)),
    Option("medcode-codes", "your own list of codes (CSV/TSV/Parquet: code, optional system and count; "
           "count makes --medcode-sample a frequency-weighted draw)", None, "FILE", parse=_file,
           setting="codes_file"),
    Option("medcode-codeset", "a code table file for a system, e.g. cpt=cpt.csv (code and description "
           "columns); repeatable. A NAME that is not built in adds your own system (optional parent and "
           "billable columns; NAME:TITLE=PATH names it TITLE in the prompt), asked with --medcode-system NAME",
           None, "SYSTEM[:TITLE]=PATH", append=True, parse=_codesets, setting="codesets"),
    Option("medcode-prompt", "prompt template: paper (the authors' exact prompt), presentation, or a file "
           "with {system} {description} {example}", "paper", "NAME|PATH", parse=str),
    Option("medcode-temperature", "sampling temperature; a comma list (0.2,0.6,1.0) sweeps it as a case "
           "dimension", "0.2", "T[,T...]", parse=_temperatures, setting="temperatures"),
    Option("medcode-max-tokens", "max tokens per answer", "50", "N", number=Number(int, 1)),
    Option("medcode-api-base", "OpenAI-compatible endpoint for the models (e.g. http://127.0.0.1:8000/v1)",
           None, "URL", parse=_api_base),
    ROUTER,
    Option("medcode-timeout", "seconds per model call", "30", "S", number=Number(float, 0.1)),
    Option("medcode-attempts", "attempts per model call before the case ends as an error (a rate limit uses "
           "none: it is waited out within --medcode-max-wait)", "3", "N", number=Number(int, 1, 100)),
    Option("medcode-max-wait", "seconds one model call may wait in all between its attempts: rate limits "
           "(429, Retry-After) are waited out until then; 0: one attempt, no wait", "600", "S",
           number=Number(float, 0)),
    Option("medcode-concurrency", "model calls in flight at once", "16", "N", number=Number(int, 1, 4096)),
    Option("medcode-report-dir", "where run folders are written", "reports", "DIR", parse=_path),
    Option("medcode-cache", "response cache file (SQLite), shared by runs and xdist workers",
           ".medcode/responses.sqlite3", "PATH", parse=_path),
    Option("medcode-no-cache", "neither read nor keep answers from earlier runs ('1' in the ini)", None,
           flag=True),  # read with --medcode-cache: the cache is None
    Option("medcode-rpm", "model calls started per minute, for the whole run (all workers)", None, "N",
           number=Number(float, 0.01)),
    Option("medcode-retry-errors", "ask again the cases whose calls failed for good in earlier runs (a 400, an "
           "empty answer: the failures the cache keeps)", None, flag=True),
    Option("medcode-no-preflight", "skip the probe request that checks each API model, endpoint and key "
           "before the first case", None, flag=True, parse=_off, setting="preflight"),
    Option("medcode-circuit-breaker", "stop asking a model after K identical failures in a row that another "
           "attempt cannot fix (bad key, unknown model, quota, unreachable endpoint); 0: never", "5", "K",
           number=Number(int, 0, 1_000_000)),
    Option("medcode-show-failures", "failing cases shown in full in the summary; the rest are tallied (all "
           "still fail). 'all' for pytest's full listing, as -v, --tb or -r also give", "10", "N|all",
           parse=_shown),
    # Money (asking/pricing.py, asking/budget.py, results/costs.py).
    Option("medcode-price", "a model's price in USD per million input/output tokens, repeatable; wins over "
           "litellm's price map: gpt-4=30/60, openai/my-model=0.5/1.5 (rag:X and verify:X pay X's price)", None,
           "MODEL=IN/OUT", append=True, parse=parse_prices, setting="prices"),
    Option("medcode-max-cost", "budget in USD: no call starts that could take the run's spend past it; "
           "MODEL=USD for one model; repeatable. Cases left unasked end as errors a rerun asks", None,
           "[MODEL=]USD", append=True, parse=parse_limits),
    Option("medcode-estimate", "print the calls, tokens and cost range of the run without asking anything "
           "(exit 0)", None, flag=True),
    # The release gate (results/gate.py). Any of these turns on gate mode: wrong codes stop being test
    # failures and the exit status is the gate's verdict.
    *GATE,
    # Coders and robustness.
    Option("medcode-rag-k", "rag:MODEL: candidate codes retrieved for the model to choose from", "15", "K",
           number=Number(int, 1, 200)),
    Option("medcode-verify-rounds", "verify:MODEL: follow-ups when an answer names no existing billable "
           "code", "2", "N", number=Number(int, 0, 10)),
    Option("medcode-variant", "comma list of description variants, each a case dimension: "
           "exact, abbrev, synonym, typo, reorder, lay", "exact", "LIST", parse=_variants, setting="variants"),
    Option("medcode-repeats", "ask each case K times (self-consistency is reported; a coder without a "
           "confidence of its own gets the share of repeats agreeing with its answer)", "1", "K",
           number=Number(int, 1, 100)),
    # Straight-through coding (results/selective.py).
    Option("medcode-confidence", "ask LLM coders for log-probabilities, so each answer has a confidence (a "
           "document's answer one per code; a different request, so a different cache key); lookup, rag:, "
           "verify:, python: coders and --medcode-repeats give one without it", None, flag=True),
    Option("medcode-coverage-at", "target accuracies on auto-coded cases for the straight-through numbers "
           "(coverage@95 ...; for documents, the target precision of the auto-coded documents' codes): comma "
           "list of fractions or percentages above 0 and at most 1", "0.95,0.99",
           "ACC[,ACC...]", parse=_targets, setting="coverage_targets"),
    # Scoring.
    profile_option("medcode-"),
    Option("medcode-bertscore-model", "BERTScore model: a Hugging Face name or a local path (default: the "
           "bundled all-MiniLM-L6-v2, offline)", None, "NAME_OR_PATH", parse=_text),
    Option("medcode-bertscore-device", "device for BERTScore, e.g. cpu, cuda, cuda:1 (default: cuda when "
           "available)", None, "DEVICE", parse=_text),
    Option("medcode-no-similarity", "skip the METEOR/BERTScore pass at the end of the session (faster; the "
           "columns stay empty)", None, flag=True, parse=_off, setting="similarity"),
    # The document benchmark (benchmarks/test_document_coding.py).
    Option("medcode-documents", "documents to code into sets of codes (JSONL/CSV/Parquet: id, text, codes, "
           "system); without it the document benchmark uses synthetic notes", None, "FILE", parse=_file,
           setting="documents_file"),
    Option("medcode-document-sample", "documents per run: synthetic notes generated with --medcode-seed, or a "
           "seeded draw from --medcode-documents; 'all' for every document of the file", "50", "N|all",
           number=Number(int, 1), words=(("all", None),)),
    # Provider batch APIs.
    Option("medcode-batch", "send the uncached questions of openai/ models (and OpenAI-compatible endpoints "
           "with /v1/batches) and of anthropic/ and claude-* models (Anthropic's Message Batches API; the "
           "anthropic extra) through the provider's batch API instead of streaming them; a killed run "
           "re-attaches to its batches ('medcode batch status')", None, flag=True),
)


def addoptions(parser: pytest.Parser) -> None:
    group = parser.getgroup("medcode", "medical code querying benchmark")
    add_options(group.addoption, OPTIONS, raw=True)
    for opt in OPTIONS:
        if opt.append:  # two calls: addini's type is a literal, which mypy checks
            parser.addini(opt.ini, help=opt.help, type="linelist", default=None)
        else:
            parser.addini(opt.ini, help=opt.help, type="string", default=None)


def _recorded(how: Any = None, **kwargs: Any) -> Any:
    """A field summary.json's ``config`` records; ``how(settings, value)`` writes it, else :func:`_json`."""
    return field(metadata={"record": how or (lambda _s, value: _json(value))}, **kwargs)


def _unrecorded(**kwargs: Any) -> Any:
    """A field summary.json's ``config`` leaves out (the reason is written beside it)."""
    return field(metadata={"record": None}, **kwargs)


def _json(value: Any) -> Any:
    """A setting as JSON: paths as text, tuples as lists, mappings and records (``to_dict``) item by item."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_json(v) for v in value]
    if isinstance(value, dict):
        return {k: _json(v) for k, v in value.items()}
    return value.to_dict() if hasattr(value, "to_dict") else value


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every option's value; the fields are in the order summary.json's ``config`` records them."""

    models: tuple[str, ...] = _recorded()
    systems: tuple[str, ...] = _recorded()
    sample: int | str | None = _recorded()  # None: every billable code; CHANGED: what the release changed
    seed: int = _recorded()
    codes_file: Path | None = _recorded()
    codesets: dict[str, Path] = _recorded(hash=False)
    prompt: str = _recorded()
    temperature: float = _recorded()
    max_tokens: int = _recorded()
    api_base: str | None = _recorded(lambda _s, url: public_url(url))  # no credentials in a report
    timeout: float = _recorded()
    attempts: int = _recorded()
    max_wait: float = _recorded(default=600.0)  # --medcode-max-wait: seconds one call may wait between attempts
    concurrency: int = _recorded()
    cache: Path | None = _recorded(default=None)  # None: --medcode-no-cache
    rpm: float | None = _recorded(default=None)
    retry_errors: bool = _recorded(default=False)
    gate: GateSpec = _recorded(default_factory=GateSpec)
    rag_k: int = _recorded(default=15)
    verify_rounds: int = _recorded(default=2)
    variants: tuple[str, ...] = _recorded(default=("exact",))
    # More than one: a sweep (``temperature`` is the first); the record always lists the temperatures asked.
    temperatures: tuple[float, ...] = _recorded(lambda s, t: list(t) or [s.temperature], default=())
    repeats: int = _recorded(default=1)
    #: --medcode-confidence (or a gate on coverage): LLM coders request log-probabilities.
    confidence: bool = _recorded(default=False)
    coverage_targets: tuple[float, ...] = _recorded(default=(0.95, 0.99))
    profile: str = _recorded(default="default")  # scoring profile: default | paper
    bertscore_model: str | None = _recorded(default=None)  # None: the bundled offline model
    bertscore_device: str | None = _recorded(default=None)
    similarity: bool = _recorded(default=True)  # False: --medcode-no-similarity
    preflight: bool = _recorded(default=True)  # False: --medcode-no-preflight
    circuit_breaker: int = _recorded(default=5)  # identical setup failures in a row that stop asking; 0: never
    documents_file: Path | None = _recorded(default=None)  # --medcode-documents; None: synthetic notes
    document_sample: int | None = _recorded(default=50)  # None: every document of the file
    prices: dict[str, Price] = _recorded(default_factory=dict, hash=False)  # --medcode-price, by model name
    max_cost: dict[str, float] = _recorded(default_factory=dict, hash=False)  # "*" for the run, else per model
    # --medcode-release; the record names the release of every selected bundled system, given or default
    releases: dict[str, str] = _recorded(_recorded_releases, default_factory=dict, hash=False)
    #: --medcode-router: the file and each model's deployment labels (never their parameters: keys live there).
    router: Any = _recorded(lambda _s, r: r.to_dict() if r is not None else None, default=None, hash=False)
    # Not in the record: where the run folder goes is where the record is (a moved folder would carry a stale
    # path, and the same run written elsewhere would read as another), and what pytest's summary shows
    # changes no number.
    report_dir: Path = _unrecorded()
    show_failures: int | None = _unrecorded(default=10)  # None: every failure in pytest's own summary
    explicit: bool = _unrecorded(default=False)  # any medcode option given: validate user files eagerly
    # Not in the record either: an estimate asks nothing and writes no run folder, so a record would always
    # say False; and which cases went through a provider's Batch API is recorded per case (cases.parquet's
    # batch column, which prices them), exactly, where the flag only asks (a model without one streams).
    estimate: bool = _unrecorded(default=False)  # --medcode-estimate: count and price, ask nothing
    batch: bool = _unrecorded(default=False)  # --medcode-batch: batch-capable models go through a Batch API

    def coder_options(self) -> CoderOptions:
        """The part of the configuration a coder may see (:func:`~pytest_medcode.asking.coders.resolve_coder`)."""
        return CoderOptions(api_base=self.api_base, timeout=self.timeout, codesets=self.codesets,
                            rag_k=self.rag_k, verify_rounds=self.verify_rounds,
                            confidence=self.confidence or self.gate.needs_confidence)

    def to_dict(self) -> dict[str, Any]:
        """What summary.json's ``config`` records of the configuration (no secrets exist in Settings): every
        field the declarations above mark as recorded, in their order; see there why five are not."""
        return {f.name: f.metadata["record"](self, getattr(self, f.name))
                for f in fields(self) if f.metadata["record"] is not None}


def _raw(config: pytest.Config, opt: Option) -> Any:
    """The option's value as given (command line, then ini), or None when the user gave none."""
    value = config.getoption(opt.dest)
    if value not in (None, []):
        return value
    ini = config.getini(opt.ini)
    return ini if ini not in (None, [], "") else None


def _read(opt: Option, value: Any) -> Any:
    """``value`` (None: not given, so the default) → the setting; a bad value is one line naming the option."""
    try:
        return opt.read(opt.default if value is None else value)
    except ValueError as exc:
        raise pytest.UsageError(f"--{opt.name} {exc}") from None


def _gate(values: dict[str, Any], user: tuple[str, ...] = ()) -> GateSpec:
    """The gate options → a GateSpec; any of them given turns the gate on, a bad value is a one-line error."""
    if all(values.get(opt.dest) in (None, [], "") for opt in GATE):
        return GateSpec()
    scoped = (*gate_options("medcode-", (*SYSTEMS, *user)), BASELINE)  # thresholds' scopes checked too
    spec = {opt.field: _read(opt, values.get(opt.dest) or None) for opt in scoped}
    if spec["max_drops"] and spec["baseline"] is None:
        raise pytest.UsageError("--medcode-max-drop needs --medcode-baseline RUN (the run to compare with)")
    if spec["threshold_from_baseline"] and spec["baseline"] is None:
        raise pytest.UsageError("--medcode-threshold-from-baseline needs --medcode-baseline RUN (whose threshold "
                                "to carry)")
    if spec["threshold_from_baseline"] and spec["carried_threshold"] is not None:
        raise pytest.UsageError("--medcode-threshold-from-baseline and --medcode-threshold both set the threshold; "
                                "give one")
    if spec["baseline"] is not None and not spec["baseline"].exists():
        raise pytest.UsageError(f"--medcode-baseline {spec['baseline']}: no such run folder or file")
    return GateSpec(**spec, active=True)


def _check_router(router: Any, models: tuple[str, ...], batch: bool) -> None:
    """--medcode-router against the rest: every model it serves is asked, and it streams (no Batch API)."""
    if router is None:
        return
    from pytest_medcode.asking.coders.router import unused_models

    if batch:
        raise pytest.UsageError(f"--medcode-router {router.path}: a router spreads streamed calls over endpoints; "
                                "--medcode-batch sends them to one provider's Batch API instead: give one of the two")
    unused = unused_models(router, models)
    if unused:
        raise pytest.UsageError(f"--medcode-router {router.path}: it serves {', '.join(unused)}, which no --model of "
                                f"this run asks (models: {', '.join(models)}); add --model {unused[0]} or remove "
                                "it from the file")


#: Read by the checks across options (parse_settings, _gate), not one by one.
_ACROSS = frozenset({SYSTEM.dest, "medcode_no_cache", *(opt.dest for opt in GATE)})


def parse_settings(config: pytest.Config) -> Settings:
    """Every option read by its declaration, then the checks across options (:func:`_across`)."""
    raw = {opt.dest: _raw(config, opt) for opt in OPTIONS}
    values = {opt.field: _read(opt, raw[opt.dest]) for opt in OPTIONS if opt.dest not in _ACROSS}
    return Settings(**_across(raw, values), explicit=any(value is not None for value in raw.values()))


def _across(raw: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The settings that more than one option makes: the user's own systems (from --medcode-codeset) for
    --medcode-system and the gate's scopes, --medcode-no-cache over --medcode-cache, a temperature sweep."""
    user = tuple(n for n in values["codesets"] if n not in SYSTEMS)
    _check_router(values["router"], values["models"], values["batch"])
    temperatures, cache = values.pop("temperatures"), values.pop("cache")
    return {
        **values,
        "systems": _systems(SYSTEM.default if raw[SYSTEM.dest] is None else raw[SYSTEM.dest], user),
        "temperature": temperatures[0],
        "temperatures": temperatures if len(temperatures) > 1 else (),
        "cache": None if read_flag(raw["medcode_no_cache"]) else cache,
        "gate": _gate(raw, user),
    }
