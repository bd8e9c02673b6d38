from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from socialhub.v1 import profile_pb2
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from server.core.cache import Cache
from tests.harness import Backing, Isolated, ServerThread, test_settings
from tests.helpers import new_profile


def _cache(server: ServerThread) -> Cache:
    assert server.app is not None
    assert server.app.cache is not None
    return server.app.cache


def test_concurrent_misses_on_one_key_load_once(server: ServerThread) -> None:
    cache = _cache(server)
    loads = 0

    async def slow_load() -> bytes:
        nonlocal loads
        loads += 1
        await asyncio.sleep(0.2)
        return b"value"

    async def twenty_readers() -> list[bytes]:
        return await asyncio.gather(
            *(
                cache.read_through("test:single", tag="test", ttl_s=60, load=slow_load)
                for _ in range(20)
            )
        )

    assert server.run(twenty_readers()) == [b"value"] * 20
    assert loads == 1
    # Now it is cached: no further load.
    assert (
        server.run(cache.read_through("test:single", tag="test", ttl_s=60, load=slow_load))
        == b"value"
    )
    assert loads == 1


def test_a_reader_that_raced_a_write_never_caches_stale_data(server: ServerThread) -> None:
    """A load that started before an invalidation stores under the old version only."""
    cache = _cache(server)
    version = {"value": b"old"}
    started = asyncio.Event()

    async def slow_old_load() -> bytes:
        value = version["value"]
        started.set()
        await asyncio.sleep(0.2)
        return value

    async def race() -> bytes:
        reader = asyncio.create_task(
            cache.read_through("test:race", tag="race", ttl_s=60, load=slow_old_load)
        )
        await started.wait()
        version["value"] = b"new"  # the "write" commits...
        await cache.invalidate("race")  # ...then invalidates, while the reader is still loading
        assert await reader == b"old"

        async def fresh_load() -> bytes:
            return version["value"]

        return await cache.read_through("test:race", tag="race", ttl_s=60, load=fresh_load)

    assert server.run(race()) == b"new"


@pytest.mark.slow
def test_redis_outage_degrades_to_the_database(isolated: Isolated) -> None:
    backing, server = isolated.backing, isolated.server
    profiles = ProfileServiceStub(isolated.channel)
    health = health_pb2_grpc.HealthStub(isolated.channel)
    created = profiles.CreateProfile(profile_pb2.CreateProfileRequest(profile=new_profile()))
    get = profile_pb2.GetProfileRequest(name=created.name)
    profiles.GetProfile(get)
    errors_before = _cache(server).stats.errors

    backing.redis.stop()
    try:
        for _ in range(5):
            assert profiles.GetProfile(get).display_name == "Ada Lovelace"
        updated = profiles.UpdateProfile(
            profile_pb2.UpdateProfileRequest(
                profile=profile_pb2.Profile(name=created.name, bio="written during the outage"),
                update_mask=field_mask_pb2.FieldMask(paths=["bio"]),
            )
        )
        assert updated.bio == "written during the outage"
        assert profiles.GetProfile(get).bio == "written during the outage"
        batch = profile_pb2.BatchGetProfilesRequest(names=[created.name])
        assert len(profiles.BatchGetProfiles(batch).profiles) == 1
        assert profiles.SummarizeProfiles(profile_pb2.SummarizeProfilesRequest()) is not None
        status = health.Check(health_pb2.HealthCheckRequest(service="socialhub.v1.ProfileService"))
        assert status.status == health_pb2.HealthCheckResponse.SERVING
        assert _cache(server).stats.errors > errors_before
    finally:
        backing.redis.start()

    time.sleep(0.3)  # past redis_retry_after_s
    hits_before = _cache(server).stats.hits
    profiles.GetProfile(get)
    assert profiles.GetProfile(get).bio == "written during the outage"
    assert _cache(server).stats.hits > hits_before


def test_invalidation_lost_in_an_outage_does_not_leave_stale_entries(
    backing: Backing, server: ServerThread, profiles: ProfileServiceStub
) -> None:
    """Redis keeps its data but stops answering while a write happens."""
    created = profiles.CreateProfile(profile_pb2.CreateProfileRequest(profile=new_profile()))
    get = profile_pb2.GetProfileRequest(name=created.name)
    assert profiles.GetProfile(get).bio == ""  # cached now

    with redis.Redis.from_url(backing.redis_url) as client:
        client.execute_command("CLIENT", "PAUSE", "1500", "ALL")

    def update() -> None:
        profiles.UpdateProfile(
            profile_pb2.UpdateProfileRequest(
                profile=profile_pb2.Profile(name=created.name, bio="changed"),
                update_mask=field_mask_pb2.FieldMask(paths=["bio"]),
            )
        )

    writer = threading.Thread(target=update)
    writer.start()
    writer.join(10)
    time.sleep(1.6)  # Redis answers again, still holding the old entry
    assert profiles.GetProfile(get).bio == "changed"


