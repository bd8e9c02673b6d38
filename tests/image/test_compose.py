"""deploy/compose.yaml brought up with podman-compose: three replicas behind the balancer, and a
drill. Load goes through the balancer while one replica (the jobs' leader) stops: no call fails
but with a retryable UNAVAILABLE, every read after a write is fresh, and each periodic job runs
on one replica at a time."""

from __future__ import annotations

import json
import re
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import grpc
import pytest
from socialhub.v1 import profile_pb2, profile_pb2_grpc

from tests.image.podman import (
    IMAGE,
    REPO,
    logs,
    podman,
    postgres_ready,
    serving,
    wait_for,
)

PROJECT = "socialhub"
REPLICAS = [f"{PROJECT}_socialhub-{index}_1" for index in (1, 2, 3)]
BALANCER = "127.0.0.1:50051"
COMPOSE = [
    "podman-compose", "-p", PROJECT,
    "-f", str(REPO / "deploy/compose.yaml"), "-f", str(REPO / "deploy/compose.podman.yaml"),
]  # fmt: skip
# The only failure a caller may see, and must retry: the balancer checks /readyz, so a
# stopping replica leaves the rotation before it stops taking calls, and nothing is reset.
RETRIED = {grpc.StatusCode.UNAVAILABLE}
# compose.yaml's SHUTDOWN_DRAIN_S + SHUTDOWN_GRACE_S, and its stop_grace_period.
SHUTDOWN_S = 13.0
STOP_GRACE_S = 20


