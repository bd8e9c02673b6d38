"""`socialhub serve` with one more method: an empty unary RPC, the benchmark's floor.

    DATABASE_URL=... REDIS_URL=... PORT=... python -m bench.server

The floor runs in the same process, on the same grpc.aio server, with the same options,
wrapper (logging, load shedding, error mapping) and event loop as the real services, so
"empty RPC" measures exactly what every Socialhub call pays before it does any work.
"""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import grpc
import uvloop

from server.app import application
from server.core.config import Settings
from server.core.interceptors import InstrumentedServer
from server.core.logs import configure_logging

FLOOR_SERVICE = "socialhub.bench.Floor"
EMPTY_METHOD = f"/{FLOOR_SERVICE}/Empty"


async def _empty(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
    return b""


def register_floor(server: InstrumentedServer) -> None:
    # No (de)serializers: the request and the response stay raw (empty) bytes.
    server.add_registered_method_handlers(
        FLOOR_SERVICE, {"Empty": grpc.unary_unary_rpc_method_handler(_empty)}
    )


async def serve(settings: Settings) -> None:
    if not settings.database_url or not settings.redis_url:
        raise SystemExit("bench.server needs DATABASE_URL and REDIS_URL")
    app = application(
        settings, settings.database_url, settings.redis_url, extra_services=[register_floor]
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    port = await app.start()
    print(f"Socialhub (bench) ready on {settings.host}:{port}", flush=True)
    await stop.wait()
    await app.stop()


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_level)
    uvloop.run(serve(settings))


if __name__ == "__main__":
    main()
