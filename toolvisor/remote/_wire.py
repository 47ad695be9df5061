"""The message format between callers and workers, and the Redis keys it lives under.

Everything is JSON in stream fields; nothing is pickled, so a message a stranger wrote
into Redis can at worst be a bad call, never code run on a worker or a caller.

A **call** (``XADD {ns}:call:{tool}``), fields:

``v``          format version (``"1"``)
``id``         the call's id (random hex), unique per call
``reply``      the caller's reply stream
``args``       the arguments object, JSON
``ctx``        ``{"tenant_id", "request_id", "metadata", "idempotency_key"}``, JSON
``deadline``   wall-clock deadline (seconds since the epoch), ``""`` for none
``timeout``    the caller's ``timeout=`` in seconds (for the error message), ``""`` for none
``traceparent``  W3C trace context of the caller's current span (``""`` when there is
               none, or opentelemetry is not in use in the caller's process)
``tracestate`` W3C ``tracestate`` of that span (``""`` when empty); an instrumented
               worker's call span is a child of the caller's span
``delivered_before``  only on a call a stopping worker handed back (a new entry): how
               many times it had been delivered before that worker's delivery

A **reply** (``XADD {ns}:reply:{caller}``), fields: ``id`` (the call's), ``ok`` (``"1"``
or ``"0"``), ``value`` (JSON, when ok) or ``error`` (JSON, see :func:`encode_error`),
``attempts``, ``cached`` (``"1"`` / ``"0"``), ``worker`` (the answering worker's id) and,
when the tool's fallback answered the call instead of its error, ``fallback`` (``"1"``).

A **cancellation** (``XADD {ns}:cancel``): ``id`` and ``tool`` of the call its caller gave up.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from .. import errors as errors_module
from .._json import compact_dumps, loads
from ..errors import FieldError, RemoteToolError, ToolvisorError, shown
from ..spec import ExecutionContext

__all__ = [
    "DELIVERED_BEFORE",
    "FORMAT_VERSION",
    "IncomingCall",
    "Keys",
    "check_namespace",
    "decode_ctx",
    "decode_error",
    "delivered_before",
    "dumps",
    "encode_ctx",
    "encode_error",
    "loads",
    "type_name",
]

FORMAT_VERSION = "1"
#: The field of a handed-back call that counts its deliveries before the hand-back.
DELIVERED_BEFORE = "delivered_before"


def delivered_before(fields: Mapping[str, str]) -> int:
    """How many times a call was delivered before its entry was written (0 unless a
    stopping worker handed it back; an unreadable count reads 0)."""
    text = fields.get(DELIVERED_BEFORE, "")
    return int(text) if text.isascii() and text.isdigit() and len(text) < 10 else 0


_NAMESPACE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")


def check_namespace(namespace: object) -> str:
    """The namespace, or ValueError naming the problem."""
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        raise ValueError(
            "namespace must be 1-64 characters of letters, digits, '_', '.' or '-', "
            f"got {namespace!r}"
        )
    return namespace


class Keys:
    """The Redis keys of one namespace."""

    __slots__ = ("cancel", "group", "idem_prefix", "namespace", "workers")

    def __init__(self, namespace: str) -> None:
        self.namespace = check_namespace(namespace)
        self.group = namespace
        self.cancel = f"{namespace}:cancel"
        self.workers = f"{namespace}:workers"
        self.idem_prefix = f"{namespace}:idem:"

    def calls(self, tool: str) -> str:
        return f"{self.namespace}:call:{tool}"

    def dead(self, tool: str) -> str:
        return f"{self.namespace}:dead:{tool}"

    def reply(self, caller: str) -> str:
        return f"{self.namespace}:reply:{caller}"

    def worker(self, worker: str) -> str:
        return f"{self.namespace}:worker:{worker}"


def dumps(value: Any) -> str:
    """Strict JSON (no NaN or infinities, which other languages' parsers refuse), as the
    idempotency stores write it; a stream field holds nothing else.

    Raises:
        TypeError: a value JSON has no form for.
        ValueError: NaN or an infinity, an integer of more digits than Python writes, a
            string holding a lone surrogate (Redis keeps UTF-8, which cannot carry one),
            or a value nested too deep to write (Python's stack, about 1,000 levels).
    """
    return compact_dumps(value)


def encode_ctx(ctx: ExecutionContext | None) -> str:
    if ctx is None:
        return "{}"
    return dumps(
        {
            "tenant_id": ctx.tenant_id,
            "request_id": ctx.request_id,
            "metadata": dict(ctx.metadata),
            "idempotency_key": ctx.idempotency_key,
        }
    )


def decode_ctx(text: str) -> ExecutionContext:
    raw = loads(text)
    if not isinstance(raw, dict):
        raise ValueError(f"ctx must be a JSON object, got {text[:80]!r}")
    metadata = raw.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise ValueError("ctx.metadata must be a JSON object")
    for name in ("tenant_id", "request_id", "idempotency_key"):
        value = raw.get(name)
        if value is not None and not isinstance(value, str):
            raise ValueError(f"ctx.{name} must be a string or null")
    return ExecutionContext(
        tenant_id=raw.get("tenant_id"),
        request_id=raw.get("request_id"),
        metadata=metadata,
        idempotency_key=raw.get("idempotency_key"),
    )


def type_name(exc: BaseException) -> str:
    """``"ValueError"`` for builtins, ``"module.QualName"`` for everything else."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


# The classes a reply may name: toolvisor's own, looked up by name in toolvisor.errors
# only (a reply never makes a caller import a module).
def _toolvisor_class(name: str) -> type[ToolvisorError] | None:
    if name not in errors_module.__all__:
        return None
    cls = getattr(errors_module, name, None)
    if isinstance(cls, type) and issubclass(cls, ToolvisorError):
        return cls
    return None


def _field_out(value: Any) -> Any:
    if isinstance(value, FieldError):
        return {"$field_error": [_field_out(value.path), _field_out(value.message)]}
    if isinstance(value, BaseException):
        return {"$exception": [type_name(value), _message(value)]}
    if isinstance(value, tuple | list):
        return {"$tuple": [_field_out(v) for v in value]}
    if isinstance(value, float) and not math.isfinite(value):
        return {"$float": repr(value)}
    if isinstance(value, str):
        return _utf8(value)
    if value is None or isinstance(value, int | float | bool):
        return value
    return {"$repr": _utf8(repr(value))}


def _field_in(value: Any) -> Any:
    if isinstance(value, dict) and len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == "$field_error":
            return FieldError(str(inner[0]), str(inner[1]))
        if tag == "$exception":
            return RemoteToolError(str(inner[0]), str(inner[1]))
        if tag == "$tuple":
            return tuple(_field_in(v) for v in inner)
        if tag == "$float":
            return float(inner)
        if tag == "$repr":
            return str(inner)
    return value


def _utf8(text: str) -> str:
    """``text`` as UTF-8 can carry it: a lone surrogate (a tool may quote its caller's
    input in an error) is written as its escape, ``\\ud800``, instead of failing the reply."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def _message(exc: BaseException) -> str:
    """``str(exc)``, or what its arguments were when it cannot be made (an int of more
    digits than Python writes, a ``__str__`` that raises): the reply is sent regardless."""
    try:
        return _utf8(str(exc))
    except Exception:
        pass
    try:
        shown_args = ", ".join(shown(arg) for arg in exc.args)
    except Exception:
        return "<its message could not be made>"
    return _utf8(f"<its message could not be made; its arguments: {shown_args}>")


def encode_error(exc: BaseException) -> str:
    """An exception as JSON: ``{"type", "message", "args", "fields"}``.

    toolvisor's errors carry their constructor's fields and ``args``, so the caller
    rebuilds the same class with the same fields; any other exception is a tool's own and
    travels as its type name and message (the caller gets :class:`RemoteToolError`).
    A toolvisor error whose fields JSON cannot carry (an integer of 5,000 digits, a
    value nested too deep) travels the second way. Never raises: every call gets its
    reply.
    """
    message = _message(exc)
    if isinstance(exc, ToolvisorError) and _toolvisor_class(type(exc).__name__) is type(exc):
        try:
            return dumps(
                {
                    "type": type(exc).__name__,
                    "toolvisor": True,
                    "message": message,
                    "args": [_field_out(a) for a in exc.args],
                    "fields": {k: _field_out(v) for k, v in vars(exc).items()},
                }
            )
        except Exception:  # RecursionError, a raising repr(): the message form below
            pass
    try:
        notes = getattr(exc, "__notes__", None)
        if notes:
            message = "\n".join([message, *(_utf8(str(note)) for note in notes)])
    except Exception:  # notes that are not strings and cannot be made so: left out
        pass
    return dumps({"type": type_name(exc), "toolvisor": False, "message": message})


def decode_error(text: str, *, tool: str) -> Exception:
    """The exception a reply's ``error`` field describes (see :func:`encode_error`)."""
    try:
        raw = loads(text)
        name = str(raw["type"])
        message = str(raw.get("message", ""))
    except (ValueError, KeyError, TypeError):
        return RemoteToolError("<unreadable error>", text[:500], tool=tool)
    cls = _toolvisor_class(name) if raw.get("toolvisor") else None
    if cls is None:
        return RemoteToolError(name, message, tool=tool)
    args = tuple(_field_in(a) for a in raw.get("args", [message]))
    fields = raw.get("fields", {})
    err = cls.__new__(cls, *args)
    err.args = args
    if isinstance(fields, Mapping):
        err.__dict__.update({str(k): _field_in(v) for k, v in fields.items()})
    return err


class IncomingCall:
    """A call as a worker reads it from its tool's stream (see the module docstring)."""

    __slots__ = (
        "args",
        "call_id",
        "ctx",
        "deadline",
        "fields",
        "reply",
        "timeout",
        "traceparent",
        "tracestate",
    )

    def __init__(self, fields: Mapping[str, str]) -> None:
        """Parse ``fields``; ValueError naming the first problem."""
        self.fields = dict(fields)
        version = fields.get("v")
        if version != FORMAT_VERSION:
            raise ValueError(f"call format version {version!r}, expected {FORMAT_VERSION!r}")
        self.call_id = fields.get("id") or ""
        self.reply = fields.get("reply") or ""
        if not self.call_id or not self.reply:
            raise ValueError("call has no id or no reply stream")
        try:
            args = loads(fields.get("args", ""))
        except ValueError as exc:
            raise ValueError(f"call arguments are not JSON: {exc}") from None
        if not isinstance(args, dict):
            raise ValueError("call arguments must be a JSON object")
        self.args: dict[str, Any] = args
        self.ctx = decode_ctx(fields.get("ctx") or "{}")
        self.deadline = _number(fields.get("deadline", ""), "deadline")
        self.timeout = _number(fields.get("timeout", ""), "timeout")
        self.traceparent = fields.get("traceparent", "")
        self.tracestate = fields.get("tracestate", "")


def _number(text: str, name: str) -> float | None:
    if text == "":
        return None
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"call {name} must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"call {name} must be a finite number, got {text!r}")
    return value
