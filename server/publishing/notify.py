"""One LISTEN connection per replica: wakes the workers when work is due and the watchers of
a post when its targets change, whichever replica made the change.

NOTIFY is sent in the transaction that makes the change, so it arrives only after that
commits. Notifications are a shortcut, never the only path: every waiter also wakes on a
timeout and looks for itself, so a dropped connection (re-opened with backoff) delays a
watcher or a worker by at most that timeout and loses nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from typing import Any

import asyncpg

from server.core.tasks import stop_task
from server.publishing.repository import CHANNEL

log = logging.getLogger("socialhub.publishing")

RECONNECT_MAX_S = 5.0


class Changes:
    def __init__(self, connect: Any) -> None:
        # `connect()` opens a new asyncpg connection (the database URL's, TLS included).
        self._connect = connect
        self.due = asyncio.Event()
        self._posts: dict[int, set[asyncio.Event]] = defaultdict(set)
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._listen(), name="publishing-listen")

    async def stop(self) -> None:
        if self._task is not None:
            await stop_task(self._task)

    @contextlib.contextmanager
    def watching(self, post_id: int) -> Any:
        """An event set at each change of the post's targets, while the block runs."""
        event = asyncio.Event()
        self._posts[post_id].add(event)
        try:
            yield event
        finally:
            self._posts[post_id].discard(event)
            if not self._posts[post_id]:
                del self._posts[post_id]

    def _on_notification(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload == "due":
            self.due.set()
            return
        kind, _, value = payload.partition(":")
        if kind == "post" and value.isdigit():
            for event in self._posts.get(int(value), ()):
                event.set()

    async def _listen(self) -> None:
        delay = 0.2
        while True:
            try:
                conn = await self._connect()
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("publishing notifications unavailable (%s); retrying", error)
                await asyncio.sleep(delay)
                delay = min(delay * 2, RECONNECT_MAX_S)
                continue
            delay = 0.2
            closed = asyncio.Event()
            try:
                conn.add_termination_listener(lambda _conn, ended=closed: ended.set())
                await conn.add_listener(CHANNEL, self._on_notification)
                # Whatever happened while not listening: everybody looks once.
                self._wake_everyone()
                await closed.wait()
            except (OSError, asyncpg.PostgresError) as error:
                log.warning("publishing notifications lost (%s); reconnecting", error)
            finally:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(conn.close(), timeout=1.0)
            self._wake_everyone()

    def _wake_everyone(self) -> None:
        self.due.set()
        for events in self._posts.values():
            for event in events:
                event.set()
