"""Exactly once through kill -9: three `socialhub serve` replicas publish 500 posts, due within
the same few seconds, to accounts on every platform's fake while a chaos loop SIGKILLs them at
random moments and restarts them. Then every target is final (PUBLISHED), and every post
exists on its fake exactly once: none twice, none lost.

Kills are of two kinds, alternating: at a random moment, and aimed, at a replica that the
fakes are answering a publish call for (its reply held back after the post was accepted, or
still being handled). Before each kill the replica is stopped (SIGSTOP) and its TCP
connections matched against the fakes' calls in flight, so the counts of kills that landed
mid-request or after acceptance are measured, not hoped for. Some calls are also made slower
than the lease, so live workers lose their leases mid-call (the second test shows the case
alone, on one replica that claims its own target again).

The seed is printed (and CRASH_SEED=... replays the same choices; the interleavings with the
replicas' own timing are the machine's).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import grpc
import psutil
import psycopg
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from socialhub.v1 import publishing_pb2
from socialhub.v1.publishing_pb2_grpc import PublishingServiceStub

from bench import credentials
from server.core import apikeys, migrate
from server.core.embedded import free_port
from server.publishing.settings import PublishingSettings
from server.publishing.tokens import new_key
from tests.fakes import Fakes
from tests.fakes.platform import FakePlatform
from tests.harness import Backing, ServerThread, publishing_test_settings, test_settings
from tests.publishing.support import (
    IMAGE,
    Connected,
    Target,
    connect,
    new_business,
    post_request,
    watch_until_final,
)
from tests.replicas import SERVICE_CONFIG

pytestmark = pytest.mark.slow

REPLICAS = 3
POSTS = 500
ACCOUNTS_PER_PLATFORM = 4
# Posts are due within this many seconds of each other.
DUE_SPREAD_S = 3.0
# A dead worker's targets are taken over this long after its last lease renewal.
LEASE_S = 4.0
# Kills go on this long after the first post is due (or until every target is final).
CHAOS_S = 40.0
# The bound this test states: every target is final within this long of the first due time.
FINAL_WITHIN_S = 150.0
PUBLISH_CALLS = {
    "POST /2/tweets",
    "POST /rest/posts",
    "POST /{page_id}/feed",
    "POST /{ig_id}/media",
    "POST /{ig_id}/media_publish",
}
SENDING_CALLS = PUBLISH_CALLS - {"POST /{ig_id}/media"}  # a container is not a post yet


@dataclass
class Served:
    slot: int
    process: subprocess.Popen[bytes]
    port: int
    log: Path


@dataclass
class Chaos:
    """The replicas, and what the kills hit."""

    env: dict[str, str]
    logs: Path
    fakes: Fakes
    rng: random.Random
    replicas: list[Served] = field(default_factory=list)
    starts: int = 0
    kills: int = 0
    # Kills that landed while the killed replica had a publish call at a fake...
    mid_request: int = 0
    # ... whose post the fake had already made, its answer held back.
    after_accept: int = 0
    aimed: int = 0

    def start(self, slot: int) -> Served:
        self.starts += 1
        port = free_port()
        path = self.logs / f"replica-{slot}-{self.starts}.log"
        with path.open("wb") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "server", "serve"],
                env=os.environ | self.env | {"PORT": str(port)},
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        return Served(slot, process, port, path)

    def start_all(self) -> None:
        self.replicas = [self.start(slot) for slot in range(REPLICAS)]

    def stop_all(self) -> None:
        for served in self.replicas:
            if served.process.poll() is None:
                served.process.send_signal(signal.SIGKILL)
            served.process.wait(30)

    def wait_ready(self, timeout_s: float = 90.0) -> None:
        deadline = time.monotonic() + timeout_s
        for served in self.replicas:
            while b"ready on" not in served.log.read_bytes():
                assert served.process.poll() is None, served.log.read_text()[-4000:]
                assert time.monotonic() < deadline, "a replica did not get ready"
                time.sleep(0.1)

    def channel(self) -> grpc.Channel:
        """Round robin over the replicas that serve."""
        targets = ",".join(f"127.0.0.1:{served.port}" for served in self.replicas)
        return grpc.insecure_channel(
            f"ipv4:{targets}", options=[("grpc.service_config", json.dumps(SERVICE_CONFIG))]
        )

    def _fake_calls(self, served: Served) -> list[tuple[str, str]]:
        """The fakes' calls in flight from this replica (endpoint, phase)."""
        try:
            connections = psutil.Process(served.process.pid).net_connections(kind="tcp")
        except psutil.Error:
            return []
        found = []
        for fake in (self.fakes.x, self.fakes.linkedin, self.fakes.meta):
            fake_port = urlsplit(fake.url).port
            calls = fake.in_flight()
            for connection in connections:
                if connection.raddr and connection.raddr.port == fake_port:
                    call = calls.get(connection.laddr.port)
                    if call is not None:
                        found.append(call)
        return found

    def kill(self, served: Served) -> None:
        """SIGSTOP, note what it was doing at the fakes, SIGKILL, start it again."""
        if served.process.poll() is None:
            os.kill(served.process.pid, signal.SIGSTOP)
            calls = [call for call in self._fake_calls(served) if call[0] in PUBLISH_CALLS]
            self.mid_request += bool(calls)
            self.after_accept += any(
                endpoint in SENDING_CALLS and phase == "accepted" for endpoint, phase in calls
            )
            served.process.send_signal(signal.SIGKILL)
            self.kills += 1
        served.process.wait(30)
        self.replicas[served.slot] = self.start(served.slot)

    def aim(self, within_s: float) -> Served | None:
        """A replica whose post a fake accepted and whose answer it holds back (else one with
        a publish call in flight), waiting up to `within_s` for one."""
        deadline = time.monotonic() + within_s
        fallback = None
        while time.monotonic() < deadline:
            for served in self.rng.sample(self.replicas, len(self.replicas)):
                calls = self._fake_calls(served)
                if any(e in SENDING_CALLS and phase == "accepted" for e, phase in calls):
                    return served
                if fallback is None and any(e in PUBLISH_CALLS for e, _ in calls):
                    fallback = served
            time.sleep(0.02)
        return fallback


