"""`make run`'s publishing demo: local fakes of X, LinkedIn and Meta, and a demo business
connected to them, so a newcomer can publish with grpcurl and watch the post go out.

Only on the embedded default, in a source checkout (the fakes live in tests/fakes, which no
wheel or image ships), and only when no platform URL is configured. The fakes run as a child
process; PublishingService is pointed at them through the same environment variables a
staging deployment would set. Their account ids are the same on every start, so the demo
business's accounts are reconnected with the fresh process's tokens each time.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import grpc
from socialhub.v1 import profile_pb2, publishing_pb2
from socialhub.v1.publishing_pb2_grpc import PublishingServiceStub

log = logging.getLogger("socialhub.demo")

FAKES_MODULE = "tests.fakes"
DEMO_BUSINESS = "Demo Bakery"
PLATFORM_URLS = ("X_API_BASE_URL", "LINKEDIN_API_BASE_URL", "META_GRAPH_BASE_URL")
PLATFORMS = {
    "x": profile_pb2.PLATFORM_X,
    "linkedin": profile_pb2.PLATFORM_LINKEDIN,
    "facebook": profile_pb2.PLATFORM_FACEBOOK,
    "instagram": profile_pb2.PLATFORM_INSTAGRAM,
}


@dataclass(frozen=True)
class DemoPlatforms:
    # platform -> (access token, refresh token or None), of the fakes' demo accounts.
    tokens: dict[str, tuple[str, str | None]]


@contextmanager
def platform_fakes(embedded: bool) -> Iterator[DemoPlatforms | None]:
    """Start the fakes and point PublishingService at them, when the demo applies."""
    if (
        not embedded
        or any(os.environ.get(name) for name in PLATFORM_URLS)
        or importlib.util.find_spec(FAKES_MODULE) is None
    ):
        yield None
        return
    process = subprocess.Popen(
        [sys.executable, "-m", FAKES_MODULE], stdout=subprocess.PIPE, text=True
    )
    try:
        yield _configure(process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()


def _configure(process: subprocess.Popen[str]) -> DemoPlatforms | None:
    assert process.stdout is not None
    for line in process.stdout:
        if line.startswith("# demo tokens "):
            tokens = json.loads(line.removeprefix("# demo tokens "))
            return DemoPlatforms({name: (pair[0], pair[1]) for name, pair in tokens.items()})
        key, separator, value = line.strip().partition("=")
        if separator and not key.startswith("#"):
            os.environ[key] = value
    log.warning("the platform fakes did not start; the publishing demo is off")
    return None


def announce(address: str, key: str | None, demo: DemoPlatforms | None) -> None:
    """Once the server answers: connect the demo business, off the server's event loop."""
    if demo is None:
        return

    def connect() -> None:
        try:
            print(connect_demo_business(address, key, demo), flush=True)
        except grpc.RpcError as error:
            log.warning("the publishing demo could not connect its accounts: %s", error.details())

    threading.Thread(target=connect, name="publishing-demo", daemon=True).start()


def connect_demo_business(address: str, key: str | None, demo: DemoPlatforms) -> str:
    """The demo business, with one account per platform, connected afresh; a line to print."""
    metadata: tuple[tuple[str, str | bytes], ...] = (
        (("authorization", f"Bearer {key}"),) if key else ()
    )
    with grpc.insecure_channel(address) as channel:
        stub = PublishingServiceStub(channel)
        listed = stub.ListBusinesses(
            publishing_pb2.ListBusinessesRequest(page_size=500), metadata=metadata, timeout=10
        )
        known = [b.name for b in listed.businesses if b.display_name == DEMO_BUSINESS]
        business = (
            known[0]
            if known
            else stub.CreateBusiness(
                publishing_pb2.CreateBusinessRequest(
                    business=publishing_pb2.Business(display_name=DEMO_BUSINESS)
                ),
                metadata=metadata,
                timeout=10,
            ).name
        )
        accounts = [
            stub.ConnectAccount(
                publishing_pb2.ConnectAccountRequest(
                    parent=business,
                    platform=PLATFORMS[platform],
                    access_token=access,
                    refresh_token=refresh or "",
                ),
                metadata=metadata,
                timeout=10,
            ).account.name
            for platform, (access, refresh) in demo.tokens.items()
        ]
    return (
        f"Publishing demo: {business} ({DEMO_BUSINESS}) is connected to local fakes of X, "
        f"LinkedIn, Facebook and Instagram as {', '.join(accounts)} (README: Publishing)"
    )
