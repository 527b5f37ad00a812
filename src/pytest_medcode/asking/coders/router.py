"""One ``--model`` served by several endpoints (replicas of a model), through litellm's Router.

``--medcode-router FILE`` is a litellm Router ``model_list`` in YAML, as litellm's users already write it::

    model_list:
      - model_name: llama-70b
        litellm_params: {model: openai/llama-70b, api_base: http://gpu-a:8000/v1, api_key: sk-...}
      - model_name: llama-70b
        litellm_params: {model: openai/llama-70b, api_base: http://gpu-b:8000/v1}
        model_info: {id: gpu-b-awq}

A ``--model`` named like a ``model_name`` is then asked through ``litellm.Router``: it spreads the calls, retries
a failed call on another deployment and cools a failing one down, so a replica that dies mid-run costs no answer.
No balancing is written here. What is ours:

- **The cache key is the model's, not the replica's**: the identity of the coder the same ``--model`` names
  without a router, so a run through three replicas replays a run through one and the other way round.
- **Each answer names its deployment** (``usage["deployment"]``, the record's ``deployment``): its
  ``model_info.id`` when the file gives one, else its ``api_base`` without credentials — never a key. A replica
  that answers differently (another quantisation) shows up in the per-deployment counts.
- **Every deployment is checked before the run** (:meth:`RouterCoder.check_deployments`, by the preflight).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pytest_medcode.asking.coders.base import CallFailed, Coder, CoderUnavailable, Question, Reply
from pytest_medcode.asking.coders.logprobs import REQUEST as LOGPROBS
from pytest_medcode.redaction import endpoint_secrets, public_url

__all__ = ["DEPLOYMENT", "Deployment", "RouterCoder", "RouterConfig", "read_router_file"]

#: In an outcome's ``usage``: the deployment that answered (travels through the cache with the answer).
DEPLOYMENT = "deployment"
_COOLDOWN_S = 30.0  # a deployment that failed is left alone this long before it is tried again
_PING = (("user", "Reply with the word OK."),)  # the check request each deployment answers before the run


@dataclass(frozen=True)
class Deployment:
    """One endpoint serving a model: its label (what the records name) and litellm's parameters for it."""

    model: str  # the model_name it serves
    label: str  # model_info.id, else the api_base without credentials
    params: Mapping[str, Any]  # litellm_params: may hold an api_key, so never shown or recorded


@dataclass(frozen=True)
class RouterConfig:
    """A ``--medcode-router`` file, read and checked: the deployments of each model name."""

    path: Path
    model_list: tuple[dict[str, Any], ...]
    deployments: Mapping[str, tuple[Deployment, ...]]

    def to_dict(self) -> dict[str, Any]:
        """What summary.json records: the file and each model's deployment labels (no parameters, no key)."""
        return {"file": str(self.path), "deployments": {m: [d.label for d in ds] for m, ds in self.deployments.items()}}

    def secrets(self) -> list[str]:
        """The keys and URL credentials the file holds, for the run's masker."""
        found: list[str] = []
        for entry in self.model_list:
            params = entry["litellm_params"]
            key = params.get("api_key")
            if isinstance(key, str) and not key.startswith("os.environ/"):
                found.append(key)
            found += endpoint_secrets(params.get("api_base"))
        return found


