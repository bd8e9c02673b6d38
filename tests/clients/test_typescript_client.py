"""The TypeScript client against the real server: clients/typescript/examples/smoke.ts lists
every page, gets a profile, reads a stream and decodes two errors' details; its JSON must be
what the Python stubs see for the same calls."""

from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from socialhub.v1 import feed_pb2, profile_pb2
from socialhub.v1.feed_pb2_grpc import FeedServiceStub
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.clients.typescript_tools import NODE_BIN, PACKAGE, REPO, tool
from tests.harness import Backing, ServerThread, test_settings
from tests.helpers import new_profile
from tests.tls_servers import test_ca

PAGE_SIZE = 2
BATCH_SIZE = 2
MISSING = "profiles/9223372036854775807"
# The script sends these as x-request-id, so the details (request id included) are comparable.
NOT_FOUND_ID = "smoke-not-found"
INVALID_ID = "smoke-invalid-argument"


def _json(message: Message) -> Any:
    # The proto3 JSON mapping, as protobuf-es's toJson writes it (camelCase names, int64 as
    # strings, defaults left out), so equal messages give equal objects.
    return json_format.MessageToDict(message)


def _seed(profiles: ProfileServiceStub, feed: FeedServiceStub) -> str:
    """Five profiles (three pages of two); the first by display name wrote five posts (three
    stream batches of two). Returns its name."""
    names = [
        profiles.CreateProfile(
            profile_pb2.CreateProfileRequest(profile=new_profile(display_name))
        ).name
        for display_name in ("Ada Author", "Brian Reader", "Carla Reader", "Dan Reader", "Eve")
    ]
    for number in range(5):
        post = feed_pb2.Post(author=names[0], body=f"post {number}")
        if number == 0:
            # Every kind of field the JSON mapping writes differently: repeated strings, a
            # nested message, an enum, a Struct with a number, a list and a nested object.
            post.tags.extend(["townhall", "education"])
            post.location.district = "North"
            post.media.add(type=feed_pb2.Media.TYPE_IMAGE, uri="https://example.org/a.png")
            post.attributes.update({"score": 1.5, "links": ["a", "b"], "nested": {"ok": True}})
        feed.CreatePost(feed_pb2.CreatePostRequest(post=post))
    return names[0]


def _error(call: Any, request: Message, request_id: str) -> dict[str, Any]:
    """What the script reports for a failing call, as the Python stubs see it."""
    with pytest.raises(grpc.RpcError) as caught:
        call(request, metadata=[("x-request-id", request_id)])
    error = caught.value
    status = rpc_status.from_call(error)
    assert status is not None, "the error carries no google.rpc.Status"
    details: dict[str, Any] = {"errorInfo": None, "badRequest": None, "requestInfo": None}
    for key, kind in (
        ("errorInfo", error_details_pb2.ErrorInfo),
        ("badRequest", error_details_pb2.BadRequest),
        ("requestInfo", error_details_pb2.RequestInfo),
    ):
        for detail in status.details:
            if detail.Is(kind.DESCRIPTOR):
                message = kind()
                detail.Unpack(message)
                details[key] = _json(message)
                break
    return {"code": error.code().value[0], "message": error.details(), **details}


