"""Live events of profiles' metrics, through one Redis stream per profile.

Ingestion XADDs an event per recorded snapshot after its transaction commits (MAXLEN ~
trimming bounds each stream); a failure there is logged and the ingestion still succeeds,
only live watchers miss that event. An entry holds the event's numbers in one fixed-size
record and its post's id; the reader that delivers it builds the message. Most events have
no watcher, and building a message per event was an eighth of an ingesting server's CPU.

Each replica runs one reader task that XREADs the streams of every profile its clients
watch, from its own cursor per profile, and fans each entry out to the local subscribers'
queues: 1,000 watchers cost one blocking read, not 1,000.

A watcher registers first, then replays (XRANGE) from its resume id to the stream's end;
what the reader delivers meanwhile is skipped by id, so nothing is lost or repeated. A
watcher whose queue overflows replays from its last event the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import struct
from collections import defaultdict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp
from redis.asyncio import Redis
from redis.exceptions import NoScriptError
from socialhub.v1 import analytics_pb2

from server.analytics.mapping import ENUM_BY_PLATFORM, PROFILE_COLLECTION
from server.analytics.model import SnapshotBatch, epoch_us
from server.analytics.repository import Applied
from server.analytics.tables import METRICS
from server.core.cache import REDIS_FAILURES
from server.core.errors import OutOfRange, Unavailable
from server.core.names import format_name
from server.core.tasks import stop_task

log = logging.getLogger("socialhub.analytics")

Event = analytics_pb2.WatchProfileMetricsResponse
EventId = tuple[int, int]
ZERO: EventId = (0, 0)
RETRY_MAX_S = 2.0


# An event as its stream entry keeps it: field "r", these numbers as little-endian int64s;
# field "p", its post's id (the profile is the stream's).
RECORD_FIELDS = (
    "platform",
    "latest",
    "engagement_change",
    "likes",
    "comments",
    "shares",
    "saves",
    "views",
    "reach",
    "publish_us",
    "observe_us",
    "record_us",
)
_RECORD = struct.Struct(f"<{len(RECORD_FIELDS)}q")

# KEYS: the streams; ARGV: MAXLEN, the idle expiry, the record size, then the batch's events
# as three strings: their records one after the other, each one's stream (its index in KEYS)
# separated by spaces, and their post ids each ended by a NUL (which no post id holds). Every
# event an XADD (MAXLEN ~), in order; then each stream's expiry. A few strings rather than
# arguments per event: redis-py encodes and packs each argument in Python.
_PUBLISH_SCRIPT = """
local maxlen, ttl, size = ARGV[1], ARGV[2], tonumber(ARGV[3])
local records, streams, posts = ARGV[4], ARGV[5], ARGV[6]
local record, post = 1, 1
for key in string.gmatch(streams, '%d+') do
    local post_end = string.find(posts, '%z', post)
    redis.call('XADD', KEYS[tonumber(key)], 'MAXLEN', '~', maxlen, '*',
        'r', string.sub(records, record, record + size - 1),
        'p', string.sub(posts, post, post_end - 1))
    record = record + size
    post = post_end + 1
end
for i = 1, #KEYS do
    redis.call('EXPIRE', KEYS[i], ttl)
