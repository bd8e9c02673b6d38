"""Keyset pagination, checked page by page against PostgreSQL answering the same question."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from socialhub.v1 import profile_pb2
from socialhub.v1.profile_pb2_grpc import ProfileServiceStub

from tests.harness import Backing, ServerThread
from tests.profiles.support import create, list_pages, search_pages, seed

Presence = profile_pb2.PlatformPresence
PAGE_SIZE = 97
PLATFORM_ENUMS = {
    "facebook": profile_pb2.PLATFORM_FACEBOOK,
    "x": profile_pb2.PLATFORM_X,
    "instagram": profile_pb2.PLATFORM_INSTAGRAM,
    "youtube": profile_pb2.PLATFORM_YOUTUBE,
    "linkedin": profile_pb2.PLATFORM_LINKEDIN,
}


@dataclass(frozen=True)
class Order:
    column: str
    descending: bool

    def message(self) -> profile_pb2.ProfileOrder:
        if self.column == "display_name":
            field_ = profile_pb2.PROFILE_SORT_FIELD_DISPLAY_NAME
        elif self.column == "created_at":
            field_ = profile_pb2.PROFILE_SORT_FIELD_CREATE_TIME
        else:
            field_ = profile_pb2.PROFILE_SORT_FIELD_FOLLOWERS
        platform = PLATFORM_ENUMS.get(self.column.removesuffix("_followers"))
        return profile_pb2.ProfileOrder(
            field=field_,
            platform=platform or profile_pb2.PLATFORM_UNSPECIFIED,
            descending=self.descending,
        )

    def sql(self) -> str:
        direction = "DESC" if self.descending else "ASC"
        return f"ORDER BY {self.column} {direction}, id {direction}"


ORDERS = [
    Order(column, descending)
    for column in (
        "display_name",
        "created_at",
        "total_followers",
        *(f"{platform}_followers" for platform in PLATFORM_ENUMS),
    )
    for descending in (False, True)
]


@dataclass(frozen=True)
class Filter:
    """A ProfileFilter and the WHERE clause that means the same, written independently."""

    label: str
    exact: dict[str, str] = field(default_factory=dict)
    # (platform, flag, value), e.g. ("x", "active", True)
    statuses: tuple[tuple[str, str, bool], ...] = ()

    def message(self) -> profile_pb2.ProfileFilter:
        message = profile_pb2.ProfileFilter()
        for column, text in self.exact.items():
            setattr(message, column, text)
        for platform, flag, wanted in self.statuses:
            status = message.platform_statuses.add(platform=PLATFORM_ENUMS[platform])
            setattr(status, flag, wanted)
        return message

    def sql(self) -> tuple[str, list[Any]]:
        clauses = [f"{column} = %s" for column in self.exact]
        params: list[Any] = list(self.exact.values())
        for platform, flag, value in self.statuses:
            clauses.append(f"{platform}_{flag} = %s")
            params.append(value)
        return ("WHERE " + " AND ".join(clauses) if clauses else ""), params


FILTERS = [
    Filter("none"),
    Filter("zone", {"zone": "North"}),
    Filter("zone+designation", {"zone": "South", "designation": "Mayor"}),
    Filter("party_district", {"party_district": "East District 2"}),
    Filter("constituency", {"constituency": "West District 3 - Ward 5"}),
    Filter("x active", statuses=(("x", "active", True),)),
    Filter("facebook inactive", statuses=(("facebook", "active", False),)),
    Filter("instagram verified", statuses=(("instagram", "verified", True),)),
    Filter(
        "combined",
        {"zone": "Central", "designation": "Councillor"},
        (("youtube", "active", True), ("linkedin", "verified", False)),
    ),
    Filter("matches nothing", {"zone": "Atlantis"}),
]


# Names whose order depends on case, accents, punctuation and spaces, with duplicates.
AWKWARD_NAMES = (
    "ada",
    "Ada",
    "ADA",
    "Ädå",
    "ada ",
    " ada",
    "O'Brien",
    "o brien",
    "Zoë",
    "zoe",
    "Ада",
)


def seed_varied(server: ServerThread, backing: Backing, count: int) -> None:
    """Demo profiles with spread-out creation times (with ties), before any cached read."""
    seed(server, count)
    with backing.sql() as conn:
        for index, name in enumerate(AWKWARD_NAMES):
            conn.execute(
                "INSERT INTO profiles (display_name, zone, x_handle, x_followers, x_active)"
                " VALUES (%s, 'North', 'h', %s, true)",
                (name, index % 3),
            )
    with backing.sql() as conn:
        # One COPY gives every row the same created_at; spread them, keeping some ties.
        conn.execute(
            "UPDATE profiles SET created_at = created_at"
            " - ((id * 7919) % 1000) * interval '1 minute'"
            " - (id % 3) * interval '1 microsecond'"
        )
        conn.execute("ANALYZE profiles")


def sql_ids(backing: Backing, where: str, params: list[Any], order_by: str) -> list[int]:
    with backing.sql() as conn:
        rows = conn.execute(f"SELECT id FROM profiles {where} {order_by}", params).fetchall()
    return [int(row[0]) for row in rows]


def ids_of(profiles: list[profile_pb2.Profile]) -> list[int]:
    return [int(p.name.removeprefix("profiles/")) for p in profiles]


@pytest.mark.parametrize("profile_filter", FILTERS, ids=[f.label for f in FILTERS])
def test_every_order_walks_like_sql(
    profiles: ProfileServiceStub,
    server: ServerThread,
    backing: Backing,
    profile_filter: Filter,
) -> None:
    seed_varied(server, backing, 2500)
    where, params = profile_filter.sql()
    expected_total = len(sql_ids(backing, where, params, ""))
    # Narrow filters get small pages so that they too span several.
    page_size = PAGE_SIZE if expected_total > 2 * PAGE_SIZE else 3
    if profile_filter.label != "matches nothing":
        assert expected_total > 2 * page_size, "the filter should span several pages"
    for order in ORDERS:
        request = profile_pb2.ListProfilesRequest(
            page_size=page_size, filter=profile_filter.message(), order=order.message()
        )
        served: list[int] = []
        for page in list_pages(profiles, request):
            assert page.total_size == expected_total, order
            assert len(page.profiles) <= page_size
            if page.next_page_token:
                assert len(page.profiles) == page_size, order
            served.extend(ids_of(list(page.profiles)))
        assert served == sql_ids(backing, where, params, order.sql()), order


@pytest.mark.parametrize(
    "order",
    [Order("display_name", False), Order("total_followers", True), Order("created_at", False)],
    ids=lambda order: f"{order.column}-{'desc' if order.descending else 'asc'}",
)
def test_keyset_survives_inserts_and_deletes_between_pages(
    profiles: ProfileServiceStub, server: ServerThread, backing: Backing, order: Order
) -> None:
    seed_varied(server, backing, 400)
    request = profile_pb2.ListProfilesRequest(page_size=25, order=order.message())
    throughout = set(sql_ids(backing, "", [], ""))
    deleted: set[int] = set()
    inserted_after: set[int] = set()
    inserted_before: set[int] = set()
    served: list[int] = []
    for number, page in enumerate(list_pages(profiles, request)):
        served.extend(ids_of(list(page.profiles)))
        if not page.next_page_token or number % 2:
            continue
        cursor = served[-1]
        remaining = [i for i in sql_ids(backing, "", [], order.sql()) if i not in served]
        # Delete two rows the walk has not reached yet.
        for victim in remaining[3:5]:
            profiles.DeleteProfile(profile_pb2.DeleteProfileRequest(name=f"profiles/{victim}"))
            deleted.add(victim)
        # Insert one row that sorts before the cursor and one that sorts after it.
        for low in (True, False):
            name = create(
                profiles,
                ("Aaaaaa Early" if low else "Zzzzzz Late") + f" {number}",
                x=Presence(handle="h", followers=0 if low else 10**12),
            )
            new_id = int(name.removeprefix("profiles/"))
            now_ordered = sql_ids(backing, "", [], order.sql())
            before = now_ordered.index(new_id) < now_ordered.index(cursor)
            (inserted_before if before else inserted_after).add(new_id)
    assert len(served) == len(set(served)), "a row was served twice"
    assert not set(served) & deleted, "a row deleted before it was reached was served"
    assert throughout - deleted <= set(served), "a row present throughout was missed"
    assert inserted_after <= set(served), "a row inserted ahead of the cursor was missed"
    assert not set(served) & inserted_before
    assert inserted_after, "the test should insert rows ahead of the cursor"
    # New rows are the newest, so by creation time they can only land ahead of the cursor.
    if order.column != "created_at":
        assert inserted_before, "the test should insert rows behind the cursor"


SEARCHES = [
    ("councillor", Filter("none")),
    ("north", Filter("none")),
    ("mayor or minister", Filter("none")),
    ('"district 2"', Filter("none")),
    ("sara -khan", Filter("none")),
    ("healthcare", Filter("zone", {"zone": "West"}, (("x", "active", True),))),
]


@pytest.mark.parametrize(("query", "profile_filter"), SEARCHES, ids=[q for q, _ in SEARCHES])
def test_search_walks_every_match_once_best_first(
    profiles: ProfileServiceStub,
    server: ServerThread,
    backing: Backing,
    query: str,
    profile_filter: Filter,
) -> None:
    seed_varied(server, backing, 2500)
    where, params = profile_filter.sql()
    match = "search_vector @@ websearch_to_tsquery('simple', %s)"
    where = f"{where} AND {match}" if where else f"WHERE {match}"
    expected = sql_ids(
        backing,
        where,
        [*params, query, query],
        "ORDER BY ts_rank(search_vector, websearch_to_tsquery('simple', %s)) DESC, id DESC",
    )
    page_size = PAGE_SIZE if len(expected) > 2 * PAGE_SIZE else 3
    assert len(expected) > 2 * page_size
    served: list[int] = []
    request = profile_pb2.SearchProfilesRequest(
        query=query, page_size=page_size, filter=profile_filter.message()
    )
    for page in search_pages(profiles, request):
        served.extend(ids_of(list(page.profiles)))
    assert len(served) == len(set(served)), "a match was served twice"
    assert set(served) == set(expected)
    assert served == expected


def test_search_ranks_better_matches_first(profiles: ProfileServiceStub) -> None:
    weak = create(profiles, "Someone", bio="Once met a gardener.")
    strong = create(profiles, "Gardener Gardener", bio="Gardener. The gardener of gardeners.")
    create(profiles, "Unrelated", bio="Nothing to see.")
    response = profiles.SearchProfiles(profile_pb2.SearchProfilesRequest(query="gardener"))
    assert [p.name for p in response.profiles] == [strong, weak]


@pytest.mark.parametrize("platform", [None, *PLATFORM_ENUMS])
def test_most_followed_profiles_match_sql(
    profiles: ProfileServiceStub, server: ServerThread, backing: Backing, platform: str | None
) -> None:
    """What ListTopProfiles answered before it was removed: ListProfiles by followers, most
    first, on one platform or in total."""
    seed_varied(server, backing, 2500)
    column = f"{platform}_followers" if platform else "total_followers"
    enum = PLATFORM_ENUMS[platform] if platform else profile_pb2.PLATFORM_UNSPECIFIED
    expected = sql_ids(backing, "", [], f"ORDER BY {column} DESC, id DESC")
    order = profile_pb2.ProfileOrder(
        field=profile_pb2.PROFILE_SORT_FIELD_FOLLOWERS, platform=enum, descending=True
    )
    for page_size in (15, 100):
        request = profile_pb2.ListProfilesRequest(page_size=page_size, order=order)
        assert ids_of(list(profiles.ListProfiles(request).profiles)) == expected[:page_size]
