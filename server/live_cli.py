"""`socialhub top` and `socialhub watch`: live terminal views of AnalyticsService's streams,
through the Python client's channel (API key, TLS or plaintext as every client sets them).
q or Ctrl-C quits."""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import threading
import tty
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Annotated, Any

import grpc
import typer
from google.protobuf.duration_pb2 import Duration
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text
from socialhub.client.channel import SYSTEM_ROOTS, Tls, connect
from socialhub.v1 import analytics_pb2, profile_pb2
from socialhub.v1.analytics_pb2_grpc import AnalyticsServiceStub

Address = Annotated[str, typer.Option(help="The server, host:port.")]
Key = Annotated[
    str | None,
    typer.Option(help="API key (analytics.read); env SOCIALHUB_KEY.", show_default=False),
]
Plaintext = Annotated[bool, typer.Option(help="No TLS (a local server).")]
CaFile = Annotated[
    str | None, typer.Option(help="Trust this CA (PEM) instead of the system's roots.")
]

RECENT_EVENTS = 20


def _channel(address: str, key: str | None, plaintext: bool, ca_file: str | None) -> grpc.Channel:
    api_key = key or os.environ.get("SOCIALHUB_KEY") or None
    tls = None if plaintext else (Tls(ca_file=ca_file) if ca_file else SYSTEM_ROOTS)
    # Streams run until the user quits: no deadline.
    return connect(address, api_key=api_key, tls=tls, timeout=None, stream_timeout=None)


def _latency(seconds: float) -> str:
    if seconds <= 0:
        return "-"
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


def metrics_view(sample: analytics_pb2.WatchServiceMetricsResponse, address: str) -> Group:
    when = sample.sample_time.ToDatetime(UTC).strftime("%H:%M:%S")
    header = Text(
        f"socialhub top  {address}  {when} UTC  every {sample.interval_seconds:g} s  "
        f"replicas {sample.replica_count}\n"
        f"calls/s {sample.calls_per_second:.1f}  errors {sample.error_rate:.1%}  "
        f"cache hits {sample.cache_hit_ratio:.1%}  "
        f"db pool {sample.db_pool_in_use}/{sample.db_pool_capacity}",
        style="bold",
    )
    table = Table(expand=True)
    table.add_column("method")
    for name in ("calls", "calls/s", "errors", "p50", "p99"):
        table.add_column(name, justify="right")
    for m in sample.methods:
        table.add_row(
            m.method,
            str(m.call_count),
            f"{m.calls_per_second:.1f}",
            f"{m.error_rate:.1%}",
            _latency(m.p50_latency_seconds),
            _latency(m.p99_latency_seconds),
        )
    if not sample.methods:
        table.add_row("(no calls in this interval)", "", "", "", "", "")
    return Group(header, table)


def events_view(
    profile: str, events: deque[analytics_pb2.WatchProfileMetricsResponse], total: int
) -> Group:
    header = Text(
        f"socialhub watch {profile}  {total} events  (newest first; q quits)", style="bold"
    )
    table = Table(expand=True)
    for name in ("event", "platform", "post", "observed", "likes", "comments", "shares"):
        table.add_column(name)
    table.add_column("views", justify="right")
    table.add_column("engagement", justify="right")
    table.add_column("change", justify="right")
    for event in events:
        m = event.metrics
        table.add_row(
            event.event_id,
            profile_pb2.Platform.Name(m.platform).removeprefix("PLATFORM_").lower(),
            m.post_id,
            m.observe_time.ToDatetime(UTC).strftime("%Y-%m-%d %H:%M"),
            str(m.likes),
            str(m.comments),
            str(m.shares),
            str(m.views),
            str(m.engagement),
            f"{event.engagement_change:+d}" if event.latest else "(older)",
        )
    return Group(header, table)


QUIT_KEYS = (b"q", b"Q")


