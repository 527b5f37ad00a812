"""Test support for pytest-medcode: a real, scripted OpenAI-compatible HTTP server.

Lives inside the package (not under ``tests/``) so the plugin's tests, the perf scripts and users
writing their own checks all drive the real ``openai``/``litellm`` clients over TCP against the
same deterministic server, instead of mocking our code.

- ``server``: the HTTP side, ``ScriptedServer`` (routes, keep-alive, connection resets, outages).
- ``responders``: the ``Request`` a responder sees, the answers it gives, and deliberately wrong ones.
- ``faults``: how slow it is (latency functions) and when it fails (``FaultPlan``).
- ``stats``: ``ServerStats``, the counters tests assert on.
- ``cli``: ``python -m pytest_medcode.testing``, the server as its own process.
"""
