"""PublishingService request checks: names, tenancy, fields, filters. No I/O.

Tenancy comes first (AIP-211): a caller bound to other businesses learns nothing, not even
whether the business it named exists.
"""

from __future__ import annotations

import re
from collections.abc import Collection
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from socialhub.v1 import profile_pb2, publishing_pb2

from server.core.auth import current_principal
from server.core.errors import InvalidArgument, PermissionDenied, Violations
from server.core.names import parse_name
from server.core.validation import check_text
from server.publishing import scheduling
from server.publishing.adapters.base import Content, Platform
from server.publishing.mapping import PLATFORMS, STATE_FILTERS, business_name
from server.publishing.model import DirectTokens, NewPost, PostChanges, PostFilter, Schedule
from server.publishing.scheduling import Slot
from server.publishing.tables import (
    DISPLAY_NAME_MAX,
    MEDIA_MAX,
    TARGETS_MAX,
    TEXT_MAX,
    THREAD_MAX,
    TIME_ZONE_MAX,
    URI_MAX,
)

BUSINESSES = "businesses"
TOKEN_MAX = 8192
SCOPE_MAX = 200
_FILTER_TERM = re.compile(r'\s*([a-z_]+)\s*(=|>=|<)\s*"([^"]*)"\s*')


def authorize(business_id: int) -> None:
    """PERMISSION_DENIED unless the caller may reach this business."""
    if not current_principal().may_access(business_name(business_id)):
        raise PermissionDenied(
            "this API key is bound to other businesses",
            reason="BUSINESS_ACCESS_DENIED",
        )


def authorize_unbound() -> None:
    """CreateBusiness: a key bound to businesses cannot make new ones."""
    if current_principal().tenants:
        raise PermissionDenied(
            "an API key bound to businesses cannot create businesses",
            reason="BUSINESS_ACCESS_DENIED",
        )


def caller_businesses() -> list[int] | None:
    """The business ids a bound caller may list; None: any."""
    tenants = current_principal().tenants
    if not tenants:
        return None
    prefix = BUSINESSES + "/"
    return [
        int(tenant[len(prefix) :])
        for tenant in tenants
        if tenant.startswith(prefix) and tenant[len(prefix) :].isdigit()
    ]


def business_id(name: str, field: str) -> int:
    """The id of "businesses/<id>", authorized for the caller."""
    business = parse_name(name, BUSINESSES, field)
    authorize(business)
    return business


def child_ids(name: str, collection: str, field: str) -> tuple[int, int]:
    """(business id, child id) of "businesses/<b>/<collection>/<id>", authorized."""
    parent, separator, rest = name.partition(f"/{collection}/")
    if not separator:
        raise InvalidArgument.single(field, f"must look like 'businesses/<id>/{collection}/<id>'")
    business = business_id(parent, field)
    return business, parse_name(f"{collection}/{rest}", collection, field)


def platform(value: int, field: str) -> Platform:
    chosen = PLATFORMS.get(value)  # type: ignore[call-overload]
    if chosen is None:
        names = ", ".join(profile_pb2.Platform.Name(key) for key in PLATFORMS)
        raise InvalidArgument.single(field, f"must be one of {names}")
    assert isinstance(chosen, Platform)
    return chosen


def business_fields(violations: Violations, business: publishing_pb2.Business, prefix: str) -> None:
    if not business.display_name.strip():
        violations.add(f"{prefix}.display_name", "is required")
    check_text(violations, f"{prefix}.display_name", business.display_name, DISPLAY_NAME_MAX)
    if business.time_zone:
        time_zone(violations, f"{prefix}.time_zone", business.time_zone)


def time_zone(violations: Violations, field: str, value: str) -> None:
    if len(value) > TIME_ZONE_MAX or value not in _zones():
        violations.add(field, "must be an IANA time zone such as 'Europe/Paris'")
        return
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        violations.add(field, "must be an IANA time zone such as 'Europe/Paris'")


def _zones() -> set[str]:
    return available_timezones() | {"UTC"}


def business_update(request: publishing_pb2.UpdateBusinessRequest) -> tuple[int, dict[str, str]]:
    business = business_id(request.business.name, "business.name")
    violations = Violations()
    paths = list(request.update_mask.paths)
    if not paths:
        violations.add("update_mask", "must name at least one field")
    values: dict[str, str] = {}
    for path in paths:
        if path == "display_name":
            if not request.business.display_name.strip():
                violations.add("business.display_name", "is required")
            check_text(
                violations, "business.display_name", request.business.display_name, DISPLAY_NAME_MAX
            )
            values["display_name"] = request.business.display_name
        elif path == "time_zone":
            zone = request.business.time_zone or "UTC"
            time_zone(violations, "business.time_zone", zone)
            values["time_zone"] = zone
        else:
            violations.add("update_mask", f"'{path[:100]}' is not an updatable field of Business")
            break
    violations.raise_if_any()
    return business, values


