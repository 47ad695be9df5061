"""The message format: errors as JSON and back, calls parsed strictly, nothing pickled."""

from __future__ import annotations

import json

import pytest
from test_errors import examples

from toolvisor import ExecutionContext, FieldError, RemoteToolError, ToolvisorError, ValidationError
from toolvisor.remote._wire import (
    FORMAT_VERSION,
    IncomingCall,
    check_namespace,
    decode_ctx,
    decode_error,
    dumps,
    encode_ctx,
    encode_error,
    loads,
)

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("err", examples(), ids=lambda e: type(e).__name__)
def test_toolvisor_errors_come_back_as_their_class_with_their_fields(err: ToolvisorError) -> None:
    back = decode_error(encode_error(err), tool="pay")
    assert type(back) is type(err)
    assert str(back) == str(err)
    for name, value in vars(err).items():
        if isinstance(value, BaseException):  # ActorCrashedError.cause: a tool's exception
            assert isinstance(getattr(back, name), RemoteToolError)
            assert getattr(back, name).type_name == type(value).__name__
        else:
            assert getattr(back, name) == value, name


def test_a_tools_own_exception_arrives_as_remote_tool_error() -> None:
    class PaymentDeclinedError(Exception):
        pass

    exc = PaymentDeclinedError("card expired")
    exc.add_note("after 3 attempts")
    back = decode_error(encode_error(exc), tool="pay")
    assert isinstance(back, RemoteToolError)
    assert back.type_name.endswith("PaymentDeclinedError")
    assert back.type_name.startswith(__name__)
    assert back.message == "card expired\nafter 3 attempts"
    assert back.tool == "pay"
    assert decode_error(encode_error(KeyError("k")), tool="t").type_name == "KeyError"


def test_a_reply_cannot_make_the_caller_import_or_build_other_classes() -> None:
    for name in ("os.system", "Exception", "FieldError", "builtins.eval"):
        text = json.dumps({"type": name, "toolvisor": True, "message": "m", "args": ["x"]})
        back = decode_error(text, tool="t")
        assert type(back) is RemoteToolError and back.type_name == name
    garbage = decode_error("not json", tool="t")
    assert isinstance(garbage, RemoteToolError) and garbage.type_name == "<unreadable error>"


def test_context_round_trip_and_bad_context() -> None:
    ctx = ExecutionContext(tenant_id="t", request_id="r", metadata={"m": 1}, idempotency_key="k")
    assert decode_ctx(encode_ctx(ctx)) == ctx
    assert decode_ctx(encode_ctx(None)) == ExecutionContext()
    with pytest.raises(ValueError, match=r"ctx\.tenant_id"):
        decode_ctx('{"tenant_id": 3}')
    with pytest.raises(ValueError, match="metadata"):
        decode_ctx('{"metadata": [1]}')


