"""Walk every page of any List or Search RPC (AIP-158: page_token in, next_page_token out)."""

from __future__ import annotations

import operator
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, TypeVar, overload

import grpc
from google.protobuf.descriptor import FieldDescriptor
from google.protobuf.message import Message

RequestT = TypeVar("RequestT", bound=Message)
ResponseT = TypeVar("ResponseT", bound=Message)
ItemT = TypeVar("ItemT")


async def pages(
    method: grpc.aio.UnaryUnaryMultiCallable[RequestT, ResponseT],
    request: RequestT,
    *,
    page_token_field: str = "page_token",
    next_page_token_field: str = "next_page_token",
    call_timeout: float | None = None,
) -> AsyncIterator[ResponseT]:
    """Every page `method` returns for `request`, first to last. The request is copied, never
    changed; `call_timeout` is each page's deadline (the channel's default when None)."""
    _require_field(request, page_token_field, "request")
    current = type(request)()
    current.CopyFrom(request)
    seen = {getattr(current, page_token_field)}
    while True:
        page = await method(current, timeout=call_timeout)
        yield page
        token = getattr(page, next_page_token_field)
        if not token:
            return
        if token in seen:
            raise RuntimeError(f"{next_page_token_field} repeated a token: the walk would loop")
        seen.add(token)
        setattr(current, page_token_field, token)


@overload
def items(
    method: grpc.aio.UnaryUnaryMultiCallable[RequestT, ResponseT],
    request: RequestT,
    results: Callable[[ResponseT], Iterable[ItemT]],
    *,
    page_token_field: str = ...,
    next_page_token_field: str = ...,
    call_timeout: float | None = ...,
) -> AsyncIterator[ItemT]: ...


@overload
def items(
    method: grpc.aio.UnaryUnaryMultiCallable[RequestT, ResponseT],
    request: RequestT,
    results: str | None = None,
    *,
    page_token_field: str = ...,
    next_page_token_field: str = ...,
    call_timeout: float | None = ...,
) -> AsyncIterator[Any]: ...


async def items(
    method: grpc.aio.UnaryUnaryMultiCallable[RequestT, ResponseT],
    request: RequestT,
    results: Callable[[ResponseT], Iterable[Any]] | str | None = None,
    *,
    page_token_field: str = "page_token",
    next_page_token_field: str = "next_page_token",
    call_timeout: float | None = None,
) -> AsyncIterator[Any]:
    """Every result over every page. `results` picks them from a page: a function (typed:
    `lambda page: page.profiles`), a field name, or None for the response's one repeated
    message field."""
    pick: Callable[[Any], Iterable[Any]] | None = results if callable(results) else None
    async for page in pages(
        method,
        request,
        page_token_field=page_token_field,
        next_page_token_field=next_page_token_field,
        call_timeout=call_timeout,
    ):
        if pick is None:
            pick = _field_of(page, results if isinstance(results, str) else None)
        for item in pick(page):
            yield item


def _field_of(page: Message, name: str | None) -> Callable[[Any], Iterable[Any]]:
    name = name or _repeated_field(page)
    _require_field(page, name, "response")
    return operator.attrgetter(name)


def _require_field(message: Message, name: str, what: str) -> None:
    if name not in message.DESCRIPTOR.fields_by_name:
        raise TypeError(f"{message.DESCRIPTOR.full_name} ({what}) has no field {name!r}")


def _repeated_field(page: Message) -> str:
    repeated = [
        field.name
        for field in page.DESCRIPTOR.fields
        if field.is_repeated and field.type == FieldDescriptor.TYPE_MESSAGE
    ]
    if len(repeated) != 1:
        raise TypeError(
            f"{page.DESCRIPTOR.full_name} has repeated message fields {repeated}: "
            "say which holds the results"
        )
    return repeated[0]
