"""Prometheus metrics at /metrics: what a real server exports, alone and as `--workers 2`."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.parser import text_string_to_metric_families
from socialhub.v1 import profile_pb2
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub
from sqlalchemy import text

from server.core.embedded import free_port
from tests.core.test_workers import READY, established_connections, new_connection
from tests.harness import Backing, ServerThread, test_settings
from tests.helpers import new_profile

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana-dashboard.json"
GET_PROFILE = "/socialhub.v1.ProfileService/GetProfile"
CREATE_PROFILE = "/socialhub.v1.ProfileService/CreateProfile"

# (sample name, sorted label items) -> value
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["Content-Type"].startswith("text/plain")
        body = answer.read().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(body)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def calls(samples: Samples, method: str, code: str) -> float:
    return value(samples, "socialhub_rpc_calls_total", method=method, code=code)


def latency_count(samples: Samples, method: str) -> float:
    return value(samples, "socialhub_rpc_duration_seconds_count", method=method)


def wait_for(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def metered(backing: Backing) -> Iterator[ServerThread]:
    """A server of its own, so no other test's calls move its counters."""
    thread = ServerThread(
        test_settings(auth_enabled=False), backing.database_url, backing.redis_url
    ).start()
    yield thread
    thread.stop()


@pytest.fixture
def stub(metered: ServerThread) -> Iterator[ProfileServiceStub]:
    with grpc.insecure_channel(metered.address) as channel:
        yield ProfileServiceStub(channel)


def test_calls_are_counted_by_method_and_code(
    metered: ServerThread, stub: ProfileServiceStub
) -> None:
    assert metered.app is not None
    port = metered.app.metrics_port
    assert port != 0, "port 0 picks a free port, which the application tells"
    before = scrape(port)

    created = stub.CreateProfile(profile_pb2.CreateProfileRequest(profile=new_profile()))
    for _ in range(7):
        stub.GetProfile(profile_pb2.GetProfileRequest(name=created.name))
    with pytest.raises(grpc.RpcError) as missing:
        stub.GetProfile(profile_pb2.GetProfileRequest(name="profiles/999999"))
    assert missing.value.code() == grpc.StatusCode.NOT_FOUND

    after = scrape(port)
    assert calls(after, GET_PROFILE, "OK") - calls(before, GET_PROFILE, "OK") == 7
    assert calls(after, GET_PROFILE, "NOT_FOUND") - calls(before, GET_PROFILE, "NOT_FOUND") == 1
    assert calls(after, CREATE_PROFILE, "OK") - calls(before, CREATE_PROFILE, "OK") == 1
    assert latency_count(after, GET_PROFILE) - latency_count(before, GET_PROFILE) == 8
    assert value(after, "socialhub_rpc_shed_total") == 0


def test_cache_reads_are_counted_as_the_cache_counts_them(
    metered: ServerThread, stub: ProfileServiceStub
) -> None:
    assert metered.app is not None
    assert metered.app.cache is not None
    stats = metered.app.cache.stats
    before = scrape(metered.app.metrics_port)
    hits, misses = stats.hits, stats.misses

    created = stub.CreateProfile(profile_pb2.CreateProfileRequest(profile=new_profile()))
    for _ in range(5):
        stub.GetProfile(profile_pb2.GetProfileRequest(name=created.name))

    after = scrape(metered.app.metrics_port)
    hits_moved = value(after, "socialhub_cache_hits_total") - value(
        before, "socialhub_cache_hits_total"
    )
    misses_moved = value(after, "socialhub_cache_misses_total") - value(
        before, "socialhub_cache_misses_total"
    )
    assert hits_moved == stats.hits - hits >= 4, "the first read may miss, the others hit"
    assert misses_moved == stats.misses - misses >= 1
    for name in ("socialhub_cache_errors_total", "socialhub_cache_bypassed_total"):
        assert (name, ()) in after


def test_pool_and_up_gauges(metered: ServerThread) -> None:
    assert metered.app is not None
    samples = scrape(metered.app.metrics_port)
    settings = metered.settings
    assert value(samples, "socialhub_postgres_up") == 1
    assert value(samples, "socialhub_redis_up") == 1
    assert value(samples, "socialhub_db_pool_capacity") == (
        settings.db_pool_size + settings.db_max_overflow
    )
    for name in (
        "socialhub_db_pool_in_use",
        "socialhub_db_pool_waiting",
        "socialhub_rpc_in_flight",
    ):
        assert (name, ()) in samples, name
    assert ("socialhub_db_pool_waits_total", ()) in samples
    # The loop watch beats every 0.1 s from the start: a server up for a while has lag samples.
    assert value(samples, "socialhub_event_loop_lag_seconds_count") >= 1


