"""One call to build a channel to Socialhub: the API key, TLS, deadlines, retries, balancing."""

from __future__ import annotations

import importlib
import ipaddress
import json
import pkgutil
import re
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc

import socialhub
from socialhub.client._calls import CallDefaults, SyncCalls, aio_interceptors
from socialhub.client.retry import RetryPolicy

DEFAULT_TIMEOUT_S = 30.0
DEFAULT_RETRY = RetryPolicy()
_VERSION_PACKAGE = re.compile(r"v\d+\w*")


@dataclass(frozen=True)
class Tls:
    """Transport security. `ca_file` unset trusts the system's roots (OpenSSL's default CA
    file, else gRPC's bundled roots); `cert_file` and `key_file` present a client certificate
    (mTLS); `server_name` checks the server certificate for that name instead of the
    target's (needed when the target is an IP list)."""

    ca_file: str | Path | None = None
    cert_file: str | Path | None = None
    key_file: str | Path | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.cert_file is None) != (self.key_file is None):
            raise ValueError("a client certificate needs both cert_file and key_file")

    def credentials(self) -> grpc.ChannelCredentials:
        return grpc.ssl_channel_credentials(
            root_certificates=_read(self.ca_file) if self.ca_file else _system_roots(),
            private_key=_read(self.key_file),
            certificate_chain=_read(self.cert_file),
        )


# Verify the server against the system's roots: the default of connect() and aio_connect().
SYSTEM_ROOTS = Tls()


