"""The lean peer: seed 000's operations as a careful team would write them for speed.

The same HTTP/JSON API as `bench.baselines.seed000` (paths, query parameters, response
shapes), so the benchmark drives both peers with the same requests. What differs is how:
- Starlette, plain `Response`s, no Pydantic: bodies are built with orjson, and a cached
  answer goes out as the bytes Redis returned, never decoded;
- raw asyncpg: one pool, every statement prepared once per connection (asyncpg's
  statement cache) and SQL written by hand; the pool skips asyncpg's reset query on release,
  since nothing here changes session state;
- keyset pagination with row-value comparisons (`(created_at, id) < ($2, $3)`), fetching
  `limit + 1` so `next_cursor` is set only when a next page exists;
- the home timeline as Socialhub reads it: each followed author's newest posts through
  one index range (a LATERAL join), cut to the page;
- Redis caching where Socialhub caches, with the same tag versions as
  `server/core/cache.py` (an entry lives under `<key>@<tag version>`; one EVALSHA reads
  both, a write gives the tag a new random version): one profile by id, list and search
  pages and their counts, top profiles and filter options (all under one listings tag,
  bumped by every create), and a home timeline's first page as post ids only, the posts
  re-read on every call. As in Socialhub, the follower, following and posts counters are
  not part of cached list pages: a page's counters are read by primary key on every call,
  so follows and posts never have to empty the listings;
- uvicorn with uvloop and httptools, one worker.

    DATABASE_URL=postgresql://... REDIS_URL=redis://... \\
        python -m bench.baselines.lean --host 127.0.0.1 --port 8001
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import orjson
import uvicorn
from redis import exceptions as redis_errors
from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

log = logging.getLogger("baseline.lean")

PLATFORMS = ("facebook", "x", "instagram", "youtube", "linkedin")
FILTER_COLUMNS = ("zone", "party_district", "constituency", "designation")
OPTION_FIELDS = ("zones", "party_districts", "constituencies", "designations")
COUNTERS = ("followers_count", "following_count", "posts_count")
# Socialhub's defaults (PROFILE_CACHE_TTL_S, LISTING_CACHE_TTL_S, TOP_PROFILES_CACHE_TTL_S,
# TIMELINE_CACHE_TTL_S), so both cache the same things for as long.
PROFILE_TTL_S = 3600
LISTING_TTL_S = 600
TOP_TTL_S = 300
TIMELINE_TTL_S = 30
# Outlives every entry under a tag, so entries stay reachable for their whole TTL.
TAG_TTL_S = 7 * 24 * 3600
LISTINGS_TAG = "profiles"
REDIS_TIMEOUT_S = 0.25  # Socialhub's REDIS_TIMEOUT_S
# Socialhub's pool: DB_POOL_SIZE 10 plus DB_MAX_OVERFLOW 10.
POOL_MIN, POOL_MAX = 10, 20
REDIS_FAILURES = (redis_errors.RedisError, OSError, TimeoutError)

_TEXT = (
    "username",
    "designation",
    "zone",
    "party_district",
    "constituency",
    "email",
    "phone",
    "bio",
)
_LENGTHS = {
    "display_name": 200,
    "username": 100,
    "designation": 100,
    "zone": 100,
    "party_district": 100,
    "constituency": 100,
    "email": 254,
    "phone": 32,
    "bio": 2000,
}
_PLATFORM_FIELDS = tuple(
    f"{platform}_{field}"
    for platform in PLATFORMS
    for field in ("handle", "followers", "active", "verified")
)
# What create_profile writes, in the INSERT's order.
_WRITTEN = ("display_name", *_TEXT[:5], "date_of_birth", *_TEXT[5:], *_PLATFORM_FIELDS)
# Every column a profile is returned with (the search vector stays in the database).
_PROFILE_COLUMNS = ("id", *_WRITTEN, "total_followers", "created_at", "updated_at")
_EMAIL = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")

# --- SQL ---------------------------------------------------------------------------------

_P = ", ".join(f"p.{column}" for column in _PROFILE_COLUMNS)
# A profile with no counters row has zero of each (migration 0003_profile_counters).
_WITH_COUNTERS = (
    f"SELECT {_P}, "
    + ", ".join(f"coalesce(c.{counter}, 0) AS {counter}" for counter in COUNTERS)
    + " FROM profiles p LEFT JOIN profile_counters c ON c.profile_id = p.id"
)
GET_PROFILE = f"{_WITH_COUNTERS} WHERE p.id = $1"
PROFILE_EXISTS = "SELECT 1 FROM profiles WHERE id = $1"
COUNTERS_OF = (
    f"SELECT profile_id, {', '.join(COUNTERS)} FROM profile_counters"
    " WHERE profile_id = ANY($1::bigint[])"
)
SEARCH = (
    f"SELECT {_P} FROM profiles p"
    " WHERE p.search_vector @@ websearch_to_tsquery('simple'::regconfig, $1)"
    " ORDER BY ts_rank(p.search_vector, websearch_to_tsquery('simple'::regconfig, $1)) DESC,"
    " p.id DESC LIMIT $2"
)
TOP = {
    column: f"SELECT {_P} FROM profiles p ORDER BY p.{column} DESC, p.id DESC LIMIT $1"
    for column in ("total_followers", *(f"{platform}_followers" for platform in PLATFORMS))
}
# Every filter column's counts in one pass over the table; GROUPING() tells the sets apart.
FILTER_OPTIONS = (
    f"SELECT {', '.join(FILTER_COLUMNS)}, GROUPING({', '.join(FILTER_COLUMNS)}) AS grouping_id,"
    f" count(*) AS n FROM profiles GROUP BY GROUPING SETS ({', '.join(FILTER_COLUMNS)})"
    f" ORDER BY n DESC, {', '.join(FILTER_COLUMNS)}"
)
INSERT_PROFILE = (
    f"INSERT INTO profiles AS p ({', '.join(_WRITTEN)})"
    f" VALUES ({', '.join(f'${n}' for n in range(1, len(_WRITTEN) + 1))}) RETURNING {_P}"
)
_POST = (
    "id, author_id, body, tags, location_district, language_code, media, attributes,"
    " like_count, comment_count, share_count, view_count,"
    " created_at, updated_at"
)
POSTS_BY_IDS = f"SELECT {_POST} FROM posts WHERE id = ANY($1::bigint[])"


def _conditions(columns: Sequence[str], first: int) -> str:
    return "".join(f" AND p.{column} = ${n}" for n, column in enumerate(columns, first))


def list_sql(columns: Sequence[str]) -> str:
    """One statement text per set of filters: each is prepared once and keeps its plan."""
    return (
        f"SELECT {_P} FROM profiles p WHERE p.id > $1{_conditions(columns, 2)}"
        f" ORDER BY p.id LIMIT ${len(columns) + 2}"
    )


def count_sql(columns: Sequence[str]) -> str:
    where = _conditions(columns, 1).removeprefix(" AND ")
    return "SELECT count(*) FROM profiles p" + (f" WHERE {where}" if where else "")


def author_page_sql(after: bool) -> str:
    position = " AND (created_at, id) < ($3, $4)" if after else ""
    return (
        f"SELECT {_POST} FROM posts WHERE author_id = $1{position}"
        " ORDER BY created_at DESC, id DESC LIMIT $2"
    )


def timeline_keys_sql(after: bool) -> str:
    """(created_at, id) of a page: the newest `limit` posts of each followed author (and the
    viewer) after the position, each one index range, then the newest `limit` of those."""
    position = " AND (created_at, id) < ($3, $4)" if after else ""
    return (
        "SELECT n.created_at, n.id FROM"
        " (SELECT followee_id AS author_id FROM follows WHERE follower_id = $1"
        " UNION ALL SELECT $1::bigint) a"
        " CROSS JOIN LATERAL (SELECT created_at, id FROM posts"
        f" WHERE author_id = a.author_id{position}"
        " ORDER BY created_at DESC, id DESC LIMIT $2) n"
        " ORDER BY n.created_at DESC, n.id DESC LIMIT $2"
    )


def timeline_page_sql(after: bool) -> str:
    """A deep page's posts: the heap is read for the kept posts only."""
    return (
        f"SELECT {', '.join(f'p.{c.strip()}' for c in _POST.split(','))}"
        f" FROM ({timeline_keys_sql(after)}) k JOIN posts p ON p.id = k.id"
        " ORDER BY k.created_at DESC, k.id DESC"
    )


