"""The peer baseline: the FastAPI backend Socialhub replaces, written as seed 000 describes it.

"Social Profiles Manager v2": FastAPI + uvicorn, async SQLAlchemy (create_async_engine on
asyncpg, declarative ORM models, an AsyncSession per request from a `get_db`
dependency), Pydantic v2 schemas, keyset pagination by id, top profiles sorted in SQL,
and a Redis cache-aside `@cache_response` decorator on the aggregate endpoint
(filter options, 10 minutes), invalidated on every write. It is written the way that
team writes it (not tuned, not hobbled) and runs against Socialhub's own tables and
data, so the benchmark compares two stacks answering the same questions.

    DATABASE_URL=postgresql+asyncpg://... REDIS_URL=redis://... \\
        python -m bench.baselines.seed000 --host 127.0.0.1 --port 8000

The sections follow the seed's files: database.py, models.py, schemas.py, cache.py, main.py.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import functools
import json
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import date, datetime
from typing import Annotated, Any, Literal, ParamSpec, TypeVar

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Query, Request, status
from fastapi.encoders import jsonable_encoder
from pydantic import BaseModel, ConfigDict, EmailStr, Field, model_validator
from redis.asyncio import Redis
from redis.exceptions import RedisError
from sqlalchemy import (
    BigInteger,
    Boolean,
    Computed,
    Date,
    DateTime,
    ForeignKey,
    String,
    Text,
    func,
    literal,
    literal_column,
    select,
    text,
    tuple_,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB, TSVECTOR
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

log = logging.getLogger("baseline.seed000")

PLATFORMS = ("facebook", "x", "instagram", "youtube", "linkedin")
FILTER_COLUMNS = ("zone", "party_district", "constituency", "designation")
FILTER_OPTIONS_TTL_S = 600


# --- database.py -------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    database_url: str
    redis_url: str

    @classmethod
    def from_env(cls) -> Settings:
        # No fallback credentials: DATABASE_URL is required.
        url = os.environ.get("DATABASE_URL")
        if not url:
            raise SystemExit("DATABASE_URL is required (postgresql+asyncpg://...)")
        if url.startswith("postgresql://"):
            url = "postgresql+asyncpg://" + url.removeprefix("postgresql://")
        return cls(url, os.environ.get("REDIS_URL", "redis://localhost:6379/0"))


def create_engine(settings: Settings) -> AsyncEngine:
    return create_async_engine(
        settings.database_url,
        # As many pooled connections as the benchmark has callers: FastAPI closes the session
        # only after the response is sent, so a smaller pool opens and closes overflow
        # connections all the time, which would charge the baseline for a tuning mistake.
        pool_size=32,
        max_overflow=20,
        pool_timeout=30,
        pool_recycle=3600,  # no stale connections
    )


async def get_db(request: Request) -> AsyncIterator[AsyncSession]:
    async with request.app.state.session_factory() as session:
        yield session


DB = Annotated[AsyncSession, Depends(get_db)]


# --- models.py (mapped onto the existing tables; the migrations own the schema) ----------


class Base(DeclarativeBase):
    pass


_TOTAL_FOLLOWERS = " + ".join(f"{p}_followers" for p in PLATFORMS)
_SEARCH_DOCUMENT = " || ' ' || ".join(
    f"coalesce({c}, '')"
    for c in ("display_name", "username", *(f"{p}_handle" for p in PLATFORMS), "designation", "bio")
)


class Profile(Base):
    __tablename__ = "profiles"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    username: Mapped[str | None] = mapped_column(String(100), unique=True)
    # index=True records the seed's B-tree indexes; the migrations created them.
    designation: Mapped[str | None] = mapped_column(String(100), index=True)
    zone: Mapped[str | None] = mapped_column(String(100), index=True)
    party_district: Mapped[str | None] = mapped_column(String(100), index=True)
    constituency: Mapped[str | None] = mapped_column(String(100), index=True)
    date_of_birth: Mapped[date | None] = mapped_column(Date)
    email: Mapped[str | None] = mapped_column(String(254))
    phone: Mapped[str | None] = mapped_column(String(32))
    bio: Mapped[str | None] = mapped_column(String(2000))

    facebook_handle: Mapped[str | None] = mapped_column(String(100))
    facebook_followers: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    facebook_active: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    facebook_verified: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    x_handle: Mapped[str | None] = mapped_column(String(100))
    x_followers: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    x_active: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    x_verified: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    instagram_handle: Mapped[str | None] = mapped_column(String(100))
    instagram_followers: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    instagram_active: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    instagram_verified: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    youtube_handle: Mapped[str | None] = mapped_column(String(100))
    youtube_followers: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    youtube_active: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    youtube_verified: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    linkedin_handle: Mapped[str | None] = mapped_column(String(100))
    linkedin_followers: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    linkedin_active: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    linkedin_verified: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))

    # Generated by PostgreSQL; the ORM never writes them.
    total_followers: Mapped[int] = mapped_column(BigInteger, Computed(_TOTAL_FOLLOWERS))
    # Only searched, never returned: deferred so ordinary loads leave it in the database.
    search_vector: Mapped[Any] = mapped_column(
        TSVECTOR,
        Computed(f"to_tsvector('simple'::regconfig, {_SEARCH_DOCUMENT})"),
        deferred=True,
    )

    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
    # The counters live in their own table (migration 0003_profile_counters). lazy="joined"
    # adds a LEFT OUTER JOIN to every profile query: the usual ORM way to serve a one-to-one
    # row in every response without a lazy load per profile.
    counters: Mapped[ProfileCounters | None] = relationship(lazy="joined", viewonly=True)

    # A profile without a counters row has zero of each.
    @property
    def followers_count(self) -> int:
        return self.counters.followers_count if self.counters else 0

    @property
    def following_count(self) -> int:
        return self.counters.following_count if self.counters else 0

    @property
    def posts_count(self) -> int:
        return self.counters.posts_count if self.counters else 0


class ProfileCounters(Base):
    __tablename__ = "profile_counters"

    profile_id: Mapped[int] = mapped_column(
        ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True
    )
    followers_count: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    following_count: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    posts_count: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class Post(Base):
    __tablename__ = "posts"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    author_id: Mapped[int] = mapped_column(ForeignKey("profiles.id", ondelete="CASCADE"))
    body: Mapped[str] = mapped_column(String(5000))
    tags: Mapped[list[str]] = mapped_column(ARRAY(Text), server_default=text("'{}'"))
    location_district: Mapped[str] = mapped_column(String(100), server_default=text("''"))
    language_code: Mapped[str] = mapped_column(String(35), server_default=text("''"))
    media: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONB)
    attributes: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    like_count: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    comment_count: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    share_count: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    view_count: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


class Follow(Base):
    __tablename__ = "follows"

    follower_id: Mapped[int] = mapped_column(
        ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True
    )
    followee_id: Mapped[int] = mapped_column(
        ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())


# --- schemas.py --------------------------------------------------------------------------

Text100 = Annotated[str | None, Field(default=None, max_length=100)]
Followers = Annotated[int, Field(default=0, ge=0)]


class ProfileCreate(BaseModel):
    display_name: str = Field(min_length=1, max_length=200)
    username: Text100
    designation: Text100
    zone: Text100
    party_district: Text100
    constituency: Text100
    date_of_birth: date | None = None
    email: EmailStr | None = None
    phone: str | None = Field(default=None, max_length=32)
    bio: str | None = Field(default=None, max_length=2000)
    facebook_handle: Text100
    facebook_followers: Followers
    facebook_active: bool = False
    facebook_verified: bool = False
    x_handle: Text100
    x_followers: Followers
    x_active: bool = False
    x_verified: bool = False
    instagram_handle: Text100
    instagram_followers: Followers
    instagram_active: bool = False
    instagram_verified: bool = False
    youtube_handle: Text100
    youtube_followers: Followers
    youtube_active: bool = False
    youtube_verified: bool = False
    linkedin_handle: Text100
    linkedin_followers: Followers
    linkedin_active: bool = False
    linkedin_verified: bool = False

    @model_validator(mode="after")
    def check_required(self) -> ProfileCreate:
        if not self.display_name.strip():
            raise ValueError("display_name is required")
        if not any(getattr(self, f"{platform}_handle") for platform in PLATFORMS):
            raise ValueError("at least one social media handle is required")
        return self


class ProfileResponse(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    display_name: str
    username: str | None
    designation: str | None
    zone: str | None
    party_district: str | None
    constituency: str | None
    date_of_birth: date | None
    email: str | None
    phone: str | None
    bio: str | None
    facebook_handle: str | None
    facebook_followers: int
    facebook_active: bool
    facebook_verified: bool
    x_handle: str | None
    x_followers: int
    x_active: bool
    x_verified: bool
    instagram_handle: str | None
    instagram_followers: int
    instagram_active: bool
    instagram_verified: bool
    youtube_handle: str | None
    youtube_followers: int
    youtube_active: bool
    youtube_verified: bool
    linkedin_handle: str | None
    linkedin_followers: int
    linkedin_active: bool
    linkedin_verified: bool
    total_followers: int
    created_at: datetime
    updated_at: datetime
    followers_count: int
    following_count: int
    posts_count: int


class ProfileListResponse(BaseModel):
    items: list[ProfileResponse]
    next_cursor: int | None
    total: int


class ProfileItems(BaseModel):
    items: list[ProfileResponse]


class FilterValue(BaseModel):
    value: str
    count: int


class FilterOptions(BaseModel):
    zones: list[FilterValue]
    party_districts: list[FilterValue]
    constituencies: list[FilterValue]
    designations: list[FilterValue]


class PostResponse(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    author_id: int
    body: str
    tags: list[str]
    location_district: str
    language_code: str
    media: list[dict[str, Any]] | None
    attributes: dict[str, Any] | None
    like_count: int
    comment_count: int
    share_count: int
    view_count: int
    created_at: datetime
    updated_at: datetime


class PostListResponse(BaseModel):
    items: list[PostResponse]
    next_cursor: str | None


# --- cache.py ----------------------------------------------------------------------------

P = ParamSpec("P")
R = TypeVar("R")
CACHE_PREFIX = "cache:"


class ResponseCache:
    """Async Redis helper. Redis being down degrades to no caching, never to errors."""

    def __init__(self) -> None:
        self.client: Redis | None = None

    def connect(self, url: str) -> None:
        self.client = Redis.from_url(url, decode_responses=True)

    async def close(self) -> None:
        if self.client is not None:
            await self.client.aclose()

    async def get(self, key: str) -> Any | None:
        if self.client is None:
            return None
        try:
            raw = await self.client.get(key)
        except RedisError:
            log.warning("cache read failed", exc_info=True)
            return None
        return None if raw is None else json.loads(raw)

    async def set(self, key: str, value: Any, ttl_s: int) -> None:
        if self.client is None:
            return
        try:
            await self.client.set(key, json.dumps(value), ex=ttl_s)
        except RedisError:
            log.warning("cache write failed", exc_info=True)

    async def invalidate(self, pattern: str = CACHE_PREFIX + "*") -> None:
        if self.client is None:
            return
        try:
            keys = [key async for key in self.client.scan_iter(match=pattern)]
            if keys:
                await self.client.delete(*keys)
        except RedisError:
            log.warning("cache invalidation failed", exc_info=True)


cache = ResponseCache()


def cache_response(
    ttl_s: int, key_prefix: str
) -> Callable[[Callable[P, Awaitable[R]]], Callable[P, Awaitable[R | Any]]]:
    """Cache an endpoint's JSON in Redis, keyed by its query arguments (not the session)."""

    def decorator(endpoint: Callable[P, Awaitable[R]]) -> Callable[P, Awaitable[R | Any]]:
        @functools.wraps(endpoint)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R | Any:
            arguments = ":".join(
                f"{k}={v}" for k, v in sorted(kwargs.items()) if not isinstance(v, AsyncSession)
            )
            key = f"{CACHE_PREFIX}{key_prefix}:{arguments}"
            cached = await cache.get(key)
            if cached is not None:
                return cached
            result = await endpoint(*args, **kwargs)
            await cache.set(key, jsonable_encoder(result), ttl_s)
            return result

        return wrapper

    return decorator