def test_waiting_for_a_connection_in_flight_and_shed(backing: Backing) -> None:
    """One pooled connection held, one call waiting for it, one more shed at the limit."""
    settings = test_settings(
        auth_enabled=False,
        db_pool_size=1,
        db_max_overflow=0,
        db_pool_timeout_s=30,
        max_concurrent_rpcs=1,
        # Health probes would queue for the connection too; one at start is enough here.
        health_check_interval_s=3600,
    )
    # The periodic jobs (when this server leads them) and the publishing worker would queue
    # for the one connection too.
    server = ServerThread(
        settings,
        backing.database_url,
        backing.redis_url,
        {"run_workers": False, "run_jobs": False},
    ).start()
    try:
        app = server.app
        assert app is not None
        assert app.engine is not None
        assert server.loop is not None
        engine = app.engine
        held: Future[None] = Future()
        release = threading.Event()

        async def hold_the_connection() -> None:
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
                held.set_result(None)
                while not release.is_set():
                    await conn.execute(text("SELECT pg_sleep(0.05)"))

        holder = asyncio.run_coroutine_threadsafe(hold_the_connection(), server.loop)
        held.result(10)

        with grpc.insecure_channel(server.address) as channel, ThreadPoolExecutor(1) as pool:
            stub = ProfileServiceStub(channel)
            # Not found, so not cached: it needs the database, and waits for the connection.
            waiting = pool.submit(
                stub.GetProfile, profile_pb2.GetProfileRequest(name="profiles/424242"), timeout=30
            )
            wait_for(lambda: value(scrape(app.metrics_port), "socialhub_db_pool_waiting") == 1)
            samples = scrape(app.metrics_port)
            assert value(samples, "socialhub_db_pool_in_use") == 1
            assert value(samples, "socialhub_rpc_in_flight") == 1

            with pytest.raises(grpc.RpcError) as shed:
                stub.GetProfile(profile_pb2.GetProfileRequest(name="profiles/1"), timeout=10)
            assert shed.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED

            release.set()
            holder.result(10)
            with pytest.raises(grpc.RpcError) as missing:
                waiting.result(30)
            assert missing.value.code() == grpc.StatusCode.NOT_FOUND

        def settled() -> bool:
            samples = scrape(app.metrics_port)
            return value(samples, "socialhub_db_pool_waiting") == 0 and (
                value(samples, "socialhub_rpc_in_flight") == 0
            )

        wait_for(settled)
        samples = scrape(app.metrics_port)
        assert value(samples, "socialhub_db_pool_waits_total") >= 1
        assert value(samples, "socialhub_rpc_shed_total") == 1
        assert calls(samples, GET_PROFILE, "RESOURCE_EXHAUSTED") == 1
        assert calls(samples, GET_PROFILE, "NOT_FOUND") == 1
    finally:
        server.stop()


def test_metrics_can_be_turned_off(backing: Backing) -> None:
    server = ServerThread(
        test_settings(auth_enabled=False, metrics_enabled=False),
        backing.database_url,
        backing.redis_url,
    ).start()
    try:
        assert server.app is not None
        assert server.app.metrics is None
        assert server.app.metrics_port == 0
    finally:
        server.stop()


def _per_worker_calls(metrics_dir: Path, pid: int, method: str) -> float:
    """What one worker wrote: its own file in the shared directory, merged on its own."""
    merged = MultiProcessCollector.merge(  # type: ignore[no-untyped-call]
        [str(metrics_dir / f"counter_{pid}.db")]
    )
    return float(
        sum(
            sample.value
            for metric in merged
            for sample in metric.samples
            if sample.name == "socialhub_rpc_calls_total"
            and sample.labels == {"method": method, "code": "OK"}
        )
    )


