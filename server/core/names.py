"""Resource names ("profiles/42") <-> database ids."""

from __future__ import annotations

from server.core.errors import InvalidArgument

_MAX_ID = 2**63 - 1


def format_name(collection: str, resource_id: int) -> str:
    return f"{collection}/{resource_id}"


def parse_name(name: str, collection: str, field: str) -> int:
    """The id in `<collection>/<id>`; INVALID_ARGUMENT naming `field` otherwise."""
    prefix = collection + "/"
    if not name:
        raise InvalidArgument.single(field, "is required")
    digits = name[len(prefix) :] if name.startswith(prefix) else ""
    # The length check comes first: int() refuses strings of more than 4300 digits.
    if (
        not (digits.isascii() and digits.isdigit())
        or len(digits) > len(str(_MAX_ID))
        or not 0 < int(digits) <= _MAX_ID
    ):
        raise InvalidArgument.single(field, f"must look like '{prefix}<positive integer>'")
    return int(digits)
