"""The server honours the contract's field behaviour (issue 9 §1), for every RPC there is.

The cases come from the generated descriptors alone, so a new RPC or a new REQUIRED /
OUTPUT_ONLY field is a new test without anyone writing it; the valid requests come from each
domain's `tests/<domain>/examples.py` (the registry is described in
tests/field_behavior_support.py). Per RPC:
- `example`: the example request itself succeeds (every other case is relative to it);
- `required-<path>`: the example with that REQUIRED field cleared is INVALID_ARGUMENT with a
  BadRequest violation naming exactly that path;
- `output-only-<path>`: the example with that OUTPUT_ONLY field set succeeds, and a Create* or
  Update* does not echo the value given in the resource it returns.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import grpc
import pytest
import socialhub.v1
from google.protobuf import message_factory
from google.protobuf.descriptor import (
    Descriptor,
    FieldDescriptor,
    MethodDescriptor,
    ServiceDescriptor,
)
from google.protobuf.message import Message

from tests.fakes import Fakes
from tests.field_behavior_support import ExampleContext, ExampleModule, Examples, variants
from tests.helpers import field_violations

TESTS = Path(__file__).resolve().parents[1]
CALL_TIMEOUT_S = 10.0
# Server streams that end only when the client cancels them (live watches).
OPEN_ENDED_STREAMS = {
    "/socialhub.v1.AnalyticsService/WatchProfileMetrics",
    "/socialhub.v1.AnalyticsService/WatchServiceMetrics",
}
OPEN_ENDED_STREAM_S = 1.5
REQUIRED = "REQUIRED"
OUTPUT_ONLY = "OUTPUT_ONLY"
# Deep enough for any request of ours, and a stop for recursive message types.
MAX_DEPTH = 6


def _services() -> list[ServiceDescriptor]:
    services: list[ServiceDescriptor] = []
    for module_info in pkgutil.iter_modules(socialhub.v1.__path__):
        if module_info.name.endswith("_pb2"):
            module = importlib.import_module(f"socialhub.v1.{module_info.name}")
            services.extend(module.DESCRIPTOR.services_by_name.values())
    return sorted(services, key=lambda service: service.full_name)


def _methods() -> list[MethodDescriptor]:
    return [method for service in _services() for method in service.methods]


def _full_name(method: MethodDescriptor) -> str:
    return f"/{method.containing_service.full_name}/{method.name}"


def _behaviours(field: FieldDescriptor) -> list[str]:
    """The names of the field's `google.api.field_behavior` values. Read off the options'
    descriptors: the generated code registered the extension, and google.api has no stubs."""
    for option, value in field.GetOptions().ListFields():
        if option.full_name == "google.api.field_behavior":
            enum = option.enum_type
            assert enum is not None
            return [enum.values_by_number[number].name for number in value]
    return []


def _is_singular_message(field: FieldDescriptor) -> bool:
    return (
        field.message_type is not None
        and not field.is_repeated
        # Well-known types (Timestamp, FieldMask, Struct...) carry no behaviour of ours.
        and not field.message_type.full_name.startswith("google.protobuf.")
    )


def _paths(message: Descriptor, behaviour: str, prefix: str = "", depth: int = 0) -> Iterator[str]:
    """Every field path under `message` with `behaviour`, through singular message fields."""
    if depth >= MAX_DEPTH:
        return
    for field in message.fields:
        path = prefix + field.name
        if behaviour in _behaviours(field):
            yield path
            if behaviour == OUTPUT_ONLY:
                continue  # nothing under an output-only field is input
        if _is_singular_message(field):
            yield from _paths(_message_type(field), behaviour, path + ".", depth + 1)


def _message_type(field: FieldDescriptor) -> Descriptor:
    assert field.message_type is not None
    return field.message_type


@dataclass(frozen=True)
class Case:
    method: MethodDescriptor
    kind: str  # "example", "required" or "output-only"
    path: str = ""

    @property
    def id(self) -> str:
        name = f"{self.method.containing_service.name}.{self.method.name}"
        return f"{name}-{self.kind}" + (f"-{self.path}" if self.path else "")


def _cases() -> list[Case]:
    cases: list[Case] = []
    for method in _methods():
        cases.append(Case(method, "example"))
        cases.extend(Case(method, "required", p) for p in _paths(method.input_type, REQUIRED))
        cases.extend(Case(method, "output-only", p) for p in _paths(method.input_type, OUTPUT_ONLY))
    return cases


def _example_modules() -> list[ExampleModule]:
    modules: list[ExampleModule] = []
    for domain in sorted(path.parent.name for path in TESTS.glob("*/examples.py")):
        modules.append(cast(ExampleModule, importlib.import_module(f"tests.{domain}.examples")))
    return modules


def _examples(channel: grpc.Channel, fakes: Fakes) -> dict[str, Any]:
    """Every domain's examples, made afresh for this case (each test starts with no data)."""
    merged: dict[str, Any] = {}
    context = ExampleContext(channel, fakes)
    for module in _example_modules():
        made: Examples = module.examples(context)
        duplicated = merged.keys() & made.keys()
        assert not duplicated, f"two domains give examples of {sorted(duplicated)}"
        merged.update(made)
    return merged


