"""`socialhub tokens rotate`: every stored platform token, and every pending connection's PKCE
verifier, re-encrypted with the first of TOKEN_ENCRYPTION_KEYS, in one transaction.

The order that loses nothing: deploy the new key first in the list with the old ones after it
(every replica then encrypts with it and still reads the old ciphertexts), rotate, and only
then drop the old keys. The rows are locked while they are rewritten, so a refresh that
writes a token meanwhile waits and then writes over a row it re-reads.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from sqlalchemy.ext.asyncio import AsyncConnection

from server.publishing import repository
from server.publishing.mapping import account_name
from server.publishing.tokens import TokenCipher, TokenKeyError

Track = Callable[[Sequence[Any], str], Iterable[Any]]


class RotationError(Exception):
    """A ciphertext none of the keys opens (a key missing from the list, or a row tampered
    with): nothing was changed."""


@dataclass(frozen=True, slots=True)
class Rotated:
    """Ciphertexts re-encrypted (tokens and verifiers), and those already under the first key."""

    tokens: int
    verifiers: int
    current: int


def _untracked(rows: Sequence[Any], what: str) -> Iterable[Any]:
    return rows


async def rotate(conn: AsyncConnection, cipher: TokenCipher, track: Track = _untracked) -> Rotated:
    """Re-encrypts what another key sealed. `track(rows, what)` wraps each loop (a progress
    bar). Raises RotationError if a ciphertext cannot be opened: the caller's transaction
    must then roll back, so that nothing is half rotated."""
    tokens = verifiers = current = 0
    for row in track(await repository.all_token_rows(conn), "accounts"):
        name = account_name(row.business_id, row.id)
        sealed = [row.access_token, row.refresh_token]
        fresh = [None if c is None else _rotated(cipher, c, name, name) for c in sealed]
        changed = sum(new is not None for new in fresh)
        current += sum(c is not None for c in sealed) - changed
        if changed:
            access, refresh = (new or old for new, old in zip(fresh, sealed, strict=True))
            await repository.replace_ciphertexts(conn, row.id, access, refresh)
            tokens += changed
    for row in track(await repository.all_verifier_rows(conn), "connections"):
        verifier = _rotated(cipher, row.code_verifier, row.state, "a pending connection")
        if verifier is None:
            current += 1
        else:
            await repository.replace_verifier(conn, row.state, verifier)
            verifiers += 1
    return Rotated(tokens=tokens, verifiers=verifiers, current=current)


def _rotated(cipher: TokenCipher, ciphertext: bytes, associated: str, label: str) -> bytes | None:
    """The ciphertext under the first key; None if it already is. `label` names the row in
    an error (a connection's state, its associated data, is a secret)."""
    if cipher.is_current(ciphertext):
        return None
    try:
        return cipher.rotate(ciphertext, associated)
    except (InvalidTag, TokenKeyError) as error:
        detail = str(error) or "it does not open with its key (tampered, or another row's)"
        raise RotationError(f"cannot decrypt the secret of {label}: {detail}") from None
