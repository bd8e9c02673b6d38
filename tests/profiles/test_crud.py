from __future__ import annotations

import uuid
from collections.abc import Callable

import grpc
import pytest
from google.protobuf import field_mask_pb2
from socialhub.v1 import profile_pb2
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.harness import Backing
from tests.helpers import error_reason, field_violations, new_profile


def create(profiles: ProfileServiceStub, **fields: object) -> profile_pb2.Profile:
    return profiles.CreateProfile(profile_pb2.CreateProfileRequest(profile=new_profile(**fields)))  # type: ignore[arg-type]


def test_create_then_get_returns_every_field(profiles: ProfileServiceStub) -> None:
    created = create(
        profiles,
        username="ada",
        designation="Mayor",
        zone="North",
        party_district="North District 1",
        constituency="Ward 3",
        date_of_birth="1990-12-10",
        email="ada@example.org",
        phone="+44 20 7946 0000",
        bio="Counts things.",
        facebook=profile_pb2.PlatformPresence(handle="ada.fb", followers=100, verified=True),
        linkedin=profile_pb2.PlatformPresence(handle="ada-li", followers=7, active=True),
    )
    assert created.name.startswith("profiles/")
    assert created.total_followers == 107
    assert created.create_time.seconds > 0
    fetched = profiles.GetProfile(profile_pb2.GetProfileRequest(name=created.name))
    assert fetched == created
    assert fetched.facebook.verified
    assert not fetched.facebook.active
    assert not fetched.HasField("x")


def test_create_with_same_request_id_returns_the_first_profile(
    profiles: ProfileServiceStub,
) -> None:
    request = profile_pb2.CreateProfileRequest(profile=new_profile(), request_id=str(uuid.uuid4()))
    first = profiles.CreateProfile(request)
    again = profiles.CreateProfile(request)
    assert again == first
    listed = profiles.ListProfiles(profile_pb2.ListProfilesRequest())
    assert listed.total_size == 1