def _call(channel: grpc.Channel, method: MethodDescriptor, request: Message) -> list[Message]:
    """Send `request` the way the method's streaming asks; the responses, all read."""
    response_class = message_factory.GetMessageClass(method.output_type)
    name = _full_name(method)
    serialize = type(request).SerializeToString
    deserialize = response_class.FromString
    if method.client_streaming and method.server_streaming:
        call = channel.stream_stream(name, serialize, deserialize)
        return list(call(iter([request]), timeout=CALL_TIMEOUT_S))
    if method.client_streaming:
        return [
            channel.stream_unary(name, serialize, deserialize)(
                iter([request]), timeout=CALL_TIMEOUT_S
            )
        ]
    if method.server_streaming and name in OPEN_ENDED_STREAMS:
        # It runs until cancelled: what arrives before a short deadline is the answer.
        responses: list[Message] = []
        open_call = channel.unary_stream(name, serialize, deserialize)(
            request, timeout=OPEN_ENDED_STREAM_S
        )
        try:
            responses.extend(open_call)
        except grpc.RpcError as error:
            if error.code() != grpc.StatusCode.DEADLINE_EXCEEDED:
                raise
        return responses
    if method.server_streaming:
        return list(
            channel.unary_stream(name, serialize, deserialize)(request, timeout=CALL_TIMEOUT_S)
        )
    return [channel.unary_unary(name, serialize, deserialize)(request, timeout=CALL_TIMEOUT_S)]


def _parent_is_set(request: Message, path: str) -> bool:
    message = request
    for part in path.split(".")[:-1]:
        if not message.HasField(part):
            return False
        message = getattr(message, part)
    return True


def _request_for(examples: dict[str, Any], case: Case) -> Message:
    name = _full_name(case.method)
    assert name in examples, f"no example request for {name}: add one to tests/<domain>/examples.py"
    candidates = variants(examples[name])
    assert candidates, f"the examples of {name} are an empty list"
    for candidate in candidates:
        if _parent_is_set(candidate, case.path):
            request = type(candidate)()
            request.CopyFrom(candidate)
            return request
    # Nested fields are walked where an example sets their message: a case no example reaches
    # fails, so every REQUIRED and OUTPUT_ONLY field of every request is really checked.
    parent = case.path.rsplit(".", 1)[0]
    pytest.fail(f"no example of {name} sets {parent!r}: add a variant to check {case.path!r}")


def _parent_and_field(request: Message, path: str) -> tuple[Message, FieldDescriptor]:
    *parents, last = path.split(".")
    message = request
    for part in parents:
        message = getattr(message, part)
    # The C (upb) descriptor classes are not the ones the stubs name.
    field: Any = message.DESCRIPTOR.fields_by_name[last]
    return message, field