def test_a_replica_that_lost_an_invalidation_settles_it_as_it_stops(
    backing: Backing, server: ServerThread, profiles: ProfileServiceStub
) -> None:
    """The replica whose invalidation failed stops before any later call of its own would
    wipe the namespace: it wipes as it stops, so the other replicas do not serve the old
    entry until its TTL."""
    created = profiles.CreateProfile(profile_pb2.CreateProfileRequest(profile=new_profile()))
    get = profile_pb2.GetProfileRequest(name=created.name)
    assert profiles.GetProfile(get).bio == ""  # cached now, through the session's replica
    stopping = ServerThread(
        test_settings(redis_invalidate_timeout_s=0.1),
        backing.database_url,
        backing.redis_url,
        {"run_workers": False},
    ).start()
    try:
        with backing.channel(stopping.address) as channel:
            with redis.Redis.from_url(backing.redis_url) as client:
                client.execute_command("CLIENT", "PAUSE", "1500", "ALL")
            ProfileServiceStub(channel).UpdateProfile(
                profile_pb2.UpdateProfileRequest(
                    profile=profile_pb2.Profile(name=created.name, bio="changed"),
                    update_mask=field_mask_pb2.FieldMask(paths=["bio"]),
                ),
                timeout=10,
            )
        time.sleep(1.6)  # Redis answers again, still holding the old entry
    finally:
        stopping.stop()
    assert profiles.GetProfile(get).bio == "changed"


@contextlib.contextmanager
def _writer(backing: Backing, invalidate_timeout_s: float) -> Iterator[ServerThread]:
    """Another replica, whose invalidations each wait `invalidate_timeout_s` at most."""
    writer = ServerThread(
        test_settings(redis_invalidate_timeout_s=invalidate_timeout_s),
        backing.database_url,
        backing.redis_url,
        {"run_workers": False},
    ).start()
    try:
        yield writer
    finally:
        writer.stop()


def _write_bio_while_redis_pauses(
    backing: Backing, writer: ServerThread, name: str, pause_ms: int
) -> float:
    """UpdateProfile through `writer` as Redis stops answering for `pause_ms`; the time from
    the pause to the answer."""
    with backing.channel(writer.address) as channel:
        stub = ProfileServiceStub(channel)
        stub.GetProfile(profile_pb2.GetProfileRequest(name=name))  # its Redis connections open
        with redis.Redis.from_url(backing.redis_url) as client:
            client.execute_command("CLIENT", "PAUSE", str(pause_ms), "ALL")
        paused = time.monotonic()
        stub.UpdateProfile(
            profile_pb2.UpdateProfileRequest(
                profile=profile_pb2.Profile(name=name, bio="changed"),
                update_mask=field_mask_pb2.FieldMask(paths=["bio"]),
            ),
            timeout=10,
        )
        return time.monotonic() - paused


def test_an_invalidation_that_times_out_once_is_tried_again_before_the_write_answers(
    backing: Backing, server: ServerThread, profiles: ProfileServiceStub
) -> None:
    """Redis stalls just past one command's timeout while another replica writes: the write
    answers only once its invalidation has gone through, so a read on this replica, right
    after Redis answers again, is fresh (no settling of the writer's would come in time)."""
    created = profiles.CreateProfile(profile_pb2.CreateProfileRequest(profile=new_profile()))
    get = profile_pb2.GetProfileRequest(name=created.name)
    assert profiles.GetProfile(get).bio == ""  # cached now, through the session's replica
    with _writer(backing, invalidate_timeout_s=0.15) as writer:
        answered_s = _write_bio_while_redis_pauses(backing, writer, created.name, 400)
        time.sleep(max(0.0, 0.5 - answered_s))  # Redis answers again
        # Without the later tries: the old bio, until the writer settles the lost one.
        assert profiles.GetProfile(get).bio == "changed"
        assert answered_s >= 0.25  # it waited for Redis rather than answer first


def test_a_lost_invalidation_is_settled_as_soon_as_redis_answers_again(
    backing: Backing, server: ServerThread, profiles: ProfileServiceStub
) -> None:
    """Redis stalls past all of a write's tries on another replica, which then makes no
    Redis call of its own: the invalidation is still made as soon as Redis answers, so the
    entry this replica cached stops being served without waiting for the writer's next
    call or its stop."""
    created = profiles.CreateProfile(profile_pb2.CreateProfileRequest(profile=new_profile()))
    get = profile_pb2.GetProfileRequest(name=created.name)
    assert profiles.GetProfile(get).bio == ""  # cached now, through the session's replica
    with _writer(backing, invalidate_timeout_s=0.1) as writer:
        answered_s = _write_bio_while_redis_pauses(backing, writer, created.name, 1000)
        assert answered_s < 0.9  # its tries gave up while Redis stalled
        time.sleep(max(0.0, 1.0 - answered_s))
        deadline = time.monotonic() + 3.0
        bio = profiles.GetProfile(get).bio
        while bio != "changed" and time.monotonic() < deadline:
            time.sleep(0.05)
            bio = profiles.GetProfile(get).bio
        assert bio == "changed"
        assert not _cache(writer)._lost_tags


def test_an_evicted_tag_never_brings_back_an_old_entry(
    backing: Backing, server: ServerThread
) -> None:
    """Redis may evict a tag under memory pressure; entries under old versions stay dead."""
    cache = _cache(server)
    current = {"value": b"v1"}

    async def load() -> bytes:
        return current["value"]

    async def read() -> bytes:
        return await cache.read_through("test:evict", tag="evict", ttl_s=60, load=load)

    assert server.run(read()) == b"v1"  # cached under the first version
    current["value"] = b"v2"
    server.run(cache.invalidate("evict"))
    assert server.run(read()) == b"v2"
    with redis.Redis.from_url(backing.redis_url) as client:
        client.delete("sh:tag:evict")  # as an eviction would
    current["value"] = b"v3"
    assert server.run(read()) == b"v3"
