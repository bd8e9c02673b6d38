"""A replica opens its Redis connections before it takes calls, and writes reuse them: once it
serves, no new connection (so no name lookup) stands between a write and its invalidation."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlsplit

from google.protobuf import field_mask_pb2
from socialhub.v1 import profile_pb2
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.harness import Backing, ServerThread, test_settings
from tests.helpers import new_profile


class ClosingProxy:
    """A TCP proxy in front of Redis that can stop taking new connections while it keeps
    forwarding the ones it has: Redis as a replica sees it while its name lookups stall."""

    def __init__(self, redis_url: str) -> None:
        target = urlsplit(redis_url)
        self._target = (target.hostname or "127.0.0.1", target.port or 6379)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"redis://127.0.0.1:{self._listener.getsockname()[1]}/0"
        self.accepted = 0
        self._sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed: new connections are refused from now on
            self.accepted += 1
            upstream = socket.create_connection(self._target)
            self._sockets += [client, upstream]
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()

    def refuse_new(self) -> None:
        self._listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
        self._listener.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.refuse_new()
        for sock in self._sockets:
            with contextlib.suppress(OSError):
                sock.close()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    with contextlib.suppress(OSError):
        while data := source.recv(65536):
            sink.sendall(data)
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


@contextlib.contextmanager
def replica_behind(proxy: ClosingProxy, backing: Backing) -> Iterator[ServerThread]:
    server = ServerThread(
        test_settings(), backing.database_url, proxy.url, {"run_workers": False}
    ).start()
    try:
        yield server
    finally:
        server.stop()


def test_writes_and_reads_need_no_new_redis_connection_once_the_replica_serves(
    backing: Backing, server: ServerThread, profiles: ProfileServiceStub
) -> None:
    """Concurrent writes on a replica that can open no new connection: every invalidation
    goes through (the session's replica reads each new bio), and the replica's own reads are
    served by Redis, not degraded to the database."""
    proxy = ClosingProxy(backing.redis_url)
    try:
        with replica_behind(proxy, backing) as replica:
            opened_at_start = proxy.accepted
            proxy.refuse_new()
            names = [
                profiles.CreateProfile(profile_pb2.CreateProfileRequest(profile=new_profile())).name
                for _ in range(8)
            ]
            for name in names:  # cached on the session's replica
                profiles.GetProfile(profile_pb2.GetProfileRequest(name=name))
            with backing.channel(replica.address) as channel:
                stub = ProfileServiceStub(channel)

                def write_then_read(name: str) -> list[str]:
                    stale = []
                    for step in range(5):
                        bio = f"step {step}"
                        stub.UpdateProfile(
                            profile_pb2.UpdateProfileRequest(
                                profile=profile_pb2.Profile(name=name, bio=bio),
                                update_mask=field_mask_pb2.FieldMask(paths=["bio"]),
                            ),
                            timeout=10,
                        )
                        get = profile_pb2.GetProfileRequest(name=name)
                        for reader in (profiles, stub):
                            if (read := reader.GetProfile(get, timeout=10).bio) != bio:
                                stale.append(f"{name}: {read!r} after {bio!r}")
                    return stale

                with ThreadPoolExecutor(len(names)) as pool:
                    stale = [line for lines in pool.map(write_then_read, names) for line in lines]
            assert replica.app is not None
            assert replica.app.cache is not None
            stats = replica.app.cache.stats
    finally:
        proxy.close()

    assert stale == []
    assert stats.errors == 0  # not one Redis call of the replica failed
    assert stats.hits > 0
    assert stats.bypassed == 0
    # Its read connections and its invalidation pool, opened before the first call.
    assert opened_at_start >= 2 + 4