def _stamp(when: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(when)
    return stamp


def _unfinished(database_url: str) -> int:
    with psycopg.connect(database_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM publishing_targets"
            " WHERE state NOT IN ('published', 'failed', 'needs_review')"
        ).fetchone()
    assert row is not None
    return int(row[0])


def _attempt_counts(database_url: str) -> dict[str, int]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        rows = conn.execute("SELECT outcome, count(*) FROM publish_attempts GROUP BY 1").fetchall()
    return {str(outcome): int(count) for outcome, count in rows}


def _all_posts(stub: PublishingServiceStub, business: str) -> list[publishing_pb2.BusinessPost]:
    found: list[publishing_pb2.BusinessPost] = []
    token = ""
    while True:
        page = stub.ListBusinessPosts(
            publishing_pb2.ListBusinessPostsRequest(
                parent=business, page_size=100, page_token=token
            )
        )
        found += page.business_posts
        token = page.next_page_token
        if not token:
            return found


def _fake_of(fakes: Fakes, platform: str) -> FakePlatform:
    return fakes.meta if platform in ("facebook", "instagram") else getattr(fakes, platform)


@pytest.mark.timeout(420)
def test_every_post_is_published_exactly_once_while_replicas_are_killed(
    backing: Backing, fakes: Fakes, fresh_database: str, tmp_path: Path
) -> None:
    seed = int(os.environ.get("CRASH_SEED") or random.SystemRandom().randrange(2**31))
    print(f"crash test seed: CRASH_SEED={seed}")
    rng = random.Random(seed)
    # Limits are not what this test is about (test_rate_limits.py is): a burst this size
    # on sixteen accounts would reach the fakes' X window and Meta usage limits.
    fakes.x.window_limit = 10**9
    fakes.meta.usage_limit = 10**9
    for index, fake in enumerate((fakes.x, fakes.linkedin, fakes.meta)):
        fake.latency(None, 0.005, 0.03, seed=seed + index)
        for endpoint in PUBLISH_CALLS:
            fake.latency(endpoint, 0.15, 0.45, seed=seed + index)
    env = backing.serve_env() | {
        **fakes.env(),
        "DATABASE_URL": fresh_database,
        # A Redis database of its own: the per-test cleanup flushes database 0.
        "REDIS_URL": backing.redis_url.rsplit("/", 1)[0] + "/6",
        "TOKEN_ENCRYPTION_KEYS": json.dumps([new_key()]),
        "SEED_DEMO": "never",
        "LOG_LEVEL": "INFO",
        "METRICS_PORT": "0",
        "PUBLISH_LEASE_S": str(LEASE_S),
        "PUBLISH_POLL_S": "0.2",
        # Fewer sends at once, and slower ones (above), so that on a quiet machine the burst
        # still lasts long enough for the chaos to land its kills (it once took 7 s, 2 kills).
        "PUBLISH_CONCURRENCY": "6",
        "PUBLISH_RETRY_BASE_S": "0.2",
        "PUBLISH_RETRY_MAX_S": "2",
        "PLATFORM_TIMEOUT_S": "5",
        "PLATFORM_CONNECT_TIMEOUT_S": "1",
        "INSTAGRAM_CONTAINER_POLL_S": "0.05",
    }
    logs = tmp_path / "logs"
    logs.mkdir()
    chaos = Chaos(env, logs, fakes, rng)
    chaos.start_all()
    try:
        chaos.wait_ready()
        key = apikeys.issue(fresh_database, name="crash test", scopes=["admin"]).key
        channel = credentials.authorized(chaos.channel(), key)
        stub = PublishingServiceStub(channel)
        business = new_business(stub, "Crash Bakery")
        accounts: list[Connected] = [
            connect(stub, fakes, business, platform)
            for platform in ("x", "linkedin", "facebook", "instagram")
            for _ in range(ACCOUNTS_PER_PLATFORM)
        ]

        # Every post's text is unique, so the fakes' posts are counted by text.
        first_due = datetime.now(UTC) + timedelta(seconds=15)
        plan = [
            (
                f"Crash run {seed}, post {i}: fresh bread at seven",
                accounts[i % len(accounts)],
                first_due + timedelta(seconds=rng.uniform(0, DUE_SPREAD_S)),
            )
            for i in range(POSTS)
        ]

        def create(item: tuple[str, Connected, datetime]) -> str:
            text, account, due = item
            post = publishing_pb2.BusinessPost(
                text=text,
                targets=[Target(account=account.name)],
                media_uris=[IMAGE] if account.platform == "instagram" else [],
                schedule_time=_stamp(due),
            )
            created = stub.CreateBusinessPost(
                publishing_pb2.CreateBusinessPostRequest(parent=business, business_post=post)
            )
            return str(created.name)

        with ThreadPoolExecutor(8) as pool:
            names = list(pool.map(create, plan))
        assert len(set(names)) == POSTS
        created_by = datetime.now(UTC)
        channel.close()

        # Chaos: until CHAOS_S after the first due time, kill a replica every 0.3-1.5 s,
        # alternately at a random moment and aimed at a call in flight at a fake.
        time.sleep(max(0.0, (first_due - datetime.now(UTC)).total_seconds() - 0.5))
        started = time.monotonic()
        while time.monotonic() - started < CHAOS_S and _unfinished(fresh_database):
            for endpoint in sorted(SENDING_CALLS):
                fake = {"POST /2/tweets": fakes.x, "POST /rest/posts": fakes.linkedin}.get(
                    endpoint, fakes.meta
                )
                fake.hold(endpoint, rng.uniform(0.5, 2.0), times=rng.randint(1, 4))
            if rng.random() < 0.6:
                # A worker alive but slow: its call outlasts its lease (not its timeout).
                # Half of them at Instagram's first step, whose checkpoint comes after.
                endpoint = rng.choice([*sorted(PUBLISH_CALLS), *["POST /{ig_id}/media"] * 4])
                fake = {"POST /2/tweets": fakes.x, "POST /rest/posts": fakes.linkedin}.get(
                    endpoint, fakes.meta
                )
                fake.stall(endpoint, LEASE_S + 1.0)
            time.sleep(rng.uniform(0.3, 1.5))
            if chaos.kills % 2:
                victim = chaos.aim(within_s=3.0)
                chaos.aimed += victim is not None
            else:
                victim = None
            chaos.kill(victim or rng.choice(chaos.replicas))

        while _unfinished(fresh_database):
            assert time.monotonic() - started < FINAL_WITHIN_S, (
                f"{_unfinished(fresh_database)} targets not final {FINAL_WITHIN_S} s after the "
                f"first due time (seed {seed})"
            )
            time.sleep(0.2)
        all_final_s = time.monotonic() - started
        chaos.wait_ready()
        channel = credentials.authorized(chaos.channel(), key)
        stub = PublishingServiceStub(channel)
        final = _all_posts(stub, business)
        channel.close()
    finally:
        chaos.stop_all()

    outcomes = _attempt_counts(fresh_database)
    lease_lost = sum(
        log.read_text(errors="replace").count("lease lost") for log in logs.glob("*.log")
    )
    summary = {
        "seed": seed,
        "posts": POSTS,
        "kills": chaos.kills,
        "kills_mid_request": chaos.mid_request,
        "kills_after_accept": chaos.after_accept,
        "aimed_kills": chaos.aimed,
        "leases_lost_by_live_workers": lease_lost,
        "attempts": sum(outcomes.values()),
        "outcomes": outcomes,
        "all_final_s": round(all_final_s, 1),
        "created_before_due": created_by < first_due,
    }
    print(f"crash test: {json.dumps(summary)}")

    # Every target final, and PUBLISHED: every fake can tell whether a post exists.
    states = Counter(Target.State.Name(t.state) for p in final for t in p.targets)
    unpublished = [
        (p.text, Target.State.Name(t.state), t.error)
        for p in final
        for t in p.targets
        if t.state != Target.STATE_PUBLISHED
    ]
    assert states == {"STATE_PUBLISHED": POSTS}, (states, unpublished, summary)

    # Every post on its fake exactly once, under the id its target recorded.
    on_fakes: Counter[tuple[str, str]] = Counter()
    ids: dict[tuple[str, str], str] = {}
    for fake in (fakes.x, fakes.linkedin, fakes.meta):
        for made in fake.posts(kind="post"):
            on_fakes[(made.account_id, made.text)] += 1
            ids[(made.account_id, made.text)] = made.id
    by_account = {account.name: account for account in accounts}
    expected = {
        (by_account[p.targets[0].account].platform_account_id, p.text): p.targets[0] for p in final
    }
    twice = {key: n for key, n in on_fakes.items() if n > 1}
    lost = [key for key in expected if key not in on_fakes]
    stray = [key for key in on_fakes if key not in expected]
    assert not twice, (twice, summary)
    assert not lost, (lost, summary)
    assert not stray, (stray, summary)
    assert sum(on_fakes.values()) == POSTS
    assert all(ids[key] == target.platform_post_id for key, target in expected.items())

    # The kills hit what they were meant to hit, and the unknown outcomes were reconciled.
    assert chaos.kills >= 5, summary
    assert chaos.mid_request >= 1, summary
    assert chaos.after_accept >= 1, summary
    assert outcomes.get("reconciled", 0) >= 1, summary
    assert outcomes.get("published", 0) + outcomes.get("reconciled", 0) == POSTS, summary


@pytest.mark.parametrize("platform", ["x", "instagram"])
def test_a_worker_whose_call_outlives_its_lease_changes_nothing_after(
    backing: Backing, fakes: Fakes, fresh_database: str, platform: str
) -> None:
    """A worker alive but slow (its call to the platform outlasts its lease) loses the target
    to the next claim, here by its own replica: it must then record nothing and take no next
    step (Instagram's media_publish after a late container), whatever its call returns."""
    migrate.upgrade(fresh_database)
    settings = publishing_test_settings(fakes, publish_lease_s=1.0, platform_timeout_s=5.0)
    server = ServerThread(
        test_settings(),
        fresh_database,
        backing.redis_url,
        {"domain_settings": {PublishingSettings: settings}},
    ).start()
    try:
        key = apikeys.issue(fresh_database, name="lease test", scopes=["admin"]).key
        with backing.channel(server.address, key) as channel:
            stub = PublishingServiceStub(channel)
            business = new_business(stub)
            account = connect(stub, fakes, business, platform)
            # The first call of the first step: handled 2.5 s after it arrives.
            first_step = "POST /2/tweets" if platform == "x" else "POST /{ig_id}/media"
            fakes.meta.stall(first_step, 2.5)
            fakes.x.stall(first_step, 2.5)
            sent = stub.CreateBusinessPost(
                post_request(
                    business,
                    [account.name],
                    media_uris=[IMAGE] if platform == "instagram" else [],
                )
            )
            final = watch_until_final(stub, sent.name, timeout=30)[-1]
            # The slow call has ended by now; give its worker time to act on the answer.
            time.sleep(3.0)
            again = stub.GetBusinessPost(publishing_pb2.GetBusinessPostRequest(name=sent.name))
    finally:
        server.stop()

    made = _fake_of(fakes, platform).posts(account.platform_account_id)
    assert len(made) == 1, made
    assert [Target.State.Name(t.state) for t in final.targets] == ["STATE_PUBLISHED"]
    assert again.targets[0].state == Target.STATE_PUBLISHED, again.targets[0]
    assert again.targets[0].platform_post_id == made[0].id