def direct_tokens(request: publishing_pb2.ConnectAccountRequest) -> DirectTokens:
    violations = Violations()
    chosen: Platform | None = None
    try:
        chosen = platform(request.platform, "platform")
    except InvalidArgument as error:
        violations.items.extend(error.violations)
    # Never echo a token: only its shape is described.
    for field, value, required in (
        ("access_token", request.access_token, True),
        ("refresh_token", request.refresh_token, False),
    ):
        if required and not value:
            violations.add(field, "is required")
        if len(value) > TOKEN_MAX or any(ord(char) < 0x21 for char in value):
            violations.add(field, f"must be at most {TOKEN_MAX} printable characters")
    for index, scope in enumerate(request.scopes):
        check_text(violations, f"scopes[{index}]", scope, SCOPE_MAX)
    violations.raise_if_any()
    assert chosen is not None
    return DirectTokens(
        platform=chosen,
        access_token=request.access_token,
        refresh_token=request.refresh_token or None,
        expire_time=(
            request.token_expire_time.ToDatetime(tzinfo=UTC)
            if request.HasField("token_expire_time")
            else None
        ),
        scopes=tuple(request.scopes),
    )


def new_post(business: int, request: publishing_pb2.CreateBusinessPostRequest) -> NewPost:
    post = request.business_post
    violations = Violations()
    _content_fields(violations, post, CONTENT_PATHS)
    account_ids = _target_accounts(violations, business, post)
    schedule = _schedule(violations, post, request.next_free_slot)
    violations.raise_if_any()
    return NewPost(content=_content(post), account_ids=tuple(account_ids), schedule=schedule)


def post_update(
    request: publishing_pb2.UpdateBusinessPostRequest,
) -> tuple[int, int, PostChanges]:
    """UpdateBusinessPost: the post's ids and what its mask changes (docs in the proto)."""
    business, post_id = child_ids(request.business_post.name, "posts", "business_post.name")
    post = request.business_post
    violations = Violations()
    paths = frozenset(request.update_mask.paths)
    if not paths:
        violations.add("update_mask", "must name at least one field")
    unknown = sorted(paths - UPDATABLE_POST_PATHS)
    if unknown:
        violations.add(
            "update_mask", f"'{unknown[0][:100]}' is not an updatable field of BusinessPost"
        )
    _content_fields(violations, post, paths)
    account_ids = _target_accounts(violations, business, post) if "targets" in paths else []
    schedule: Schedule | None = None
    if paths & SCHEDULE_PATHS:
        # Only the masked schedule fields count (AIP-134); together they replace the schedule.
        given = publishing_pb2.BusinessPost(
            schedule_local_time=post.schedule_local_time if "schedule_local_time" in paths else "",
            time_zone=post.time_zone if "time_zone" in paths else "",
        )
        if "schedule_time" in paths and post.HasField("schedule_time"):
            given.schedule_time.CopyFrom(post.schedule_time)
        if paths & {"schedule_time", "schedule_local_time"}:
            schedule = _schedule(violations, given, next_free_slot=False)
        elif post.time_zone:  # "time_zone" alone: the post's local time in another zone
            time_zone(violations, "business_post.time_zone", post.time_zone)
            schedule = Schedule(time_zone=post.time_zone)
        else:
            schedule = Schedule()
    violations.raise_if_any()
    changes = PostChanges(
        paths=paths,
        content=_content(post),
        account_ids=tuple(account_ids),
        schedule=schedule,
    )
    return business, post_id, changes


CONTENT_PATHS = frozenset({"text", "media_uris", "first_comment", "thread"})
SCHEDULE_PATHS = frozenset({"schedule_time", "schedule_local_time", "time_zone"})
UPDATABLE_POST_PATHS = CONTENT_PATHS | SCHEDULE_PATHS | {"targets"}


def _content_fields(
    violations: Violations, post: publishing_pb2.BusinessPost, paths: Collection[str]
) -> None:
    """The content fields among `paths`, checked on their own (each platform checks more)."""
    if "text" in paths:
        if not post.text.strip():
            violations.add("business_post.text", "is required")
        check_text(violations, "business_post.text", post.text, TEXT_MAX)
    if "first_comment" in paths:
        check_text(violations, "business_post.first_comment", post.first_comment, TEXT_MAX)
    if "media_uris" in paths:
        if len(post.media_uris) > MEDIA_MAX:
            violations.add("business_post.media_uris", f"must hold at most {MEDIA_MAX} URLs")
        for index, uri in enumerate(post.media_uris):
            if not re.fullmatch(r"https?://[^\s]+", uri) or len(uri) > URI_MAX:
                violations.add(f"business_post.media_uris[{index}]", "must be an http(s) URL")
    if "thread" in paths:
        if len(post.thread) > THREAD_MAX:
            violations.add("business_post.thread", f"must hold at most {THREAD_MAX} posts")
        for index, text in enumerate(post.thread):
            if not text.strip():
                violations.add(f"business_post.thread[{index}]", "must not be empty")
            check_text(violations, f"business_post.thread[{index}]", text, TEXT_MAX)


def _content(post: publishing_pb2.BusinessPost) -> Content:
    return Content(
        text=post.text,
        media_urls=tuple(post.media_uris),
        first_comment=post.first_comment,
        thread=tuple(post.thread),
    )