def _tsx(script: str, *args: str, env: dict[str, str] | None = None) -> str:
    """Run an example with tsx (TypeScript straight from the sources) and return its stdout."""
    run = subprocess.run(
        [tool(NODE_BIN / "tsx"), script, *args],
        cwd=PACKAGE,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 0, run.stderr
    return run.stdout


def _smoke(server: ServerThread, backing: Backing, *args: str) -> dict[str, Any]:
    output = _tsx(
        "examples/smoke.ts",
        f"--address={server.address}",
        f"--api-key={backing.admin_key}",
        f"--page-size={PAGE_SIZE}",
        f"--batch-size={BATCH_SIZE}",
        f"--missing={MISSING}",
        *args,
    )
    result: dict[str, Any] = json.loads(output)
    return result


def _reads(profiles: ProfileServiceStub, feed: FeedServiceStub, author: str) -> dict[str, Any]:
    """The script's reads (every page, the author, the author's stream) through the stubs."""
    pages = []
    request = profile_pb2.ListProfilesRequest(page_size=PAGE_SIZE)
    while True:
        page = profiles.ListProfiles(request)
        pages.append(_json(page))
        if not page.next_page_token:
            break
        request.page_token = page.next_page_token
    stream = feed.StreamProfilePosts(
        feed_pb2.StreamProfilePostsRequest(author=author, batch_size=BATCH_SIZE)
    )
    return {
        "pages": pages,
        "profile": _json(profiles.GetProfile(profile_pb2.GetProfileRequest(name=author))),
        "stream": [_json(batch) for batch in stream],
    }


def test_typescript_client_sees_what_the_python_stubs_see(
    server: ServerThread,
    backing: Backing,
    profiles: ProfileServiceStub,
    feed: FeedServiceStub,
) -> None:
    author = _seed(profiles, feed)

    smoke = _smoke(server, backing)

    reads = _reads(profiles, feed, author)
    assert len(reads["pages"]) == 3
    assert reads["profile"]["name"] == author
    assert [len(batch["posts"]) for batch in reads["stream"]] == [2, 2, 1]
    assert {key: smoke[key] for key in reads} == reads

    not_found = smoke["errors"]["notFound"]
    assert not_found["code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert not_found["errorInfo"]["reason"] == "PROFILE_NOT_FOUND"
    assert not_found["errorInfo"]["domain"] == "socialhub.dev"
    assert not_found["requestInfo"]["requestId"] == NOT_FOUND_ID
    expected = _error(
        profiles.GetProfile, profile_pb2.GetProfileRequest(name=MISSING), NOT_FOUND_ID
    )
    assert {key: not_found[key] for key in expected} == expected

    invalid = smoke["errors"]["invalidArgument"]
    assert invalid["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert invalid["errorInfo"]["reason"] == "REQUEST_FIELD_INVALID"
    assert [v["field"] for v in invalid["badRequest"]["fieldViolations"]] == ["page_size"]
    expected = _error(
        profiles.ListProfiles, profile_pb2.ListProfilesRequest(page_size=-1), INVALID_ID
    )
    assert {key: invalid[key] for key in expected} == expected


def test_typescript_client_over_tls(
    backing: Backing, profiles: ProfileServiceStub, feed: FeedServiceStub, tmp_path: Path
) -> None:
    """`tls: {ca}` reaches a server with a certificate of a private CA (the same database)."""
    author = _seed(profiles, feed)
    ca = test_ca(tmp_path / "pki")
    settings = test_settings(tls_cert_file=ca.cert_file, tls_key_file=ca.key_file)
    tls_server = ServerThread(settings, backing.database_url, backing.redis_url).start()
    try:
        smoke = _smoke(tls_server, backing, f"--ca={ca.ca_file}")
    finally:
        tls_server.stop()
    reads = _reads(profiles, feed, author)
    assert {key: smoke[key] for key in reads} == reads


def test_readme_example_runs(
    server: ServerThread,
    backing: Backing,
    profiles: ProfileServiceStub,
    feed: FeedServiceStub,
) -> None:
    """examples/quickstart.ts, which the READMEs quote, works as printed."""
    # The example streams "profiles/1": the per-test cleanup restarts the ids.
    assert _seed(profiles, feed) == "profiles/1"
    output = _tsx(
        "examples/quickstart.ts",
        env={"SOCIALHUB_ADDRESS": server.address, "SOCIALHUB_KEY": backing.admin_key},
    )
    lines = output.splitlines()
    assert lines[0] == "profiles/1 Ada Author 10n"  # console.log writes a bigint so
    assert len([line for line in lines if line.startswith("profiles/")]) == 5
    assert "5 posts, resume with " in output
    assert re.search(r"^not found: PROFILE_NOT_FOUND \(request \w+\)$", output, re.MULTILINE), (
        output
    )


def test_readme_examples_quote_the_checked_example() -> None:
    """Each TypeScript block of the READMEs is a part of examples/quickstart.ts, so `tsc` checks
    it and the test above runs it."""
    example = (PACKAGE / "examples" / "quickstart.ts").read_text()
    blocks = [
        block
        for readme in (REPO / "README.md", PACKAGE / "README.md")
        for block in re.findall(r"^```ts\n(.*?)^```$", readme.read_text(), re.DOTALL | re.MULTILINE)
    ]
    assert blocks, "no ```ts example in the READMEs"
    for block in blocks:
        assert block in example, f"README example is not in examples/quickstart.ts:\n{block}"