def compose(*args: str, timeout: float = 300) -> None:
    done = subprocess.run(
        [*COMPOSE, *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert done.returncode == 0, f"podman-compose {' '.join(args)}:\n{done.stderr[-3000:]}"


def healthy(name: str) -> bool:
    check = subprocess.run(["podman", "healthcheck", "run", name], capture_output=True, check=False)
    return check.returncode == 0


def sql(statement: str) -> str:
    command = ["psql", "-U", "socialhub", "-d", "socialhub", "-tAc", statement]
    return podman("exec", f"{PROJECT}_postgres_1", *command).strip()


def add_expired_rows() -> None:
    """Rows the periodic jobs delete: a run of each shows in its replica's log."""
    sql(
        "INSERT INTO activity (actor_id, verb, object, created_at) SELECT 1, 'post.liked',"
        " 'posts/1', now() - interval '400 days' FROM generate_series(1, 10)"
    )
    sql(
        "INSERT INTO request_ids (scope, request_id, request_hash, resource_id, created_at)"
        " SELECT 'CreateProfile', gen_random_uuid(), 'x', 1, now() - interval '400 days'"
        " FROM generate_series(1, 5)"
    )


def expired_rows_left() -> int:
    return int(
        sql(
            "SELECT (SELECT count(*) FROM activity WHERE created_at < now() - interval '300 days')"
            " + (SELECT count(*) FROM request_ids"
            " WHERE created_at < now() - interval '300 days')"
        )
    )


def running(name: str) -> bool:
    return podman("inspect", "--format", "{{.State.Running}}", name, check=False).strip() == "true"


# The periodic jobs every second instead of every hour, so that the drill sees them run.
FREQUENT_JOBS = {"ACTIVITY_PURGE_INTERVAL_S": "1", "REQUEST_ID_PURGE_INTERVAL_S": "1"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Up in compose.yaml's order: podman-compose 1.0.3 starts every container at once and
    waits for no condition (and podman checks no health without systemd)."""
    jobs = tmp_path_factory.mktemp("compose") / "jobs.yaml"
    replicas = {f"socialhub-{index}": {"environment": FREQUENT_JOBS} for index in (1, 2, 3)}
    jobs.write_text(json.dumps({"services": replicas}))  # JSON is YAML
    COMPOSE.extend(["-f", str(jobs)])
    compose("down", "-v", "-t", "1")
    # compose.yaml's image, which `up --no-build` finds instead of building without the base.
    podman("tag", IMAGE, "localhost/socialhub:compose")
    try:
        compose("up", "-d", "--no-build", "postgres", "redis")
        wait_for(lambda: postgres_ready(f"{PROJECT}_postgres_1"), what="PostgreSQL")
        compose("up", "-d", "--no-build", "migrate")
        assert podman("wait", f"{PROJECT}_migrate_1").strip() == "0"
        compose("up", "-d", "--no-build")
        # Each replica by the image's own health check, then through the balancer, which
        # sends calls to a replica once two of its /readyz checks have passed.
        for replica in REPLICAS:
            wait_for(partial(healthy, replica), timeout_s=90, what=f"{replica} healthy")
        wait_for(
            lambda: serving(BALANCER) and all(rpc_count(r) > 0 for r in REPLICAS),
            timeout_s=60,
            what="the balancer to reach every replica",
        )
        yield
    finally:
        compose("down", "-v", "-t", str(STOP_GRACE_S))


def admin_key() -> str:
    # podman-compose 1.0.3 prints the podman commands it runs on stdout too.
    printed = compose_run("keys", "create", "--name", "compose-drill", "--scope", "admin")
    [key] = re.findall(r"^sh_[0-9a-f]+_\S+$", printed, flags=re.MULTILINE)
    return str(key)


def compose_run(*command: str) -> str:
    """A command in the migrate service's container (compose.yaml's comment: `run --rm migrate`)."""
    done = subprocess.run(
        [*COMPOSE, "run", "--rm", "migrate", *command],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return str(done.stdout)


@dataclass
class Load:
    calls: Counter[str] = field(default_factory=Counter)
    reads_checked: int = 0
    stale: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def until_ok(
        self, call: grpc.UnaryUnaryMultiCallable[Any, Any], request: object, key: str
    ) -> object:
        """One call, retried on UNAVAILABLE (which every caller must retry) until it succeeds."""
        while True:
            try:
                answer = call(request, metadata=(("authorization", f"Bearer {key}"),), timeout=10)
            except grpc.RpcError as error:
                self.calls[error.code().name] += 1
                if error.code() not in RETRIED:
                    raise
                time.sleep(0.05)
            else:
                self.calls["OK"] += 1
                return answer

    def drive(self, key: str, worker: int) -> None:
        """Write a profile's bio, then read it back through the balancer: any replica's
        answer must be that bio."""
        with grpc.insecure_channel(BALANCER) as channel:
            stub = profile_pb2_grpc.ProfileServiceStub(channel)
            created = self.until_ok(
                stub.CreateProfile,
                profile_pb2.CreateProfileRequest(
                    profile=profile_pb2.Profile(
                        display_name="Drill",
                        x=profile_pb2.PlatformPresence(handle=f"drill{worker}"),
                    )
                ),
                key,
            )
            assert isinstance(created, profile_pb2.Profile)
            step = 0
            while not self.stop.is_set():
                step += 1
                bio = f"worker {worker} step {step}"
                update = profile_pb2.UpdateProfileRequest(
                    profile=profile_pb2.Profile(name=created.name, bio=bio)
                )
                update.update_mask.paths.append("bio")
                self.until_ok(stub.UpdateProfile, update, key)
                read = self.until_ok(
                    stub.GetProfile, profile_pb2.GetProfileRequest(name=created.name), key
                )
                assert isinstance(read, profile_pb2.Profile)
                self.reads_checked += 1
                if read.bio != bio:
                    stamp = datetime.now(UTC).isoformat(timespec="milliseconds")
                    self.stale.append(f"{stamp} {bio!r} read as {read.bio!r}")


def leadership(replica: str) -> list[tuple[str, str]]:
    return [
        (entry["ts"], entry["msg"])
        for entry in logs(replica)
        if entry.get("msg") in {"leading the periodic jobs", "stopped leading the periodic jobs"}
    ]


def leads(replica: str) -> bool:
    events = leadership(replica)
    return bool(events) and events[-1][1] == "leading the periodic jobs"


def test_a_replica_stops_under_load_and_nothing_fails_or_goes_stale(stack: None) -> None:
    key = admin_key()
    wait_for(lambda: sum(leads(replica) for replica in REPLICAS) == 1, what="one leader")
    [leader] = [replica for replica in REPLICAS if leads(replica)]

    load = Load()
    workers = [threading.Thread(target=load.drive, args=(key, n), daemon=True) for n in range(6)]
    for worker in workers:
        worker.start()
    survivors = [replica for replica in REPLICAS if replica != leader]
    try:
        wait_for(lambda: load.reads_checked >= 200, what=f"load ({load.calls})")
        add_expired_rows()
        wait_for(lambda: expired_rows_left() == 0, what="the leader's jobs")
        served_before = {replica: rpc_count(replica) for replica in REPLICAS}
        started = time.monotonic()
        podman("stop", "-t", str(STOP_GRACE_S), leader, timeout=60)  # SIGTERM, as compose stop
        stop_s = time.monotonic() - started
        wait_for(lambda: any(leads(replica) for replica in survivors), what="a new leader")
        add_expired_rows()
        wait_for(lambda: expired_rows_left() == 0, what="the new leader's jobs")
        reads_at_stop = load.reads_checked
        wait_for(lambda: load.reads_checked >= reads_at_stop + 300, what="load after the stop")
    finally:
        load.stop.set()
        for worker in workers:
            worker.join(30)

    exit_code = podman("inspect", "--format", "{{.State.ExitCode}}", leader).strip()
    served = {replica: rpc_count(replica) for replica in REPLICAS}
    jobs = {replica: job_runs(replica) for replica in REPLICAS}
    print(
        f"\ncompose drill: calls {dict(load.calls)}, reads checked {load.reads_checked}, "
        f"stale {len(load.stale)}; {leader} stopped in {stop_s:.1f} s (exit {exit_code}); "
        f"RPCs served per replica before the stop {served_before}, at the end {served}; "
        f"leadership { ({r: leadership(r) for r in REPLICAS}) }; job runs {jobs}"
    )
    # What the stopping replica said from SIGTERM on (a stop that overruns its deadline, or a
    # teardown that hangs after it, logs the stack of every task and thread it waits for).
    said = [entry for entry in logs(leader) if entry.get("msg") != "rpc"]
    shutting = [i for i, entry in enumerate(said) if entry.get("msg") == "shutting down"]
    print("\n".join(json.dumps(entry) for entry in said[shutting[-1] if shutting else -40 :]))
    if load.stale:  # what the replicas said of Redis and the cache, to tell why
        for replica in REPLICAS:
            for entry in logs(replica):
                slow = entry.get("msg") in {"rpc", "rpc failed"} and (
                    float(entry.get("duration_ms", 0)) > 500 or entry["msg"] == "rpc failed"
                )
                said_of_redis = "cache" in entry.get("logger", "")
                if entry.get("level") in {"WARNING", "ERROR"} or said_of_redis or slow:
                    print(replica, json.dumps(entry)[:600])
    assert set(load.calls) <= {"OK", *(code.name for code in RETRIED)}, load.calls
    assert load.stale == []
    assert all(count > 0 for count in served_before.values()), "the balancer skipped a replica"
    assert stop_s < SHUTDOWN_S
    assert exit_code == "0"
    assert not running(leader)
    assert all(running(replica) for replica in survivors)

    # The jobs moved once: the old leader let go before the new one took them, and no other
    # replica ever led or ran a job.
    [successor] = [replica for replica in survivors if leads(replica)]
    assert leadership(leader)[-1][1] == "stopped leading the periodic jobs"
    assert leadership(leader)[-1][0] <= leadership(successor)[0][0]
    [bystander] = [replica for replica in survivors if replica != successor]
    assert leadership(bystander) == []
    assert jobs[bystander] == Counter()
    for job in ("activity-retention", "request-id-purge"):
        assert jobs[leader][job] >= 1, job
        assert jobs[successor][job] >= 1, job


def rpc_count(replica: str) -> int:
    return sum(1 for entry in logs(replica) if entry.get("msg") == "rpc")


def job_runs(replica: str) -> Counter[str]:
    return Counter(
        str(entry.get("job"))
        for entry in logs(replica)
        if entry.get("msg") == "maintenance job ran"
    )
