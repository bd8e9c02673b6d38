"""Field checks every domain's request validation shares."""

from __future__ import annotations

from server.core.errors import Violations


def check_text(violations: Violations, field: str, value: str, max_length: int) -> None:
    """PostgreSQL text cannot hold NUL, and every column has a length."""
    if "\x00" in value:
        violations.add(field, "must not contain NUL characters")
    if len(value) > max_length:
        violations.add(field, f"must be at most {max_length} characters")
