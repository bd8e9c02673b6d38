"""Realistic demo profiles, generated deterministically for `socialhub seed` and first start."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

from server.profiles.tables import PLATFORMS

FIRST_NAMES = [
    "Aarav",
    "Aditi",
    "Amara",
    "Amir",
    "Ana",
    "Arjun",
    "Asha",
    "Ben",
    "Chen",
    "Chloe",
    "Daniel",
    "Deepa",
    "Diego",
    "Elena",
    "Emeka",
    "Fatima",
    "Grace",
    "Hana",
    "Hugo",
    "Imran",
    "Isabel",
    "Jin",
    "Kavya",
    "Kofi",
    "Lara",
    "Leila",
    "Liam",
    "Lucia",
    "Maya",
    "Mei",
    "Mohammed",
    "Nadia",
    "Naveen",
    "Nia",
    "Noah",
    "Omar",
    "Priya",
    "Rahul",
    "Ravi",
    "Rosa",
    "Sara",
    "Sofia",
    "Tariq",
    "Tomas",
    "Uma",
    "Victor",
    "Wei",
    "Yara",
    "Zain",
]
LAST_NAMES = [
    "Adeyemi",
    "Ahmed",
    "Alvarez",
    "Banerjee",
    "Brown",
    "Chen",
    "Costa",
    "Das",
    "Dubois",
    "Fernandes",
    "Garcia",
    "Gupta",
    "Haddad",
    "Hassan",
    "Ito",
    "Iyer",
    "Johnson",
    "Kapoor",
    "Khan",
    "Kim",
    "Kowalski",
    "Kumar",
    "Lee",
    "Lopez",
    "Martin",
    "Mehta",
    "Mensah",
    "Nair",
    "Nguyen",
    "Okafor",
    "Patel",
    "Pereira",
    "Reddy",
    "Rossi",
    "Santos",
    "Sato",
    "Schmidt",
    "Shah",
    "Silva",
    "Singh",
    "Smith",
    "Tanaka",
    "Verma",
    "Wang",
    "Williams",
    "Yadav",
    "Zhang",
]
ZONES = ("North", "South", "East", "West", "Central", "Coastal", "Highlands")
DISTRICTS = tuple(f"{zone} District {n}" for zone in ZONES for n in range(1, 5))
DESIGNATIONS = (
    "Member of Parliament",
    "Councillor",
    "Mayor",
    "Party Secretary",
    "Spokesperson",
    "District President",
    "Youth Leader",
    "Campaign Manager",
    "Volunteer Coordinator",
    "Minister",
)
TOPICS = (
    "education",
    "healthcare",
    "infrastructure",
    "climate",
    "agriculture",
    "technology",
    "small business",
    "public transport",
    "housing",
    "water supply",
    "women's safety",
    "sports",
)

# Column order of the records below, for COPY.
COLUMNS = (
    "display_name",
    "username",
    "designation",
    "zone",
    "party_district",
    "constituency",
    "date_of_birth",
    "email",
    "phone",
    "bio",
    *(f"{p}_{field}" for p in PLATFORMS for field in ("handle", "followers", "active", "verified")),
)


def _presence(rng: random.Random, username: str, platform: str) -> tuple[Any, ...]:
    if rng.random() < 0.35:
        return (None, 0, False, False)
    followers = int(rng.lognormvariate(7.5, 2.0))
    return (
        f"{username}_{platform}" if rng.random() < 0.3 else username,
        followers,
        rng.random() < 0.85,
        followers > 50_000 and rng.random() < 0.6,
    )


def profile_records(count: int, seed: int = 7, start: int = 0) -> Iterator[tuple[Any, ...]]:
    """`count` profile rows in COLUMNS order; `start` keeps usernames unique across batches."""
    rng = random.Random(seed * 1_000_003 + start)
    for index in range(start, start + count):
        first, last = rng.choice(FIRST_NAMES), rng.choice(LAST_NAMES)
        username = f"{first}.{last}.{index}".lower()
        district = rng.choice(DISTRICTS)
        designation = rng.choice(DESIGNATIONS)
        presences = [_presence(rng, username, p) for p in PLATFORMS]
        if all(handle is None for handle, *_ in presences):
            presences[1] = (username, rng.randint(10, 5000), True, False)
        topics = rng.sample(TOPICS, 2)
        yield (
            f"{first} {last}",
            username,
            designation,
            district.split(" District")[0],
            district,
            f"{district} - Ward {rng.randint(1, 12)}",
            date(1950, 1, 1) + timedelta(days=rng.randint(0, 365 * 50)),
            f"{username}@example.org",
            f"+1-555-{rng.randint(1000000, 9999999)}",
            f"{designation} from {district}. Works on {topics[0]} and {topics[1]}.",
            *(value for presence in presences for value in presence),
        )
