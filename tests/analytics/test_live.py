"""WatchProfileMetrics and WatchServiceMetrics against the session server, a second replica
on the same PostgreSQL and Redis, and the `socialhub top` / `socialhub watch` terminal views."""

from __future__ import annotations

import queue
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
import redis
from google.protobuf.duration_pb2 import Duration
from socialhub.v1 import analytics_pb2, profile_pb2
from socialhub.v1.analytics_pb2_grpc import AnalyticsServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from server.analytics.live import ProfileEvents
from server.core.metrics_sample import MethodCounts, Sample, quantile, window
from server.publishing.settings import PublishingSettings
from tests.analytics.support import at, profile, snapshot
from tests.fakes import Fakes
from tests.harness import Backing, Isolated, ServerThread, publishing_test_settings, test_settings
from tests.helpers import error_info

Event = analytics_pb2.WatchProfileMetricsResponse


def wait_for(condition: Callable[[], bool], timeout: float = 5.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or condition}")
        time.sleep(0.01)


def second_replica(backing: Backing, fakes: Fakes) -> ServerThread:
    """Another replica on the session's PostgreSQL and Redis (the periodic jobs stay with the
    session server)."""
    return ServerThread(
        test_settings(),
        backing.database_url,
        backing.redis_url,
        {
            "run_jobs": False,
            "domain_settings": {PublishingSettings: publishing_test_settings(fakes)},
        },
    ).start()


def hub(thread: ServerThread) -> ProfileEvents:
    assert thread.app is not None
    return next(w for w in thread.app.workers() if isinstance(w, ProfileEvents))


class Watch:
    """A WatchProfileMetrics call read by a thread into a queue (with arrival times)."""

    def __init__(self, stub: AnalyticsServiceStub, owner: str, resume: str = "") -> None:
        self.call: Any = stub.WatchProfileMetrics(
            analytics_pb2.WatchProfileMetricsRequest(profile=owner, resume_event_id=resume),
            timeout=30,
        )
        self.events: queue.Queue[tuple[float, Event] | BaseException] = queue.Queue()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for event in self.call:
                self.events.put((time.perf_counter(), event))
        except grpc.RpcError as error:
            self.events.put(error)

    def next(self, timeout: float = 5.0) -> Event:
        return self.timed(timeout)[1]

    def timed(self, timeout: float = 5.0) -> tuple[float, Event]:
        item = self.events.get(timeout=timeout)
        if isinstance(item, BaseException):
            raise item
        return item

    def nothing_more(self, seconds: float = 0.4) -> None:
        with pytest.raises(queue.Empty):
            self.events.get(timeout=seconds)

    def cancel(self) -> None:
        self.call.cancel()
        self._thread.join(5)


def ingest(analytics: AnalyticsServiceStub, *snapshots: analytics_pb2.MetricSnapshot) -> None:
    analytics.BatchCreateMetricSnapshots(
        analytics_pb2.BatchCreateMetricSnapshotsRequest(metric_snapshots=list(snapshots))
    )


@pytest.fixture
def owner(profiles: ProfileServiceStub) -> str:
    return profile(profiles, "Live Creator")


@pytest.fixture
def watch_of(analytics: AnalyticsServiceStub) -> Iterator[Callable[..., Watch]]:
    started: list[Watch] = []

    def start(owner: str, resume: str = "", stub: AnalyticsServiceStub | None = None) -> Watch:
        watch = Watch(stub or analytics, owner, resume)
        started.append(watch)
        return watch

    yield start
    for watch in started:
        watch.cancel()


