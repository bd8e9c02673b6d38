"""The HTTP port beside the gRPC one: `/metrics` for Prometheus, and `/readyz` for what
cannot ask the gRPC health service (HAProxy's checks, cloud load balancers,
an HTTP readiness probe).

`/readyz` answers 200 while the process takes calls (PostgreSQL answers and no stop has
begun) and 503 otherwise: from SIGTERM on, through the drain, a balancer that checks it
moves new calls elsewhere while the calls in flight finish. Every other path is the
metrics, as prometheus-client's own server answers. It runs in prometheus-client's
threading WSGI server, so neither a scrape nor a probe ever waits on the event loop.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

READY_PATH = "/readyz"


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """A line per scrape or probe on stderr is noise (calls are counted in the metrics)."""


def serve(
    host: str, port: int, registry: CollectorRegistry, ready: Callable[[], bool]
) -> WSGIServer:
    """Serve on host:port (0: a free port) from a daemon thread; `ready()` is read per probe."""
    metrics = make_wsgi_app(registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") != READY_PATH:
            return metrics(environ, start_response)  # type: ignore[no-any-return]
        if ready():
            start_response("200 OK", [("Content-Type", "text/plain")])
            return [b"ready\n"]
        start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
        return [b"not ready\n"]

    class Server(ThreadingWSGIServer):
        # An IPv6 host needs its own family (prometheus-client's server does the same).
        address_family = _family(host)

    httpd = make_server(host.strip("[]"), port, app, Server, handler_class=_Quiet)
    threading.Thread(target=httpd.serve_forever, name="metrics-http", daemon=True).start()
    return httpd


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET
