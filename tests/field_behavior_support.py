"""The registry of valid example requests that tests/core/test_field_behavior.py walks.

Each domain writes `tests/<domain>/examples.py` with one function:

    def examples(context: ExampleContext) -> Examples: ...

It returns, for every RPC of that domain's services, keyed by the full method name
(`"/socialhub.v1.ProfileService/GetProfile"`), a request the server accepts (no error) when it
is sent on `context.channel`. The function creates the data its requests name itself, through
the API (the channel carries the admin key); it runs once per walker case, after the per-test
cleanup has emptied every table, so it must not rely on data of another test or on ids such as
`profiles/1` it did not create.

A value is one request or a non-empty sequence of requests (variants of the same method). The
walker checks, per field path:
- REQUIRED: the path cleared must give INVALID_ARGUMENT with a BadRequest violation whose
  `field` is that path (`profile.display_name`, snake_case as in the proto). Top-level REQUIRED
  fields are cleared in the first variant. REQUIRED fields nested in a singular message field
  are checked in the first variant that sets that message field (set it in a variant when the
  method's first example does not, e.g. an optional `order` whose `field` is REQUIRED); if no
  variant sets it, that case is skipped with a reason naming the message to set.
- OUTPUT_ONLY: the path set to a non-default value (in the first variant that sets its parent
  message) must not make the call fail, and for Create*/Update* methods the response must not
  echo the value given.
Every method of every generated service must have an example: a missing one fails.

Domains may use other domains' APIs to make their data (feed creates profiles through
ProfileService).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import grpc
from google.protobuf.message import Message

from tests.fakes import Fakes


@dataclass(frozen=True)
class ExampleContext:
    """What an example factory gets: a channel to the session's server (admin key), and the
    platforms' fakes that server publishes to (tests/fakes)."""

    channel: grpc.Channel
    fakes: Fakes


Examples = Mapping[str, Message | Sequence[Message]]


class ExampleModule(Protocol):
    """The shape of `tests/<domain>/examples.py`."""

    def examples(self, context: ExampleContext) -> Examples: ...


def variants(value: Message | Sequence[Message]) -> list[Message]:
    """The example requests of one method, first one first."""
    if isinstance(value, Message):
        return [value]
    return list(value)