@contextlib.contextmanager
def _quit_key(call: Any) -> Iterator[None]:
    """While the view runs on a terminal, q cancels the call, as Ctrl-C does. The terminal
    reads keys unbuffered and unechoed meanwhile (Ctrl-C still signals), and gets its
    settings back after."""
    if not sys.stdin.isatty():
        yield
        return
    fd = sys.stdin.fileno()
    saved = termios.tcgetattr(fd)
    done = threading.Event()

    def read_keys() -> None:
        while not done.is_set():
            ready, _, _ = select.select([fd], [], [], 0.1)
            if not ready:
                continue
            key = os.read(fd, 1)
            if not key:
                return  # the terminal is gone: nothing more to read (select would spin)
            if key in QUIT_KEYS:
                call.cancel()
                return

    tty.setcbreak(fd)
    reader = threading.Thread(target=read_keys, name="quit-key", daemon=True)
    reader.start()
    try:
        yield
    finally:
        done.set()
        reader.join(1)
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


def _until_interrupted(call: Any, items: Iterator[Any], show: Any) -> None:
    try:
        with _quit_key(call):
            for item in items:
                show(item)
    except KeyboardInterrupt:
        call.cancel()
    except grpc.RpcError as error:
        if error.code() != grpc.StatusCode.CANCELLED:
            typer.echo(f"socialhub: {error.code().name}: {error.details()}", err=True)
            raise typer.Exit(1) from None


def top(
    address: Address = "127.0.0.1:50051",
    key: Key = None,
    plaintext: Plaintext = False,
    ca_file: CaFile = None,
    interval: Annotated[float, typer.Option(help="Seconds between updates.")] = 2.0,
    fleet: Annotated[bool, typer.Option(help="Every replica's calls, not one replica's.")] = False,
) -> None:
    """A live view of the service's metrics (WatchServiceMetrics). q or Ctrl-C quits.

    Calls/s, errors and p50/p99 latency per method, cache hit ratio, database pool."""
    seconds, nanos = divmod(round(interval * 1e9), 10**9)
    request = analytics_pb2.WatchServiceMetricsRequest(
        interval=Duration(seconds=seconds, nanos=nanos), fleet=fleet
    )
    console = Console()
    with _channel(address, key, plaintext, ca_file) as channel:
        call = AnalyticsServiceStub(channel).WatchServiceMetrics(request)
        waiting = Text(f"socialhub top  {address}  waiting for the first interval...")
        with Live(waiting, console=console, auto_refresh=False, screen=False) as live:
            _until_interrupted(
                call, call, lambda s: live.update(metrics_view(s, address), refresh=True)
            )


def watch(
    profile: Annotated[str, typer.Argument(help="The profile, profiles/42 (or 42).")],
    address: Address = "127.0.0.1:50051",
    key: Key = None,
    plaintext: Plaintext = False,
    ca_file: CaFile = None,
    resume: Annotated[str, typer.Option(help="Start after this event id.")] = "",
) -> None:
    """A live view of a profile's metric snapshots (WatchProfileMetrics). q or Ctrl-C quits."""
    name = profile if "/" in profile else f"profiles/{profile}"
    request = analytics_pb2.WatchProfileMetricsRequest(profile=name, resume_event_id=resume)
    events: deque[analytics_pb2.WatchProfileMetricsResponse] = deque(maxlen=RECENT_EVENTS)
    counted = [0]
    console = Console()
    started = datetime.now(UTC).strftime("%H:%M:%S")
    with _channel(address, key, plaintext, ca_file) as channel:
        call = AnalyticsServiceStub(channel).WatchProfileMetrics(request)
        with Live(
            Text(f"socialhub watch {name}  watching since {started} UTC, no events yet"),
            console=console,
            auto_refresh=False,
        ) as live:

            def show(event: analytics_pb2.WatchProfileMetricsResponse) -> None:
                events.appendleft(event)
                counted[0] += 1
                live.update(events_view(name, events, counted[0]), refresh=True)

            _until_interrupted(call, call, show)
