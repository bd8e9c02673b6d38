"""Request validation and proto -> domain mapping for FeedService.

Everything a client sends is checked here, so no bad input reaches PostgreSQL as an
error: text has no NUL characters, attributes are a finite JSON object of bounded size
and depth, and names parse to positive ids. A missing REQUIRED field is INVALID_ARGUMENT
naming it; OUTPUT_ONLY fields of a request's resource are never read.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from typing import Any

from google.protobuf import json_format, struct_pb2
from socialhub.v1 import feed_pb2

from server.core.errors import InvalidArgument, Violations
from server.core.names import parse_name
from server.core.validation import check_text
from server.feed.model import NewPost, PostChanges
from server.feed.tables import COMMENT_BODY_MAX, LANGUAGE_MAX, LOCATION_MAX, POST_BODY_MAX

PROFILES = "profiles"
POSTS = "posts"
COMMENTS = "comments"
FOLLOWS = "follows"
LIKES = "likes"
RELATIONSHIPS = "relationships"
ACTIVITY_EVENTS = "activityEvents"

ATTRIBUTES_MAX_BYTES = 16 * 1024
METADATA_MAX_DEPTH = 8
POST_TAGS_MAX = 20
MEDIA_MAX = 10
URI_MAX = 2048
LANGUAGE_CODE = re.compile(r"[A-Za-z]{2,8}(-[A-Za-z0-9]{1,8})*")
MEDIA_KINDS = {feed_pb2.Media.TYPE_IMAGE: "image", feed_pb2.Media.TYPE_VIDEO: "video"}
SEARCH_TAGS_MAX = 10
TAG_MAX = 64
BATCH_GET_MAX = 100
TYPED_POST_FIELDS = ("tags", "location", "media", "language_code", "attributes")
UPDATABLE_POST_FIELDS = ("body", *TYPED_POST_FIELDS)
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


def attributes_value(
    violations: Violations, field: str, struct: struct_pb2.Struct
) -> dict[str, Any] | None:
    """The free-form attributes as a JSON object, None when empty (stored as NULL)."""
    if not struct.fields:
        return None
    try:
        document: dict[str, Any] = json_format.MessageToDict(struct)
    except (ValueError, TypeError, json_format.Error):
        violations.add(field, "numbers must be finite")
        return None
    start = len(violations.items)
    _walk(violations, field, document, 1)
    _first_violation_only(violations, start)
    if len(violations.items) > start:
        return None
    size = len(json.dumps(document, separators=(",", ":"), allow_nan=False).encode())
    if size > ATTRIBUTES_MAX_BYTES:
        violations.add(field, f"must be at most {ATTRIBUTES_MAX_BYTES} bytes as JSON")
    return document


def tags_value(violations: Violations, field: str, tags: Sequence[str]) -> list[str]:
    if len(tags) > POST_TAGS_MAX:
        violations.add(field, f"must have at most {POST_TAGS_MAX} tags")
    for index, tag in enumerate(tags[:POST_TAGS_MAX]):
        check_text(violations, f"{field}[{index}]", tag, TAG_MAX)
        if not tag.strip():
            violations.add(f"{field}[{index}]", f"must be 1 to {TAG_MAX} characters")
    return list(tags)


def media_value(
    violations: Violations, field: str, media: Sequence[feed_pb2.Media]
) -> list[dict[str, str]] | None:
    """Stored as [{"kind": "image"|"video", "url": ...}], None when there is none."""
    if len(media) > MEDIA_MAX:
        violations.add(field, f"must have at most {MEDIA_MAX} items")
    items: list[dict[str, str]] = []
    for index, item in enumerate(media[:MEDIA_MAX]):
        kind = MEDIA_KINDS.get(item.type)
        if kind is None:
            violations.add(f"{field}[{index}].type", "is required")
        uri_field = f"{field}[{index}].uri"
        if not item.uri:
            violations.add(uri_field, "is required")
        else:
            check_text(violations, uri_field, item.uri, URI_MAX)
            if not item.uri.startswith(("http://", "https://")) or any(
                c.isspace() for c in item.uri
            ):
                violations.add(uri_field, "must be an http or https URI")
        items.append({"kind": kind or "", "url": item.uri})
    return items or None


def language_value(violations: Violations, field: str, code: str) -> str:
    check_text(violations, field, code, LANGUAGE_MAX)
    if code and not LANGUAGE_CODE.fullmatch(code):
        violations.add(field, "must be a BCP-47 language code such as 'en' or 'pt-BR'")
    return code


def district_value(violations: Violations, field: str, location: feed_pb2.Location) -> str:
    check_text(violations, field, location.district, LOCATION_MAX)
    return location.district


def _field_values(
    violations: Violations, post: feed_pb2.Post, fields: Sequence[str]
) -> dict[str, Any]:
    """The posts columns for the typed fields named in `fields`, validated."""
    values: dict[str, Any] = {}
    if "tags" in fields:
        values["tags"] = tags_value(violations, "post.tags", post.tags)
    if "location" in fields:
        values["location_district"] = district_value(
            violations, "post.location.district", post.location
        )
    if "media" in fields:
        values["media"] = media_value(violations, "post.media", post.media)
    if "language_code" in fields:
        values["language_code"] = language_value(
            violations, "post.language_code", post.language_code
        )
    if "attributes" in fields:
        values["attributes"] = attributes_value(violations, "post.attributes", post.attributes)
    return values


def new_post(request: feed_pb2.CreatePostRequest) -> NewPost:
    if not request.HasField("post"):
        raise InvalidArgument.single("post", "is required")
    post = request.post
    violations = Violations()
    try:
        author = profile_id(post.author, "post.author")
    except InvalidArgument as error:
        violations.items.extend(error.violations)
        author = 0
    body = body_text(violations, "post.body", post.body, POST_BODY_MAX)
    values = _field_values(violations, post, TYPED_POST_FIELDS)
    violations.raise_if_any()
    return NewPost(author_id=author, body=body, values=values)


def post_changes(request: feed_pb2.UpdatePostRequest) -> tuple[int, PostChanges]:
    if not request.HasField("post"):
        raise InvalidArgument.single("post", "is required")
    post = request.post
    post_key = post_id(post.name, "post.name")
    paths = list(request.update_mask.paths)
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
    author: int | None = None
    if paths == ["*"]:
        # A full replacement (AIP-134) sends the whole resource: its REQUIRED fields too, and
        # the IMMUTABLE author as it is (the service checks it is unchanged).
        try:
            author = profile_id(post.author, "post.author")
        except InvalidArgument as error:
            violations.items.extend(error.violations)
    values = _field_values(violations, post, expanded)
    if "body" in expanded:
        values["body"] = body_text(violations, "post.body", post.body, POST_BODY_MAX)
    violations.raise_if_any()
    fields = tuple(dict.fromkeys(expanded))
    return post_key, PostChanges(values=values, fields=fields, author_id=author)


def new_comment(request: feed_pb2.CreateCommentRequest) -> tuple[int, int, str]:
    """(post id, author id, body) of a CreateComment request."""
    violations = Violations()
    ids: list[int] = []
    for parse, name, field in (
        (post_id, request.parent, "parent"),
        (profile_id, request.comment.author, "comment.author"),
    ):
        try:
            ids.append(parse(name, field))
        except InvalidArgument as error:
            violations.items.extend(error.violations)
    if not request.HasField("comment"):
        violations.add("comment", "is required")
    else:
        body_text(violations, "comment.body", request.comment.body, COMMENT_BODY_MAX)
    violations.raise_if_any()
    return ids[0], ids[1], request.comment.body


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


def child_ids(name: str, field: str, parent: str, collection: str) -> tuple[int, int]:
    """(parent id, child id) of "{parent}/{id}/{collection}/{id}"."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != parent or parts[2] != collection:
        if not name:
            raise InvalidArgument.single(field, "is required")
        raise InvalidArgument.single(
            field,
            f"must look like '{parent}/<positive integer>/{collection}/<positive integer>'",
        )
    return (
        parse_name(f"{parent}/{parts[1]}", parent, field),
        parse_name(f"{collection}/{parts[3]}", collection, field),
    )