# --- main.py -----------------------------------------------------------------------------


def encode_cursor(post: Post) -> str:
    """Opaque and URL-safe: base64 of the last post's (created_at, id), unpadded."""
    raw = f"{post.created_at.isoformat()}|{post.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created_at, post_id = raw.decode().split("|")
        return datetime.fromisoformat(created_at), int(post_id)
    except (ValueError, binascii.Error):
        raise HTTPException(status.HTTP_400_BAD_REQUEST, "invalid cursor") from None


def create_app(settings: Settings) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        engine = create_engine(settings)
        app.state.session_factory = async_sessionmaker(engine, expire_on_commit=False)
        cache.connect(settings.redis_url)
        yield
        await cache.close()
        await engine.dispose()

    app = FastAPI(title="Social Profiles Manager", version="2.0", lifespan=lifespan)
    app.add_api_route("/healthz", healthz)
    # Fixed paths before /api/profiles/{profile_id}, which would match them too.
    app.add_api_route("/api/profiles/search", search_profiles, response_model=ProfileItems)
    app.add_api_route("/api/profiles/top", top_profiles, response_model=ProfileItems)
    app.add_api_route("/api/filter-options", filter_options, response_model=FilterOptions)
    app.add_api_route("/api/profiles", list_profiles, response_model=ProfileListResponse)
    app.add_api_route(
        "/api/profiles",
        create_profile,
        methods=["POST"],
        response_model=ProfileResponse,
        status_code=status.HTTP_201_CREATED,
    )
    app.add_api_route("/api/profiles/{profile_id}", get_profile, response_model=ProfileResponse)
    app.add_api_route(
        "/api/profiles/{profile_id}/posts", list_profile_posts, response_model=PostListResponse
    )
    app.add_api_route(
        "/api/profiles/{profile_id}/timeline", home_timeline, response_model=PostListResponse
    )
    return app