def test_a_watcher_receives_each_ingested_snapshot_in_order(
    analytics: AnalyticsServiceStub, server: ServerThread, owner: str, watch_of: Any
) -> None:
    watch = watch_of(owner)
    wait_for(lambda: hub(server).watched_profiles == 1, what="the watch to start")
    ingest(analytics, snapshot(owner, "p1", at(10), likes=5, comments=1))
    ingest(
        analytics,
        snapshot(owner, "p1", at(12), likes=9, comments=2, shares=1),
        snapshot(owner, "p1", at(11), likes=7),  # older than the latest: series only
        snapshot(owner, "p2", at(12), views=40),
    )
    got = [watch.next() for _ in range(4)]
    assert [(e.metrics.post_id, e.metrics.likes) for e in got] == [
        ("p1", 5),
        ("p1", 9),
        ("p1", 7),
        ("p2", 0),
    ]
    assert [e.latest for e in got] == [True, True, False, True]
    assert [e.engagement_change for e in got] == [6, 6, 0, 0]
    assert all(e.profile == owner and e.record_time.seconds > 0 for e in got)
    ids = [tuple(map(int, e.event_id.split("-"))) for e in got]
    assert ids == sorted(ids)
    assert len(set(ids)) == 4
    # A resent snapshot records nothing, so it is no event.
    ingest(analytics, snapshot(owner, "p1", at(10), likes=5, comments=1))
    watch.nothing_more()


def test_an_ingestion_on_one_replica_reaches_a_watcher_on_another(
    analytics: AnalyticsServiceStub, backing: Backing, fakes: Fakes, owner: str, watch_of: Any
) -> None:
    other = second_replica(backing, fakes)
    try:
        with backing.channel(other.address) as channel:
            watch = watch_of(owner, stub=AnalyticsServiceStub(channel))
            wait_for(lambda: hub(other).watched_profiles == 1, what="the watch to start")
            latencies = []
            for i in range(5):
                sent = time.perf_counter()
                ingest(analytics, snapshot(owner, f"post-{i}", at(10), likes=i))
                arrived, event = watch.timed()
                assert (event.metrics.post_id, event.metrics.likes) == (f"post-{i}", i)
                latencies.append(arrived - sent)
            watch.cancel()
            wait_for(lambda: hub(other).watched_profiles == 0, what="the watch to end")
    finally:
        other.stop()
    # The whole ingestion call included; printed for docs/ANALYTICS.md (pytest -s).
    print(f"ingest -> watcher on another replica: max {max(latencies) * 1000:.1f} ms")
    assert max(latencies) < 2.0


def test_resuming_from_an_event_id_gets_exactly_the_missed_events(
    analytics: AnalyticsServiceStub, server: ServerThread, owner: str, watch_of: Any
) -> None:
    first = watch_of(owner)
    wait_for(lambda: hub(server).watched_profiles == 1, what="the watch to start")
    ingest(analytics, snapshot(owner, "a", at(10), likes=1))
    seen = first.next()
    first.cancel()
    wait_for(lambda: hub(server).watched_profiles == 0, what="the watch to end")
    ingest(analytics, snapshot(owner, "b", at(10), likes=2))
    ingest(analytics, snapshot(owner, "c", at(10), likes=3))

    resumed = watch_of(owner, resume=seen.event_id)
    assert [resumed.next().metrics.post_id for _ in range(2)] == ["b", "c"]
    resumed.nothing_more()
    # And it goes on live.
    ingest(analytics, snapshot(owner, "d", at(10), likes=4))
    assert resumed.next().metrics.post_id == "d"


def test_an_event_id_no_longer_kept_is_out_of_range(
    analytics: AnalyticsServiceStub, backing: Backing, owner: str, watch_of: Any
) -> None:
    watch = watch_of(owner, resume="0-0")  # from the stream's start
    ingest(analytics, snapshot(owner, "a", at(10), likes=1))
    old = watch.next()
    ingest(analytics, snapshot(owner, "b", at(10), likes=2))
    assert watch.next().metrics.post_id == "b"
    profile_id = owner.rsplit("/", 1)[1]
    with redis.Redis.from_url(backing.redis_url) as client:
        # What MAXLEN trimming does once the stream holds more than it keeps.
        client.xtrim(f"analytics:live:profile:{profile_id}", maxlen=1, approximate=False)
    with pytest.raises(grpc.RpcError) as caught:
        watch_of(owner, resume=old.event_id).next()
    assert caught.value.code() == grpc.StatusCode.OUT_OF_RANGE
    assert error_info(caught.value).reason == "LIVE_EVENT_EXPIRED"

    with pytest.raises(grpc.RpcError) as malformed:
        watch_of(owner, resume="yesterday").next()
    assert malformed.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as missing:
        watch_of("profiles/999999").next()
    assert error_info(missing.value).reason == "PROFILE_NOT_FOUND"


