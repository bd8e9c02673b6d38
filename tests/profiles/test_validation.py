"""Every request rule of ProfileService: INVALID_ARGUMENT naming the bad field."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from google.protobuf import field_mask_pb2
from socialhub.v1 import profile_pb2
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from server.profiles.seeding import seed_profiles
from tests.harness import ServerThread
from tests.helpers import new_profile
from tests.profiles.support import create, invalid

Presence = profile_pb2.PlatformPresence
MAX_INT64 = 2**63 - 1


def create_call(profiles: ProfileServiceStub, profile: profile_pb2.Profile) -> Callable[[], object]:
    return lambda: profiles.CreateProfile(profile_pb2.CreateProfileRequest(profile=profile))


def update_call(
    profiles: ProfileServiceStub, profile: profile_pb2.Profile, *paths: str
) -> Callable[[], object]:
    request = profile_pb2.UpdateProfileRequest(
        profile=profile, update_mask=field_mask_pb2.FieldMask(paths=list(paths))
    )
    return lambda: profiles.UpdateProfile(request)


# --- CreateProfile ---------------------------------------------------------------------------


@pytest.mark.parametrize("display_name", ["", "   ", "\t\n"])
def test_display_name_is_required(profiles: ProfileServiceStub, display_name: str) -> None:
    violations = invalid(create_call(profiles, new_profile(display_name)))
    assert "profile.display_name" in violations


def test_at_least_one_platform_handle_is_required(profiles: ProfileServiceStub) -> None:
    violations = invalid(create_call(profiles, profile_pb2.Profile(display_name="No Handles")))
    assert "profile" in violations


def test_presence_without_handle_is_rejected(profiles: ProfileServiceStub) -> None:
    profile = new_profile(x=Presence(handle="ada"), facebook=Presence(followers=5, active=True))
    violations = invalid(create_call(profiles, profile))
    assert set(violations) == {"profile.facebook.handle"}


@pytest.mark.parametrize("platform", ["facebook", "x", "instagram", "youtube", "linkedin"])
def test_followers_must_not_be_negative(profiles: ProfileServiceStub, platform: str) -> None:
    profile = profile_pb2.Profile(display_name="Ada")
    getattr(profile, platform).CopyFrom(Presence(handle="ada", followers=-1))
    violations = invalid(create_call(profiles, profile))
    assert set(violations) == {f"profile.{platform}.followers"}


def test_total_followers_must_fit_in_int64(profiles: ProfileServiceStub) -> None:
    profile = new_profile(
        x=Presence(handle="a", followers=MAX_INT64), facebook=Presence(handle="a", followers=1)
    )
    violations = invalid(create_call(profiles, profile))
    assert "profile" in violations
    # One platform at the maximum on its own is fine.
    create(profiles, x=Presence(handle="a", followers=MAX_INT64))


@pytest.mark.parametrize(
    "email", ["not-an-email", "a@", "@example.org", "a b@example.org", "a@@example.org"]
)
def test_email_must_be_an_address(profiles: ProfileServiceStub, email: str) -> None:
    violations = invalid(create_call(profiles, new_profile(email=email)))
    assert set(violations) == {"profile.email"}


def test_email_with_many_unsafe_characters_is_one_short_error(
    profiles: ProfileServiceStub,
) -> None:
    # email_validator names every unsafe character in its message.
    email = "".join(chr(0xE000 + i) for i in range(3000)) + "@example.org"
    violations = invalid(create_call(profiles, new_profile(email=email)))
    assert set(violations) == {"profile.email"}


def _long_email(length: int) -> str:
    """A syntactically valid address of exactly `length` characters (length >= 200)."""
    domain_length = length - 65
    labels = ["b" * 63, "c" * 63, "d" * (domain_length - 63 - 63 - 6), "org"]
    email = "a" * 64 + "@" + ".".join(labels)
    assert len(email) == length
    return email


def _field_value(field: str, length: int) -> str:
    return _long_email(length) if field == "email" else "z" * length


LIMITS = [
    ("display_name", 200),
    ("username", 100),
    ("designation", 100),
    ("zone", 100),
    ("party_district", 100),
    ("constituency", 100),
    ("email", 254),
    ("phone", 32),
    ("bio", 2000),
    ("x.handle", 100),
]


def _profile_with(field: str, value: str) -> profile_pb2.Profile:
    if field == "x.handle":
        return new_profile(x=Presence(handle=value))
    if field == "display_name":
        return new_profile(value)
    return new_profile(**{field: value})


@pytest.mark.parametrize(("field", "limit"), LIMITS)
def test_text_at_its_column_length_is_stored(
    profiles: ProfileServiceStub, field: str, limit: int
) -> None:
    value = _field_value(field, limit)
    created = profiles.CreateProfile(
        profile_pb2.CreateProfileRequest(profile=_profile_with(field, value))
    )
    fetched = profiles.GetProfile(profile_pb2.GetProfileRequest(name=created.name))
    stored = fetched.x.handle if field == "x.handle" else getattr(fetched, field)
    assert stored == value


@pytest.mark.parametrize(("field", "limit"), LIMITS)
def test_text_over_its_column_length_is_rejected(
    profiles: ProfileServiceStub, field: str, limit: int
) -> None:
    value = _field_value(field, limit + 1) if field != "email" else "a" * 250 + "@x.org"
    violations = invalid(create_call(profiles, _profile_with(field, value)))
    assert f"profile.{field}" in violations


@pytest.mark.parametrize(("field", "limit"), LIMITS)
def test_text_over_its_column_length_is_rejected_on_update(
    profiles: ProfileServiceStub, field: str, limit: int
) -> None:
    name = create(profiles)
    profile = _profile_with(field, "z" * (limit + 1))
    profile.name = name
    violations = invalid(update_call(profiles, profile, field))
    assert f"profile.{field}" in violations


@pytest.mark.parametrize(
    "date_of_birth",
    ["1990-13-01", "1990-02-30", "12/10/1990", "1990-1-1", "19901210", "yesterday", "2999-01-01"],
)
def test_date_of_birth_must_be_an_iso_date_in_the_past(
    profiles: ProfileServiceStub, date_of_birth: str
) -> None:
    violations = invalid(create_call(profiles, new_profile(date_of_birth=date_of_birth)))
    assert set(violations) == {"profile.date_of_birth"}


@pytest.mark.parametrize(
    "field", ["display_name", "username", "zone", "bio", "phone", "email", "x.handle"]
)
def test_nul_characters_are_rejected(profiles: ProfileServiceStub, field: str) -> None:
    value = "ada\x00@example.org" if field == "email" else "ada\x00"
    violations = invalid(create_call(profiles, _profile_with(field, value)))
    assert f"profile.{field}" in violations


def test_request_id_must_be_a_uuid(profiles: ProfileServiceStub) -> None:
    request = profile_pb2.CreateProfileRequest(profile=new_profile(), request_id="not-a-uuid")
    assert "request_id" in invalid(lambda: profiles.CreateProfile(request))


def test_all_bad_fields_are_reported_at_once(profiles: ProfileServiceStub) -> None:
    profile = profile_pb2.Profile(email="nope", date_of_birth="nope", bio="\x00")
    violations = invalid(create_call(profiles, profile))
    assert {
        "profile",
        "profile.display_name",
        "profile.email",
        "profile.date_of_birth",
        "profile.bio",
    } <= set(violations)


# --- UpdateProfile ---------------------------------------------------------------------------


def test_update_mask_must_not_be_empty(profiles: ProfileServiceStub) -> None:
    name = create(profiles)
    profile = profile_pb2.Profile(name=name, bio="new")
    assert set(invalid(update_call(profiles, profile))) == {"update_mask"}


@pytest.mark.parametrize(
    "path",
    [
        "nope",
        "x.nope",
        "bio.length",
        "facebook.handle.extra",
        "",
        "*.bio",
        "profile",
        "bio.",
        "x.",
        "date_of_birth.",
        ".bio",
        "Bio",
        " bio",
    ],
)
def test_update_mask_unknown_path_is_rejected(profiles: ProfileServiceStub, path: str) -> None:
    name = create(profiles)
    profile = profile_pb2.Profile(name=name, bio="new")
    assert set(invalid(update_call(profiles, profile, path))) == {"update_mask"}


@pytest.mark.parametrize(
    "path",
    [
        "name",
        "create_time",
        "update_time",
        "total_followers",
        "followers_count",
        "following_count",
        "posts_count",
        "create_time.seconds",
        "name.",
    ],
)
def test_update_mask_output_only_path_is_rejected(profiles: ProfileServiceStub, path: str) -> None:
    name = create(profiles)
    profile = profile_pb2.Profile(name=name, total_followers=5)
    violations = invalid(update_call(profiles, profile, path))
    assert set(violations) == {"update_mask"}
    assert "output only" in violations["update_mask"]


@pytest.mark.parametrize("path", ["name." + "x" * 100_000, "y" * 100_000, "x." + "z" * 100_000])
def test_huge_mask_path_is_rejected_with_a_short_error(
    profiles: ProfileServiceStub, path: str
) -> None:
    """Error details travel in trailers, which gRPC caps at a few KiB."""
    name = create(profiles)
    violations = invalid(update_call(profiles, profile_pb2.Profile(name=name), path))
    assert set(violations) == {"update_mask"}
    assert len(violations["update_mask"]) < 200


def test_many_bad_mask_paths_are_one_short_error(profiles: ProfileServiceStub) -> None:
    name = create(profiles)
    paths = [f"bogus_{i}_" + "p" * 90 for i in range(1000)]
    violations = invalid(update_call(profiles, profile_pb2.Profile(name=name), *paths))
    assert set(violations) == {"update_mask"}


@pytest.mark.parametrize(
    ("profile_fields", "paths"),
    [
        ({"x": Presence()}, ("x",)),
        ({"x": Presence(followers=3)}, ("x.handle",)),
        ({}, ("*",)),
    ],
)
def test_update_must_not_remove_the_last_handle(
    profiles: ProfileServiceStub, profile_fields: dict[str, Presence], paths: tuple[str, ...]
) -> None:
    name = create(profiles)
    profile = profile_pb2.Profile(name=name, display_name="Ada")
    for platform, presence in profile_fields.items():
        getattr(profile, platform).CopyFrom(presence)
    violations = invalid(update_call(profiles, profile, *paths))
    assert "update_mask" in violations
    fetched = profiles.GetProfile(profile_pb2.GetProfileRequest(name=name))
    assert fetched.x.handle == "ada"


def test_update_may_move_the_handle_to_another_platform(profiles: ProfileServiceStub) -> None:
    name = create(profiles)
    profile = profile_pb2.Profile(name=name, facebook=Presence(handle="ada.fb"))
    updated = profiles.UpdateProfile(
        profile_pb2.UpdateProfileRequest(
            profile=profile, update_mask=field_mask_pb2.FieldMask(paths=["x", "facebook"])
        )
    )
    assert not updated.HasField("x")
    assert updated.facebook.handle == "ada.fb"


def test_update_rejects_invalid_values(profiles: ProfileServiceStub) -> None:
    name = create(profiles)
    profile = profile_pb2.Profile(
        name=name,
        display_name=" ",
        email="nope",
        date_of_birth="1990-02-30",
        x=Presence(followers=-4),
    )
    violations = invalid(
        update_call(profiles, profile, "display_name", "email", "date_of_birth", "x.followers")
    )
    assert set(violations) == {
        "profile.display_name",
        "profile.email",
        "profile.date_of_birth",
        "profile.x.followers",
    }


def test_update_total_followers_must_fit_in_int64(profiles: ProfileServiceStub) -> None:
    name = create(profiles, x=Presence(handle="a", followers=MAX_INT64))
    profile = profile_pb2.Profile(name=name, facebook=Presence(handle="b", followers=1))
    violations = invalid(update_call(profiles, profile, "facebook"))
    assert "profile" in violations


# --- Resource names --------------------------------------------------------------------------

BAD_NAMES = [
    "",
    "profiles/abc",
    "users/1",
    "profiles/0",
    "profiles/-1",
    "profiles/",
    "profiles/1/extra",
    "profiles/ 1",
    "profiles/1.0",
    "profiles/\u0663",  # ARABIC-INDIC DIGIT THREE: a digit, but not an id
    f"profiles/{2**63}",
    "profiles/" + "0" * 5000 + "1",  # past int()'s 4300-digit limit
    "profiles/" + "9" * 20,
    "PROFILES/1",
]


@pytest.mark.parametrize("bad_name", BAD_NAMES)
def test_bad_resource_names_are_rejected(profiles: ProfileServiceStub, bad_name: str) -> None:
    calls: list[tuple[str, Callable[[], object]]] = [
        ("name", lambda: profiles.GetProfile(profile_pb2.GetProfileRequest(name=bad_name))),
        ("name", lambda: profiles.DeleteProfile(profile_pb2.DeleteProfileRequest(name=bad_name))),
        (
            "profile.name",
            update_call(profiles, profile_pb2.Profile(name=bad_name, bio="b"), "bio"),
        ),
        (
            "names[1]",
            lambda: profiles.BatchDeleteProfiles(
                profile_pb2.BatchDeleteProfilesRequest(names=["profiles/1", bad_name])
            ),
        ),
        (
            "names[1]",
            lambda: profiles.BatchGetProfiles(
                profile_pb2.BatchGetProfilesRequest(names=["profiles/1", bad_name])
            ),
        ),
    ]
    for field, call in calls:
        assert set(invalid(call)) == {field}


def test_batch_delete_needs_between_one_and_1000_names(profiles: ProfileServiceStub) -> None:
    empty = profile_pb2.BatchDeleteProfilesRequest()
    assert set(invalid(lambda: profiles.BatchDeleteProfiles(empty))) == {"names"}
    too_many = profile_pb2.BatchDeleteProfilesRequest(
        names=[f"profiles/{i}" for i in range(1, 1002)], allow_missing=True
    )
    assert set(invalid(lambda: profiles.BatchDeleteProfiles(too_many))) == {"names"}
    most = profile_pb2.BatchDeleteProfilesRequest(
        names=[f"profiles/{i}" for i in range(1, 1001)], allow_missing=True
    )
    assert list(profiles.BatchDeleteProfiles(most).deleted_names) == []


def test_batch_get_needs_between_one_and_100_names(profiles: ProfileServiceStub) -> None:
    empty = profile_pb2.BatchGetProfilesRequest()
    assert set(invalid(lambda: profiles.BatchGetProfiles(empty))) == {"names"}
    name = create(profiles)
    too_many = profile_pb2.BatchGetProfilesRequest(names=[name] * 101)
    assert set(invalid(lambda: profiles.BatchGetProfiles(too_many))) == {"names"}
    most = profile_pb2.BatchGetProfilesRequest(names=[name] * 100)
    assert [p.name for p in profiles.BatchGetProfiles(most).profiles] == [name] * 100


def test_required_messages_must_be_present(profiles: ProfileServiceStub) -> None:
    create_request = profile_pb2.CreateProfileRequest()
    assert set(invalid(lambda: profiles.CreateProfile(create_request))) == {"profile"}
    update_request = profile_pb2.UpdateProfileRequest(
        update_mask=field_mask_pb2.FieldMask(paths=["bio"])
    )
    assert set(invalid(lambda: profiles.UpdateProfile(update_request))) == {"profile"}


def test_create_ignores_name_and_output_only_fields(profiles: ProfileServiceStub) -> None:
    request_id = "0b9c4a7e-2f51-4a53-8c36-5a3f8f0d6e11"
    plain = new_profile("Output Only")
    first = profiles.CreateProfile(
        profile_pb2.CreateProfileRequest(profile=plain, request_id=request_id)
    )
    echoed = profile_pb2.Profile()
    echoed.CopyFrom(plain)
    echoed.name = "profiles/999999"
    echoed.total_followers = 123456
    echoed.followers_count = 7
    echoed.create_time.FromSeconds(1)
    # A retry carrying server-set values is the same request: it replays the first answer.
    retried = profiles.CreateProfile(
        profile_pb2.CreateProfileRequest(profile=echoed, request_id=request_id)
    )
    assert retried == first
    fresh = profiles.CreateProfile(profile_pb2.CreateProfileRequest(profile=echoed))
    assert fresh.name != "profiles/999999"
    assert fresh.total_followers == plain.x.followers
    assert fresh.followers_count == 0
    assert fresh.create_time.seconds > 1


# --- Listing and search ----------------------------------------------------------------------


def test_negative_page_size_is_rejected(profiles: ProfileServiceStub) -> None:
    calls: list[Callable[[], object]] = [
        lambda: profiles.ListProfiles(profile_pb2.ListProfilesRequest(page_size=-1)),
        lambda: profiles.SearchProfiles(
            profile_pb2.SearchProfilesRequest(query="ada", page_size=-(2**31))
        ),
    ]
    for call in calls:
        assert set(invalid(call)) == {"page_size"}


@pytest.mark.parametrize("value", [99, -1, 6])
def test_unknown_enum_values_are_rejected(profiles: ProfileServiceStub, value: int) -> None:
    cases: list[tuple[str, Callable[[], object]]] = [
        (
            "order.field",
            lambda: profiles.ListProfiles(
                profile_pb2.ListProfilesRequest(order=profile_pb2.ProfileOrder(field=value))  # type: ignore[arg-type]
            ),
        ),
        (
            "order.platform",
            lambda: profiles.ListProfiles(
                profile_pb2.ListProfilesRequest(
                    order=profile_pb2.ProfileOrder(
                        field=profile_pb2.PROFILE_SORT_FIELD_FOLLOWERS,
                        platform=value,  # type: ignore[arg-type]
                    )
                )
            ),
        ),
        (
            "filter.platform_statuses[0].platform",
            lambda: profiles.SearchProfiles(
                profile_pb2.SearchProfilesRequest(
                    query="ada",
                    filter=profile_pb2.ProfileFilter(
                        platform_statuses=[profile_pb2.PlatformStatusFilter(platform=value)]  # type: ignore[arg-type]
                    ),
                )
            ),
        ),
    ]
    for field, call in cases:
        assert set(invalid(call)) == {field}


def test_many_platform_status_filters_are_one_short_error(profiles: ProfileServiceStub) -> None:
    statuses = [profile_pb2.PlatformStatusFilter(platform=99) for _ in range(2000)]  # type: ignore[arg-type]
    request = profile_pb2.ListProfilesRequest(
        filter=profile_pb2.ProfileFilter(platform_statuses=statuses)
    )
    assert set(invalid(lambda: profiles.ListProfiles(request))) == {"filter.platform_statuses"}
    search = profile_pb2.SearchProfilesRequest(
        query="ada", filter=profile_pb2.ProfileFilter(platform_statuses=statuses)
    )
    assert set(invalid(lambda: profiles.SearchProfiles(search))) == {"filter.platform_statuses"}


def test_platform_status_filter_needs_a_platform(profiles: ProfileServiceStub) -> None:
    request = profile_pb2.ListProfilesRequest(
        filter=profile_pb2.ProfileFilter(
            platform_statuses=[profile_pb2.PlatformStatusFilter(active=True)]
        )
    )
    violations = invalid(lambda: profiles.ListProfiles(request))
    assert set(violations) == {"filter.platform_statuses[0].platform"}


def test_order_platform_needs_the_followers_field(profiles: ProfileServiceStub) -> None:
    request = profile_pb2.ListProfilesRequest(
        order=profile_pb2.ProfileOrder(
            field=profile_pb2.PROFILE_SORT_FIELD_CREATE_TIME, platform=profile_pb2.PLATFORM_X
        )
    )
    assert set(invalid(lambda: profiles.ListProfiles(request))) == {"order.platform"}


@pytest.mark.parametrize("column", ["zone", "party_district", "constituency", "designation"])
@pytest.mark.parametrize("value", ["z" * 101, "North\x00"])
def test_filter_values_are_checked(profiles: ProfileServiceStub, column: str, value: str) -> None:
    profile_filter = profile_pb2.ProfileFilter()
    setattr(profile_filter, column, value)
    request = profile_pb2.ListProfilesRequest(filter=profile_filter)
    assert set(invalid(lambda: profiles.ListProfiles(request))) == {f"filter.{column}"}


@pytest.mark.parametrize("query", ["", "   ", "q" * 201, "ada\x00"])
def test_search_query_is_required_and_bounded(profiles: ProfileServiceStub, query: str) -> None:
    request = profile_pb2.SearchProfilesRequest(query=query)
    assert set(invalid(lambda: profiles.SearchProfiles(request))) == {"query"}


def test_huge_page_size_returns_everything(profiles: ProfileServiceStub) -> None:
    for index in range(3):
        create(profiles, f"Person {index}")
    response = profiles.ListProfiles(profile_pb2.ListProfilesRequest(page_size=10**6))
    assert len(response.profiles) == 3
    assert not response.next_page_token


def test_page_size_above_the_maximum_is_clamped(
    profiles: ProfileServiceStub, server: ServerThread
) -> None:
    assert server.app is not None
    assert server.app.engine is not None
    # Seeding writes behind the service's back, so it comes before any (cached) read.
    server.run(seed_profiles(server.app.engine, 520, progress=False))
    for page_size in (501, 2**31 - 1):
        response = profiles.ListProfiles(profile_pb2.ListProfilesRequest(page_size=page_size))
        assert len(response.profiles) == 500
        assert response.next_page_token
        assert response.total_size == 520
    search = profiles.SearchProfiles(
        profile_pb2.SearchProfilesRequest(query="district", page_size=2**31 - 1)
    )
    assert len(search.profiles) == 500
    assert search.next_page_token


def test_zero_page_size_uses_the_default(
    profiles: ProfileServiceStub, server: ServerThread
) -> None:
    assert server.app is not None
    assert server.app.engine is not None
    server.run(seed_profiles(server.app.engine, 60, progress=False))
    assert len(profiles.ListProfiles(profile_pb2.ListProfilesRequest()).profiles) == 50


# --- Page tokens -----------------------------------------------------------------------------


def _first_token(profiles: ProfileServiceStub, request: profile_pb2.ListProfilesRequest) -> str:
    for index in range(3):
        create(profiles, f"Person {index}", zone="North")
    token = profiles.ListProfiles(request).next_page_token
    assert token
    return token


def _flip(text: str, index: int) -> str:
    replacement = "A" if text[index] != "A" else "B"
    return text[:index] + replacement + text[index + 1 :]


def test_tampered_page_token_is_rejected(profiles: ProfileServiceStub) -> None:
    request = profile_pb2.ListProfilesRequest(page_size=1)
    token = _first_token(profiles, request)
    payload_length = token.index(".")
    tampered = [
        _flip(token, 0),
        _flip(token, payload_length // 2),
        _flip(token, payload_length + 3),
        token[:-2],
        token + "AA",
        token.replace(".", ""),
        token + ".x",
        "garbage",
        "!!!.???",
        "\u00e9\u00e9.\u00e9",
    ]
    for bad in tampered:
        request.page_token = bad
        violations = invalid(lambda: profiles.ListProfiles(request))
        assert set(violations) == {"page_token"}, bad


@pytest.mark.parametrize(
    "other",
    [
        profile_pb2.ListProfilesRequest(
            page_size=1, filter=profile_pb2.ProfileFilter(zone="South")
        ),
        profile_pb2.ListProfilesRequest(
            page_size=1, order=profile_pb2.ProfileOrder(descending=True)
        ),
        profile_pb2.ListProfilesRequest(
            page_size=1,
            order=profile_pb2.ProfileOrder(field=profile_pb2.PROFILE_SORT_FIELD_FOLLOWERS),
        ),
        profile_pb2.ListProfilesRequest(
            page_size=1,
            filter=profile_pb2.ProfileFilter(
                zone="North",
                platform_statuses=[
                    profile_pb2.PlatformStatusFilter(platform=profile_pb2.PLATFORM_X, active=True)
                ],
            ),
        ),
    ],
)
def test_page_token_for_another_filter_or_order_is_rejected(
    profiles: ProfileServiceStub, other: profile_pb2.ListProfilesRequest
) -> None:
    token = _first_token(
        profiles,
        profile_pb2.ListProfilesRequest(
            page_size=1, filter=profile_pb2.ProfileFilter(zone="North")
        ),
    )
    other.page_token = token
    assert set(invalid(lambda: profiles.ListProfiles(other))) == {"page_token"}


def test_list_page_token_is_rejected_by_search(profiles: ProfileServiceStub) -> None:
    token = _first_token(profiles, profile_pb2.ListProfilesRequest(page_size=1))
    request = profile_pb2.SearchProfilesRequest(query="Person", page_token=token)
    assert set(invalid(lambda: profiles.SearchProfiles(request))) == {"page_token"}
    search = profile_pb2.SearchProfilesRequest(query="Person", page_size=1)
    search_token = profiles.SearchProfiles(search).next_page_token
    assert search_token
    other_query = profile_pb2.SearchProfilesRequest(query="North", page_token=search_token)
    assert set(invalid(lambda: profiles.SearchProfiles(other_query))) == {"page_token"}


def test_page_token_from_another_server_secret_is_rejected(profiles: ProfileServiceStub) -> None:
    from server.core.pagination import PageTokens, fingerprint

    _first_token(profiles, profile_pb2.ListProfilesRequest(page_size=1))
    forged = PageTokens("not-the-server-secret").encode(
        ["Person 0", 1],
        fingerprint("ListProfiles", profile_pb2.ProfileFilter(), profile_pb2.ProfileOrder()),
    )
    request = profile_pb2.ListProfilesRequest(page_size=1, page_token=forged)
    assert set(invalid(lambda: profiles.ListProfiles(request))) == {"page_token"}


@pytest.mark.parametrize("query", ["-" * 200, "- " * 100, "ada " + "-" * 60])
def test_search_with_too_many_operators_in_a_row_is_invalid_not_internal(
    profiles: ProfileServiceStub, query: str
) -> None:
    # Found by the fuzz test: PostgreSQL fails such a tsquery with "stack too small".
    violations = invalid(
        lambda: profiles.SearchProfiles(profile_pb2.SearchProfilesRequest(query=query))
    )
    assert "query" in violations


def test_search_with_a_few_negations_still_works(profiles: ProfileServiceStub) -> None:
    create(profiles, "Ada Lovelace")
    create(profiles, "Ada Byron")
    found = profiles.SearchProfiles(profile_pb2.SearchProfilesRequest(query="ada -byron"))
    assert [p.display_name for p in found.profiles] == ["Ada Lovelace"]