async def healthz() -> dict[str, str]:
    return {"status": "ok"}


async def get_profile(profile_id: int, db: DB) -> Profile:
    profile = await db.get(Profile, profile_id)
    if profile is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Profile not found")
    return profile


async def list_profiles(
    db: DB,
    cursor: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    zone: str | None = None,
    party_district: str | None = None,
    constituency: str | None = None,
    designation: str | None = None,
) -> ProfileListResponse:
    filters = [
        getattr(Profile, column) == value
        for column, value in zip(
            FILTER_COLUMNS, (zone, party_district, constituency, designation), strict=True
        )
        if value is not None
    ]
    result = await db.execute(
        select(Profile).where(Profile.id > cursor, *filters).order_by(Profile.id).limit(limit)
    )
    profiles = result.scalars().all()
    total = await db.scalar(select(func.count()).select_from(Profile).where(*filters))
    return ProfileListResponse(
        items=[ProfileResponse.model_validate(p) for p in profiles],
        next_cursor=profiles[-1].id if len(profiles) == limit else None,
        total=total or 0,
    )


async def search_profiles(
    db: DB,
    q: Annotated[str, Query(min_length=1, max_length=200)],
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> ProfileItems:
    # Same ranking as the GIN-indexed search Socialhub runs: the 'simple' configuration.
    ts_query = func.websearch_to_tsquery(literal_column("'simple'::regconfig"), q)
    rank = func.ts_rank(Profile.search_vector, ts_query)
    result = await db.execute(
        select(Profile)
        .where(Profile.search_vector.op("@@")(ts_query))
        .order_by(rank.desc(), Profile.id.desc())
        .limit(limit)
    )
    return ProfileItems(items=[ProfileResponse.model_validate(p) for p in result.scalars()])


async def top_profiles(
    db: DB,
    platform: Literal["facebook", "x", "instagram", "youtube", "linkedin"] | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 15,
) -> ProfileItems:
    column = getattr(Profile, f"{platform}_followers") if platform else Profile.total_followers
    result = await db.execute(
        select(Profile).order_by(column.desc(), Profile.id.desc()).limit(limit)
    )
    return ProfileItems(items=[ProfileResponse.model_validate(p) for p in result.scalars()])


@cache_response(ttl_s=FILTER_OPTIONS_TTL_S, key_prefix="filter-options")
async def filter_options(db: DB) -> FilterOptions:
    options: dict[str, list[FilterValue]] = {}
    for column, field in zip(FILTER_COLUMNS, FilterOptions.model_fields, strict=True):
        attribute = getattr(Profile, column)
        rows = await db.execute(
            select(attribute, func.count().label("n"))
            .where(attribute.is_not(None))
            .group_by(attribute)
            .order_by(func.count().desc(), attribute)
        )
        options[field] = [FilterValue(value=value, count=n) for value, n in rows]
    return FilterOptions(**options)


async def create_profile(payload: ProfileCreate, db: DB) -> Profile:
    profile = Profile(**payload.model_dump())
    db.add(profile)
    try:
        await db.commit()
    except IntegrityError:
        await db.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, "username already exists") from None
    await db.refresh(profile)
    await cache.invalidate()
    return profile