# --- cache -------------------------------------------------------------------------------

# One round trip for a read: the tag's version (a new one if the tag is missing), then the
# entry stored under it. The script server/core/cache.py runs.
_READ_SCRIPT = """
local version = redis.call('GET', KEYS[1])
if not version then
  version = ARGV[2]
  redis.call('SET', KEYS[1], version, 'EX', ARGV[3])
end
return {version, redis.call('GET', ARGV[1] .. '@' .. version)}
"""
_READ_SHA = hashlib.sha1(_READ_SCRIPT.encode()).hexdigest()


class TagCache:
    """Read-through Redis entries under tag versions. Redis failing degrades to the
    database for that call, never to an error."""

    def __init__(self, redis: Redis, prefix: str = "lean") -> None:
        self._redis = redis
        self._prefix = prefix

    async def read(
        self, key: str, *, tag: str, ttl_s: int, load: Callable[[], Awaitable[bytes]]
    ) -> bytes:
        full_key = f"{self._prefix}:{key}"
        args = (self._tag_key(tag), full_key, os.urandom(8).hex(), TAG_TTL_S)
        try:
            try:
                version, cached = await self._redis.evalsha(_READ_SHA, 1, *args)
            except redis_errors.NoScriptError:
                version, cached = await self._redis.eval(_READ_SCRIPT, 1, *args)
        except REDIS_FAILURES:
            log.warning("cache read failed; reading the database", exc_info=True)
            return await load()
        if cached is not None:
            payload: bytes = cached
            return payload
        value = await load()
        try:
            await self._redis.set(f"{full_key}@{version.decode()}", value, ex=ttl_s)
        except REDIS_FAILURES:
            log.warning("cache store failed", exc_info=True)
        return value

    async def bump(self, *tags: str) -> None:
        """Give each tag a new version; call after the write has committed."""
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                for tag in tags:
                    pipe.set(self._tag_key(tag), os.urandom(8).hex(), ex=TAG_TTL_S)
                await pipe.execute()
        except REDIS_FAILURES:
            log.warning("cache invalidation failed", exc_info=True)

    def _tag_key(self, tag: str) -> str:
        return f"{self._prefix}:tag:{tag}"


