"""Test support for pytest-medcode: a real, scripted OpenAI-compatible HTTP server.

Lives inside the package (not under ``tests/``) so the plugin's tests, the perf scripts and users
writing their own checks all drive the real ``openai``/``litellm`` clients over TCP against the
same deterministic server, instead of mocking our code. See ``pytest_medcode.testing.server``.
"""
