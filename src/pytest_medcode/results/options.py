"""Option declarations, one per option: its name, help, default, bounds or choices and the parser of its value.

pytest's ``--medcode-*`` options (plugin/options.py) are all declared as :class:`Option`; the ones the
``medcode`` command shares with them (the gate's, and ``--profile``) come from :func:`gate_options` and
:func:`profile_option`, and :func:`add_options` adds a declaration to either parser. So a bound, a default or
a choice is written once and both front ends refuse the same values. No pytest and no argparse here: the
front ends pass their own ``add`` (``OptionGroup.addoption`` or ``ArgumentParser.add_argument``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Any

from pytest_medcode.results.releases import MISMATCH_CHOICES, REFUSE

__all__ = ["ROUTER", "Number", "Option", "add_options", "gate_options", "plain", "profile_option", "read_flag"]


@dataclass(frozen=True)
class Number:
    """A numeric option's kind and bounds; ``above``: the low bound itself is refused (alpha is above 0)."""

    kind: type = float  # int or float
    low: float | None = None
    high: float | None = None
    above: bool = False

    def admits(self, number: float) -> bool:
        if self.low is not None and (number < self.low or (self.above and number == self.low)):
            return False
        return self.high is None or number <= self.high

    def describe(self, show: Callable[[Any], str] = str) -> str:
        """The bounds in words: ``at least 1``, ``between 1 and 4096``, ``above 0 and at most 0.5``."""
        if self.above:
            return f"above {show(self.low)}" + ("" if self.high is None else f" and at most {show(self.high)}")
        if self.high is None:
            return f"at least {show(self.low)}"
        return f"between {show(self.low)} and {show(self.high)}"

    def read(self, value: Any, show: Callable[[float], str] = str) -> Any:
        """``value`` (text, or the number argparse made of it) → the number, or ValueError naming the value.

        ``show`` writes the bounds: as declared for pytest's options (``0.0``), ``%g`` for the ``medcode``
        command (``0``), each as its users have read it.
        """
        try:
            number = self.kind(str(value).strip())
            if not math.isfinite(number):  # nan passes every bound check; inf is no setting either
                raise ValueError
        except ValueError:
            raise ValueError(f"{value!r}: expected a {'whole' if self.kind is int else 'finite'} number") from None
        if self.admits(number):
            return number
        if self.above and number == self.low:  # 0, 0.0 and -0 are all the bound: named as the number
            raise ValueError(f"{number:g}: must be {self.describe(show)}")
        raise ValueError(f"{value!r}: must be {self.describe(show)}")


def read_flag(value: Any) -> bool:
    """A store_true option, or its ini twin written as 1/true/yes."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


@dataclass(frozen=True)
class Option:
    """One option as both front ends see it; :meth:`read` turns its raw value into the setting.

    ``read`` raises ValueError without the option's name (the front end puts ``--NAME`` before it), or the
    front end's own one-line error from a ``parse`` that names the option itself.
    """

    name: str  # without the leading dashes, as the front end spells it: medcode-alpha, alpha
    help: str
    default: Any  # the value when the option is not given (read like a given one)
    metavar: str = ""
    append: bool = False  # repeatable: a list of values
    flag: bool = False  # store_true
    number: Number | None = None
    words: tuple[tuple[str, Any], ...] = ()  # words a number option also takes: (("all", None),)
    choices: tuple[str, ...] = ()
    parse: Callable[[Any], Any] | None = None  # anything else
    setting: str | None = None  # the field it fills; None: the dest without "medcode_"
    help_names_default: bool = False  # the help already says the default (pytest's help adds none)

    @property
    def dest(self) -> str:
        return self.name.replace("-", "_")

    @property
    def ini(self) -> str:
        return self.dest if self.name.startswith("medcode") else f"medcode_{self.dest}"

    @property
    def field(self) -> str:
        return self.setting or self.dest.removeprefix("medcode_")

    def read(self, value: Any, show: Callable[[float], str] = str) -> Any:
        if self.append and value is None:
            value = []
        if self.parse is not None:
            return self.parse(value)
        if self.flag:
            return read_flag(value)
        if value is None or (value == "" and self.default is None):  # an option without a default left empty
            return None
        if self.number is not None:
            return self._number(value, show)
        return self._choice(value) if self.choices else value

    def _number(self, value: Any, show: Callable[[float], str]) -> Any:
        words = dict(self.words)
        word = str(value).strip().lower()
        return words[word] if word in words else self.number.read(value, show)  # type: ignore[union-attr]

    def _choice(self, value: Any) -> str:
        name = str(value).strip().lower()
        if name not in self.choices:
            raise ValueError(f"{value!r}: choose from {', '.join(self.choices)}")
        return name


def add_options(add: Callable[..., Any], options: Iterable[Option], *, raw: bool = False, **extra: Any) -> None:
    """Add each declaration with ``add`` (pytest's ``addoption``, or argparse's ``add_argument``).

    ``raw``: pytest's way, every value kept as given (text, None when absent) for :meth:`Option.read` at
    configure time, after the ini twin; else argparse reads numbers and choices itself and fills the default.
    """
    for opt in options:
        add(f"--{opt.name}", **{**(_raw_kwargs(opt) if raw else _typed_kwargs(opt)), **extra})


def _raw_kwargs(opt: Option) -> dict[str, Any]:
    """pytest's: no default (None tells "not given", so the ini twin is read), the default in the help."""
    shown = opt.default is not None and not opt.help_names_default
    kwargs = {"dest": opt.dest, "default": None, "help": f"{opt.help}. Default: {opt.default!r}" if shown else opt.help}
    if opt.flag:
        return {**kwargs, "action": "store_true"}
    return {**kwargs, "action": "append" if opt.append else "store", "metavar": opt.metavar}


