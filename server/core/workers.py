"""`socialhub serve --workers N`: N forked server processes sharing one port.

The GIL holds a process to one core, so N processes each run their own gRPC server on
the same host:port (SO_REUSEPORT) and the kernel spreads new connections over them.
The parent does the one-off work first (embedded servers, migrations, demo data), then
forks. It must never create a gRPC object or leave a thread running before it forks:
forking a process that runs gRPC threads is not safe. Afterwards it only watches: it
prints nothing until every worker serves, forwards stop signals, and stops everything
when one worker dies (fail fast: the service supervisor restarts the whole unit).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import NoReturn

import psutil

log = logging.getLogger("socialhub.workers")

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
# Blocked across fork: a new worker must not run the parent's handlers before it has its own.
_PARENT_SIGNALS = STOP_SIGNALS | {signal.SIGCHLD}

# serve_one(index, ready) serves as worker `index` until a stop signal; ready() once it serves.
ServeOne = Callable[[int, Callable[[], None]], None]
# on_ready(pids) is called once, when every worker serves; pids in worker order.
OnReady = Callable[[list[int]], None]


def claim_port(host: str, port: int) -> int:
    """Return `port` after checking nothing listens on it, or a free port for port 0.

    Workers bind with SO_REUSEPORT, which would quietly share a port another server of
    ours already listens on; this probe binds without it, so a busy port fails here.
    """
    family, kind, proto, _, address = socket.getaddrinfo(
        host.strip("[]"), port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    with socket.socket(family, kind, proto) as probe:
        # As on gRPC's listener: connections of a previous run in TIME_WAIT do not block.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind(address)
        return int(probe.getsockname()[1])


def run_workers(count: int, serve_one: ServeOne, on_ready: OnReady) -> int:
    """Fork `count` workers and watch them until all have exited; return the exit status.

    0 after a stop signal (SIGTERM/SIGINT, forwarded to the workers as SIGTERM); 1 when
    a worker exited on its own, after stopping the others.
    """
    _check_single_threaded()
    supervisor = _Supervisor(count)
    with _signal_wakeups() as wakeup:
        supervisor.fork_all(serve_one, inherited=[wakeup.read_fd, wakeup.write_fd])
        supervisor.watch(wakeup.read_fd, on_ready)
    return 1 if supervisor.failed else 0


def _check_single_threaded() -> None:
    """Threads do not survive fork, and a lock one of them held stays locked in the child."""
    native = psutil.Process().num_threads()
    if native != 1:
        names = ", ".join(thread.name for thread in threading.enumerate())
        raise RuntimeError(f"cannot fork workers: {native} threads are running ({names})")


@dataclass(frozen=True)
class _Wakeup:
    read_fd: int
    write_fd: int


@contextlib.contextmanager
def _signal_wakeups() -> Iterator[_Wakeup]:
    """Deliver the parent's signals as bytes on a pipe, so one select() waits for everything."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    previous = {signum: signal.getsignal(signum) for signum in _PARENT_SIGNALS}
    previous_wakeup = signal.set_wakeup_fd(write_fd)
    try:
        for signum in _PARENT_SIGNALS:
            # The handler only makes Python write the signal number to the wakeup pipe.
            signal.signal(signum, lambda _signum, _frame: None)
        yield _Wakeup(read_fd, write_fd)
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(previous_wakeup)
        os.close(read_fd)
        os.close(write_fd)


@dataclass
class _Supervisor:
    count: int
    workers: dict[int, int] = field(default_factory=dict)  # pid -> worker index
    ready: dict[int, int] = field(default_factory=dict)  # worker index -> pid
    stopping: bool = False
    failed: bool = False
    announced: bool = False
    _ready_fd: int = -1
    _pending: bytes = b""

    def fork_all(self, serve_one: ServeOne, inherited: list[int]) -> None:
        self._ready_fd, ready_write = os.pipe()
        try:
            for index in range(self.count):
                pid = _fork(index, serve_one, ready_write, [*inherited, self._ready_fd])
                self.workers[pid] = index
                log.info("worker started", extra={"worker": index, "pid": pid})
        except OSError:
            # Out of processes or memory: stop the workers already started, then fail.
            log.exception("cannot fork a worker")
            self.failed = True
            self.stop()
        finally:
            # Only the workers hold the write end now: end of file means all have exited.
            os.close(ready_write)

    def watch(self, signal_fd: int, on_ready: OnReady) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(self._ready_fd, selectors.EVENT_READ)
            selector.register(signal_fd, selectors.EVENT_READ)
            try:
                while self.workers:
                    for key, _ in selector.select():
                        if key.fd == signal_fd:
                            self._on_signals(os.read(signal_fd, 64))
                        elif not self._on_ready_lines(os.read(self._ready_fd, 4096), on_ready):
                            selector.unregister(self._ready_fd)
                    self._reap()
            finally:
                os.close(self._ready_fd)

    def _on_ready_lines(self, data: bytes, on_ready: OnReady) -> bool:
        """Record "index pid" lines from the workers; False at end of file."""
        self._pending += data
        *lines, self._pending = self._pending.split(b"\n")
        for line in lines:
            index, pid = map(int, line.split())
            self.ready[index] = pid
        if len(self.ready) == self.count and not (self.announced or self.stopping):
            self.announced = True
            on_ready([self.ready[index] for index in range(self.count)])
        return bool(data)

    def _on_signals(self, signums: bytes) -> None:
        if any(signum in STOP_SIGNALS for signum in signums):
            self.stop()  # SIGCHLD needs nothing more: every wakeup ends with a reap

    def stop(self) -> None:
        if self.stopping:
            return
        self.stopping = True
        log.info("stopping workers", extra={"workers": len(self.workers)})
        for pid in self.workers:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    def _reap(self) -> None:
        for pid, index in list(self.workers.items()):
            done, status = os.waitpid(pid, os.WNOHANG)
            if done == 0:
                continue
            del self.workers[pid]
            code = os.waitstatus_to_exitcode(status)
            # Killed by a stop signal while stopping: it can only land after the worker's
            # own handlers are gone (see _worker_main), that is after its graceful stop.
            if self.stopping and (code == 0 or -code in STOP_SIGNALS):
                continue
            log.error("worker exited", extra={"worker": index, "pid": pid, "exit_code": code})
            self.failed = True
            self.stop()


def _fork(index: int, serve_one: ServeOne, ready_fd: int, parent_fds: list[int]) -> int:
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, _PARENT_SIGNALS)
    try:
        pid = os.fork()
        if pid == 0:
            _worker_main(index, serve_one, ready_fd, parent_fds)  # never returns
        return pid
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def _worker_main(index: int, serve_one: ServeOne, ready_fd: int, parent_fds: list[int]) -> NoReturn:
    """Serve as worker `index`, then leave with os._exit: returning would run the parent's
    `with` blocks and atexit hooks here, and stop the embedded PostgreSQL and Redis."""
    code = 1
    try:
        for fd in parent_fds:
            os.close(fd)
        _reset_signals()

        def ready() -> None:
            os.write(ready_fd, f"{index} {os.getpid()}\n".encode())

        serve_one(index, ready)
        code = 0
    except KeyboardInterrupt:
        # A SIGINT after serve_one's event loop closed, so after the graceful stop.
        code = 0
    except BaseException:
        log.exception("worker failed", extra={"worker": index})
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def _reset_signals() -> None:
    """Drop the parent's handlers. SIGTERM and SIGINT stay blocked (since the fork) until
    serve_one's event loop has its own handlers and unblocks them: none is lost or early."""
    signal.set_wakeup_fd(-1)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
