"""Keyset pagination shared by every List RPC (AIP-158).

A page token is the keyset position of the last row served plus a fingerprint
of the request's filter and order, signed with HMAC so a client can neither
forge a position nor reuse a token with other filters.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from google.protobuf.message import Message

from server.core.errors import InvalidArgument

_SIGNATURE_BYTES = 16
KeyValue = str | int | float | datetime | None


@dataclass(frozen=True)
class PageSize:
    default: int = 50
    maximum: int = 500

    def resolve(self, requested: int, field: str = "page_size") -> int:
        if requested < 0:
            raise InvalidArgument.single(field, "must not be negative")
        if requested == 0:
            return self.default
        return min(requested, self.maximum)


def fingerprint(method: str, *parts: Message | str) -> str:
    """A digest of everything that must not change between the pages of one listing."""
    digest = hashlib.sha256(method.encode())
    for part in parts:
        data = (
            part.encode() if isinstance(part, str) else part.SerializeToString(deterministic=True)
        )
        digest.update(len(data).to_bytes(4, "big") + data)
    return digest.hexdigest()[:24]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    """The bytes `text` encodes, if `text` is exactly how `_b64` writes them.

    Base64 decoders ignore the unused low bits of the last character, so several texts decode
    to the same bytes (flipping the last bit of a token still gave the same page). Only the one
    text the server issued is accepted: a token is compared as it was issued, not as decoded.
    """
    data = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    if _b64(data) != text:
        raise ValueError("not the canonical encoding")
    return data


def _encode_value(value: KeyValue) -> Any:
    return {"t": value.isoformat()} if isinstance(value, datetime) else value


def _decode_value(value: Any) -> KeyValue:
    if isinstance(value, dict):
        return datetime.fromisoformat(value["t"])
    if value is None or isinstance(value, str | int | float):
        return value
    raise ValueError("bad key value")


class PageTokens:
    """Page tokens and stream resume cursors: every token the server did not issue for this very
    request is INVALID_ARGUMENT with reason PAGE_TOKEN_INVALID on the token's field."""

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def _sign(self, payload: bytes) -> bytes:
        return hmac.new(self._secret, payload, hashlib.sha256).digest()[:_SIGNATURE_BYTES]

    def encode(self, position: Sequence[KeyValue], request_fingerprint: str) -> str:
        payload = json.dumps(
            {"k": [_encode_value(v) for v in position], "f": request_fingerprint},
            separators=(",", ":"),
        ).encode()
        return f"{_b64(payload)}.{_b64(self._sign(payload))}"

    def decode(
        self, token: str, request_fingerprint: str, field: str = "page_token"
    ) -> tuple[KeyValue, ...] | None:
        """The keyset position in `token`, or None for the first page."""
        if not token:
            return None
        try:
            encoded_payload, encoded_signature = token.split(".")
            payload = _unb64(encoded_payload)
            signature = _unb64(encoded_signature)
        except (ValueError, binascii.Error):
            raise _not_issued(field) from None
        if not hmac.compare_digest(signature, self._sign(payload)):
            raise _not_issued(field)
        decoded = json.loads(payload)
        if decoded.get("f") != request_fingerprint:
            raise InvalidArgument.single(
                field,
                "was issued for a different filter or order; start from the first page",
                reason="PAGE_TOKEN_INVALID",
            )
        return tuple(_decode_value(v) for v in decoded["k"])


def _not_issued(field: str) -> InvalidArgument:
    return InvalidArgument.single(
        field, "is not a page token issued by this service", reason="PAGE_TOKEN_INVALID"
    )


def next_token(
    tokens: PageTokens,
    rows: Sequence[Any],
    page_size: int,
    position_of: Any,
    request_fingerprint: str,
) -> tuple[Sequence[Any], str]:
    """Trim the extra row fetched to detect a next page and build that page's token."""
    if len(rows) <= page_size:
        return rows, ""
    page = rows[:page_size]
    return page, tokens.encode(position_of(page[-1]), request_fingerprint)
