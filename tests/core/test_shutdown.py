"""Graceful shutdown: new calls are refused while an in-flight call still finishes."""

from __future__ import annotations

import asyncio
import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import grpc
import httpx
import pytest
from google.protobuf import field_mask_pb2
from socialhub.v1 import profile_pb2
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from server.core.stopping import StopOverran, stop_within
from tests.harness import Backing, ServerThread, test_settings
from tests.helpers import new_profile


def _wait_until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_in_flight_call_completes_while_new_calls_are_refused(backing: Backing) -> None:
    server = ServerThread(
        test_settings(shutdown_grace_s=10.0), backing.database_url, backing.redis_url
    ).start()
    channel = backing.channel(server.address)
    stub = ProfileServiceStub(channel)
    profile = stub.CreateProfile(profile_pb2.CreateProfileRequest(profile=new_profile()))
    profile_id = int(profile.name.split("/")[1])

    with backing.sql() as blocker, ThreadPoolExecutor(2) as pool:
        # Hold the row lock so UpdateProfile is provably in flight when shutdown starts.
        blocker.execute("BEGIN")
        blocker.execute("SELECT 1 FROM profiles WHERE id = %s FOR UPDATE", (profile_id,))
        update: Future[profile_pb2.Profile] = pool.submit(
            stub.UpdateProfile,
            profile_pb2.UpdateProfileRequest(
                profile=profile_pb2.Profile(name=profile.name, bio="finished during shutdown"),
                update_mask=field_mask_pb2.FieldMask(paths=["bio"]),
            ),
        )
        _wait_until(
            lambda: (
                # Blocked by this session's lock: other sessions of the shared database
                # (another test's server) may be waiting on locks of their own.
                blocker.execute(
                    "SELECT count(*) FROM pg_stat_activity"
                    " WHERE pg_backend_pid() = ANY(pg_blocking_pids(pid))"
                ).fetchone()
                == (1,)
            )
        )
        stopping = threading.Thread(target=server.stop)
        stopping.start()

        def new_calls_refused() -> bool:
            try:
                stub.GetProfile(profile_pb2.GetProfileRequest(name=profile.name), timeout=1)
            except grpc.RpcError as error:
                return bool(error.code() == grpc.StatusCode.UNAVAILABLE)
            return False

        _wait_until(new_calls_refused)
        assert not update.done()
        blocker.execute("COMMIT")
        assert update.result(timeout=10).bio == "finished during shutdown"
        stopping.join(15)
        assert not stopping.is_alive()
    channel.close()


def test_a_stop_that_overruns_its_deadline_logs_what_it_waits_for_and_gives_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def stuck_send() -> None:
        await asyncio.Event().wait()  # a call that never answers

    async def stop_waiting_on_a_send() -> None:
        send = asyncio.create_task(stuck_send(), name="publish-target-42")
        await send

    async def scenario() -> float:
        started = time.monotonic()
        with pytest.raises(StopOverran):
            await stop_within(stop_waiting_on_a_send(), timeout_s=0.3)
        return time.monotonic() - started

    with caplog.at_level(logging.ERROR, logger="socialhub"):
        took_s = asyncio.run(scenario())

    assert 0.3 <= took_s < 2.0
    [record] = [r for r in caplog.records if "overran" in r.getMessage()]
    pending = "\n".join(record.pending)  # type: ignore[attr-defined]
    assert "task publish-target-42" in pending
    assert "in stuck_send" in pending  # the frame it sits in, not just its name
    assert "thread MainThread" not in pending  # the thread that logs is not listed


def test_a_stop_within_its_deadline_returns_and_raises_what_it_raised() -> None:
    async def quick() -> None:
        await asyncio.sleep(0)

    async def failing() -> None:
        raise RuntimeError("pool close failed")

    asyncio.run(stop_within(quick(), timeout_s=1.0))
    with pytest.raises(RuntimeError, match="pool close failed"):
        asyncio.run(stop_within(failing(), timeout_s=1.0))


def test_readyz_turns_503_at_sigterm_while_the_drain_still_serves(backing: Backing) -> None:
    server = ServerThread(
        test_settings(shutdown_drain_s=2.0), backing.database_url, backing.redis_url
    ).start()
    assert server.app is not None
    probe = f"http://127.0.0.1:{server.app.metrics_port}/readyz"
    channel = backing.channel(server.address)
    stub = ProfileServiceStub(channel)
    created = stub.CreateProfile(profile_pb2.CreateProfileRequest(profile=new_profile()))
    assert httpx.get(probe, timeout=5).status_code == 200

    stopping = threading.Thread(target=server.stop)
    stopping.start()
    _wait_until(lambda: httpx.get(probe, timeout=5).status_code == 503)
    # A balancer that checks /readyz moves away now; calls that still come are served.
    read = stub.GetProfile(profile_pb2.GetProfileRequest(name=created.name), timeout=5)
    stopping.join(30)
    channel.close()

    assert read.name == created.name
    assert not stopping.is_alive()


HANGING_TEARDOWN = """
import sys, threading, time
from pathlib import Path
from server.core.logs import configure_logging
from server.core.stopping import TeardownWatch

configure_logging("INFO")
marker = Path(sys.argv[1])
watch = TeardownWatch(before_exit=lambda: marker.write_text("cleaned up"))
watch.arm(exit_code=int(sys.argv[2]), timeout_s=0.5)
if sys.argv[3] == "hang":
    threading.Event().wait()  # as a teardown stuck in a join
watch.disarm()
time.sleep(1.0)  # past the timeout: a disarmed watch does nothing
print("left normally")
"""


@pytest.mark.parametrize("exit_code", [0, 1])
def test_a_teardown_that_hangs_after_the_stop_is_left_with_the_stops_exit_code(
    tmp_path: Path, exit_code: int
) -> None:
    marker = tmp_path / "cleanup"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", HANGING_TEARDOWN, str(marker), str(exit_code), "hang"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode == exit_code, done.stderr
    assert time.monotonic() - started < 10
    assert marker.read_text() == "cleaned up"
    [record] = [json.loads(line) for line in done.stderr.splitlines() if "teardown" in line]
    assert record["msg"] == "the event loop's teardown hangs after the stop; leaving without it"
    assert any("in wait" in thread for thread in record["pending"]), record["pending"]


def test_a_teardown_that_ends_in_time_disarms_the_watch(tmp_path: Path) -> None:
    marker = tmp_path / "cleanup"
    done = subprocess.run(
        [sys.executable, "-c", HANGING_TEARDOWN, str(marker), "1", "return"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "left normally"
    assert not marker.exists()
