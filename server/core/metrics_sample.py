"""The process's own Prometheus metrics read back as numbers: a sample of the cumulative
counters, the difference of two samples (a window), and percentiles interpolated in a
window's histogram buckets (as PromQL's histogram_quantile does).

Domain-agnostic: whoever serves these (an RPC, a dashboard) maps them to its own messages.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from server.core.metrics import Metrics

_CALLS = "socialhub_rpc_calls"
_DURATION = "socialhub_rpc_duration_seconds"


@dataclass(frozen=True)
class MethodCounts:
    calls: float = 0.0
    errors: float = 0.0
    # Cumulative counts per bucket upper bound ("le"), +Inf last: a Prometheus histogram's.
    buckets: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class Sample:
    """Cumulative counters at `time` (seconds, wall clock) and the gauges' current values."""

    time: float
    methods: Mapping[str, MethodCounts] = field(default_factory=dict)
    cache_hits: float = 0.0
    cache_misses: float = 0.0
    pool_in_use: float = 0.0
    pool_capacity: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "time": self.time,
            "methods": {
                name: [m.calls, m.errors, [list(b) for b in m.buckets]]
                for name, m in self.methods.items()
            },
            "cache": [self.cache_hits, self.cache_misses],
            "pool": [self.pool_in_use, self.pool_capacity],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Sample:
        return cls(
            time=float(data["time"]),
            methods={
                name: MethodCounts(
                    float(calls), float(errors), tuple((float(le), float(n)) for le, n in buckets)
                )
                for name, (calls, errors, buckets) in data["methods"].items()
            },
            cache_hits=float(data["cache"][0]),
            cache_misses=float(data["cache"][1]),
            pool_in_use=float(data["pool"][0]),
            pool_capacity=float(data["pool"][1]),
        )


def sample(metrics: Metrics, now: float) -> Sample:
    """Read the registry (in `serve --workers` mode, every worker's merged values)."""
    calls: dict[str, list[float]] = {}
    buckets: dict[str, dict[float, float]] = {}
    scalars: dict[str, float] = {}
    for family in metrics.registry.collect():
        for s in family.samples:
            if family.name == _CALLS and s.name.endswith("_total"):
                entry = calls.setdefault(s.labels["method"], [0.0, 0.0])
                entry[0] += s.value
                if s.labels.get("code") != "OK":
                    entry[1] += s.value
            elif family.name == _DURATION and s.name.endswith("_bucket"):
                le = float(s.labels["le"])
                per_method = buckets.setdefault(s.labels["method"], {})
                per_method[le] = per_method.get(le, 0.0) + s.value
            elif s.name in (
                "socialhub_cache_hits_total",
                "socialhub_cache_misses_total",
                "socialhub_db_pool_in_use",
                "socialhub_db_pool_capacity",
            ):
                scalars[s.name] = scalars.get(s.name, 0.0) + s.value
    methods = {
        name: MethodCounts(
            calls=counts[0],
            errors=counts[1],
            buckets=tuple(sorted(buckets.get(name, {}).items())),
        )
        for name, counts in calls.items()
    }
    return Sample(
        time=now,
        methods=methods,
        cache_hits=scalars.get("socialhub_cache_hits_total", 0.0),
        cache_misses=scalars.get("socialhub_cache_misses_total", 0.0),
        pool_in_use=scalars.get("socialhub_db_pool_in_use", 0.0),
        pool_capacity=scalars.get("socialhub_db_pool_capacity", 0.0),
    )


@dataclass(frozen=True)
class Window:
    """What happened between two samples (of one process, or several summed)."""

    seconds: float
    methods: Mapping[str, MethodCounts]
    cache_hits: float
    cache_misses: float
    pool_in_use: float
    pool_capacity: float

    @property
    def calls(self) -> float:
        return sum(m.calls for m in self.methods.values())

    @property
    def errors(self) -> float:
        return sum(m.errors for m in self.methods.values())


def window(before: Sample, after: Sample) -> Window:
    methods: dict[str, MethodCounts] = {}
    for name, now in after.methods.items():
        then = before.methods.get(name, MethodCounts())
        earlier = dict(then.buckets)
        calls = now.calls - then.calls
        if calls <= 0:
            continue
        methods[name] = MethodCounts(
            calls=calls,
            errors=now.errors - then.errors,
            buckets=tuple((le, n - earlier.get(le, 0.0)) for le, n in now.buckets),
        )
    return Window(
        seconds=max(after.time - before.time, 1e-9),
        methods=methods,
        cache_hits=after.cache_hits - before.cache_hits,
        cache_misses=after.cache_misses - before.cache_misses,
        pool_in_use=after.pool_in_use,
        pool_capacity=after.pool_capacity,
    )


def merge(windows: Iterable[Window]) -> Window:
    """Several processes' windows as one: counts and gauges add up; `seconds` is the longest
    (rates are better summed per process: see `rate`)."""
    listed = list(windows)
    methods: dict[str, MethodCounts] = {}
    for w in listed:
        for name, m in w.methods.items():
            have = methods.get(name)
            if have is None:
                methods[name] = m
                continue
            mine = dict(have.buckets)
            for le, n in m.buckets:
                mine[le] = mine.get(le, 0.0) + n
            methods[name] = MethodCounts(
                have.calls + m.calls, have.errors + m.errors, tuple(sorted(mine.items()))
            )
    return Window(
        seconds=max((w.seconds for w in listed), default=1e-9),
        methods=methods,
        cache_hits=sum(w.cache_hits for w in listed),
        cache_misses=sum(w.cache_misses for w in listed),
        pool_in_use=sum(w.pool_in_use for w in listed),
        pool_capacity=sum(w.pool_capacity for w in listed),
    )


def quantile(q: float, buckets: tuple[tuple[float, float], ...]) -> float:
    """The q-quantile of a window's cumulative bucket counts, linearly interpolated inside
    its bucket (from 0 for the first one); in the +Inf bucket, the highest finite bound."""
    if not buckets or buckets[-1][1] <= 0:
        return 0.0
    rank = q * buckets[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for le, count in buckets:
        if count >= rank:
            if math.isinf(le):
                return lower_bound
            if count == lower_count:
                return le
            return lower_bound + (le - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = le, count
    return lower_bound
