"""Random and hostile requests to every ProfileService RPC: a proper answer, never a crash."""

from __future__ import annotations

from datetime import date
from typing import Any

import grpc
import pytest
from google.protobuf import field_mask_pb2
from google.protobuf.message import Message
from grpc_health.v1 import health_pb2
from grpc_health.v1.health_pb2_grpc import HealthStub
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from socialhub.v1 import profile_pb2
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.harness import ServerThread
from tests.helpers import field_violations, rich_status
from tests.profiles.support import seed

SEEDED = 200
MAX_MESSAGE_BYTES = 4 * 1024 * 1024
EXPECTED_ERRORS = {
    grpc.StatusCode.INVALID_ARGUMENT,
    grpc.StatusCode.NOT_FOUND,
    grpc.StatusCode.ALREADY_EXISTS,
}
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)

HOSTILE = [
    "",
    " ",
    "\x00",
    "ada\x00",
    "'; DROP TABLE profiles;--",
    "' OR '1'='1",
    "%",
    "_",
    "\\",
    '"',
    "$1",
    "::regconfig",
    "!!!",
    "& | ! <-> :*",
    "ada & !",
    '"unterminated',
    "-",
    "or",
    "null",
    "\u202e\u0646\u0635",
    "🙂" * 3,
    "Zoë Ådå Ада 李",
    "\ufeff",
    "a\u0301",
    "profiles/1",
    "*",
    "x.handle",
]

# --- Scalars ---------------------------------------------------------------------------------
# Each message is drawn either "nasty but valid" (quotes, operators, unicode, limits: it must
# reach the database and work) or "hostile" (anything at all: it must be refused properly).