def _leave_stale_count(metrics_dir: Path) -> None:
    """What a run that was killed leaves behind: serve must empty the directory first."""
    script = (
        "from prometheus_client import Counter\n"
        "calls = Counter('socialhub_rpc_calls', '', ['method', 'code'])\n"
        f"calls.labels({GET_PROFILE!r}, 'OK').inc(1000)\n"
    )
    env = os.environ | {"PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, timeout=60)
    assert list(metrics_dir.glob("counter_*.db"))


@pytest.mark.parametrize("given_dir", [True, False], ids=["given-dir", "temporary-dir"])
def test_one_scrape_shows_every_worker(backing: Backing, tmp_path: Path, given_dir: bool) -> None:
    port, metrics_port = free_port(), free_port()
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = {key: value for key, value in os.environ.items() if key != "PROMETHEUS_MULTIPROC_DIR"} | {
        "DATABASE_URL": backing.database_url,
        "REDIS_URL": backing.redis_url,
        "STATE_DIR": str(tmp_path / "state"),
        "PORT": str(port),
        "METRICS_PORT": str(metrics_port),
        "SEED_DEMO": "never",
        "AUTH_ENABLED": "false",
        "PAGE_TOKEN_SECRET": "test-metrics-secret",
        "TMPDIR": str(temporary),
    }
    if given_dir:
        metrics_dir = tmp_path / "prometheus"
        metrics_dir.mkdir()
        _leave_stale_count(metrics_dir)
        env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    stderr = tmp_path / "stderr.log"
    with stderr.open("w") as errors:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "serve", "--workers", "2"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=errors,
            text=True,
            start_new_session=True,
        )
    try:
        assert process.stdout is not None
        ready = READY.search(process.stdout.readline())
        assert ready, stderr.read_text()
        pids = [int(pid) for pid in ready[3].split()]
        if not given_dir:
            # Made by the parent before it forked, where temporary files go.
            (metrics_dir,) = temporary.glob("socialhub-metrics-*")

        with ExitStack() as channels:
            first = channels.enter_context(new_connection(port))
            created = ProfileServiceStub(first).CreateProfile(
                profile_pb2.CreateProfileRequest(profile=new_profile())
            )
            # A connection is served by one worker: 16 of them reach both, but for odds of
            # 2 in 2**16 (checked below, as tests/core/test_workers.py does).
            per_connection = 3
            for _ in range(16):
                stub = ProfileServiceStub(channels.enter_context(new_connection(port)))
                for _ in range(per_connection):
                    stub.GetProfile(profile_pb2.GetProfileRequest(name=created.name))
            per_worker = [established_connections(pid, port) for pid in pids]
            assert all(per_worker), per_worker

            samples = scrape(metrics_port)
        assert calls(samples, GET_PROFILE, "OK") == 16 * per_connection
        assert calls(samples, CREATE_PROFILE, "OK") == 1
        assert latency_count(samples, GET_PROFILE) == 16 * per_connection
        # Each worker wrote its part; the scrape is their sum.
        parts = [_per_worker_calls(metrics_dir, pid, GET_PROFILE) for pid in pids]
        assert all(parts), parts
        assert sum(parts) == 16 * per_connection
        # Gauges of the workers add up (pool) or take the lowest (up).
        settings = test_settings()
        assert value(samples, "socialhub_db_pool_capacity") == 2 * (
            settings.db_pool_size + settings.db_max_overflow
        )
        assert value(samples, "socialhub_postgres_up") == 1
        assert value(samples, "socialhub_redis_up") == 1

        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert metrics_dir.exists() == given_dir, "a temporary directory is removed at the end"
    logs = [json.loads(line) for line in stderr.read_text().splitlines() if line.startswith("{")]
    served = [entry for entry in logs if entry["msg"] == "serving metrics"]
    assert [entry["worker"] for entry in served] == [0], "worker 0 alone serves them"


def _metric_names(expr: str) -> set[str]:
    # Metric names in PromQL: identifiers that are not functions, keywords or label names.
    return set(re.findall(r"\b(socialhub_[a-z_]+)\b", expr))


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def test_the_dashboard_shows_metrics_the_server_exports(metered: ServerThread) -> None:
    assert metered.app is not None
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["schemaVersion"] >= 36
    variables = dashboard["templating"]["list"]
    datasource = next(v for v in variables if v["type"] == "datasource")
    assert datasource["query"] == "prometheus"

    exported = {name for name, _ in scrape(metered.app.metrics_port)}
    for variable in variables:
        if variable["type"] == "query":
            assert _metric_names(variable["definition"]) <= exported, variable["name"]
    shown: set[str] = set()
    panels = [panel for panel in _panels(dashboard) if panel["type"] != "row"]
    assert panels
    for panel in panels:
        assert panel["datasource"]["uid"] == "${" + datasource["name"] + "}", panel["title"]
        exprs = [target["expr"] for target in panel["targets"]]
        assert exprs, panel["title"]
        for expr in exprs:
            names = _metric_names(expr)
            assert names, (panel["title"], expr)
            assert names <= exported, (panel["title"], names - exported)
            shown |= names
    # What the dashboard is for: every kind of metric the server exports has a panel.
    assert {
        "socialhub_rpc_calls_total",
        "socialhub_rpc_duration_seconds_bucket",
        "socialhub_rpc_in_flight",
        "socialhub_rpc_shed_total",
        "socialhub_cache_hits_total",
        "socialhub_cache_misses_total",
        "socialhub_db_pool_in_use",
        "socialhub_db_pool_waiting",
        "socialhub_postgres_up",
        "socialhub_redis_up",
    } <= shown
