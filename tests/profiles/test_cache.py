"""Cached reads are really cached, and never stale once a write has returned."""

from __future__ import annotations

import itertools
import random
import threading

import grpc
import pytest
import redis
from google.protobuf import field_mask_pb2
from socialhub.v1 import profile_pb2
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.harness import Backing, ServerThread
from tests.profiles.support import create

Presence = profile_pb2.PlatformPresence


def get(profiles: ProfileServiceStub, name: str) -> profile_pb2.Profile:
    return profiles.GetProfile(profile_pb2.GetProfileRequest(name=name))


MOST_FOLLOWED = profile_pb2.ProfileOrder(
    field=profile_pb2.PROFILE_SORT_FIELD_FOLLOWERS, descending=True
)


def top_names(profiles: ProfileServiceStub) -> list[str]:
    request = profile_pb2.ListProfilesRequest(page_size=15, order=MOST_FOLLOWED)
    return [p.name for p in profiles.ListProfiles(request).profiles]


def zones(profiles: ProfileServiceStub) -> dict[str, int]:
    summary = profiles.SummarizeProfiles(profile_pb2.SummarizeProfilesRequest())
    return {v.value: v.count for v in summary.zones}


def total(profiles: ProfileServiceStub, zone: str = "") -> int:
    request = profile_pb2.ListProfilesRequest(filter=profile_pb2.ProfileFilter(zone=zone))
    return profiles.ListProfiles(request).total_size


def update(
    profiles: ProfileServiceStub, name: str, paths: list[str], **fields: object
) -> profile_pb2.Profile:
    profile = profile_pb2.Profile(name=name, **fields)  # type: ignore[arg-type]
    return profiles.UpdateProfile(
        profile_pb2.UpdateProfileRequest(
            profile=profile, update_mask=field_mask_pb2.FieldMask(paths=paths)
        )
    )


def read_everything(profiles: ProfileServiceStub, names: list[str]) -> None:
    """Fill the cache: every kind of cached read."""
    for name in names:
        get(profiles, name)
    top_names(profiles)
    zones(profiles)
    total(profiles)
    total(profiles, "North")
    total(profiles, "South")


@pytest.fixture
def two(profiles: ProfileServiceStub) -> list[str]:
    return [
        create(profiles, "Small", zone="North", x=Presence(handle="s", followers=10)),
        create(profiles, "Large", zone="North", x=Presence(handle="l", followers=1000)),
    ]


def test_reads_are_served_from_redis(
    profiles: ProfileServiceStub, backing: Backing, server: ServerThread, two: list[str]
) -> None:
    assert server.app is not None
    assert server.app.cache is not None
    read_everything(profiles, two)
    with redis.Redis.from_url(backing.redis_url) as client:
        keys = {key.decode() for key in client.scan_iter(match="sh:*")}
        listings_version = client.get("sh:tag:profiles")
        profile_version = client.get("sh:tag:profile:1")
    # Entries are stored under "<key>@<current version of their tag>".
    assert listings_version is not None
    assert profile_version is not None
    assert {
        f"sh:profile:1@{profile_version.decode()}",
        f"sh:profiles:summary@{listings_version.decode()}",
    } <= keys, keys
    # The most followed (a page of its own) and the three totals' pages.
    assert sum(key.startswith("sh:profiles:page:") for key in keys) == 4, keys
    assert sum(key.startswith("sh:profile:2@") for key in keys) == 1, keys
    assert sum(key.startswith("sh:profiles:count:") for key in keys) == 3, keys

    hits = server.app.cache.stats.hits
    read_everything(profiles, two)
    # 7 profile entries, and each GetProfile's counters from feed's own entry (2 profiles).
    assert server.app.cache.stats.hits - hits == 9

    # A change made behind the service's back stays invisible: the answers come from Redis.
    with backing.sql() as conn:
        conn.execute("UPDATE profiles SET zone = 'Hidden', x_followers = 5000 WHERE id = 1")
    assert get(profiles, two[0]).zone == "North"
    assert top_names(profiles) == [two[1], two[0]]
    assert zones(profiles) == {"North": 2}
    assert total(profiles, "North") == 2


def test_update_is_visible_to_the_next_read(profiles: ProfileServiceStub, two: list[str]) -> None:
    small, large = two
    read_everything(profiles, two)
    update(profiles, small, ["zone", "x.followers"], zone="South", x=Presence(followers=5000))
    fetched = get(profiles, small)
    assert fetched.zone == "South"
    assert fetched.x.followers == 5000
    assert top_names(profiles) == [small, large]
    assert zones(profiles) == {"North": 1, "South": 1}
    assert total(profiles, "North") == 1
    assert total(profiles, "South") == 1
    assert total(profiles) == 2