async def _posts_page(
    db: DB, profile_id: int, statement: Any, cursor: str | None, limit: int
) -> PostListResponse:
    if cursor:
        statement = statement.where(tuple_(Post.created_at, Post.id) < decode_cursor(cursor))
    result = await db.execute(
        statement.order_by(Post.created_at.desc(), Post.id.desc()).limit(limit)
    )
    posts = result.scalars().all()
    # Posts go with their author: only an empty page can mean the profile does not exist.
    if not posts and await db.get(Profile, profile_id) is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "Profile not found")
    return PostListResponse(
        items=[PostResponse.model_validate(p) for p in posts],
        next_cursor=encode_cursor(posts[-1]) if len(posts) == limit else None,
    )


async def list_profile_posts(
    profile_id: int,
    db: DB,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> PostListResponse:
    statement = select(Post).where(Post.author_id == profile_id)
    return await _posts_page(db, profile_id, statement, cursor, limit)


async def home_timeline(
    profile_id: int,
    db: DB,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> PostListResponse:
    # The authors a profile reads: those it follows, and itself (as Socialhub's timeline).
    authors = (
        select(Follow.followee_id.label("author_id"))
        .where(Follow.follower_id == profile_id)
        .union_all(select(literal(profile_id, BigInteger).label("author_id")))
        .cte("authors")
    )
    statement = select(Post).join(authors, Post.author_id == authors.c.author_id)
    return await _posts_page(db, profile_id, statement, cursor, limit)


def main() -> None:
    parser = argparse.ArgumentParser(description="The FastAPI peer baseline (seed 000).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
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
