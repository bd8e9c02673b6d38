"""A TCP proxy in front of a server that drops its connections on demand, so a client sees
a connection break in the middle of a call without the server knowing anything of it."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from dataclasses import dataclass, field


@dataclass
class CuttingProxy:
    upstream: tuple[str, int]
    connections: int = 0
    cuts: int = 0
    # Armed by cut_after(): the next connection that has relayed this many bytes to its
    # client is reset. Counting bytes, not messages, makes the cut land mid-stream whatever
    # the timing: the client cannot have received more than that.
    _cut_after: int | None = None
    _listener: socket.socket | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _open: list[socket.socket] = field(default_factory=list)

    @classmethod
    def to(cls, address: str) -> CuttingProxy:
        host, port = address.rsplit(":", 1)
        return cls((host, int(port)))

    @property
    def address(self) -> str:
        assert self._listener is not None
        return f"127.0.0.1:{self._listener.getsockname()[1]}"

    def start(self) -> CuttingProxy:
        self._listener = socket.create_server(("127.0.0.1", 0))
        threading.Thread(target=self._accept, name="proxy-accept", daemon=True).start()
        return self

    def cut_after(self, downstream_bytes: int) -> None:
        with self._lock:
            self._cut_after = downstream_bytes

    def stop(self) -> None:
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.close()

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # stopped
            server = socket.create_connection(self.upstream)
            with self._lock:
                self.connections += 1
                self._open.extend((client, server))
            pair = (client, server)
            threading.Thread(
                target=self._pump, args=(client, server, pair, False), daemon=True
            ).start()
            threading.Thread(
                target=self._pump, args=(server, client, pair, True), daemon=True
            ).start()

    def _pump(
        self,
        source: socket.socket,
        target: socket.socket,
        pair: tuple[socket.socket, socket.socket],
        downstream: bool,
    ) -> None:
        relayed = 0
        while True:
            try:
                chunk = source.recv(4096)
                if not chunk:
                    break
                target.sendall(chunk)
            except OSError:
                break
            relayed += len(chunk)
            if downstream and self._should_cut(relayed):
                self._reset(pair)
                return
        for sock in pair:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _should_cut(self, relayed: int) -> bool:
        with self._lock:
            if self._cut_after is None or relayed < self._cut_after:
                return False
            self._cut_after = None
            self.cuts += 1
            return True

    def _reset(self, pair: tuple[socket.socket, socket.socket]) -> None:
        for sock in pair:
            with contextlib.suppress(OSError):
                # SO_LINGER 0: the close sends a RST, as a crashed peer or a dropped NAT entry
                # does. shutdown() first: close() alone does not wake the other pump's recv(),
                # which keeps the socket, and the connection, alive.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
