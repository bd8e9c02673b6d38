"""Server streams that survive a dropped connection by resuming from their last cursor."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import TypeVar

import grpc
from google.protobuf.message import Message

from socialhub.client.errors import SocialhubError

RequestT = TypeVar("RequestT", bound=Message)
ResponseT = TypeVar("ResponseT", bound=Message)

# A dropped connection or a restarting server is UNAVAILABLE; ABORTED and RESOURCE_EXHAUSTED
# resume only when the server says when (RetryInfo).
RESUMABLE = frozenset({grpc.StatusCode.UNAVAILABLE})
RESUMABLE_WITH_DELAY = frozenset({grpc.StatusCode.ABORTED, grpc.StatusCode.RESOURCE_EXHAUSTED})


async def resume_stream(
    method: grpc.aio.UnaryStreamMultiCallable[RequestT, ResponseT],
    request: RequestT,
    *,
    request_cursor: str = "resume_cursor",
    response_cursor: str = "resume_cursor",
    max_attempts: int = 5,
    initial_backoff_s: float = 0.1,
    max_backoff_s: float = 2.0,
    call_timeout: float | None = None,
) -> AsyncIterator[ResponseT]:
    """Every message of the server stream `method(request)`, across dropped connections.

    After each message its `response_cursor` goes into the request's `request_cursor`; when
    the stream fails with UNAVAILABLE (or ABORTED / RESOURCE_EXHAUSTED with a RetryInfo), the
    call is made again from there, after the server's retry delay or an exponential backoff.
    `max_attempts` bounds the calls in a row that deliver no message; any other failure, or
    the last one, raises SocialhubError. `call_timeout` is each call's deadline. The request is
    copied, never changed.
    """
    if request_cursor not in request.DESCRIPTOR.fields_by_name:
        raise TypeError(f"{request.DESCRIPTOR.full_name} has no field {request_cursor!r}")
    current = type(request)()
    current.CopyFrom(request)
    failures = 0
    while True:
        try:
            async for message in method(current, timeout=call_timeout):
                failures = 0
                cursor = getattr(message, response_cursor)
                if cursor:
                    setattr(current, request_cursor, cursor)
                yield message
            return
        except grpc.RpcError as failure:
            error = SocialhubError.from_rpc_error(failure)
            failures += 1
            if failures >= max_attempts or not _resumable(error):
                raise error from failure
        if error.retry_delay is not None:
            wait = error.retry_delay.total_seconds()
        else:
            ceiling = min(initial_backoff_s * 2 ** (failures - 1), max_backoff_s)
            wait = random.uniform(ceiling / 2, ceiling)
        await asyncio.sleep(wait)


def _resumable(error: SocialhubError) -> bool:
    if error.code() in RESUMABLE:
        return True
    return error.code() in RESUMABLE_WITH_DELAY and error.retry_delay is not None