def test_cancelling_a_watch_ends_its_server_side_task(
    server: ServerThread, owner: str, profiles: ProfileServiceStub, watch_of: Any
) -> None:
    other_owner = profile(profiles, "Other Creator")
    watches = [watch_of(owner), watch_of(owner), watch_of(other_owner)]
    events = hub(server)
    # Two profiles are watched once the first watcher of each has started: the third may
    # still be on its way.
    wait_for(lambda: sum(map(len, events._subscribers.values())) == 3, what="the watches")
    assert events.watched_profiles == 2
    watches[0].cancel()
    wait_for(lambda: sum(map(len, events._subscribers.values())) == 2, what="one to end")
    assert events.watched_profiles == 2  # the other watcher of `owner` still reads it
    for watch in watches[1:]:
        watch.cancel()
    wait_for(lambda: events.watched_profiles == 0, what="every watch to end")
    assert not events._subscribers


def test_watch_service_metrics_shows_the_calls_between_two_ticks(
    analytics: AnalyticsServiceStub,
) -> None:
    call: Any = analytics.WatchServiceMetrics(
        analytics_pb2.WatchServiceMetricsRequest(interval=Duration(seconds=1)), timeout=10
    )
    try:
        stream = iter(call)
        next(stream)
        for _ in range(7):
            analytics.GetDirectoryStats(analytics_pb2.GetDirectoryStatsRequest())
        tick = next(stream)
    finally:
        call.cancel()
    by_method = {m.method: m for m in tick.methods}
    stats = by_method["/socialhub.v1.AnalyticsService/GetDirectoryStats"]
    assert stats.call_count == 7
    assert 0 < stats.p50_latency_seconds <= stats.p99_latency_seconds < 10
    assert stats.error_rate == 0
    assert stats.calls_per_second == pytest.approx(7 / tick.interval_seconds, rel=0.3)
    assert tick.interval_seconds == 1
    assert tick.replica_count == 1
    assert tick.db_pool_capacity > 0


def test_fleet_metrics_merge_every_replica(
    analytics: AnalyticsServiceStub, backing: Backing, fakes: Fakes
) -> None:
    other = second_replica(backing, fakes)
    try:
        with backing.channel(other.address) as channel:
            remote = AnalyticsServiceStub(channel)
            call: Any = analytics.WatchServiceMetrics(
                analytics_pb2.WatchServiceMetricsRequest(interval=Duration(seconds=1), fleet=True),
                timeout=15,
            )
            try:
                stream = iter(call)
                before = next(stream)
                for _ in range(3):
                    remote.GetDirectoryStats(analytics_pb2.GetDirectoryStatsRequest())
                calls = 0
                # A replica publishes every second: its calls show within two ticks.
                for _ in range(3):
                    tick = next(stream)
                    calls += sum(
                        m.call_count
                        for m in tick.methods
                        if m.method.endswith("/GetDirectoryStats")
                    )
                    if calls >= 3:
                        break
            finally:
                call.cancel()
    finally:
        other.stop()
    assert before.replica_count == 2
    assert calls == 3