def test_request_id_reused_for_another_profile_is_rejected(profiles: ProfileServiceStub) -> None:
    request_id = str(uuid.uuid4())
    profiles.CreateProfile(
        profile_pb2.CreateProfileRequest(profile=new_profile("One"), request_id=request_id)
    )
    with pytest.raises(grpc.RpcError) as caught:
        profiles.CreateProfile(
            profile_pb2.CreateProfileRequest(profile=new_profile("Two"), request_id=request_id)
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "request_id" in field_violations(caught.value)


def test_duplicate_username_is_already_exists(profiles: ProfileServiceStub) -> None:
    create(profiles, username="taken")
    with pytest.raises(grpc.RpcError) as caught:
        create(profiles, display_name="Someone Else", username="taken")
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_reason(caught.value) == "USERNAME_TAKEN"


def test_update_changes_only_masked_fields(profiles: ProfileServiceStub) -> None:
    created = create(profiles, bio="old bio", zone="North")
    updated = profiles.UpdateProfile(
        profile_pb2.UpdateProfileRequest(
            profile=profile_pb2.Profile(
                name=created.name,
                bio="new bio",
                zone="ignored because not in the mask",
                x=profile_pb2.PlatformPresence(followers=99),
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["bio", "x.followers"]),
        )
    )
    assert updated.bio == "new bio"
    assert updated.zone == "North"
    assert updated.x.handle == "ada"
    assert updated.x.followers == 99
    assert updated.total_followers == 99
    assert updated.update_time.ToDatetime() >= created.update_time.ToDatetime()


def test_update_to_taken_username_is_already_exists(profiles: ProfileServiceStub) -> None:
    create(profiles, username="first")
    second = create(profiles, username="second")
    with pytest.raises(grpc.RpcError) as caught:
        profiles.UpdateProfile(
            profile_pb2.UpdateProfileRequest(
                profile=profile_pb2.Profile(name=second.name, username="first"),
                update_mask=field_mask_pb2.FieldMask(paths=["username"]),
            )
        )
    assert caught.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert error_reason(caught.value) == "USERNAME_TAKEN"


def test_delete_then_get_is_not_found(profiles: ProfileServiceStub) -> None:
    created = create(profiles)
    profiles.GetProfile(profile_pb2.GetProfileRequest(name=created.name))  # now cached
    profiles.DeleteProfile(profile_pb2.DeleteProfileRequest(name=created.name))
    for call in (
        lambda: profiles.GetProfile(profile_pb2.GetProfileRequest(name=created.name)),
        lambda: profiles.DeleteProfile(profile_pb2.DeleteProfileRequest(name=created.name)),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND


def test_missing_profile_is_not_found_everywhere(profiles: ProfileServiceStub) -> None:
    missing = "profiles/987654"
    calls: list[Callable[[], object]] = [
        lambda: profiles.GetProfile(profile_pb2.GetProfileRequest(name=missing)),
        lambda: profiles.DeleteProfile(profile_pb2.DeleteProfileRequest(name=missing)),
        lambda: profiles.UpdateProfile(
            profile_pb2.UpdateProfileRequest(
                profile=profile_pb2.Profile(name=missing, bio="x"),
                update_mask=field_mask_pb2.FieldMask(paths=["bio"]),
            )
        ),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as caught:
            call()
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
        assert error_reason(caught.value) == "PROFILE_NOT_FOUND"


def test_batch_delete_is_all_or_nothing(profiles: ProfileServiceStub) -> None:
    kept = [create(profiles, display_name=f"P{i}").name for i in range(3)]
    with pytest.raises(grpc.RpcError) as caught:
        profiles.BatchDeleteProfiles(
            profile_pb2.BatchDeleteProfilesRequest(names=[*kept, "profiles/999999"])
        )
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert profiles.ListProfiles(profile_pb2.ListProfilesRequest()).total_size == 3

    response = profiles.BatchDeleteProfiles(
        profile_pb2.BatchDeleteProfilesRequest(names=[*kept, "profiles/999999"], allow_missing=True)
    )
    assert sorted(response.deleted_names) == sorted(kept)
    assert profiles.ListProfiles(profile_pb2.ListProfilesRequest()).total_size == 0


def test_batch_get_answers_in_request_order_with_counters(
    profiles: ProfileServiceStub, backing: Backing
) -> None:
    names = [create(profiles, display_name=f"P{i}").name for i in range(4)]
    profiles.GetProfile(profile_pb2.GetProfileRequest(name=names[2]))  # one cached, three not
    with backing.sql() as conn:
        # FeedService's counters, written behind its back: the batch must overlay them.
        conn.execute(
            "INSERT INTO profile_counters (profile_id, followers_count, following_count,"
            " posts_count) VALUES (%s, 5, 6, 7)",
            (int(names[1].rpartition("/")[2]),),
        )
    wanted = [names[3], names[1], names[2], names[1], names[0]]
    response = profiles.BatchGetProfiles(profile_pb2.BatchGetProfilesRequest(names=wanted))
    assert [p.name for p in response.profiles] == wanted
    for profile in response.profiles:
        assert profile == profiles.GetProfile(profile_pb2.GetProfileRequest(name=profile.name))
    counted = response.profiles[1]
    assert (counted.followers_count, counted.following_count, counted.posts_count) == (5, 6, 7)
    assert response.profiles[0].followers_count == 0


def test_batch_get_is_all_or_nothing_naming_the_first_missing(
    profiles: ProfileServiceStub,
) -> None:
    name = create(profiles).name
    request = profile_pb2.BatchGetProfilesRequest(
        names=[name, "profiles/999998", name, "profiles/999997"]
    )
    with pytest.raises(grpc.RpcError) as caught:
        profiles.BatchGetProfiles(request)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert error_reason(caught.value) == "PROFILE_NOT_FOUND"
    assert "profiles/999998" in (caught.value.details() or "")
    assert "profiles/999997" not in (caught.value.details() or "")


def test_batch_get_sees_updates_and_deletes(profiles: ProfileServiceStub) -> None:
    first, second = (create(profiles, display_name=f"P{i}").name for i in range(2))
    request = profile_pb2.BatchGetProfilesRequest(names=[first, second])
    profiles.BatchGetProfiles(request)  # both cached now
    profiles.UpdateProfile(
        profile_pb2.UpdateProfileRequest(
            profile=profile_pb2.Profile(name=second, bio="changed"),
            update_mask=field_mask_pb2.FieldMask(paths=["bio"]),
        )
    )
    assert profiles.BatchGetProfiles(request).profiles[1].bio == "changed"
    profiles.DeleteProfile(profile_pb2.DeleteProfileRequest(name=first))
    with pytest.raises(grpc.RpcError) as caught:
        profiles.BatchGetProfiles(request)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