def comment_ids(name: str, field: str) -> tuple[int, int]:
    """(post id, comment id) of "posts/{post}/comments/{comment}"."""
    return child_ids(name, field, POSTS, COMMENTS)


def follow_ids(name: str, field: str) -> tuple[int, int]:
    """(follower id, followee id) of "profiles/{profile}/follows/{follow}"."""
    return child_ids(name, field, PROFILES, FOLLOWS)


def like_ids(name: str, field: str) -> tuple[int, int]:
    """(post id, profile id) of "posts/{post}/likes/{like}"."""
    return child_ids(name, field, POSTS, LIKES)


def relationship_ids(name: str, field: str) -> tuple[int, int]:
    """(profile id, other id) of "profiles/{profile}/relationships/{relationship}"."""
    return child_ids(name, field, PROFILES, RELATIONSHIPS)


def new_follow(request: feed_pb2.CreateFollowRequest) -> tuple[int, int]:
    """(follower id, followee id) of a CreateFollow request."""
    if not request.HasField("follow"):
        violations = Violations()
        try:
            profile_id(request.parent, "parent")
        except InvalidArgument as error:
            violations.items.extend(error.violations)
        violations.add("follow", "is required")
        violations.raise_if_any()
    return two_profiles(request.parent, "parent", request.follow.followee, "follow.followee")


def new_like(request: feed_pb2.CreateLikeRequest) -> tuple[int, int]:
    """(post id, profile id) of a CreateLike request."""
    violations = Violations()
    ids: list[int] = []
    for parse, name, field in (
        (post_id, request.parent, "parent"),
        (profile_id, request.like.profile, "like.profile"),
    ):
        try:
            ids.append(parse(name, field))
        except InvalidArgument as error:
            violations.items.extend(error.violations)
    if not request.HasField("like"):
        violations.add("like", "is required")
    violations.raise_if_any()
    return ids[0], ids[1]


# `<field> = "profiles/<id>"`, spaces around "=" optional: the only filters the feed takes.
_PROFILE_FILTER = re.compile(r'\s*([a-z_]+)\s*=\s*"(profiles/[^"]*)"\s*')


def profile_filter(text: str, field: str, allowed: Sequence[str]) -> tuple[str, int]:
    """(filter field, profile id) of a filter `<one of allowed> = "profiles/<id>"`."""
    forms = " or ".join(f"'{name} = \"profiles/<id>\"'" for name in allowed)
    if not text:
        raise InvalidArgument.single(field, f"is required: {forms}")
    match = _PROFILE_FILTER.fullmatch(text)
    if match is None or match.group(1) not in allowed:
        raise InvalidArgument.single(field, f"must be {forms}")
    return match.group(1), profile_id(match.group(2), field)


def follows_parent(request: feed_pb2.ListFollowsRequest) -> tuple[int | None, int | None]:
    """(follower id, followee id) of a ListFollows request; None is "any"."""
    followee: int | None = None
    if request.filter:
        followee = profile_filter(request.filter, "filter", ("followee",))[1]
    if request.parent == f"{PROFILES}/-":
        if followee is None:
            raise InvalidArgument.single(
                "filter", "is required with parent 'profiles/-': 'followee = \"profiles/<id>\"'"
            )
        return None, followee
    return profile_id(request.parent, "parent"), followee
