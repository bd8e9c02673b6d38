"""Three replicas started at once on a fresh database: one migrates, caches stay fresh across
replicas, each periodic job runs on exactly one replica, and the jobs move when it dies."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
from google.protobuf import field_mask_pb2
from socialhub.v1 import feed_pb2, profile_pb2
from socialhub.v1.feed_pb2_grpc import FeedServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from bench import credentials
from server.core import apikeys
from tests.harness import Backing
from tests.helpers import new_profile
from tests.replicas import Replica, replicas, round_robin_channel, wait_for

pytestmark = pytest.mark.slow

REPLICAS = 3


def _env(database_url: str, backing: Backing) -> dict[str, str]:
    return {
        "DATABASE_URL": database_url,
        # A Redis database of its own: the per-test cleanup flushes database 0.
        "REDIS_URL": backing.redis_url.rsplit("/", 1)[0] + "/3",
        "SEED_DEMO": "never",
        "PAGE_TOKEN_SECRET": credentials.PAGE_TOKEN_SECRET,
        "LOG_LEVEL": "INFO",
        "JOB_LEADER_POLL_S": "0.3",
        "ACTIVITY_PURGE_INTERVAL_S": "0.3",
        "REQUEST_ID_PURGE_INTERVAL_S": "0.3",
        "HEALTH_CHECK_INTERVAL_S": "0.5",
    }


def _job_runs(replica: Replica, job: str) -> int:
    return sum(
        1 for e in replica.logs() if e["msg"] == "maintenance job ran" and e.get("job") == job
    )


def _leader_pids(database_url: str) -> list[int]:
    """OS pids of the replicas holding the jobs' lock, by the name the holder gives itself."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
            " WHERE l.locktype = 'advisory' AND l.granted"
            # Advisory locks are per database: other test servers lead on theirs.
            " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())"
            " AND a.application_name LIKE 'socialhub-jobs-%'"
        ).fetchall()
    return [int(name.rsplit("-", 1)[1]) for (name,) in rows]


def _add_expired_rows(database_url: str) -> None:
    old = datetime.now(UTC) - timedelta(days=400)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO activity (actor_id, verb, object, created_at)"
            " SELECT 1, 'post.liked', 'posts/1', %s FROM generate_series(1, 10)",
            (old,),
        )
        conn.execute(
            "INSERT INTO request_ids (scope, request_id, request_hash, resource_id, created_at)"
            " SELECT 'CreateProfile', gen_random_uuid(), 'x', 1, %s FROM generate_series(1, 5)",
            (old,),
        )


def _expired_rows_left(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM activity WHERE created_at < now() - interval '300 days')"
            " + (SELECT count(*) FROM request_ids WHERE created_at < now() - interval '300 days')"
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_replicas_migrate_once_stay_fresh_and_share_the_jobs(
    backing: Backing, fresh_database: str, tmp_path: Path
) -> None:
    env = _env(fresh_database, backing)
    with replicas(env, tmp_path, REPLICAS) as started:
        # Migrations: each revision was applied by exactly one replica; the others waited.
        upgrades = [
            e["msg"] for r in started for e in r.logs() if e["msg"].startswith("Running upgrade")
        ]
        assert len(upgrades) == len(set(upgrades)) >= 3, upgrades

        key = apikeys.issue(fresh_database, name="replica test", scopes=["admin"]).key
        channel = credentials.authorized(round_robin_channel(started), key)
        profiles, feed = ProfileServiceStub(channel), FeedServiceStub(channel)
        ada = profiles.CreateProfile(profile_pb2.CreateProfileRequest(profile=new_profile()))
        bob = profiles.CreateProfile(
            profile_pb2.CreateProfileRequest(profile=new_profile("Bob", username="bob"))
        )
        listing = profile_pb2.ListProfilesRequest(page_size=10)

        def every_replica_sees(check: object) -> None:
            # Round robin: 2 * REPLICAS calls reach every replica twice, the second a cache hit.
            for _ in range(2 * REPLICAS):
                assert callable(check)
                check()

        def bio_is(expected: str) -> None:
            got = profiles.GetProfile(profile_pb2.GetProfileRequest(name=ada.name))
            assert got.bio == expected
            listed = profiles.ListProfiles(listing).profiles
            assert [p.bio for p in listed if p.name == ada.name] == [expected]

        every_replica_sees(lambda: bio_is(""))
        profiles.UpdateProfile(
            profile_pb2.UpdateProfileRequest(
                profile=profile_pb2.Profile(name=ada.name, bio="written on one replica"),
                update_mask=field_mask_pb2.FieldMask(paths=["bio"]),
            )
        )
        every_replica_sees(lambda: bio_is("written on one replica"))

        def followers_are(expected: int) -> None:
            got = profiles.GetProfile(profile_pb2.GetProfileRequest(name=ada.name))
            assert got.followers_count == expected
            listed = profiles.ListProfiles(listing).profiles
            assert [p.followers_count for p in listed if p.name == ada.name] == [expected]

        every_replica_sees(lambda: followers_are(0))
        feed.CreateFollow(
            feed_pb2.CreateFollowRequest(parent=bob.name, follow=feed_pb2.Follow(followee=ada.name))
        )
        every_replica_sees(lambda: followers_are(1))
        channel.close()

        # Periodic jobs: exactly one replica leads and runs both jobs.
        _add_expired_rows(fresh_database)
        wait_for(lambda: _expired_rows_left(fresh_database) == 0, what="the jobs to purge")
        leaders = _leader_pids(fresh_database)
        assert len(leaders) == 1
        (leader,) = [r for r in started if r.pid == leaders[0]]
        for job in ("activity-retention", "request-id-purge"):
            assert [_job_runs(r, job) for r in started if r is not leader] == [0, 0], job
            assert _job_runs(leader, job) >= 1, job

        # The leader dies without a goodbye: its session ends and another replica takes over.
        leader.process.send_signal(signal.SIGKILL)
        leader.process.wait(10)
        wait_for(
            lambda: _leader_pids(fresh_database) not in ([], [leader.pid]),
            what="a new leader",
        )
        (successor,) = [r for r in started if r.pid == _leader_pids(fresh_database)[0]]
        assert successor is not leader
        _add_expired_rows(fresh_database)
        wait_for(lambda: _expired_rows_left(fresh_database) == 0, what="the new leader's purge")
        assert _job_runs(successor, "activity-retention") >= 1
        bystanders = [r for r in started if r not in (leader, successor)]
        assert [_job_runs(r, "activity-retention") for r in bystanders] == [0]
