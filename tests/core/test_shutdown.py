"""Graceful shutdown: new calls are refused while an in-flight call still finishes."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import grpc
from google.protobuf import field_mask_pb2
from socialhub.v1 import profile_pb2
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

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
                blocker.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
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
