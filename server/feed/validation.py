"""Request validation and proto -> domain mapping for FeedService.

Everything a client sends is checked here, so no bad input reaches PostgreSQL as an
error: text has no NUL characters, metadata is a finite JSON object of bounded size
and depth, and names parse to positive ids.
"""

from __future__ import annotations

import json
import math
from typing import Any

from google.protobuf import json_format, struct_pb2
from socialhub.v1 import feed_pb2

from server.core.errors import InvalidArgument, Violations
from server.core.names import parse_name
from server.core.validation import check_text
from server.feed.model import NewPost, PostChanges
from server.feed.tables import COMMENT_BODY_MAX, POST_BODY_MAX

PROFILES = "profiles"
POSTS = "posts"
COMMENTS = "comments"

METADATA_MAX_BYTES = 16 * 1024
METADATA_MAX_DEPTH = 8
POST_TAGS_MAX = 20
SEARCH_TAGS_MAX = 10
TAG_MAX = 64
BATCH_GET_MAX = 100
UPDATABLE_POST_FIELDS = ("body", "metadata")
OUTPUT_ONLY_POST_FIELDS = frozenset(
    {
        "name",
        "author",
        "like_count",
        "comment_count",
        "share_count",
        "view_count",
        "create_time",
        "update_time",
    }
)


def body_text(violations: Violations, field: str, value: str, max_length: int) -> str:
    check_text(violations, field, value, max_length)
    if not value.strip():
        violations.add(field, "is required")
    return value


def profile_id(name: str, field: str) -> int:
    return parse_name(name, PROFILES, field)


def post_id(name: str, field: str) -> int:
    return parse_name(name, POSTS, field)


def comment_ids(name: str, field: str) -> tuple[int, int]:
    """(post id, comment id) of "posts/{post}/comments/{comment}"."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != POSTS or parts[2] != COMMENTS:
        if not name:
            raise InvalidArgument.single(field, "is required")
        raise InvalidArgument.single(
            field, "must look like 'posts/<positive integer>/comments/<positive integer>'"
        )
    return (
        parse_name(f"{POSTS}/{parts[1]}", POSTS, field),
        parse_name(f"{COMMENTS}/{parts[3]}", COMMENTS, field),
    )


def _walk(violations: Violations, field: str, value: Any, depth: int) -> None:
    """Reject what JSONB cannot store (NUL, NaN, Infinity) and nesting beyond the limit."""
    if depth > METADATA_MAX_DEPTH:
        violations.add(field, f"must be nested at most {METADATA_MAX_DEPTH} levels deep")
        return
    if isinstance(value, dict):
        for key, item in value.items():
            if "\x00" in key:
                violations.add(field, "keys must not contain NUL characters")
                return
            _walk(violations, field, item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            _walk(violations, field, item, depth + 1)
    elif isinstance(value, str):
        if "\x00" in value:
            violations.add(field, "strings must not contain NUL characters")
    elif isinstance(value, float) and not math.isfinite(value):
        violations.add(field, "numbers must be finite")


def _first_violation_only(violations: Violations, start: int) -> None:
    # One bad value can repeat a hundred times in a big document; report each problem once.
    seen: set[tuple[str, str]] = set()
    kept = violations.items[:start]
    for item in violations.items[start:]:
        if (item.field, item.description) not in seen:
            seen.add((item.field, item.description))
            kept.append(item)
    violations.items = kept


def metadata_value(violations: Violations, field: str, struct: struct_pb2.Struct) -> dict[str, Any]:
    try:
        document: dict[str, Any] = json_format.MessageToDict(struct)
    except (ValueError, TypeError, json_format.Error):
        violations.add(field, "numbers must be finite")
        return {}
    start = len(violations.items)
    _walk(violations, field, document, 1)
    _first_violation_only(violations, start)
    if len(violations.items) > start:
        return {}
    size = len(json.dumps(document, separators=(",", ":"), allow_nan=False).encode())
    if size > METADATA_MAX_BYTES:
        violations.add(field, f"must be at most {METADATA_MAX_BYTES} bytes as JSON")
    tags = document.get("tags")
    if tags is not None:
        tags_field = f"{field}.tags"
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            violations.add(tags_field, "must be a list of strings")
        else:
            if len(tags) > POST_TAGS_MAX:
                violations.add(tags_field, f"must have at most {POST_TAGS_MAX} tags")
            if any(not t.strip() or len(t) > TAG_MAX for t in tags):
                violations.add(tags_field, f"each tag must be 1 to {TAG_MAX} characters")
    return document


def new_post(post: feed_pb2.Post) -> NewPost:
    violations = Violations()
    try:
        author = profile_id(post.author, "post.author")
    except InvalidArgument as error:
        violations.items.extend(error.violations)
        author = 0
    body = body_text(violations, "post.body", post.body, POST_BODY_MAX)
    metadata = metadata_value(violations, "post.metadata", post.metadata)
    violations.raise_if_any()
    return NewPost(author_id=author, body=body, metadata=metadata)


def post_changes(post: feed_pb2.Post, paths: list[str]) -> PostChanges:
    violations = Violations()
    if not paths:
        violations.add("update_mask", "must name at least one field")
    expanded = list(UPDATABLE_POST_FIELDS) if paths == ["*"] else paths
    for path in expanded:
        if path in OUTPUT_ONLY_POST_FIELDS:
            violations.add("update_mask", f"'{path}' cannot be updated")
        elif path not in UPDATABLE_POST_FIELDS:
            violations.add("update_mask", f"'{path[:100]}' is not an updatable field of Post")
    violations.raise_if_any()
    body = (
        body_text(violations, "post.body", post.body, POST_BODY_MAX) if "body" in expanded else None
    )
    metadata = (
        metadata_value(violations, "post.metadata", post.metadata)
        if "metadata" in expanded
        else None
    )
    violations.raise_if_any()
    return PostChanges(body=body, metadata=metadata)


def comment_body(comment: feed_pb2.Comment) -> str:
    violations = Violations()
    body = body_text(violations, "comment.body", comment.body, COMMENT_BODY_MAX)
    violations.raise_if_any()
    return body


def search_tags(tags: list[str]) -> list[str]:
    violations = Violations()
    if not tags:
        violations.add("tags", "must name at least one tag")
    if len(tags) > SEARCH_TAGS_MAX:
        violations.add("tags", f"must name at most {SEARCH_TAGS_MAX} tags")
    for index, tag in enumerate(tags[:SEARCH_TAGS_MAX]):
        check_text(violations, f"tags[{index}]", tag, TAG_MAX)
        if not tag.strip():
            violations.add(f"tags[{index}]", "must not be empty")
    violations.raise_if_any()
    # Order and repetition do not change the result; normalising them shares page tokens.
    return sorted(set(tags))


def batch_post_ids(names: list[str]) -> list[int]:
    if not names:
        raise InvalidArgument.single("names", "must name at least one post")
    if len(names) > BATCH_GET_MAX:
        raise InvalidArgument.single("names", f"must name at most {BATCH_GET_MAX} posts")
    return [post_id(name, f"names[{index}]") for index, name in enumerate(names)]


def two_profiles(first: str, first_field: str, second: str, second_field: str) -> tuple[int, int]:
    violations = Violations()
    ids: list[int] = []
    for name, field in ((first, first_field), (second, second_field)):
        try:
            ids.append(profile_id(name, field))
        except InvalidArgument as error:
            violations.items.extend(error.violations)
    violations.raise_if_any()
    return ids[0], ids[1]
