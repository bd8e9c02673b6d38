"""What an operator types: grpcurl with no proto files, through server reflection."""

from __future__ import annotations

import json
import subprocess

from server.demo_platforms import DemoPlatforms, connect_demo_business
from tests.fakes import Fakes
from tests.harness import Backing, ServerThread
from tests.readme import GRPCURL, readme_commands, run_readme_command


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


def test_publishing_calls_from_the_readme(
    backing: Backing, server: ServerThread, fakes: Fakes
) -> None:
    """The README's publishing walk-through, as printed, against the demo business make run
    connects (server/demo_platforms.py), on the fakes."""
    x, linkedin, page = (
        fakes.x.add_account("Demo"),
        fakes.linkedin.add_account("Demo"),
        fakes.meta.add_page("Demo Page"),
    )
    demo = DemoPlatforms(
        {
            "x": (x.access_token, x.refresh_token),
            "linkedin": (linkedin.access_token, linkedin.refresh_token),
            "facebook": (page.user_access_token, None),
            "instagram": (page.user_access_token, None),
        }
    )
    line = connect_demo_business(server.address, backing.admin_key, demo)
    assert "businesses/1 " in line, line
    assert "businesses/1/accounts/4" in line, line
    commands = readme_commands("PublishingService")
    assert len(commands) >= 7, commands
    outputs = []
    for command in commands:
        result = run_readme_command(command, server.address, backing.admin_key)
        assert result.returncode == 0, (command, result.stderr)
        outputs.append(result.stdout)
    watched = outputs[next(i for i, c in enumerate(commands) if "WatchBusinessPost" in c)]
    assert watched.count('"STATE_PUBLISHED"') >= 2, watched
    assert len(fakes.meta.posts(page.account_id)) == 1
    assert len(fakes.meta.posts(page.instagram_id)) == 1