def _repeat(unit: str, length: int) -> str:
    return (unit * (length // max(len(unit), 1) + 1))[:length] if unit else ""


def _mostly(valid: st.SearchStrategy[Any], hostile: st.SearchStrategy[Any]) -> Any:
    return st.one_of(valid, valid, valid, hostile)


NASTY = [text for text in HOSTILE if text.strip() and "\x00" not in text]
visible = st.characters(exclude_characters="\x00", exclude_categories=["Cs"])


def valid_texts(max_size: int) -> st.SearchStrategy[str]:
    return st.one_of(
        st.sampled_from(NASTY),
        st.text(visible, min_size=1, max_size=min(max_size, 30)).filter(str.strip),
        st.builds(_repeat, st.text(visible, min_size=1, max_size=2), st.just(max_size)).filter(
            str.strip
        ),
    )


any_texts = st.one_of(
    st.text(max_size=40),
    st.sampled_from(HOSTILE),
    # Long strings are built by repetition: drawing 100,000 characters one by one is slow.
    st.builds(_repeat, st.text(min_size=1, max_size=3), st.integers(0, 100_000)),
    st.builds(_repeat, st.text(min_size=1, max_size=2), st.sampled_from([99, 100, 101, 200, 201])),
)
int32s = st.one_of(st.integers(*INT32), st.sampled_from([0, 1, -1, 3, 500, 501, *INT32]))
int64s = st.one_of(
    st.integers(*INT64), st.sampled_from([0, 1, -1, 2**62, 2**63 - 2, *INT32, *INT64])
)
any_enums = st.one_of(st.integers(-2, 7), st.sampled_from([99, *INT32]))
platform_enums = st.integers(1, 5)
existing_ids = st.integers(1, SEEDED + 20)
valid_names = st.builds(lambda i: f"profiles/{i}", existing_ids)
any_names = st.one_of(
    st.builds(lambda i: f"profiles/{i}", st.integers(-(2**70), 2**70)),
    st.builds(lambda t: f"profiles/{t}", any_texts),
    st.sampled_from(["profiles/0", "profiles/", "users/1", "profiles/1/x", "profiles/+1"]),
    any_texts,
)
valid_dates = st.dates(max_value=date.today()).map(lambda d: d.isoformat())
any_dates = st.one_of(
    st.sampled_from(["1990-02-30", "0000-01-01", "9999-12-31", "1990-1-1"]),
    st.just("\u0661\u0669\u0669\u0660-\u0661\u0662-\u0661\u0660"),
    any_texts,
)
valid_emails = st.from_regex(
    r"[a-z0-9]{1,10}([._+-][a-z0-9]{1,5}){0,2}@example\.org", fullmatch=True
)
any_emails = st.one_of(
    st.emails().map(str),
    any_texts,
    # email_validator names each unsafe character in its message: a long error.
    st.text(st.characters(categories=["Co"]), min_size=1000, max_size=3000).map(
        lambda t: t + "@example.org"
    ),
)
page_tokens = st.one_of(
    any_texts,
    st.builds(lambda a, b: f"{a}.{b}", st.text("ABCabc012-_=", max_size=40), st.text(max_size=24)),
)
VALID_PATHS = [
    "display_name",
    "username",
    "designation",
    "zone",
    "party_district",
    "constituency",
    "date_of_birth",
    "email",
    "phone",
    "bio",
    "facebook",
    "x.handle",
    "x.followers",
    "instagram.active",
    "youtube.verified",
    "linkedin",
]
OUTPUT_PATHS = ["name", "create_time", "total_followers", "update_time"]
any_masks = st.lists(
    st.one_of(
        st.sampled_from([*VALID_PATHS, *OUTPUT_PATHS, "*"]),
        # Near misses: a valid path with something before or after it.
        st.builds(str.__add__, st.sampled_from(VALID_PATHS), st.sampled_from([".", ".x", " "])),
        st.builds(str.__add__, st.sampled_from([".", "*.", "x."]), st.sampled_from(VALID_PATHS)),
        st.builds(
            str.__add__,
            st.sampled_from(["name.", "x.", "bio."]),
            st.builds(_repeat, st.text(min_size=1, max_size=2), st.integers(0, 20_000)),
        ),
        any_texts,
    ),
    max_size=5,
)
# Many bad paths at once: each could add a violation to the error's trailers.
many_masks = st.lists(st.text(min_size=1, max_size=150), min_size=50, max_size=1000)
valid_masks = st.one_of(
    st.lists(st.sampled_from(VALID_PATHS), min_size=1, max_size=4), st.just(["*"])
)

# --- Messages --------------------------------------------------------------------------------

TEXT_FIELDS = {
    "username": 100,
    "designation": 100,
    "zone": 100,
    "party_district": 100,
    "constituency": 100,
    "phone": 32,
    "bio": 2000,
}
PLATFORMS = ("facebook", "x", "instagram", "youtube", "linkedin")


@st.composite
def profile_messages(draw: st.DrawFn, *, name: bool) -> profile_pb2.Profile:
    valid = draw(st.integers(0, 2)) > 0
    profile = profile_pb2.Profile()
    if name:
        profile.name = draw(valid_names if valid else any_names)
    if valid:
        profile.display_name = draw(valid_texts(200))
        profile.date_of_birth = draw(st.one_of(st.just(""), valid_dates))
        profile.email = draw(st.one_of(st.just(""), valid_emails))
        for field, limit in TEXT_FIELDS.items():
            setattr(profile, field, draw(st.one_of(st.just(""), valid_texts(limit))))
    else:
        profile.display_name = draw(any_texts)
        profile.date_of_birth = draw(any_dates)
        profile.email = draw(any_emails)
        profile.total_followers = draw(int64s)
        for field in TEXT_FIELDS:
            setattr(profile, field, draw(st.one_of(st.just(""), any_texts)))
    for platform in PLATFORMS:
        if draw(st.integers(0, 2)) == 0:
            continue
        presence = getattr(profile, platform)
        presence.handle = draw(valid_texts(100) if valid else any_texts)
        presence.followers = draw(st.integers(0, 10**15) if valid else int64s)
        presence.active = draw(st.booleans())
        presence.verified = draw(st.booleans())
    if valid and not any(getattr(profile, p).handle for p in PLATFORMS):
        profile.x.handle = "fallback"
    return profile


@st.composite
def filters(draw: st.DrawFn, *, valid: bool) -> profile_pb2.ProfileFilter:
    values = valid_texts(100) if valid else any_texts
    message = profile_pb2.ProfileFilter()
    for column, common in (("zone", "North"), ("designation", "Mayor")):
        setattr(message, column, draw(st.one_of(st.sampled_from(["", common]), values)))
    for column in ("party_district", "constituency"):
        setattr(message, column, draw(st.one_of(st.just(""), values)))
    for _ in range(draw(st.one_of(st.integers(0, 3), st.integers(0, 2000)))):
        status = message.platform_statuses.add(
            platform=draw(platform_enums if valid else any_enums)
        )
        if draw(st.booleans()):
            status.active = draw(st.booleans())
        if draw(st.booleans()):
            status.verified = draw(st.booleans())
    return message


@st.composite
def list_requests(draw: st.DrawFn) -> profile_pb2.ListProfilesRequest:
    if draw(st.booleans()):
        order = profile_pb2.ProfileOrder(descending=draw(st.booleans()))
        order.field = draw(st.integers(0, 3))  # type: ignore[assignment]
        if order.field == profile_pb2.PROFILE_SORT_FIELD_FOLLOWERS:
            order.platform = draw(st.integers(0, 5))  # type: ignore[assignment]
        return profile_pb2.ListProfilesRequest(
            page_size=draw(st.integers(0, 600)), filter=draw(filters(valid=True)), order=order
        )
    return profile_pb2.ListProfilesRequest(
        page_size=draw(int32s),
        page_token=draw(page_tokens),
        filter=draw(filters(valid=False)),
        order=profile_pb2.ProfileOrder(
            field=draw(any_enums),  # type: ignore[arg-type]
            platform=draw(any_enums),  # type: ignore[arg-type]
            descending=draw(st.booleans()),
        ),
    )


@st.composite
def search_requests(draw: st.DrawFn) -> profile_pb2.SearchProfilesRequest:
    if draw(st.booleans()):
        words = st.sampled_from(["councillor", "mayor", "north", "ward", "-north", "or", '"'])
        query = draw(
            st.one_of(
                st.lists(words, min_size=1, max_size=6).map(" ".join),
                valid_texts(200),
            )
        )
        return profile_pb2.SearchProfilesRequest(
            query=query, page_size=draw(st.integers(0, 600)), filter=draw(filters(valid=True))
        )
    return profile_pb2.SearchProfilesRequest(
        query=draw(any_texts),
        page_size=draw(int32s),
        page_token=draw(page_tokens),
        filter=draw(filters(valid=False)),
    )


@st.composite
def create_requests(draw: st.DrawFn) -> profile_pb2.CreateProfileRequest:
    # Hypothesis repeats UUIDs often; a repeat with another profile is rightly
    # INVALID_ARGUMENT, so most requests go without one.
    request_id = draw(st.one_of(st.just(""), st.uuids().map(str), any_texts))
    if draw(st.integers(0, 3)) > 0:
        request_id = ""
    return profile_pb2.CreateProfileRequest(
        profile=draw(profile_messages(name=False)), request_id=request_id
    )


REQUESTS: dict[str, st.SearchStrategy[Any]] = {
    "CreateProfile": create_requests(),
    "GetProfile": st.builds(profile_pb2.GetProfileRequest, name=_mostly(valid_names, any_names)),
    "UpdateProfile": st.builds(
        profile_pb2.UpdateProfileRequest,
        profile=profile_messages(name=True),
        update_mask=st.builds(
            field_mask_pb2.FieldMask,
            paths=st.one_of(valid_masks, valid_masks, valid_masks, any_masks, many_masks),
        ),
    ),
    "DeleteProfile": st.builds(
        profile_pb2.DeleteProfileRequest, name=_mostly(valid_names, any_names)
    ),
    "BatchDeleteProfiles": st.builds(
        profile_pb2.BatchDeleteProfilesRequest,
        names=st.one_of(
            st.lists(valid_names, min_size=1, max_size=20),
            st.lists(any_names, max_size=20),
            st.integers(990, 1010).map(lambda n: [f"profiles/{i}" for i in range(1, n + 1)]),
        ),
        allow_missing=st.booleans(),
    ),
    "ListProfiles": list_requests(),
    "SearchProfiles": search_requests(),
    "BatchGetProfiles": st.builds(
        profile_pb2.BatchGetProfilesRequest,
        names=st.one_of(
            st.lists(valid_names, min_size=1, max_size=20),
            st.lists(any_names, max_size=20),
            st.integers(95, 105).map(lambda n: [f"profiles/{i}" for i in range(1, n + 1)]),
        ),
    ),
    "SummarizeProfiles": st.just(profile_pb2.SummarizeProfilesRequest()),
}
EXAMPLES = 250


def _check_answer(profiles: ProfileServiceStub, method: str, request: Message) -> None:
    failure: grpc.RpcError | None = None
    try:
        response = getattr(profiles, method)(request, timeout=30)
    except grpc.RpcError as error:
        failure = error
    if failure is None:
        event(f"{method}: OK")
        if method == "CreateProfile":
            # Whatever was accepted is stored and read back exactly.
            fetched = profiles.GetProfile(profile_pb2.GetProfileRequest(name=response.name))
            assert fetched == response
            sent = request.profile  # type: ignore[attr-defined]
            for field in ("display_name", "username", "bio", "email", "date_of_birth"):
                assert getattr(fetched, field) == getattr(sent, field)
        if method in ("ListProfiles", "SearchProfiles") and response.next_page_token:
            # A token is good for the request it came from, whatever its filter held.
            following = type(request)()
            following.CopyFrom(request)
            following.page_token = response.next_page_token  # type: ignore[attr-defined]
            getattr(profiles, method)(following, timeout=30)
        return
    code = failure.code()
    event(f"{method}: {code.name}")
    if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
        # gRPC itself refuses messages over its size limit, before the service runs.
        assert request.ByteSize() > MAX_MESSAGE_BYTES, failure.details()
        return
    assert code in EXPECTED_ERRORS, f"{method} answered {code}: {failure.details()}"
    assert rich_status(failure).code == code.value[0]
    if code == grpc.StatusCode.INVALID_ARGUMENT:
        assert field_violations(failure), "INVALID_ARGUMENT without a field violation"


@pytest.fixture
def seeded(server: ServerThread) -> None:
    seed(server, SEEDED)


@pytest.mark.usefixtures("seeded")
@pytest.mark.parametrize("method", list(REQUESTS))
@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    database=None,
)
@given(data=st.data())
def test_every_rpc_answers_hostile_requests_properly(
    profiles: ProfileServiceStub, method: str, data: st.DataObject
) -> None:
    _check_answer(profiles, method, data.draw(REQUESTS[method], label="request"))


def test_server_is_healthy_after_the_fuzzing(
    profiles: ProfileServiceStub, health: HealthStub
) -> None:
    check = health.Check(health_pb2.HealthCheckRequest(service=""))
    assert check.status == health_pb2.HealthCheckResponse.SERVING
    service = health.Check(health_pb2.HealthCheckRequest(service="socialhub.v1.ProfileService"))
    assert service.status == health_pb2.HealthCheckResponse.SERVING
    profiles.SummarizeProfiles(profile_pb2.SummarizeProfilesRequest())
    created = profiles.CreateProfile(
        profile_pb2.CreateProfileRequest(
            profile=profile_pb2.Profile(
                display_name="Still Works", x=profile_pb2.PlatformPresence(handle="ok")
            )
        )
    )
    assert profiles.GetProfile(profile_pb2.GetProfileRequest(name=created.name)) == created