def _schedule(
    violations: Violations, post: publishing_pb2.BusinessPost, next_free_slot: bool
) -> Schedule:
    """At most one of schedule_time, schedule_local_time (+ time_zone), next_free_slot."""
    given = [
        name
        for name, present in (
            ("business_post.schedule_time", post.HasField("schedule_time")),
            ("business_post.schedule_local_time", bool(post.schedule_local_time)),
            ("next_free_slot", next_free_slot),
        )
        if present
    ]
    if len(given) > 1:
        violations.add(given[1], f"cannot be given with {given[0]}: choose one way to schedule")
        return Schedule()
    if post.time_zone and not post.schedule_local_time:
        violations.add("business_post.time_zone", "is only for business_post.schedule_local_time")
    if post.time_zone:
        time_zone(violations, "business_post.time_zone", post.time_zone)
    local = None
    if post.schedule_local_time:
        local = scheduling.parse_local(post.schedule_local_time)
        if local is None:
            violations.add(
                "business_post.schedule_local_time",
                "must be a local date and time without offset, like '2026-03-29T09:30:00'",
            )
    return Schedule(
        instant=(
            post.schedule_time.ToDatetime(tzinfo=UTC) if post.HasField("schedule_time") else None
        ),
        local_time=local,
        time_zone=post.time_zone,
        next_free_slot=next_free_slot,
    )


def account_update(request: publishing_pb2.UpdateAccountRequest) -> tuple[int, int, list[Slot]]:
    """UpdateAccount: the account's ids and its new posting schedule, deduplicated and sorted."""
    business, account = child_ids(request.account.name, "accounts", "account.name")
    violations = Violations()
    paths = list(request.update_mask.paths)
    if not paths:
        violations.add("update_mask", "must name at least one field")
    for path in paths:
        if path != "posting_schedule":
            violations.add("update_mask", f"'{path[:100]}' is not an updatable field of Account")
            break
    given = request.account.posting_schedule
    if len(given) > scheduling.SLOTS_MAX:
        violations.add(
            "account.posting_schedule", f"must hold at most {scheduling.SLOTS_MAX} slots"
        )
    slots: set[Slot] = set()
    for index, item in enumerate(given[: scheduling.SLOTS_MAX]):
        slot = scheduling.parse_slot(item.day_of_week, item.local_time)
        if slot is None:
            field = f"account.posting_schedule[{index}]"
            if not 1 <= item.day_of_week <= 7:
                violations.add(f"{field}.day_of_week", "must be 1 (Monday) to 7 (Sunday)")
            else:
                violations.add(f"{field}.local_time", "must be a 24-hour time 'HH:MM'")
        else:
            slots.add(slot)
    violations.raise_if_any()
    return business, account, sorted(slots)


def _target_accounts(
    violations: Violations, business: int, post: publishing_pb2.BusinessPost
) -> list[int]:
    if not post.targets:
        violations.add("business_post.targets", "is required: at least one account")
    if len(post.targets) > TARGETS_MAX:
        violations.add("business_post.targets", f"must hold at most {TARGETS_MAX} accounts")
        return []
    account_ids: list[int] = []
    for index, target in enumerate(post.targets):
        field = f"business_post.targets[{index}].account"
        if not target.account:
            violations.add(field, "is required")
            continue
        try:
            target_business, account = child_ids(target.account, "accounts", field)
        except InvalidArgument as error:
            violations.items.extend(error.violations)
            continue
        if target_business != business:
            violations.add(field, "must be an account of the post's business")
        elif account in account_ids:
            violations.add(field, "names an account already targeted")
        else:
            account_ids.append(account)
    return account_ids


def post_filter(text: str, business: int) -> PostFilter:
    """ListBusinessPosts' filter: terms joined by AND (docs in the proto)."""
    if not text.strip():
        return PostFilter()
    states: tuple[str, ...] | None = None
    account: int | None = None
    since: datetime | None = None
    until: datetime | None = None
    for term in re.split(r"\s+AND\s+", text.strip()):
        match = _FILTER_TERM.fullmatch(term)
        if match is None:
            raise _bad_filter(f"cannot read '{term[:100]}'")
        key, operator, value = match.groups()
        if key == "state" and operator == "=":
            states = STATE_FILTERS.get(value)
            if states is None:
                raise _bad_filter(f"state must be one of {', '.join(sorted(STATE_FILTERS))}")
        elif key == "account" and operator == "=":
            account_business, account = child_ids(value, "accounts", "filter")
            if account_business != business:
                raise _bad_filter("account must be an account of this business")
        elif key == "create_time" and operator in (">=", "<"):
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise _bad_filter("create_time must be an RFC 3339 timestamp") from None
            if moment.tzinfo is None:
                raise _bad_filter("create_time must carry a time zone offset or Z")
            if operator == ">=":
                since = moment
            else:
                until = moment
        else:
            raise _bad_filter(f"'{key} {operator}' is not a filter of ListBusinessPosts")
    return PostFilter(states=states, account_id=account, since=since, until=until)


def _bad_filter(description: str) -> InvalidArgument:
    return InvalidArgument.single("filter", description)