def connect(
    target: str | Sequence[str],
    *,
    api_key: str | None = None,
    tls: Tls | None = SYSTEM_ROOTS,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    stream_timeout: float | None = None,
    retry: RetryPolicy | None = DEFAULT_RETRY,
    load_balancing: str | None = None,
    health_check: bool | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.Channel:
    """A synchronous channel to Socialhub; pass it to the generated stubs.

    `target` is a gRPC target (`api.example.org:443`, `dns:///socialhub.internal:50051`) or a
    list of `ip:port` addresses to balance over. `tls=None` is plaintext, for local use: the
    key then travels as plain metadata. `timeout` is the deadline of each unary call that
    sets none itself (its retries included); `stream_timeout` that of server streams.
    `load_balancing` ("round_robin") is the default with several addresses, and with it
    `health_check` (the grpc.health.v1 service) unless turned off. The retries run in the
    calling thread, so on this channel `future()` returns once the call is over: for
    concurrent calls, use aio_connect().
    """
    plan = _Plan.of(
        target,
        api_key=api_key,
        tls=tls,
        timeout=timeout,
        stream_timeout=stream_timeout,
        retry=retry,
        load_balancing=load_balancing,
        health_check=health_check,
        options=options,
    )
    if plan.credentials is None:
        channel = grpc.insecure_channel(plan.target, options=plan.options)
    else:
        channel = grpc.secure_channel(plan.target, plan.credentials, options=plan.options)
    return grpc.intercept_channel(channel, SyncCalls(plan.defaults))


def aio_connect(
    target: str | Sequence[str],
    *,
    api_key: str | None = None,
    tls: Tls | None = SYSTEM_ROOTS,
    timeout: float | None = DEFAULT_TIMEOUT_S,
    stream_timeout: float | None = None,
    retry: RetryPolicy | None = DEFAULT_RETRY,
    load_balancing: str | None = None,
    health_check: bool | None = None,
    options: Sequence[tuple[str, Any]] = (),
) -> grpc.aio.Channel:
    """As connect(), for asyncio: the generated stubs over it are the async ones. Build it
    inside the event loop that uses it."""
    plan = _Plan.of(
        target,
        api_key=api_key,
        tls=tls,
        timeout=timeout,
        stream_timeout=stream_timeout,
        retry=retry,
        load_balancing=load_balancing,
        health_check=health_check,
        options=options,
    )
    interceptors = aio_interceptors(plan.defaults)
    if plan.credentials is None:
        return grpc.aio.insecure_channel(
            plan.target, options=plan.options, interceptors=interceptors
        )
    return grpc.aio.secure_channel(
        plan.target, plan.credentials, options=plan.options, interceptors=interceptors
    )


@dataclass(frozen=True)
class _Plan:
    target: str
    credentials: grpc.ChannelCredentials | None
    options: list[tuple[str, Any]]
    defaults: CallDefaults

    @classmethod
    def of(
        cls,
        target: str | Sequence[str],
        *,
        api_key: str | None,
        tls: Tls | None,
        timeout: float | None,
        stream_timeout: float | None,
        retry: RetryPolicy | None,
        load_balancing: str | None,
        health_check: bool | None,
        options: Sequence[tuple[str, Any]],
    ) -> _Plan:
        several = not isinstance(target, str)
        balancing = load_balancing or ("round_robin" if several else None)
        checked = balancing is not None if health_check is None else health_check
        config = service_config(retry, load_balancing=balancing, health_check=checked)
        channel_options: list[tuple[str, Any]] = [
            ("grpc.enable_retries", 1),
            ("grpc.service_config", json.dumps(config)),
        ]
        if tls is not None and tls.server_name:
            channel_options.append(("grpc.ssl_target_name_override", tls.server_name))
        channel_options.extend(options)

        credentials = None
        key_metadata: tuple[tuple[str, str | bytes], ...] = ()
        if tls is not None:
            credentials = tls.credentials()
            if api_key:
                credentials = grpc.composite_channel_credentials(
                    credentials, grpc.access_token_call_credentials(api_key)
                )
        elif api_key:
            key_metadata = (("authorization", f"Bearer {api_key}"),)
        return cls(
            target=target if isinstance(target, str) else _address_list(target),
            credentials=credentials,
            options=channel_options,
            defaults=CallDefaults(key_metadata, timeout, stream_timeout, retry),
        )


def service_config(
    retry: RetryPolicy | None, *, load_balancing: str | None = None, health_check: bool = False
) -> dict[str, Any]:
    """The gRPC service config of a Socialhub channel: retries of every idempotent method of
    the generated services, and optionally a balancer that skips replicas the health service
    calls NOT_SERVING (a draining replica gets no new calls)."""
    config: dict[str, Any] = {}
    entry = retry.method_config(socialhub_methods()) if retry is not None else None
    if entry is not None:
        config["methodConfig"] = [entry]
    if load_balancing:
        config["loadBalancingConfig"] = [{load_balancing: {}}]
    if health_check:
        config["healthCheckConfig"] = {"serviceName": ""}
    return config


def socialhub_methods() -> list[str]:
    """`/package.Service/Method` of every RPC in the generated packages (socialhub/v1, ...)."""
    return sorted(_methods())


def _methods() -> Iterator[str]:
    for version in pkgutil.iter_modules(socialhub.__path__):
        if not (version.ispkg and _VERSION_PACKAGE.fullmatch(version.name)):
            continue
        package = importlib.import_module(f"socialhub.{version.name}")
        for module in pkgutil.iter_modules(package.__path__):
            if not module.name.endswith("_pb2"):
                continue
            generated = importlib.import_module(f"{package.__name__}.{module.name}")
            for service in generated.DESCRIPTOR.services_by_name.values():
                for method in service.methods:
                    yield f"/{service.full_name}/{method.name}"


def _address_list(addresses: Sequence[str]) -> str:
    """gRPC's target for a fixed list of IP addresses: `ipv4:a:p,b:p` or `ipv6:[a]:p,...`."""
    if not addresses:
        raise ValueError("no address to connect to")
    families = set()
    for address in addresses:
        host = address.rsplit(":", 1)[0].strip("[]")
        try:
            families.add(ipaddress.ip_address(host).version)
        except ValueError:
            raise ValueError(
                f"{address!r}: a list of addresses takes IP literals; for a name, pass one "
                "target such as 'dns:///socialhub.internal:50051' with load_balancing"
            ) from None
    if len(families) > 1:
        raise ValueError("a list of addresses is IPv4 or IPv6, not both")
    return f"ipv{families.pop()}:{','.join(addresses)}"


def _read(path: str | Path | None) -> bytes | None:
    return None if path is None else Path(path).read_bytes()


def _system_roots() -> bytes | None:
    cafile = ssl.get_default_verify_paths().cafile
    return Path(cafile).read_bytes() if cafile else None
