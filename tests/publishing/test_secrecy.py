"""Platform tokens never appear in a response, a log line or an error message, and are stored
only encrypted.

A real `socialhub serve` process, logging at DEBUG into a file, is driven through a full run
with the fakes: accounts connected directly and over OAuth on every platform, posts published
to each, a token refreshed, a refresh refused, and requests that carry tokens the server
refuses. Then every token the fakes ever issued (and every secret sent) is looked for in the
log, in every response and error, and in the database.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import grpc
import httpx
import psycopg
import pytest
from google.protobuf.message import Message
from socialhub.v1 import profile_pb2, publishing_pb2
from socialhub.v1.publishing_pb2_grpc import PublishingServiceStub

from bench import credentials
from server.core import apikeys
from server.core.embedded import free_port
from server.publishing.accounts import pkce_challenge
from server.publishing.tokens import TokenCipher, new_key
from tests.fakes import Fakes
from tests.harness import Backing
from tests.publishing.support import FINAL, IMAGE, PLATFORMS, Target, post_request

pytestmark = pytest.mark.slow

M = TypeVar("M", bound=Message)
READY_WITHIN_S = 60.0


@pytest.fixture
def fresh_database(backing: Backing) -> Iterator[str]:
    """A database of its own: the session server's workers must not take this run's posts."""
    name = f"secrecy_{uuid.uuid4().hex[:8]}"
    with backing.sql() as conn:
        conn.execute(f"CREATE DATABASE {name}")
    try:
        yield backing.database_url.replace("/postgres?", f"/{name}?")
    finally:
        with backing.sql() as conn:
            conn.execute(f"DROP DATABASE {name} WITH (FORCE)")


@dataclass
class Served:
    process: subprocess.Popen[bytes]
    port: int
    log: Path


@contextmanager_fixture := None  # placeholder removed below
