"""What an operator types: grpcurl with no proto files, through server reflection."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from tests.harness import Backing, ServerThread

GRPCURL = shutil.which("grpcurl", path=str(Path(sys.executable).parent)) or "grpcurl"


def grpcurl(
    server: ServerThread,
    *command: str,
    data: str | None = None,
    key: str | None = None,
    transport: tuple[str, ...] = ("-plaintext",),
) -> str:
    """grpcurl as the README shows it: with `-H "authorization: Bearer $SOCIALHUB_KEY"`."""
    flags = ["-d", data] if data is not None else []
    if key is not None:
        flags += ["-H", f"authorization: Bearer {key}"]
    result = subprocess.run(
        [GRPCURL, *transport, *flags, server.address, *command],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_list_and_describe_work_without_proto_files(server: ServerThread) -> None:
    services = grpcurl(server, "list").split()
    assert "socialhub.v1.ProfileService" in services
    assert "grpc.health.v1.Health" in services
    described = grpcurl(server, "describe", "socialhub.v1.ProfileService")
    assert "rpc ListProfiles" in described


def test_calls_and_health_check(backing: Backing, server: ServerThread) -> None:
    key = backing.admin_key
    created = json.loads(
        grpcurl(
            server,
            "socialhub.v1.ProfileService/CreateProfile",
            data='{"profile": {"displayName": "Grace Hopper", "x": {"handle": "grace"}}}',
            key=key,
        )
    )
    assert created["name"].startswith("profiles/")
    most_followed = json.dumps(
        {
            "page_size": 5,
            "order": {
                "field": "PROFILE_SORT_FIELD_FOLLOWERS",
                "platform": "PLATFORM_INSTAGRAM",
                "descending": True,
            },
        }
    )
    top = json.loads(
        grpcurl(server, "socialhub.v1.ProfileService/ListProfiles", data=most_followed, key=key)
    )
    assert [p["display_name"] for p in top["profiles"]] == ["Grace Hopper"]
    batch = json.loads(
        grpcurl(
            server,
            "socialhub.v1.ProfileService/BatchGetProfiles",
            data=json.dumps({"names": [created["name"], created["name"]]}),
            key=key,
        )
    )
    assert [p["name"] for p in batch["profiles"]] == [created["name"]] * 2
    summary = json.loads(grpcurl(server, "socialhub.v1.ProfileService/SummarizeProfiles", key=key))
    assert summary == {}  # Grace has no zone, district, constituency or designation
    health = json.loads(
        grpcurl(
            server,
            "grpc.health.v1.Health/Check",
            data='{"service": "socialhub.v1.ProfileService"}',
        )
    )
    assert health == {"status": "SERVING"}


def test_feed_calls_from_the_readme(backing: Backing, server: ServerThread) -> None:
    key = backing.admin_key
    author = json.loads(
        grpcurl(
            server,
            "socialhub.v1.ProfileService/CreateProfile",
            data='{"profile": {"display_name": "Ada", "x": {"handle": "ada"}}}',
            key=key,
        )
    )["name"]
    post = json.loads(
        grpcurl(
            server,
            "socialhub.v1.FeedService/CreatePost",
            data=json.dumps(
                {
                    "post": {
                        "author": author,
                        "body": "Town hall at 6pm",
                        "tags": ["townhall", "education"],
                        "location": {"district": "North"},
                    }
                }
            ),
            key=key,
        )
    )
    assert post["tags"] == ["townhall", "education"]
    assert post["location"] == {"district": "North"}
    found = json.loads(
        grpcurl(
            server,
            "socialhub.v1.FeedService/SearchPostsByTag",
            data='{"tags": ["education"], "page_size": 3}',
            key=key,
        )
    )
    assert [p["name"] for p in found["posts"]] == [post["name"]]
    streamed = grpcurl(
        server,
        "socialhub.v1.FeedService/StreamProfilePosts",
        data=json.dumps({"author": author, "batch_size": 100}),
        key=key,
    )
    assert post["name"] in streamed
    assert "resume_cursor" in streamed
