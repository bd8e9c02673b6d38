"""Page tokens and stream cursors accept exactly the text the server issued."""

from __future__ import annotations

import base64

import grpc
import pytest
from socialhub.v1 import profile_pb2
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from server.core.errors import InvalidArgument
from server.core.pagination import PageTokens
from tests.helpers import error_reason, field_violations, new_profile

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _flip_low_bit_of_last_character(token: str) -> str:
    flipped = _ALPHABET[_ALPHABET.index(token[-1]) ^ 1]
    return token[:-1] + flipped


def test_the_flipped_token_would_decode_to_the_same_bytes() -> None:
    """The premise of the check below: a lenient base64 decoder ignores those bits."""
    tokens = PageTokens("secret")
    token = tokens.encode([42, "x"], "fp")
    tampered = _flip_low_bit_of_last_character(token)
    signature, tampered_signature = token.split(".")[1], tampered.split(".")[1]
    assert tampered != token
    assert base64.urlsafe_b64decode(signature + "==") == base64.urlsafe_b64decode(
        tampered_signature + "=="
    )


@pytest.mark.parametrize(
    "tamper",
    [
        _flip_low_bit_of_last_character,
        lambda token: token + "=",
        lambda token: token + "==",
        lambda token: token.replace(".", "=."),
        lambda token: token.replace("-", "+").replace("_", "/"),
        lambda token: token + ".",
        lambda token: token[:-1],
        lambda token: " " + token,
        lambda token: token + "\n",
        lambda token: "é" + token,
    ],
    ids=[
        "low-bit",
        "padding",
        "double-padding",
        "inner-padding",
        "standard-alphabet",
        "extra-part",
        "truncated",
        "leading-space",
        "trailing-newline",
        "non-ascii",
    ],
)
def test_any_other_text_is_page_token_invalid(tamper: object) -> None:
    tokens = PageTokens("secret")
    # A position whose encoding has a '-' (so the standard alphabet differs) and no padding.
    token = tokens.encode([123456789, "a?b>c~"], "fp")
    assert callable(tamper)
    tampered = tamper(token)
    assert tampered != token
    assert tokens.decode(token, "fp") == (123456789, "a?b>c~")
    with pytest.raises(InvalidArgument) as caught:
        tokens.decode(tampered, "fp", "resume_cursor")
    assert caught.value.reason == "PAGE_TOKEN_INVALID"
    assert [v.field for v in caught.value.violations] == ["resume_cursor"]


def test_a_token_of_another_request_is_page_token_invalid() -> None:
    tokens = PageTokens("secret")
    with pytest.raises(InvalidArgument) as caught:
        tokens.decode(tokens.encode([1], "filter-a"), "filter-b")
    assert caught.value.reason == "PAGE_TOKEN_INVALID"


def test_a_tampered_page_token_is_refused_by_a_listing(profiles: ProfileServiceStub) -> None:
    for name in ("Ada", "Grace", "Barbara"):
        profiles.CreateProfile(profile_pb2.CreateProfileRequest(profile=new_profile(name)))
    first = profiles.ListProfiles(profile_pb2.ListProfilesRequest(page_size=1))
    assert first.next_page_token
    second = profiles.ListProfiles(
        profile_pb2.ListProfilesRequest(page_size=1, page_token=first.next_page_token)
    )
    assert second.profiles
    with pytest.raises(grpc.RpcError) as caught:
        profiles.ListProfiles(
            profile_pb2.ListProfilesRequest(
                page_size=1, page_token=_flip_low_bit_of_last_character(first.next_page_token)
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error_reason(caught.value) == "PAGE_TOKEN_INVALID"
    assert "page_token" in field_violations(caught.value)