def read_router_file(value: Any) -> RouterConfig | None:
    """``--medcode-router FILE`` → its deployments (None: no file given); ValueError in one line without the
    option's name: a file that cannot be read, is not YAML, or is not a ``model_list`` of deployments that each
    name a model and an ``api_base``."""
    if value is None or not str(value).strip():
        return None
    import yaml  # PyYAML comes with litellm

    path = Path(str(value).strip()).expanduser()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ValueError(f"{path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text file") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        problem = getattr(exc, "problem", None) or exc.__class__.__name__
        raise ValueError(f"{path}: not valid YAML{where}: {problem}") from None
    entries = data.get("model_list") if isinstance(data, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a litellm Router file, model_list: [{{model_name: ..., litellm_params: "
                         "{model: ..., api_base: ...}}]")
    deployments: dict[str, list[Deployment]] = {}
    for number, entry in enumerate(entries, 1):
        deployment = _deployment(path, number, entry)
        same = deployments.setdefault(deployment.model, [])
        if any(d.label == deployment.label for d in same):
            raise ValueError(f"{path}: model_list item {number}: {deployment.model} has two deployments named "
                             f"{deployment.label}; give each its own model_info: {{id: NAME}}")
        same.append(deployment)
    return RouterConfig(path, tuple(entries), {m: tuple(ds) for m, ds in deployments.items()})


def _deployment(path: Path, number: int, entry: Any) -> Deployment:
    where = f"{path}: model_list item {number}"
    if not isinstance(entry, dict) or not isinstance(entry.get("model_name"), str) or not entry["model_name"].strip():
        raise ValueError(f"{where}: expected model_name: NAME and litellm_params: {{model: ..., api_base: ...}}")
    name = entry["model_name"].strip()
    params = entry.get("litellm_params")
    if not isinstance(params, dict) or not isinstance(params.get("model"), str) or not params["model"].strip():
        raise ValueError(f"{where} ({name}): litellm_params needs model: PROVIDER/NAME")
    base = params.get("api_base")
    if not isinstance(base, str) or not base.strip():
        raise ValueError(f"{where} ({name}): no api_base; every deployment names its endpoint "
                         "(litellm_params: {api_base: http://HOST:PORT/v1})")
    try:
        parts = urlsplit(base.strip())
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError:
        ok = False
    if not ok:
        raise ValueError(f"{where} ({name}): api_base {public_url(base)!r} is not an http(s) URL with a host")
    info = entry.get("model_info")
    ident = info.get("id") if isinstance(info, dict) else None
    label = str(ident).strip() if ident is not None and str(ident).strip() else str(public_url(base.strip()))
    return Deployment(name, label, params)


def routed_names(model: str) -> list[str]:
    """The names a ``--model`` asks: itself and, under ``rag:``/``verify:``, the model it wraps."""
    names = [model]
    while True:
        prefix, sep, rest = names[-1].partition(":")
        if not (sep and prefix in ("rag", "verify") and rest):
            return names
        names.append(rest)


def unused_models(config: RouterConfig, models: tuple[str, ...]) -> list[str]:
    """The file's model names no ``--model`` asks (a typo would silently leave its replicas unused)."""
    asked = {name for model in models for name in routed_names(model)}
    return [name for name in config.deployments if name not in asked]


class RouterCoder:
    """A model asked through ``litellm.Router`` over its deployments; keyed as the same model without one."""

    cacheable = True
    remote = True  # asks APIs over the network: the preflight checks each deployment
    api_base = None  # several: each is named in its own check line

    def __init__(self, name: str, config: RouterConfig, keyed: Coder, timeout: float, logprobs: bool = False) -> None:
        self.name = name
        self.config = config
        self.deployments = config.deployments[name]
        self.logprobs = logprobs
        self.timeout = timeout
        self._keyed = keyed  # the coder this --model names without a router: its identity is the cache key's
        self._router: Any = None
        self._labels = {d.label for d in self.deployments}

    def identity(self) -> dict[str, Any]:
        return self._keyed.identity()

    def check(self) -> None:
        try:
            self._get_router()
        except Exception as exc:  # litellm refuses a parameter of the file
            raise CoderUnavailable(f"--model {self.name}: litellm's Router refused {self.config.path}: "
                                   f"{exc.__class__.__name__}: {exc}") from None

    def close(self) -> None:
        """Nothing to release: litellm keeps its clients process-wide."""

    def _get_router(self) -> Any:
        if self._router is None:
            from pytest_medcode.asking.coders.litellm_coder import import_litellm

            litellm = import_litellm()
            # Each deployment's id is its label, so the id litellm puts on a response names it as the records do.
            entries = [dict(e, litellm_params=dict(d.params), model_info={**(e.get("model_info") or {}), "id": d.label})
                       for e, d in self._entries()]
            self._router = litellm.Router(
                model_list=entries,
                num_retries=len(entries),  # enough for every other deployment to be tried once
                retry_after=0,
                allowed_fails=1,
                cooldown_time=_COOLDOWN_S,
                timeout=self.timeout,
            )
        return self._router

    def _entries(self) -> list[tuple[dict[str, Any], Deployment]]:
        mine = [e for e in self.config.model_list if e["model_name"].strip() == self.name]
        return list(zip(mine, self.deployments, strict=True))

    def label_of(self, response: Any) -> str | None:
        """The deployment that answered ``response`` (litellm puts its model id in the response's hidden params)."""
        hidden = getattr(response, "_hidden_params", None) or {}
        label = hidden.get("model_id")
        return str(label) if label in self._labels else public_url(hidden.get("api_base"))

    async def answer(self, question: Question) -> Reply:
        from pytest_medcode.asking.coders.litellm_coder import _classify, reply_of

        router = self._get_router()
        try:
            response = await router.acompletion(
                model=self.name,
                messages=question.chat(),
                temperature=question.temperature,
                max_tokens=question.max_tokens,
                timeout=self.timeout,
                **(LOGPROBS if self.logprobs else {}),
            )
        except Exception as exc:
            raise _routing_failure(exc) or _classify(exc, self.timeout) from None
        reply = reply_of(response, self.logprobs)
        reply.usage[DEPLOYMENT] = self.label_of(response)
        return reply

    async def check_deployments(self) -> list[tuple[Deployment, CallFailed]]:
        """One small request to every deployment at once, past the Router; those whose setup failed (refused
        connection, key, model name), each with its failure. Other failures (a 5xx, a timeout) say nothing about
        the setup and are left to the run, as the preflight leaves them."""
        from pytest_medcode.asking.coders.litellm_coder import _classify, import_litellm

        litellm = import_litellm()

        async def ping(deployment: Deployment) -> CallFailed | None:
            try:
                await litellm.acompletion(**deployment.params, messages=[{"role": r, "content": c} for r, c in _PING],
                                          max_tokens=1, timeout=self.timeout, num_retries=0, max_retries=0)
            except Exception as exc:
                failure = _classify(exc, self.timeout)
                return failure if failure.setup else None
            return None

        found = await asyncio.gather(*(ping(d) for d in self.deployments))
        return [(d, f) for d, f in zip(self.deployments, found, strict=True) if f is not None]


def _routing_failure(exc: Exception) -> CallFailed | None:
    """The Router has no deployment left to try (all cooling down after failures): a setup failure retried like
    a refused connection, which the circuit breaker counts — not a rate limit waited out for ten minutes."""
    if type(exc).__name__ != "RouterRateLimitError" and "No deployments available" not in str(exc):
        return None
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return CallFailed(f"no deployment of the model answers: {first[:200]}", retryable=True, setup=True)