def test_a_negative_interval_is_invalid(analytics: AnalyticsServiceStub) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        next(
            iter(
                analytics.WatchServiceMetrics(
                    analytics_pb2.WatchServiceMetricsRequest(interval=Duration(seconds=-1)),
                    timeout=5,
                )
            )
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


# ------------------------------------------------------------------ the terminal views

TMUX = shutil.which("tmux")
EXITED = "socialhub-exited-with:"


@dataclass(frozen=True)
class Pane:
    """A tmux session running one command: called, it returns what the screen shows."""

    tmux: str
    name: str

    def __call__(self) -> str:
        return subprocess.run(
            [self.tmux, "capture-pane", "-p", "-t", self.name], capture_output=True, text=True
        ).stdout

    def press(self, key: str) -> None:
        subprocess.run([self.tmux, "send-keys", "-t", self.name, key], check=True)

    def exit_status(self) -> int | None:
        """The command's exit status once it has exited, else None."""
        found = re.search(rf"{EXITED}(\d+)", self())
        return None if found is None else int(found.group(1))


@pytest.fixture
def terminal(backing: Backing) -> Iterator[Callable[[list[str]], Pane]]:
    """Start a `socialhub` command in a detached tmux session; return its pane."""
    if TMUX is None:
        pytest.fail("tmux is needed (apt-get install -y tmux)")
    sessions: list[str] = []

    def run(args: list[str]) -> Pane:
        assert TMUX is not None
        name = f"socialhub-live-{len(sessions)}-{time.monotonic_ns()}"
        # The key goes on the command line: a session gets the environment of the tmux
        # server, which the first test to start one (maybe another xdist worker's, with its
        # own database and key) started, not the environment of this `tmux` call.
        command = f"SOCIALHUB_KEY={shlex.quote(backing.admin_key)} " + shlex.join(
            [sys.executable, "-m", "server", *args]
        )
        # The pane outlives the command, to show its exit status and last screen.
        command += f"; echo {EXITED}$?; sleep 60"
        subprocess.run(
            [TMUX, "new-session", "-d", "-s", name, "-x", "160", "-y", "40", command],
            check=True,
            env={"PATH": "/usr/bin:/bin", "TERM": "xterm"},
        )
        sessions.append(name)
        return Pane(TMUX, name)

    yield run
    for name in sessions:
        subprocess.run([TMUX, "send-keys", "-t", name, "C-c"], check=False)
        subprocess.run([TMUX, "kill-session", "-t", name], check=False, capture_output=True)


def _screen_shows(screen: Callable[[], str], *texts: str, timeout: float = 10.0) -> str:
    shown = ""

    def ready() -> bool:
        nonlocal shown
        shown = screen()
        return all(text in shown for text in texts)

    try:
        wait_for(ready, timeout)
    except AssertionError:
        raise AssertionError(f"the screen does not show {texts}:\n{shown}") from None
    return shown


def test_socialhub_top_shows_the_methods_called(
    analytics: AnalyticsServiceStub, server: ServerThread, terminal: Any
) -> None:
    screen = terminal(["top", "--address", server.address, "--plaintext", "--interval", "0.5"])
    _screen_shows(screen, "socialhub top", "waiting for the first interval")
    deadline = time.monotonic() + 10
    shown = ""
    while time.monotonic() < deadline:
        analytics.GetDirectoryStats(analytics_pb2.GetDirectoryStatsRequest())
        shown = screen()
        if "AnalyticsService/GetDirectoryStats" in shown:
            break
        time.sleep(0.1)
    assert "AnalyticsService/GetDirectoryStats" in shown, shown
    assert "calls/s" in shown
    assert "p99" in shown
    assert "db pool" in shown


@pytest.mark.parametrize("view", ["top", "watch"])
def test_q_quits_the_terminal_views(
    server: ServerThread, owner: str, terminal: Any, view: str
) -> None:
    args = ["top"] if view == "top" else ["watch", owner]
    pane = terminal([*args, "--address", server.address, "--plaintext"])
    _screen_shows(pane, f"socialhub {view}")
    pane.press("x")  # not a quit key
    time.sleep(0.5)
    assert pane.exit_status() is None, pane()
    pane.press("q")
    wait_for(lambda: pane.exit_status() == 0, 10, what=f"socialhub {view} to quit on q")
    if view == "watch":
        # The call was cancelled, not just abandoned: the server lets go of the profile.
        wait_for(lambda: hub(server).watched_profiles == 0, what="the server to end the watch")


def test_socialhub_watch_shows_each_event(
    analytics: AnalyticsServiceStub, server: ServerThread, owner: str, terminal: Any
) -> None:
    screen = terminal(["watch", owner, "--address", server.address, "--plaintext"])
    _screen_shows(screen, f"socialhub watch {owner}", "no events yet")
    wait_for(lambda: hub(server).watched_profiles == 1, what="the CLI's watch to start")
    ingest(analytics, snapshot(owner, "launch-video", at(10), likes=120, comments=30))
    shown = _screen_shows(screen, "launch-video", "1 events")
    assert "instagram" in shown
    assert "+150" in shown
    ingest(analytics, snapshot(owner, "launch-video", at(11), likes=130, comments=30))
    shown = _screen_shows(screen, "2 events", "+10")


def test_a_redis_outage_loses_live_events_only(isolated: Isolated) -> None:
    backing, server = isolated.backing, isolated.server
    analytics = AnalyticsServiceStub(isolated.channel)
    owner = profile(ProfileServiceStub(isolated.channel), "Outage Creator")
    watch = Watch(analytics, owner)
    try:
        wait_for(lambda: hub(server).watched_profiles == 1, what="the watch to start")
        ingest(analytics, snapshot(owner, "before", at(10), likes=1))
        assert watch.next().metrics.post_id == "before"
        backing.redis.stop()
        try:
            # Ingestion commits regardless; only the live event is lost.
            ingest(analytics, snapshot(owner, "during", at(10), likes=2))
            post = analytics.GetPostAnalytics(
                analytics_pb2.GetPostAnalyticsRequest(
                    profile=owner, platform=profile_pb2.PLATFORM_INSTAGRAM, post_id="during"
                )
            )
            assert post.latest.likes == 2
            with pytest.raises(grpc.RpcError) as caught:
                Watch(analytics, owner).next()
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert error_info(caught.value).reason == "LIVE_EVENTS_UNAVAILABLE"
        finally:
            backing.redis.start()
        # The watcher that was open kept waiting, and hears what comes next.
        deadline = time.monotonic() + 10
        attempt = 0
        while True:
            attempt += 1  # a new observation each time: a resent one would be no event
            ingest(analytics, snapshot(owner, "after", at(10 + attempt / 60), likes=3))
            try:
                event = watch.next(timeout=0.5)
                break
            except queue.Empty:
                assert time.monotonic() < deadline, "the watcher never heard from Redis again"
        assert event.metrics.post_id == "after"
    finally:
        watch.cancel()


def test_percentiles_interpolate_in_the_window_s_buckets() -> None:
    def counts(calls: float, buckets: dict[float, float]) -> MethodCounts:
        return MethodCounts(calls, 0, tuple(sorted(buckets.items())))

    method = "/socialhub.v1.AnalyticsService/GetDirectoryStats"
    inf = float("inf")
    # Before: 100 slow calls (all between 1 and 2.5 s). Then 10 fast ones (0.5 to 1 ms).
    before = Sample(
        time=10.0, methods={method: counts(100, {0.0005: 0, 0.001: 0, 2.5: 100, inf: 100})}
    )
    after = Sample(
        time=12.0, methods={method: counts(110, {0.0005: 0, 0.001: 10, 2.5: 110, inf: 110})}
    )
    win = window(before, after)
    assert win.seconds == 2.0
    assert win.methods[method].calls == 10
    # The median of the window's 10 calls is halfway through the (0.5 ms, 1 ms] bucket.
    assert quantile(0.5, win.methods[method].buckets) == pytest.approx(0.00075)
    assert quantile(0.99, win.methods[method].buckets) == pytest.approx(0.000995)
    assert quantile(0.5, ()) == 0.0


def test_a_stopping_replica_ends_its_watches_and_they_resume_elsewhere(
    analytics: AnalyticsServiceStub, backing: Backing, fakes: Fakes, owner: str, watch_of: Any
) -> None:
    other = second_replica(backing, fakes)
    stopping = threading.Thread(target=other.stop)
    try:
        with backing.channel(other.address) as channel:
            watch = watch_of(owner, stub=AnalyticsServiceStub(channel))
            wait_for(lambda: hub(other).watched_profiles == 1, what="the watch to start")
            ingest(analytics, snapshot(owner, "a", at(10), likes=1))
            seen = watch.next()
            started = time.monotonic()
            stopping.start()
            with pytest.raises(grpc.RpcError) as caught:
                watch.next()
            ended_after = time.monotonic() - started
    finally:
        if not stopping.is_alive() and stopping.ident is None:
            other.stop()
        stopping.join(30)
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert error_info(caught.value).reason == "LIVE_EVENTS_UNAVAILABLE"
    assert ended_after < 2.0  # not the calls' shutdown grace
    ingest(analytics, snapshot(owner, "b", at(10), likes=2))
    resumed = watch_of(owner, resume=seen.event_id)
    assert resumed.next().metrics.post_id == "b"
