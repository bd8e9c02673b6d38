"""A rolling restart under load: SIGTERM to one replica fails none of the calls it accepted.

The stopping replica first says NOT_SERVING while it still serves (so a load balancer drains
it), then refuses new calls with UNAVAILABLE, which clients retry elsewhere, and finishes the
calls in flight.
"""

from __future__ import annotations

import collections
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from google.protobuf import field_mask_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from socialhub.v1 import profile_pb2
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from bench import credentials
from tests.harness import Backing
from tests.helpers import new_profile
from tests.replicas import replicas, round_robin_channel, wait_for

pytestmark = pytest.mark.slow

CALLERS = 16
# Long enough that a loaded machine still answers inside the drain window.
DRAIN_S = 4.0


def test_sigterm_under_load_fails_no_accepted_call(backing: Backing, tmp_path: Path) -> None:
    env = {
        **backing.serve_env(),
        "SEED_DEMO": "never",
        "SHUTDOWN_DRAIN_S": str(DRAIN_S),
        "SHUTDOWN_GRACE_S": "10",
        "HEALTH_CHECK_INTERVAL_S": "0.5",
    }
    with replicas(env, tmp_path, 2) as (stopping, staying):
        channel = credentials.authorized(
            round_robin_channel([stopping, staying]), backing.admin_key
        )
        stub = ProfileServiceStub(channel)
        created = stub.CreateProfile(profile_pb2.CreateProfileRequest(profile=new_profile()))
        codes: collections.Counter[str] = collections.Counter()
        lock = threading.Lock()
        done = threading.Event()

        def call_until_done(index: int) -> None:
            while not done.is_set():
                try:
                    if index % 2:
                        stub.GetProfile(profile_pb2.GetProfileRequest(name=created.name))
                    else:
                        stub.UpdateProfile(
                            profile_pb2.UpdateProfileRequest(
                                profile=profile_pb2.Profile(name=created.name, bio=f"b{index}"),
                                update_mask=field_mask_pb2.FieldMask(paths=["bio"]),
                            ),
                            timeout=30,
                        )
                    code = "OK"
                except grpc.RpcError as error:
                    code = error.code().name
                with lock:
                    codes[code] += 1

        direct = backing.channel(f"127.0.0.1:{stopping.port}")
        health = health_pb2_grpc.HealthStub(direct)
        with ThreadPoolExecutor(CALLERS) as pool:
            try:
                for index in range(CALLERS):
                    pool.submit(call_until_done, index)
                wait_for(lambda: codes["OK"] > 200, what="load to build up")
                stopping.process.send_signal(signal.SIGTERM)

                # Draining: NOT_SERVING, yet calls sent straight to it still succeed.
                def not_serving() -> bool:
                    answer = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                    return bool(answer.status == health_pb2.HealthCheckResponse.NOT_SERVING)

                wait_for(not_serving, timeout_s=DRAIN_S, what="NOT_SERVING during the drain")
                served = ProfileServiceStub(direct).GetProfile(
                    profile_pb2.GetProfileRequest(name=created.name), timeout=1
                )
                assert served.name == created.name

                assert stopping.process.wait(30) == 0
                before = codes["OK"]
                time.sleep(0.5)  # the survivor carries the load alone
            finally:
                done.set()  # the callers stop even when an assertion fails
        assert codes["OK"] > before
        direct.close()
        channel.close()

    failures = {code: n for code, n in codes.items() if code != "OK"}
    # Only UNAVAILABLE (retryable, sent after the listener closed) may appear; never
    # CANCELLED, INTERNAL or UNKNOWN for a call the stopping replica had accepted.
    assert set(failures) <= {"UNAVAILABLE"}, failures
    assert "Traceback" not in stopping.stderr.read_text()