def _scalar_sample(field: FieldDescriptor) -> Any:
    """A value no server would produce by itself for an output field."""
    if field.type == FieldDescriptor.TYPE_STRING:
        return f"client-set-{field.name}"
    if field.type == FieldDescriptor.TYPE_BYTES:
        return b"client-set"
    if field.type == FieldDescriptor.TYPE_BOOL:
        return True
    if field.type == FieldDescriptor.TYPE_ENUM:
        assert field.enum_type is not None
        return max(value.number for value in field.enum_type.values)
    if field.type in (FieldDescriptor.TYPE_FLOAT, FieldDescriptor.TYPE_DOUBLE):
        return 12345.5
    return 987_654_321


def _fill(message: Any) -> None:
    """Give a message of any type a non-default value."""
    full_name = message.DESCRIPTOR.full_name
    if full_name == "google.protobuf.Timestamp":
        message.seconds = 978_307_200  # 2001-01-01: no server clock says so
        return
    if full_name == "google.protobuf.Duration":
        message.seconds = 4_321
        return
    field: FieldDescriptor
    for field in message.DESCRIPTOR.fields:
        if field.is_repeated:
            continue
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            _fill(getattr(message, field.name))
        else:
            setattr(message, field.name, _scalar_sample(field))
        return


def _set_output_only(request: Message, path: str) -> Any:
    """Set the field at `path`; the value set, to compare the response with."""
    parent, field = _parent_and_field(request, path)
    container = getattr(parent, field.name)
    if field.is_repeated:
        if field.type == FieldDescriptor.TYPE_MESSAGE:
            _fill(container.add())
        else:
            container.append(_scalar_sample(field))
        return list(container)
    if field.type == FieldDescriptor.TYPE_MESSAGE:
        _fill(container)
        return container
    setattr(parent, field.name, _scalar_sample(field))
    return getattr(parent, field.name)


def _echoed(case: Case, request: Message, response: Message, given: Any) -> bool:
    """Whether a Create/Update response shows the output-only value the client sent."""
    first, _, rest = case.path.partition(".")
    field = request.DESCRIPTOR.fields_by_name[first]
    returned = response.DESCRIPTOR.full_name
    if not rest or field.message_type is None or field.message_type.full_name != returned:
        return False  # the field is not part of the returned resource
    parent, returned_field = _parent_and_field(response, rest)
    if returned_field.type == FieldDescriptor.TYPE_BOOL:
        return False  # a server may well compute True itself: no evidence either way
    value = getattr(parent, returned_field.name)
    if returned_field.is_repeated:
        return list(value) == list(given)
    return bool(value == given)


CASES = _cases()


def test_every_example_names_an_rpc_of_the_contract(channel: grpc.Channel, fakes: Fakes) -> None:
    known = {_full_name(method) for method in _methods()}
    stale = sorted(set(_examples(channel, fakes)) - known)
    assert not stale, f"examples of RPCs that do not exist: {stale}"


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_field_behaviour(channel: grpc.Channel, fakes: Fakes, case: Case) -> None:
    examples = _examples(channel, fakes)
    request = _request_for(examples, case)
    if case.kind == "example":
        _call(channel, case.method, request)
        return
    if case.kind == "required":
        parent, field = _parent_and_field(request, case.path)
        parent.ClearField(field.name)
        with pytest.raises(grpc.RpcError) as caught:
            _call(channel, case.method, request)
        assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT, caught.value.details()
        violations = field_violations(caught.value)
        assert case.path in violations, f"BadRequest names {sorted(violations)}, not {case.path}"
        return
    given = _set_output_only(request, case.path)
    responses = _call(channel, case.method, request)
    if case.method.name.startswith(("Create", "Update")):
        assert len(responses) == 1
        assert not _echoed(case, request, responses[0], given), (
            f"{case.method.name} returned the client's value of output-only {case.path!r}"
        )
