"""Per-case scoring: exact match, code validity, description similarity."""
