"""Asking: turning a case into a coder's answer (coders, the engine and its query phase, the cache, money)."""
