"""Platform tokens encrypted at rest: AES-256-GCM, the owning resource's name as associated
data, several keys at once so they can be rotated.

The first key encrypts; every key decrypts, found by the 4-byte key id each ciphertext starts
with. The associated data binds a ciphertext to its row: a token copied onto another account
fails to decrypt instead of publishing as someone else. `socialhub tokens rotate`
re-encrypts every stored token with the first key, after which the old keys can go.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Sequence
from typing import Protocol

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from server.core.errors import FailedPrecondition

_VERSION = b"\x01"
_KEY_ID_BYTES = 4
_NONCE_BYTES = 12


class TokenKeyError(ValueError):
    """TOKEN_ENCRYPTION_KEYS is missing or malformed, or a ciphertext's key is not among them."""


def _key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"socialhub token key id" + key).digest()[:_KEY_ID_BYTES]


def new_key() -> str:
    """A fresh key, as TOKEN_ENCRYPTION_KEYS holds them (`socialhub tokens new-key`)."""
    return base64.b64encode(AESGCM.generate_key(bit_length=256)).decode()


def development_key(secret: str) -> str:
    """The embedded default's key, derived from its (public) development secret."""
    derived = HKDF(
        algorithm=SHA256(), length=32, salt=None, info=b"socialhub token encryption"
    ).derive(secret.encode())
    return base64.b64encode(derived).decode()


class Sealer(Protocol):
    def encrypt(self, plaintext: str, associated: str) -> bytes: ...

    def decrypt(self, ciphertext: bytes, associated: str) -> str: ...


class NoKeys:
    """Where TOKEN_ENCRYPTION_KEYS is not set: the service starts (its other domains need no
    keys), and anything that would store or read a platform token is refused."""

    def _refuse(self) -> FailedPrecondition:
        return FailedPrecondition(
            "this server has no TOKEN_ENCRYPTION_KEYS, so it cannot store platform tokens",
            reason="TOKEN_ENCRYPTION_NOT_CONFIGURED",
        )

    def encrypt(self, plaintext: str, associated: str) -> bytes:
        raise self._refuse()

    def decrypt(self, ciphertext: bytes, associated: str) -> str:
        raise self._refuse()


class TokenCipher:
    def __init__(self, keys: Sequence[str]) -> None:
        if not keys:
            raise TokenKeyError("TOKEN_ENCRYPTION_KEYS is empty: set at least one key")
        decoded: list[bytes] = []
        for index, key in enumerate(keys):
            try:
                raw = base64.b64decode(key, validate=True)
            except binascii.Error:
                raise TokenKeyError(f"TOKEN_ENCRYPTION_KEYS[{index}] is not base64") from None
            if len(raw) != 32:
                raise TokenKeyError(f"TOKEN_ENCRYPTION_KEYS[{index}] is not 32 bytes")
            decoded.append(raw)
        self._current = (_key_id(decoded[0]), AESGCM(decoded[0]))
        self._by_id = {_key_id(raw): AESGCM(raw) for raw in reversed(decoded)}

    def encrypt(self, plaintext: str, associated: str) -> bytes:
        key_id, aead = self._current
        nonce = os.urandom(_NONCE_BYTES)
        sealed = aead.encrypt(nonce, plaintext.encode(), associated.encode())
        return _VERSION + key_id + nonce + sealed

    def decrypt(self, ciphertext: bytes, associated: str) -> str:
        header = len(_VERSION) + _KEY_ID_BYTES
        if ciphertext[:1] != _VERSION:
            raise TokenKeyError("unknown token format")
        aead = self._by_id.get(ciphertext[1:header])
        if aead is None:
            raise TokenKeyError("a token is encrypted with a key not in TOKEN_ENCRYPTION_KEYS")
        nonce = ciphertext[header : header + _NONCE_BYTES]
        return aead.decrypt(
            nonce, ciphertext[header + _NONCE_BYTES :], associated.encode()
        ).decode()

    def is_current(self, ciphertext: bytes) -> bool:
        """Whether the first key encrypted it (rotation skips those)."""
        return ciphertext[1 : 1 + _KEY_ID_BYTES] == self._current[0]

    def rotate(self, ciphertext: bytes, associated: str) -> bytes:
        return self.encrypt(self.decrypt(ciphertext, associated), associated)