# --- requests and responses --------------------------------------------------------------


class HttpError(Exception):
    def __init__(self, status: int, detail: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail


def _dumps(body: Any) -> bytes:
    # Timestamps end in "Z", as the seed-000 peer's Pydantic models write them.
    return orjson.dumps(body, option=orjson.OPT_UTC_Z)


def _json(body: Any, status: int = 200) -> Response:
    return Response(_dumps(body), status, media_type="application/json")


def _raw(payload: bytes) -> Response:
    return Response(payload, media_type="application/json")


async def _http_error(_request: Request, error: Exception) -> Response:
    assert isinstance(error, HttpError)
    return _json({"detail": error.detail}, error.status)


def _int(query: Mapping[str, str], name: str, default: int, low: int, high: int) -> int:
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise HttpError(422, f"{name} must be an integer") from None
    if not low <= value <= high:
        raise HttpError(422, f"{name} must be between {low} and {high}")
    return value


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def encode_cursor(created_at: datetime, post_id: int) -> str:
    """`<microseconds since the epoch>_<id>`: exact, URL-safe, and cheap both ways."""
    return f"{(created_at - _EPOCH) // _MICROSECOND}_{post_id}"


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        micros, post_id = cursor.split("_")
        return _EPOCH + int(micros) * _MICROSECOND, int(post_id)
    except (ValueError, OverflowError):
        raise HttpError(400, "invalid cursor") from None


def _post(row: Mapping[str, Any]) -> dict[str, Any]:
    post = dict(row)
    # asyncpg hands jsonb over as its text: embedded as is, never parsed and re-encoded.
    for column in ("media", "attributes"):
        if post[column] is not None:
            post[column] = orjson.Fragment(post[column])
    return post


def _post_page(rows: Sequence[Mapping[str, Any]], limit: int) -> bytes:
    kept = rows[:limit]
    more = len(rows) > limit
    cursor = encode_cursor(kept[-1]["created_at"], kept[-1]["id"]) if more else None
    return _dumps({"items": [_post(row) for row in kept], "next_cursor": cursor})


def _profile_values(body: Any) -> list[Any]:
    """The INSERT's arguments from a create request, or 422 naming what is wrong."""
    if not isinstance(body, dict):
        raise HttpError(422, "expected a JSON object")
    errors: list[str] = []
    values: dict[str, Any] = {}
    display_name = body.get("display_name")
    if not isinstance(display_name, str) or not display_name.strip():
        errors.append("display_name is required")
    values["display_name"] = display_name
    for field in (*_TEXT, *(f"{p}_handle" for p in PLATFORMS)):
        value = body.get(field)
        if value is not None and not isinstance(value, str):
            errors.append(f"{field} must be a string")
        values[field] = value
    for field, limit in (*_LENGTHS.items(), *((f"{p}_handle", 100) for p in PLATFORMS)):
        value = values.get(field)
        if isinstance(value, str) and len(value) > limit:
            errors.append(f"{field} is longer than {limit}")
    email = values["email"]
    if isinstance(email, str) and not _EMAIL.fullmatch(email):
        errors.append("email is not an email address")
    birth = body.get("date_of_birth")
    values["date_of_birth"] = None
    if birth is not None:
        try:
            values["date_of_birth"] = date.fromisoformat(birth)
        except (TypeError, ValueError):
            errors.append("date_of_birth must be YYYY-MM-DD")
    for platform in PLATFORMS:
        followers = body.get(f"{platform}_followers", 0)
        if isinstance(followers, bool) or not isinstance(followers, int) or followers < 0:
            errors.append(f"{platform}_followers must be a non-negative integer")
        values[f"{platform}_followers"] = followers
        for flag in ("active", "verified"):
            value = body.get(f"{platform}_{flag}", False)
            if not isinstance(value, bool):
                errors.append(f"{platform}_{flag} must be a boolean")
            values[f"{platform}_{flag}"] = value
    if not any(values[f"{platform}_handle"] for platform in PLATFORMS):
        errors.append("at least one social media handle is required")
    if errors:
        raise HttpError(422, errors)
    return [values[field] for field in _WRITTEN]


# --- the service -------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str

    @classmethod
    def from_env(cls) -> Settings:
        url = os.environ.get("DATABASE_URL")
        if not url:
            raise SystemExit("DATABASE_URL is required (postgresql://...)")
        # asyncpg takes libpq URLs; the SQLAlchemy spelling is accepted too.
        url = url.replace("postgresql+asyncpg://", "postgresql://", 1)
        return cls(url, os.environ.get("REDIS_URL", "redis://localhost:6379/0"))


async def _keep_session(_connection: Any) -> None:
    """Replaces asyncpg's reset on release (a round trip running RESET ALL, UNLISTEN and
    more): no statement here changes session state, and an open transaction is still
    rolled back by the pool itself."""


class Lean:
    """Every endpoint; the pool and the Redis client are opened by `start`."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._pool: Any = None
        self._redis: Redis | None = None
        self._cache: TagCache | None = None

    async def start(self) -> None:
        self._pool = await asyncpg.create_pool(
            self._settings.database_url, min_size=POOL_MIN, max_size=POOL_MAX, reset=_keep_session
        )
        self._redis = Redis.from_url(
            self._settings.redis_url,
            socket_timeout=REDIS_TIMEOUT_S,
            socket_connect_timeout=REDIS_TIMEOUT_S,
        )
        self._cache = TagCache(self._redis)

    async def stop(self) -> None:
        if self._redis is not None:
            await self._redis.aclose()
        if self._pool is not None:
            await self._pool.close()

    @property
    def cache(self) -> TagCache:
        assert self._cache is not None, "start() first"
        return self._cache

    def routes(self) -> list[Route]:
        return [
            Route("/healthz", self.healthz),
            Route("/api/profiles/search", self.search_profiles),
            Route("/api/profiles/top", self.top_profiles),
            Route("/api/filter-options", self.filter_options),
            Route("/api/profiles", self.list_profiles),
            Route("/api/profiles", self.create_profile, methods=["POST"]),
            Route("/api/profiles/{profile_id:int}", self.get_profile),
            Route("/api/profiles/{profile_id:int}/posts", self.profile_posts),
            Route("/api/profiles/{profile_id:int}/timeline", self.home_timeline),
        ]

    async def healthz(self, _request: Request) -> Response:
        return _json({"status": "ok"})

    # --- profiles ---

    async def get_profile(self, request: Request) -> Response:
        profile_id: int = request.path_params["profile_id"]

        async def load() -> bytes:
            row = await self._pool.fetchrow(GET_PROFILE, profile_id)
            if row is None:
                raise HttpError(404, "Profile not found")
            return _dumps(dict(row))

        return _raw(
            await self.cache.read(
                f"profile:{profile_id}", tag=f"profile:{profile_id}", ttl_s=PROFILE_TTL_S, load=load
            )
        )

    async def list_profiles(self, request: Request) -> Response:
        query = request.query_params
        cursor = _int(query, "cursor", 0, 0, 2**63 - 1)
        limit = _int(query, "limit", 50, 1, 500)
        columns = [column for column in FILTER_COLUMNS if column in query]
        values = [query[column] for column in columns]
        filters = _dumps(dict(zip(columns, values, strict=True))).decode()

        async def load() -> bytes:
            rows = await self._pool.fetch(list_sql(columns), cursor, *values, limit + 1)
            kept = rows[:limit]
            return _dumps(
                {
                    "items": [dict(row) for row in kept],
                    "next_cursor": kept[-1]["id"] if len(rows) > limit else None,
                    "total": await self._count(columns, values, filters),
                }
            )

        page = await self.cache.read(
            f"profiles:list:{cursor}:{limit}:{filters}",
            tag=LISTINGS_TAG,
            ttl_s=LISTING_TTL_S,
            load=load,
        )
        return _raw(await self._counted(page))

    async def _count(self, columns: Sequence[str], values: Sequence[str], filters: str) -> int:
        async def load() -> bytes:
            return str(await self._pool.fetchval(count_sql(columns), *values)).encode()

        # Counting is the costly part of a list call, and it changes only when profiles do.
        payload = await self.cache.read(
            f"profiles:count:{filters}", tag=LISTINGS_TAG, ttl_s=LISTING_TTL_S, load=load
        )
        return int(payload)

    async def _counted(self, page: bytes) -> bytes:
        """The cached page with its profiles' current counters laid over it."""
        body = orjson.loads(page)
        items = body["items"]
        rows = await self._pool.fetch(COUNTERS_OF, [item["id"] for item in items]) if items else []
        counters = {row["profile_id"]: row for row in rows}
        for item in items:
            row = counters.get(item["id"])
            for counter in COUNTERS:
                item[counter] = 0 if row is None else row[counter]
        return _dumps(body)

    async def search_profiles(self, request: Request) -> Response:
        q = request.query_params.get("q", "")
        if not 1 <= len(q) <= 200:
            raise HttpError(422, "q must hold 1 to 200 characters")
        limit = _int(request.query_params, "limit", 20, 1, 100)

        async def load() -> bytes:
            rows = await self._pool.fetch(SEARCH, q, limit)
            return _dumps({"items": [dict(row) for row in rows]})

        page = await self.cache.read(
            f"profiles:search:{limit}:{q}", tag=LISTINGS_TAG, ttl_s=LISTING_TTL_S, load=load
        )
        return _raw(await self._counted(page))

    async def top_profiles(self, request: Request) -> Response:
        platform = request.query_params.get("platform")
        if platform is not None and platform not in PLATFORMS:
            raise HttpError(422, f"platform must be one of {', '.join(PLATFORMS)}")
        column = f"{platform}_followers" if platform else "total_followers"
        limit = _int(request.query_params, "limit", 15, 1, 100)

        async def load() -> bytes:
            rows = await self._pool.fetch(TOP[column], limit)
            return _dumps({"items": [dict(row) for row in rows]})

        page = await self.cache.read(
            f"profiles:top:{column}:{limit}", tag=LISTINGS_TAG, ttl_s=TOP_TTL_S, load=load
        )
        return _raw(await self._counted(page))

    async def filter_options(self, _request: Request) -> Response:
        async def load() -> bytes:
            options: dict[str, list[dict[str, Any]]] = {field: [] for field in OPTION_FIELDS}
            for row in await self._pool.fetch(FILTER_OPTIONS):
                # GROUPING() has a 1 bit for each column not grouped in this row's set.
                for index, field in enumerate(OPTION_FIELDS):
                    grouped = not row["grouping_id"] & (1 << (len(FILTER_COLUMNS) - 1 - index))
                    if grouped and row[index] is not None:
                        options[field].append({"value": row[index], "count": row["n"]})
            return _dumps(options)

        return _raw(
            await self.cache.read(
                "profiles:filter-options", tag=LISTINGS_TAG, ttl_s=LISTING_TTL_S, load=load
            )
        )

    async def create_profile(self, request: Request) -> Response:
        try:
            body = orjson.loads(await request.body())
        except orjson.JSONDecodeError:
            raise HttpError(422, "the body is not JSON") from None
        values = _profile_values(body)
        try:
            row = await self._pool.fetchrow(INSERT_PROFILE, *values)
        except asyncpg.UniqueViolationError:
            raise HttpError(409, "username already exists") from None
        except asyncpg.CheckViolationError:
            raise HttpError(422, "followers out of range") from None
        await self.cache.bump(LISTINGS_TAG)
        # A new profile has no counters row yet: zero of each.
        return _json({**dict(row), **dict.fromkeys(COUNTERS, 0)}, 201)

    # --- posts and timelines ---

    def _page_arguments(self, request: Request) -> tuple[int, int, tuple[Any, ...]]:
        profile_id: int = request.path_params["profile_id"]
        limit = _int(request.query_params, "limit", 20, 1, 100)
        cursor = request.query_params.get("cursor")
        return profile_id, limit, decode_cursor(cursor) if cursor else ()

    async def profile_posts(self, request: Request) -> Response:
        author_id, limit, after = self._page_arguments(request)
        async with self._pool.acquire() as conn:
            rows = await conn.fetch(author_page_sql(bool(after)), author_id, limit + 1, *after)
            # Posts go with their author: only an empty page can mean it does not exist.
            if not rows and await conn.fetchval(PROFILE_EXISTS, author_id) is None:
                raise HttpError(404, "Profile not found")
        return _raw(_post_page(rows, limit))

    async def home_timeline(self, request: Request) -> Response:
        viewer_id, limit, after = self._page_arguments(request)
        if after:
            async with self._pool.acquire() as conn:
                rows = await conn.fetch(timeline_page_sql(True), viewer_id, limit + 1, *after)
                await self._viewer_exists(conn, viewer_id, rows)
            return _raw(_post_page(rows, limit))

        async def load() -> bytes:
            # Only the ids are cached and the posts are re-read below, so read only the keys.
            async with self._pool.acquire() as conn:
                keys = await conn.fetch(timeline_keys_sql(False), viewer_id, limit + 1)
                await self._viewer_exists(conn, viewer_id, keys)
            kept = keys[:limit]
            cursor = (
                encode_cursor(kept[-1]["created_at"], kept[-1]["id"]) if len(keys) > limit else None
            )
            return _dumps({"ids": [key["id"] for key in kept], "next_cursor": cursor})

        skeleton = orjson.loads(
            await self.cache.read(
                f"timeline:{viewer_id}:{limit}",
                tag=f"timeline:{viewer_id}",
                ttl_s=TIMELINE_TTL_S,
                load=load,
            )
        )
        ids: list[int] = skeleton["ids"]
        found = {row["id"]: row for row in await self._pool.fetch(POSTS_BY_IDS, ids)} if ids else {}
        # A post deleted since the page was cached is left out.
        items = [_post(found[post_id]) for post_id in ids if post_id in found]
        return _raw(_dumps({"items": items, "next_cursor": skeleton["next_cursor"]}))

    @staticmethod
    async def _viewer_exists(conn: Any, viewer_id: int, rows: Sequence[Any]) -> None:
        # The viewer's own posts are on its timeline: only an empty page can mean it is gone.
        if not rows and await conn.fetchval(PROFILE_EXISTS, viewer_id) is None:
            raise HttpError(404, "Profile not found")


def create_app(settings: Settings) -> Starlette:
    lean = Lean(settings)

    @asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        await lean.start()
        try:
            yield
        finally:
            await lean.stop()

    return Starlette(
        routes=lean.routes(), exception_handlers={HttpError: _http_error}, lifespan=lifespan
    )


def main() -> None:
    parser = argparse.ArgumentParser(description="The lean peer baseline.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    args = parser.parse_args()
    uvicorn.run(
        create_app(Settings.from_env()),
        host=args.host,
        port=args.port,
        workers=1,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
