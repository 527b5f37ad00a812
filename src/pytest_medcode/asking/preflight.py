"""Before the first case: each model that asks an API answers one real request, or the run stops.

Only a failure of the setup stops it (a refused key, an unknown model or path, an exhausted quota, an
endpoint that is not an API or cannot be reached). A rate limit is waited out as on any call, with the wait
on the progress line (``medcode: checking MODEL before the first case · rate limited by the endpoint, waiting
8 s; 12 retries so far``); a server error or a timeout that outlasts its retries says nothing about the setup:
the run goes on and the query phase asks that case again. A final failure of the question itself (a 400) is
the first case's outcome, kept like any other.

A wrong model name, endpoint or key otherwise shows up as thousands of identical failing cases (and,
with retries, minutes of waiting). One probe per model turns it into one line and exit code 4 within
seconds. The probe is the model's first selected case (its first case at all under xdist, where the controller
probes before the workers collect), so its answer is kept and the run does not pay twice;
a model whose first case is already answered in the response cache is not probed at all (a replayed
run needs no network).
"""

from __future__ import annotations

from typing import Any

from pytest_medcode.asking.coders import Question
from pytest_medcode.asking.engine import Outcome, QueryEngine
from pytest_medcode.asking.phase import QueryPhase, stored
from pytest_medcode.asking.progress import Progress
from pytest_medcode.redaction import mask_credentials, public_url
from pytest_medcode.safetext import visible

_HINTS = (
    ("HTTP 401", "check the API key in the environment"),
    ("HTTP 403", "check the API key's access to this model"),
    ("HTTP 404", "check the model name and that --medcode-api-base ends with the API's /v1"),
    ("quota", "the account's quota is exhausted"),
    ("Connection", "is the server running and --medcode-api-base right?"),
)


def remote_coders(coder: Any) -> list[Any]:
    """The coders in a chain (``verify:rag:gpt-4`` → rag → gpt-4) that ask an API over the network."""
    found = []
    while coder is not None:
        if getattr(coder, "remote", False):
            found.append(coder)
        coder = getattr(coder, "inner", None)
    return found


def failure_line(model: str, coder: Any, outcome: Outcome) -> str:
    """One line naming the model, where it was asked, why it failed, and what to do; the API's words with
    credentials masked and control bytes shown as ``\\xNN`` (it is printed as the run's ``ERROR:`` line)."""
    remote = next(iter(remote_coders(coder)), coder)
    where = public_url(getattr(remote, "api_base", None))  # never a key that rides in the URL
    asked = f" at {where}" if where else ""
    inner = "" if getattr(remote, "name", model) == model else f" (the model {remote.name} it wraps)"
    hint = next((h for needle, h in _HINTS if needle.lower() in (outcome.error or "").lower()), None)
    line = (f"--model {model}{inner}: the check request{asked} failed after {outcome.attempts} attempt(s): "
            f"{outcome.error}" + (f"; {hint}" if hint else "") + " (--medcode-no-preflight skips this check)")
    return " ".join(visible(mask_credentials(line)).split())


def deployment_failure(model: str, coder: Any, engine: QueryEngine) -> str | None:
    """Every deployment of a routed model (--medcode-router) answers one small request, past the router; the
    first whose setup failed (nothing listening, a refused key, an unknown model), named in one line; None when
    all answer. The router would route around a dead one, but a deployment listed and never used is a mistake
    the run should not hide."""
    for remote in remote_coders(coder):
        check = getattr(remote, "check_deployments", None)
        if check is None:
            continue
        failed = engine.run(check())
        if failed:
            deployment, failure = failed[0]
            hint = next((h for needle, h in _HINTS if needle.lower() in str(failure).lower()), None)
            line = (f"--model {model}: deployment {deployment.label} of --medcode-router {remote.config.path} "
                    f"failed the check request: {failure}" + (f"; {hint}" if hint else "") +
                    f" ({len(failed)} of {len(remote.deployments)} deployments failed; fix it or take it out of "
                    "the file; --medcode-no-preflight skips this check)")
            return " ".join(visible(mask_credentials(line)).split())
    return None


def probe(model: str, question: Question, key: str, phase: QueryPhase, engine: QueryEngine) -> Outcome | None:
    """Ask ``model`` its first case unless the cache already answers it; the outcome of a failed setup
    (a key, model, quota or endpoint that is wrong), else None. An answer or a final failure is the case's own
    and is kept, so the query phase does not ask it again; any other outcome is left for the phase to ask."""
    if phase.outcome(key) is not None:
        return None  # asked in an earlier run: the setup worked then, and a replay needs no network
    if not phase.claim_one(key):
        return None  # a run sharing the cache is asking it right now: that answer will serve this run too
    progress = engine.progress = Progress(checking=model)
    try:
        with phase.showing(progress, to_file=False):
            outcome = engine.ask(model, question)
        phase.carried_retries += progress.retries
        if outcome.keep:  # an answer, or this question's own failure (a 400 say): the case's outcome
            phase.store.put(key, model, stored(outcome))
            return None
        return outcome if outcome.setup else None
    finally:
        phase.release()