def test_delete_is_visible_to_the_next_read(profiles: ProfileServiceStub, two: list[str]) -> None:
    small, large = two
    read_everything(profiles, two)
    profiles.DeleteProfile(profile_pb2.DeleteProfileRequest(name=large))
    with pytest.raises(grpc.RpcError) as caught:
        get(profiles, large)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert top_names(profiles) == [small]
    assert zones(profiles) == {"North": 1}
    assert total(profiles) == 1
    assert total(profiles, "North") == 1


def test_batch_delete_is_visible_to_the_next_read(
    profiles: ProfileServiceStub, two: list[str]
) -> None:
    third = create(profiles, "Third", zone="South")
    read_everything(profiles, [*two, third])
    response = profiles.BatchDeleteProfiles(
        profile_pb2.BatchDeleteProfilesRequest(
            names=[two[0], third, "profiles/999"], allow_missing=True
        )
    )
    assert sorted(response.deleted_names) == sorted([two[0], third])
    for name in (two[0], third):
        with pytest.raises(grpc.RpcError) as caught:
            get(profiles, name)
        assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert get(profiles, two[1]).display_name == "Large"
    assert top_names(profiles) == [two[1]]
    assert zones(profiles) == {"North": 1}
    assert total(profiles) == 1
    assert total(profiles, "South") == 0


def test_create_is_visible_to_the_next_read(profiles: ProfileServiceStub, two: list[str]) -> None:
    read_everything(profiles, two)
    # A miss is not cached either: the next id does not exist yet, then it does.
    with pytest.raises(grpc.RpcError) as caught:
        get(profiles, "profiles/3")
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    third = create(profiles, "Third", zone="South", x=Presence(handle="t", followers=10**6))
    assert third == "profiles/3"
    assert get(profiles, third).display_name == "Third"
    assert top_names(profiles) == [third, two[1], two[0]]
    assert zones(profiles) == {"North": 2, "South": 1}
    assert total(profiles) == 3
    assert total(profiles, "South") == 1


def test_failed_write_leaves_cached_reads_correct(
    profiles: ProfileServiceStub, two: list[str]
) -> None:
    read_everything(profiles, two)
    with pytest.raises(grpc.RpcError):
        update(profiles, two[0], ["x"], x=Presence())  # would remove the last handle
    assert get(profiles, two[0]).x.handle == "s"
    assert total(profiles) == 2


def test_reads_racing_updates_never_go_back_in_time(
    profiles: ProfileServiceStub, two: list[str]
) -> None:
    """Writers each own a profile; every read that starts after an update returned sees it."""
    writers = 6
    rounds = 25
    names = [
        create(profiles, f"Writer {i}", x=Presence(handle=f"w{i}", followers=0))
        for i in range(writers)
    ]
    # completed[name]: the followers value of the last update to `name` that has returned.
    completed = dict.fromkeys(names, 0)
    lock = threading.Lock()
    failures: list[str] = []
    done = threading.Event()

    def check(name: str) -> None:
        with lock:
            floor = completed[name]
        value = get(profiles, name).x.followers
        if value < floor:
            failures.append(f"{name}: read {value} after update to {floor} returned")

    def writer(name: str) -> None:
        try:
            for value in range(1, rounds + 1):
                update(profiles, name, ["x.followers"], x=Presence(followers=value))
                with lock:
                    completed[name] = value
                check(name)
                if total(profiles) != writers + 2:
                    failures.append("total_size changed without a create or delete")
        except Exception as error:  # pragma: no cover - reported below
            failures.append(repr(error))

    def reader(seed: int) -> None:
        rng = random.Random(seed)
        try:
            while not done.is_set():
                check(rng.choice(names))
                with lock:
                    floors = dict(completed)
                top = profiles.ListProfiles(
                    profile_pb2.ListProfilesRequest(
                        page_size=100,
                        order=profile_pb2.ProfileOrder(
                            field=profile_pb2.PROFILE_SORT_FIELD_FOLLOWERS,
                            platform=profile_pb2.PLATFORM_X,
                            descending=True,
                        ),
                    )
                )
                for profile in top.profiles:
                    if profile.name in floors and profile.x.followers < floors[profile.name]:
                        failures.append(f"top list older than a returned update of {profile.name}")
        except Exception as error:  # pragma: no cover - reported below
            failures.append(repr(error))

    threads = [threading.Thread(target=writer, args=(name,)) for name in names]
    readers = [threading.Thread(target=reader, args=(seed,)) for seed in range(4)]
    for thread in itertools.chain(threads, readers):
        thread.start()
    for thread in threads:
        thread.join(120)
    done.set()
    for thread in readers:
        thread.join(30)
    assert not failures, failures[:10]
    for name in names:
        assert get(profiles, name).x.followers == rounds