def _typed_kwargs(opt: Option) -> dict[str, Any]:
    """argparse's for the ``medcode`` command: the default filled in, a choice or a number read by argparse."""
    kwargs: dict[str, Any] = {"dest": opt.dest, "help": opt.help}
    if opt.flag:
        return {**kwargs, "action": "store_true", "default": False}
    kwargs.update(action="append" if opt.append else "store", metavar=opt.metavar,
                  default=[] if opt.append else opt.default)
    if opt.choices:
        kwargs.update(choices=list(opt.choices), metavar=None)
    elif opt.number is not None and not opt.words:
        kwargs["type"] = _blank_is_unset(opt.number.kind) if opt.default is None else opt.number.kind
    return kwargs


def _blank_is_unset(kind: Callable[[str], Any]) -> Callable[[str], Any]:
    """An option without a default given as "" is not set, as pytest's twin reads it."""
    def read(value: str) -> Any:
        return None if value == "" else kind(value)

    read.__name__ = getattr(kind, "__name__", "number")  # argparse names the type in its error
    return read


def gate_options(prefix: str = "medcode-", systems: Iterable[str] | None = None, label: str = "") -> tuple[Option, ...]:
    """The gate options both front ends have, read from results/rules when called (never copied).

    ``systems``: the known code systems, once the front end knows them (a user's own system is known from
    its table or from the runs); without them a threshold's scope is not checked yet. ``label`` starts each
    help text (pytest's list says "gate: ").
    """
    from pytest_medcode.results import rules

    known = tuple(systems) if systems is not None else None
    return (
        Option(f"{prefix}fail-under", f"{label}fail when a rate is below its limit, per model and system; comma list, "
               "repeatable: exact_match=0.45,valid=0.9,icd10cm:exact_match=0.3", (), "[SYSTEM:]METRIC=X",
               append=True, parse=partial(rules.parse_thresholds, direction="under", systems=known)),
        Option(f"{prefix}fail-over", f"{label}fail when a lower-is-better rate is above its limit: fabricated=0.1", (),
               "[SYSTEM:]METRIC=X", append=True,
               parse=partial(rules.parse_thresholds, direction="over", systems=known)),
        Option(f"{prefix}max-drop", f"{label}largest tolerated drop against the baseline, failing only when also "
               f"significant: exact_match=2pp,digit_match=0.01 (default {rules.DEFAULT_MAX_DROP})", (),
               "METRIC=MARGIN", append=True, parse=rules.parse_max_drops, setting="max_drops",
               help_names_default=True),
        Option(f"{prefix}alpha", f"{label}significance level of the paired regression tests, above 0 and at most "
               f"{rules.MAX_ALPHA:g} (default {rules.DEFAULT_ALPHA:g})", rules.DEFAULT_ALPHA, "A",
               number=Number(float, 0.0, rules.MAX_ALPHA, above=True), setting="alpha", help_names_default=True),
        Option(f"{prefix}threshold-from-baseline", f"{label}carry each model's confidence threshold from the "
               "baseline (the one that kept its coverage@ACC) and fail when the accuracy on the cases it auto-codes "
               "falls below ACC (--medcode-threshold-accuracy)", None, flag=True, setting="threshold_from_baseline"),
        Option(f"{prefix}threshold", f"{label}a fixed confidence threshold: fail when the accuracy on the cases "
               "it auto-codes falls below --medcode-threshold-accuracy", None, "T", number=Number(float, 0.0, 1.0),
               setting="carried_threshold"),
        Option(f"{prefix}threshold-accuracy", f"{label}the accuracy auto-coded cases must keep at a carried or "
               "fixed threshold (default 0.95)", "0.95", "ACC", parse=rules.parse_target, setting="threshold_accuracy",
               help_names_default=True),
        Option(f"{prefix}max-error-rate", f"{label}largest share of failed model calls per model and system "
               f"(default {rules.DEFAULT_MAX_ERROR_RATE:g})", rules.DEFAULT_MAX_ERROR_RATE, "X",
               number=Number(float, 0.0, 1.0), setting="max_error_rate", help_names_default=True),
        Option(f"{prefix}baseline-release-mismatch", f"{label}a baseline scored against another release of a code "
               "system: refuse to pair it, or pair-common (only the codes both releases have)", REFUSE,
               "|".join(MISMATCH_CHOICES), choices=MISMATCH_CHOICES, setting="release_mismatch"),
    )


def profile_option(prefix: str = "medcode-") -> Option:
    """How answers are read and scored; the choices are the scoring profiles table's, read when called."""
    from pytest_medcode.scoring import parsing

    return Option(f"{prefix}profile", "how answers are read and scored: default (whole codes, existence in the "
                  "table), or paper (the authors' first-match regexes and billable-list validity; README, "
                  "Profiles)", "default", "|".join(parsing.PROFILES), choices=tuple(parsing.PROFILES),
                  setting="profile")


def _router_file(value: Any) -> Any:
    from pytest_medcode.asking.coders.router import read_router_file

    return read_router_file(value)


#: Several endpoints of one model (asking/coders/router.py): a litellm Router ``model_list`` file.
ROUTER = Option("medcode-router", "a litellm Router model_list (YAML): a --model named like one of its model_name "
                "entries is asked through litellm's Router over its deployments (retries, cooldowns, failover); "
                "each answer records the deployment that gave it", None, "FILE", parse=_router_file)


def plain(number: float) -> str:
    """How the ``medcode`` command writes a bound: ``%g`` (``0``, where pytest's options say ``0.0``)."""
    return f"{number:g}"