end
return 0
"""
_PUBLISH_SHA = hashlib.sha1(_PUBLISH_SCRIPT.encode()).hexdigest()


def stream_key(profile_id: int) -> str:
    return f"analytics:live:profile:{profile_id}"


def parse_event_id(value: str) -> EventId | None:
    """A Redis stream id, `<ms>-<seq>`; None if it is not one."""
    ms, dash, seq = value.partition("-")
    if not dash or not ms.isdigit() or not seq.isdigit() or len(value) > 41:
        return None
    return (int(ms), int(seq))


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _format(event_id: EventId) -> str:
    return f"{event_id[0]}-{event_id[1]}"


@dataclass(eq=False)
class _Subscriber:
    queue: asyncio.Queue[tuple[EventId, Event]]
    lagging: bool = False
    closed: bool = False

    def close(self) -> None:
        self.closed = True
        with contextlib.suppress(asyncio.QueueFull):
            # Wakes a watcher waiting on its queue (a full queue has none waiting).
            self.queue.put_nowait((ZERO, Event()))

    def offer(self, event_id: EventId, event: Event) -> None:
        try:
            self.queue.put_nowait((event_id, event))
        except asyncio.QueueFull:
            self.lagging = True  # it replays from Redis from its last event


def expired(profile_id: int) -> OutOfRange:
    return OutOfRange(
        f"the events of profiles/{profile_id} after resume_event_id are no longer kept: "
        "read GetProfileAnalytics, then watch without resume_event_id",
        reason="LIVE_EVENT_EXPIRED",
    )


@dataclass
class ProfileEvents:
    redis: Redis
    # Per profile's stream: about this many events are kept (MAXLEN ~).
    max_events: int = 1000
    # A stream unwritten this long goes (a deleted profile's, say).
    idle_ttl_s: int = 7 * 24 * 3600
    # Short enough for the client's socket timeout (REDIS_TIMEOUT_S); an entry ends it at once.
    block_ms: int = 100
    queue_size: int = 256
    _cursors: dict[int, EventId] = field(default_factory=dict)
    _subscribers: dict[int, set[_Subscriber]] = field(default_factory=lambda: defaultdict(set))
    _wake: asyncio.Event | None = None
    _task: asyncio.Task[None] | None = None
    _stopping: bool = False

    # ------------------------------------------------------------------ the worker

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._read(), name="analytics-live-reader")

    async def stop(self) -> None:
        # The replica is going: its watchers end with UNAVAILABLE and resume elsewhere (with
        # their last event_id) while it drains, instead of hanging until the calls' grace.
        self._stopping = True
        for subscribers in self._subscribers.values():
            for subscriber in subscribers:
                subscriber.close()
        if self._task is not None:
            await stop_task(self._task)
            self._task = None

    @property
    def watched_profiles(self) -> int:
        return len(self._cursors)

    # ------------------------------------------------------------------ publishing

    async def publish(self, events: EventBatch) -> None:
        """XADD the events (already committed): best effort, never raises."""
        if not events.profile_ids:
            return
        # One script call for the batch, not a pipeline of an XADD per event: redis-py packs
        # and parses each pipelined command in Python, which was 40% of an ingesting
        # server's CPU at 1,000 events a batch (bench/analytics_ingest.py).
        keys: dict[int, int] = {}  # profile id -> its stream's position in KEYS (from 1)
        positions = [keys.setdefault(p, len(keys) + 1) for p in events.profile_ids]
        args = (
            self.max_events,
            self.idle_ttl_s,
            _RECORD.size,
            events.records,
            " ".join(map(str, positions)),
            "\0".join(events.post_ids) + "\0",
        )
        streams = [stream_key(profile_id) for profile_id in keys]
        try:
            try:
                await self.redis.evalsha(_PUBLISH_SHA, len(streams), *streams, *args)
            except NoScriptError:  # a restarted Redis: EVAL runs and caches it again
                await self.redis.eval(_PUBLISH_SCRIPT, len(streams), *streams, *args)
        except REDIS_FAILURES as error:
            log.warning(
                "live analytics events lost (Redis unavailable): %s",
                error,
                extra={"events": len(events.profile_ids)},
            )

    # ------------------------------------------------------------------ watching

    async def watch(self, profile_id: int, resume: EventId | None) -> AsyncIterator[Event]:
        key = stream_key(profile_id)
        try:
            if resume is None:
                start = await self._last_id(key)
            else:
                await self._check_kept(key, profile_id, resume)
                start = resume
        except REDIS_FAILURES as error:
            raise Unavailable(
                f"live events are unavailable ({type(error).__name__}); retry",
                reason="LIVE_EVENTS_UNAVAILABLE",
            ) from None
        subscriber = _Subscriber(asyncio.Queue(self.queue_size), closed=self._stopping)
        self._subscribe(profile_id, subscriber, start)
        last = start
        replay = True
        try:
            while True:
                if subscriber.closed:
                    raise Unavailable(
                        "this replica is shutting down: watch again with resume_event_id",
                        reason="LIVE_EVENTS_UNAVAILABLE",
                    )
                if replay or subscriber.lagging:
                    if subscriber.lagging:
                        subscriber.lagging = False
                        while not subscriber.queue.empty():
                            subscriber.queue.get_nowait()
                        await self._check_kept_or_down(key, profile_id, last)
                    replay = False
                    for event_id, event in await self._range_or_down(key, profile_id, last):
                        yield event
                        last = event_id
                    continue
                event_id, event = await subscriber.queue.get()
                if event_id <= last:
                    continue
                yield event
                last = event_id
        finally:
            self._unsubscribe(profile_id, subscriber)

    async def _last_id(self, key: str) -> EventId:
        entries: Any = await self.redis.xrevrange(key, count=1)
        return parse_event_id(_text(entries[0][0])) or ZERO if entries else ZERO

    async def _check_kept(self, key: str, profile_id: int, resume: EventId) -> None:
        # Trimming removes the oldest entries first: while the client's last event is still
        # there, everything after it is too.
        if resume == ZERO:
            return
        mark = _format(resume)
        if not await self.redis.xrange(key, mark, mark, count=1):
            raise expired(profile_id)

    async def _check_kept_or_down(self, key: str, profile_id: int, last: EventId) -> None:
        while True:
            try:
                await self._check_kept(key, profile_id, last)
                return
            except REDIS_FAILURES:
                await asyncio.sleep(0.5)  # an outage mid-stream: the watcher waits

    async def _range_or_down(
        self, key: str, profile_id: int, after: EventId
    ) -> list[tuple[EventId, Event]]:
        while True:
            try:
                entries: Any = await self.redis.xrange(key, f"({_format(after)}", "+")
                return [
                    decoded
                    for entry in entries
                    if (decoded := _decode(entry, profile_id)) is not None
                ]
            except REDIS_FAILURES:
                await asyncio.sleep(0.5)

    def _subscribe(self, profile_id: int, subscriber: _Subscriber, start: EventId) -> None:
        self._subscribers[profile_id].add(subscriber)
        if profile_id not in self._cursors:
            self._cursors[profile_id] = start
            if self._wake is not None:
                self._wake.set()

    def _unsubscribe(self, profile_id: int, subscriber: _Subscriber) -> None:
        subscribers = self._subscribers.get(profile_id)
        if subscribers is None:
            return
        subscribers.discard(subscriber)
        if not subscribers:
            del self._subscribers[profile_id]
            self._cursors.pop(profile_id, None)

    # ------------------------------------------------------------------ the reader task

    async def _read(self) -> None:
        assert self._wake is not None
        delay = 0.1
        while True:
            if not self._cursors:
                self._wake.clear()
                await self._wake.wait()
                continue
            streams: dict[Any, Any] = {stream_key(p): _format(c) for p, c in self._cursors.items()}
            try:
                result: Any = await self.redis.xread(streams, count=1000, block=self.block_ms)
            except REDIS_FAILURES as error:
                log.warning("live analytics reader: Redis unavailable (%s); retrying", error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RETRY_MAX_S)
                continue
            delay = 0.1
            for key, entries in result or ():
                profile_id = int(_text(key).rsplit(":", 1)[1])
                if profile_id not in self._cursors:
                    continue  # its last watcher left during the read
                for entry in entries:
                    decoded = _decode(entry, profile_id)
                    if decoded is None:
                        continue
                    event_id, event = decoded
                    if event_id <= self._cursors[profile_id]:
                        continue
                    self._cursors[profile_id] = event_id
                    for subscriber in self._subscribers.get(profile_id, ()):
                        subscriber.offer(event_id, event)


@dataclass(frozen=True)
class EventBatch:
    """A batch's events as their entries keep them: per event its profile and its post's
    id, and `records`, their RECORD_FIELDS one record after the other."""

    profile_ids: list[int]
    post_ids: list[str]
    records: bytes


def events_of(batch: SnapshotBatch, applied: Applied, recorded: datetime) -> EventBatch:
    """An event per snapshot recorded, in the batch's order: numpy fills the records column
    by column, with no Python object per event."""
    # Here, not at import: numpy's OpenBLAS starts threads at import, and `serve --workers N`
    # forks its workers from a process that must have none (see insight_models.py).
    import numpy as np

    chosen = applied.indexes
    at = np.asarray(chosen, dtype=np.intp)

    def picked(column: list[int]) -> Any:
        return np.asarray(column, dtype=np.int64)[at]

    columns: dict[str, Any] = {
        "platform": [ENUM_BY_PLATFORM[batch.platforms[i]] for i in chosen],
        "latest": applied.latest,
        "engagement_change": applied.engagement_changes,
        **dict(zip(METRICS, map(picked, batch.metrics), strict=True)),
        "publish_us": applied.publish_us,
        "observe_us": picked(batch.observe_us),
        "record_us": epoch_us(recorded),
    }
    records = np.empty((len(chosen), len(RECORD_FIELDS)), dtype="<i8")
    for number, name in enumerate(RECORD_FIELDS):
        records[:, number] = columns[name]
    return EventBatch(
        profile_ids=[batch.profile_ids[i] for i in chosen],
        post_ids=[batch.post_ids[i] for i in chosen],
        records=records.tobytes(),
    )


def _stamp(us: int) -> Timestamp:
    seconds, micros = divmod(us, 1_000_000)
    return Timestamp(seconds=seconds, nanos=micros * 1000)


def _event(profile_id: int, post_id: bytes, record: bytes) -> Event:
    (
        platform,
        latest,
        change,
        likes,
        comments,
        shares,
        saves,
        views,
        reach,
        publish_us,
        observe_us,
        record_us,
    ) = _RECORD.unpack(record)  # RECORD_FIELDS
    return Event(
        profile=format_name(PROFILE_COLLECTION, profile_id),
        latest=bool(latest),
        engagement_change=change,
        record_time=_stamp(record_us),
        metrics=analytics_pb2.PostMetrics(
            platform=platform,
            post_id=post_id.decode(),
            publish_time=_stamp(publish_us),
            observe_time=_stamp(observe_us),
            likes=likes,
            comments=comments,
            shares=shares,
            saves=saves,
            views=views,
            reach=reach,
            engagement=likes + comments + shares,
        ),
    )


def _field(fields: Any, name: str) -> bytes | None:
    value = fields.get(name.encode(), fields.get(name))
    return value.encode() if isinstance(value, str) else value


def _decode(entry: Any, profile_id: int) -> tuple[EventId, Event] | None:
    raw_id: Any = entry[0]
    fields: Any = entry[1]
    event_id = parse_event_id(_text(raw_id))
    if event_id is None:
        return None
    record, post_id = _field(fields, "r"), _field(fields, "p")
    if record is not None and post_id is not None and len(record) == _RECORD.size:
        event = _event(profile_id, post_id, record)
    elif (serialized := _field(fields, "e")) is not None:
        # Written as a whole message by a replica of an earlier version (a rolling upgrade).
        event = Event.FromString(serialized)
    else:
        return None
    event.event_id = _format(event_id)
    return event_id, event