def _call(**changes: str) -> dict[str, str]:
    fields = {
        "v": FORMAT_VERSION,
        "id": "c1",
        "reply": "ns:reply:x",
        "args": '{"a": 1}',
        "ctx": "{}",
        "deadline": "1800000000.5",
        "timeout": "2.0",
        "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    }
    fields.update(changes)
    return fields


def test_incoming_call_parses_every_field() -> None:
    call = IncomingCall(_call())
    assert (call.call_id, call.reply, call.args) == ("c1", "ns:reply:x", {"a": 1})
    assert (call.deadline, call.timeout) == (1800000000.5, 2.0)
    assert call.traceparent.startswith("00-")
    assert IncomingCall(_call(deadline="", timeout="")).deadline is None


@pytest.mark.parametrize(
    ("changes", "problem"),
    [
        ({"v": "0"}, "format version"),
        ({"id": ""}, "no id"),
        ({"args": "[1]"}, "JSON object"),
        ({"args": "{"}, "not JSON"),
        ({"deadline": "nan"}, "finite"),
        ({"deadline": "soon"}, "deadline must be a number"),
        ({"args": '{"a":' + DEEP + "}"}, "nests too deeply"),
        ({"args": '{"a":' + "9" * 5000 + "}"}, "not JSON"),
        ({"ctx": DEEP}, "nests too deeply"),
        ({"ctx": '{"metadata":{"n":' + "9" * 5000 + "}}"}, "4300 digits"),
    ],
)
def test_a_malformed_call_is_refused_naming_the_problem(
    changes: dict[str, str], problem: str
) -> None:
    with pytest.raises(ValueError, match=problem):
        IncomingCall(_call(**changes))


@pytest.mark.parametrize("bad", ["", "a b", "x" * 65, "ns:sub", 3])
def test_namespace_must_be_a_plain_name(bad: object) -> None:
    with pytest.raises(ValueError, match="namespace"):
        check_namespace(bad)


def test_a_value_nested_too_deep_is_a_value_error_both_ways() -> None:
    nested: list[object] = []
    for _ in range(100_000):
        nested = [nested]
    with pytest.raises(ValueError, match="nested too deep"):
        dumps(nested)
    with pytest.raises(ValueError, match="nests too deeply to read"):
        loads(DEEP)
    assert loads(dumps({"a": [[1]]})) == {"a": [[1]]}


def test_an_error_whose_message_cannot_be_made_still_travels() -> None:
    exc = ValueError(10**5000)  # str() refuses an int of more than 4,300 digits
    back = decode_error(encode_error(exc), tool="pay")
    assert isinstance(back, RemoteToolError) and back.type_name == "ValueError"
    assert "could not be made" in back.message and "bits" in back.message


def test_a_reply_nested_too_deep_is_an_unreadable_error_not_a_crash() -> None:
    back = decode_error('{"type":' + DEEP + "}", tool="pay")
    assert isinstance(back, RemoteToolError) and back.type_name == "<unreadable error>"


def test_a_lone_surrogate_is_refused_on_the_way_out_not_sent_to_fail_in_redis() -> None:
    """Redis keeps UTF-8, which cannot carry a lone surrogate: the field's writer is the
    one to say so, with a ValueError its callers answer, never a UnicodeEncodeError
    raised inside the connection."""
    with pytest.raises(ValueError, match="lone surrogate"):
        dumps({"text": "\ud800"})
    with pytest.raises(ValueError, match="lone surrogate"):
        encode_ctx(ExecutionContext(metadata={"note": "\udc00"}))


def test_an_error_quoting_a_lone_surrogate_travels_with_it_escaped() -> None:
    own = decode_error(encode_error(KeyError("\ud800 not found")), tool="pay")
    assert isinstance(own, RemoteToolError) and own.type_name == "KeyError"
    assert "\\ud800 not found" in own.message
    err = ValidationError([FieldError("/text", "\ud800 is not one of 'a', 'b'")], tool="pay")
    back = decode_error(encode_error(err), tool="pay")
    assert type(back) is ValidationError  # the class and its fields kept
    assert back.errors[0].path == "/text"
    assert back.errors[0].message == "\\ud800 is not one of 'a', 'b'"
    encode_error(err).encode()  # UTF-8 can carry all of it


def test_a_toolvisor_error_whose_fields_json_cannot_carry_travels_as_its_message() -> None:
    err = ValidationError([FieldError("/n", "too large")], tool="pay")
    err.limit = 10**5000  # type: ignore[attr-defined]  # a field no JSON writer takes
    back = decode_error(encode_error(err), tool="pay")
    assert isinstance(back, RemoteToolError)
    assert back.type_name == "toolvisor.errors.ValidationError"
    assert "too large" in back.message


class _Unprintable:
    def __str__(self) -> str:
        raise RuntimeError("no")

    __repr__ = __str__


def _deep() -> list[object]:
    nested: list[object] = []
    for _ in range(100_000):
        nested = [nested]
    return nested


def test_encode_error_never_raises_whatever_an_error_holds() -> None:
    """Every call gets its reply: an error that cannot travel whole travels as its class
    name and message, or as what can be made of its message."""
    field_none = ValidationError([FieldError(None, "bad")], tool="pay")  # type: ignore[arg-type]
    back = decode_error(encode_error(field_none), tool="pay")
    assert type(back) is ValidationError and back.errors[0].message == "bad"

    deep_field = ValidationError([FieldError("/a", "bad")], tool="pay")
    deep_field.limit = _deep()  # type: ignore[attr-defined]
    deep_repr = ValidationError([FieldError("/a", "bad")], tool="pay")
    deep_repr.limit = {"a": _deep()}  # type: ignore[attr-defined]  # repr() recurses
    for err in (deep_field, deep_repr):
        back = decode_error(encode_error(err), tool="pay")
        assert isinstance(back, RemoteToolError) and "bad" in back.message

    noted = KeyError("k")
    noted.__notes__ = ["fine", _Unprintable()]  # type: ignore[list-item]
    assert "'k'" in decode_error(encode_error(noted), tool="pay").message  # type: ignore[attr-defined]

    class HostileError(Exception):
        @property
        def args(self) -> tuple[object, ...]:  # type: ignore[override]
            raise RuntimeError("no args")

        def __str__(self) -> str:
            raise RuntimeError("no message")

    back = decode_error(encode_error(HostileError()), tool="pay")
    assert isinstance(back, RemoteToolError) and "could not be made" in back.message
