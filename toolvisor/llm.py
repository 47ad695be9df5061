"""LLM providers' tool formats: tool lists in, tool results out.

No provider SDK is needed: every function returns plain dicts in the shapes the OpenAI
(Chat Completions and Responses) and Anthropic (Messages) APIs document, ready to pass
as ``tools=`` and as the next turn's tool messages::

    tools = openai_tools(sup)                      # strict function definitions
    ...                                            # the model answers with tool calls
    results = await sup.execute_many(
        [(c.function.name, parse_arguments(sup, c.function.name, c.function.arguments))
         for c in calls]
    )
    messages += openai_tool_messages(results, [c.id for c in calls])

Strict mode (OpenAI's ``strict: true``, on by default here; Anthropic's ``strict`` when
asked) constrains the model's output to the schema, and accepts only part of JSON Schema:

- every property is listed in ``required``; an optional parameter becomes nullable
  (``anyOf`` with ``{"type": "null"}``) and a null argument means "absent":
  :func:`parse_arguments` removes those nulls before the call is validated;
- every object says ``additionalProperties: false`` (a free-form object or an array
  without ``items`` cannot be strict: such a tool raises ``ValueError``; pass
  ``strict=False`` for it);
- keywords the provider's strict mode does not take (``minLength``, ``default``, ...) are
  moved into the description, so the model still reads them, and toolvisor's own
  validation still enforces them.

Errors go back to the model as text that says whether trying again can help
(:func:`error_info`, :func:`result_text`).
"""

from __future__ import annotations

import copy
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

from ._json import loads
from .errors import (
    ActorCrashedError,
    FieldError,
    IdempotencyConflictError,
    IdempotencyStoreError,
    SupervisorClosedError,
    ToolOverloadedError,
    ToolTimeoutError,
    ToolUnavailableError,
    UnknownToolError,
    ValidationError,
)
from .spec import ToolSpec

if TYPE_CHECKING:
    from .supervisor import Supervisor, ToolResult

__all__ = [
    "anthropic_tool_results",
    "anthropic_tools",
    "error_info",
    "error_text",
    "function_schemas",
    "openai_tool_messages",
    "openai_tools",
    "parse_arguments",
    "result_text",
]

# OpenAI's Structured Outputs "supported schemas": the keywords strict mode takes.
_OPENAI_STRICT_KEYWORDS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "enum",
        "const", "anyOf", "description", "title", "$defs", "$ref",
        "pattern", "format",
        "multipleOf", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
        "minItems", "maxItems",
    }
)  # fmt: skip

# What Anthropic's strict tool use takes (its SDK's transform_schema keeps these).
_ANTHROPIC_STRICT_KEYWORDS = frozenset(
    {
        "type", "properties", "required", "additionalProperties", "items", "enum",
        "const", "anyOf", "allOf", "description", "title", "$defs", "$ref",
        "format", "minItems",
    }
)  # fmt: skip
_ANTHROPIC_STRING_FORMATS = frozenset(
    {"date-time", "time", "date", "duration", "email", "hostname", "uri", "ipv4", "ipv6", "uuid"}
)


# --------------------------------------------------------------------------- tool lists


def function_schemas(
    specs_or_sup: ToolSpec | Iterable[ToolSpec] | Supervisor,
) -> list[dict[str, Any]]:
    """``{"name", "description", "parameters"}`` of each tool: copies, in name order.

    Args:
        specs_or_sup: a ToolSpec, an iterable of ToolSpecs or a Supervisor.
    """
    from .supervisor import Supervisor

    if isinstance(specs_or_sup, Supervisor):
        found = [copy.deepcopy(dict(s)) for s in specs_or_sup.function_schemas().values()]
    elif isinstance(specs_or_sup, ToolSpec):
        found = [specs_or_sup.to_function_schema()]
    elif isinstance(specs_or_sup, Iterable) and not isinstance(specs_or_sup, str | Mapping):
        items = list(specs_or_sup)
        bad = [s for s in items if not isinstance(s, ToolSpec)]
        if bad:
            raise TypeError(f"expected ToolSpecs, got a {type(bad[0]).__name__}")
        found = [s.to_function_schema() for s in items]
    else:
        raise TypeError(
            "expected a ToolSpec, an iterable of ToolSpecs or a Supervisor, got "
            f"{type(specs_or_sup).__name__}"
        )
    names = [f["name"] for f in found]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"two tools are named {dupes[0]!r}: providers need unique names")
    return sorted(found, key=lambda f: f["name"])


def openai_tools(
    specs_or_sup: ToolSpec | Iterable[ToolSpec] | Supervisor,
    *,
    strict: bool = True,
    api: Literal["chat", "responses"] = "chat",
) -> list[dict[str, Any]]:
    """The tools as OpenAI's ``tools=`` takes them.

    Args:
        specs_or_sup: a ToolSpec, an iterable of ToolSpecs or a Supervisor.
        strict: strict function calling (Structured Outputs): see the module docstring.
        api: ``"chat"`` for Chat Completions (``{"type": "function", "function": {...}}``),
            ``"responses"`` for the Responses API (the function's fields at top level).

    Raises:
        ValueError: with ``strict``, a tool whose schema strict mode cannot express.
    """
    if api not in ("chat", "responses"):
        raise ValueError(f"api must be 'chat' or 'responses', got {api!r}")
    out: list[dict[str, Any]] = []
    for fn in function_schemas(specs_or_sup):
        params = fn["parameters"]
        if strict:
            params = _strict(params, _OPENAI_STRICT_KEYWORDS, fn["name"], all_required=True)
        body = {
            "name": fn["name"],
            "description": fn["description"],
            "parameters": params,
            "strict": strict,
        }
        if api == "responses":
            out.append({"type": "function", **body})
        else:
            out.append({"type": "function", "function": body})
    return out


def anthropic_tools(
    specs_or_sup: ToolSpec | Iterable[ToolSpec] | Supervisor, *, strict: bool = False
) -> list[dict[str, Any]]:
    """The tools as Anthropic's Messages API ``tools=`` takes them.

    Args:
        specs_or_sup: a ToolSpec, an iterable of ToolSpecs or a Supervisor.
        strict: Anthropic's strict tool use (``"strict": true``): keywords it does not
            take move into the description; optional parameters stay optional.

    Raises:
        ValueError: with ``strict``, a tool whose schema strict mode cannot express.
    """
    out: list[dict[str, Any]] = []
    for fn in function_schemas(specs_or_sup):
        tool: dict[str, Any] = {"name": fn["name"], "description": fn["description"]}
        if strict:
            tool["input_schema"] = _strict(
                fn["parameters"], _ANTHROPIC_STRICT_KEYWORDS, fn["name"], all_required=False
            )
            tool["strict"] = True
        else:
            tool["input_schema"] = fn["parameters"]
        out.append(tool)
    return out


def _admits_null(schema: Mapping[str, Any]) -> bool:
    kind = schema.get("type")
    if kind == "null" or (isinstance(kind, list) and "null" in kind):
        return True
    return any(_admits_null(b) for b in schema.get("anyOf", ()) if isinstance(b, Mapping))


def _moved_note(moved: Mapping[str, Any]) -> str:
    return "; ".join(
        f"{key}: {json.dumps(value, ensure_ascii=False)}" for key, value in moved.items()
    )


def _strict(
    schema: Mapping[str, Any],
    keep: frozenset[str],
    tool: str,
    *,
    all_required: bool,
    path: str = "",
) -> dict[str, Any]:
    """A copy of ``schema`` in the provider's strict subset (see the module docstring)."""
    out: dict[str, Any] = {}
    moved: dict[str, Any] = {}
    kinds = schema.get("type")
    kinds = [kinds] if isinstance(kinds, str) else list(kinds or ())
    for key, value in schema.items():
        if not _takes(keep, key, value):
            moved[key] = value
        elif key == "properties":
            out[key] = {
                name: _strict(sub, keep, tool, all_required=all_required, path=f"{path}/{name}")
                for name, sub in value.items()
            }
        elif key == "items":
            out[key] = _strict(value, keep, tool, all_required=all_required, path=f"{path}/items")
        elif key in ("anyOf", "allOf"):
            out[key] = [
                _strict(sub, keep, tool, all_required=all_required, path=path) for sub in value
            ]
        else:
            out[key] = copy.deepcopy(value)
    if keep is _ANTHROPIC_STRICT_KEYWORDS and ("enum" in out or "const" in out):
        out.pop("type", None)  # Anthropic's strict schemas state literals without a type
    where = f"parameter {path[1:]!r} of tool {tool!r}" if path else f"tool {tool!r}"
    if "array" in kinds and "items" not in schema:
        raise ValueError(
            f"{where} is an array of any JSON value, which strict mode cannot express: give "
            "it items=..., or pass strict=False"
        )
    if "object" in kinds:
        if schema.get("additionalProperties", True) is not False:
            raise ValueError(
                f"{where} is an object that takes any key, which strict mode cannot express: "
                "declare its properties, or pass strict=False"
            )
        props: dict[str, Any] = out.setdefault("properties", {})
        required = list(schema.get("required", ()))
        if all_required:
            for name in list(props):
                if name not in required and not _admits_null(props[name]):
                    props[name] = _nullable(props[name])
            required = list(props)
        out["required"] = required
        out["additionalProperties"] = False
    if moved:
        note = _moved_note(moved)
        out["description"] = f"{out['description']} ({note})" if out.get("description") else note
    return out


def _takes(keep: frozenset[str], key: str, value: Any) -> bool:
    """Whether strict mode takes ``key: value`` (Anthropic's takes some values only)."""
    if key not in keep:
        return False
    if keep is _ANTHROPIC_STRICT_KEYWORDS:
        if key == "format":
            return value in _ANTHROPIC_STRING_FORMATS
        if key == "minItems":
            return value in (0, 1)
    return True


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    inner = dict(schema)
    wrapper: dict[str, Any] = {}
    if "description" in inner:
        wrapper["description"] = inner.pop("description")
    return {"anyOf": [inner, {"type": "null"}], **wrapper}


def parse_arguments(
    specs_or_sup: ToolSpec | Iterable[ToolSpec] | Supervisor,
    tool: str,
    arguments: str | Mapping[str, Any],
) -> Any:
    """A model's tool-call arguments, ready for ``sup.execute(tool, ...)``.

    Parses JSON text (as OpenAI sends ``arguments``; Anthropic's ``input`` is a dict
    already) and removes the nulls that strict mode makes a model send for optional
    parameters it leaves out, at every level; a parameter that is nullable in its own
    right keeps its null. Other values pass through as they are: the call's validation
    judges them.

    Raises:
        ValidationError: the text is not strict JSON: not JSON, ``NaN`` or a number past
            a float's range, nested past the interpreter's stack, bytes not UTF-8 (send it
            back to the model: it can fix it).
        UnknownToolError: no tool of that name.
    """
    if isinstance(arguments, str | bytes):
        try:
            # A model's text is untrusted: nested past the stack, NaN or not UTF-8, it is
            # a ValueError (sent back to the model), never a RecursionError.
            text = (  # bytes in the encoding json.loads would find (UTF-8, -16, -32)
                arguments.decode(json.detect_encoding(arguments), "surrogatepass")
                if isinstance(arguments, bytes)
                else arguments
            )
            parsed: Any = loads(text) if text else {}
        except ValueError as exc:
            raise ValidationError(
                [FieldError("", f"arguments are not valid JSON: {exc}")], tool=tool
            ) from None
    else:
        parsed = arguments
    by_name = {f["name"]: f["parameters"] for f in function_schemas(specs_or_sup)}
    if tool not in by_name:
        raise UnknownToolError(tool, by_name)
    return _drop_strict_nulls(parsed, by_name[tool])


def _drop_strict_nulls(value: Any, schema: Mapping[str, Any]) -> Any:
    if isinstance(value, Mapping) and isinstance(schema.get("properties"), Mapping):
        props: Mapping[str, Any] = schema["properties"]
        required = set(schema.get("required", ()))
        out: dict[str, Any] = {}
        for key, item in value.items():
            sub = props.get(key)
            if sub is None:
                out[key] = item  # an unknown field: validation will name it
            elif item is None and key not in required and not _admits_null(sub):
                continue
            else:
                out[key] = _drop_strict_nulls(item, sub)
        return out
    if isinstance(value, list) and isinstance(schema.get("items"), Mapping):
        return [_drop_strict_nulls(v, schema["items"]) for v in value]
    if isinstance(schema.get("anyOf"), list) and value is not None:
        for branch in schema["anyOf"]:
            if isinstance(branch, Mapping) and branch.get("type") != "null":
                return _drop_strict_nulls(value, branch)
    return value


# --------------------------------------------------------------------------- results


_NOT_RETRYABLE: tuple[type[BaseException], ...] = (
    ValidationError,
    IdempotencyConflictError,
    UnknownToolError,
    ToolUnavailableError,
    SupervisorClosedError,
    ActorCrashedError,  # the tool may have run: a second call may repeat its effect
)
_RETRYABLE: tuple[type[BaseException], ...] = (
    ToolTimeoutError,
    ToolOverloadedError,
    IdempotencyStoreError,  # the call was not executed
    ConnectionError,
    TimeoutError,
)


def error_info(exc: BaseException | None) -> dict[str, Any] | None:
    """What a model needs to know about a call's error, or None when there is none.

    Returns ``{"type", "message", "retryable", "retry_after"}``: ``retryable`` says
    whether calling again *now*, with the same arguments, can help; ``retry_after`` is
    the seconds to wait first when only waiting helps (an open circuit breaker, a rate
    limit), else None. An error with a numeric ``retry_after`` attribute is "not now"
    (retryable False, with the wait); toolvisor's errors and ``TimeoutError`` /
    ``ConnectionError`` are classified by kind; a tool's own exception may say for
    itself with a boolean ``retryable`` attribute, and otherwise is not retryable (a
    declined card stays declined).
    """
    if exc is None:
        return None
    retry_after = getattr(exc, "retry_after", None)
    if (
        isinstance(retry_after, int | float)
        and not isinstance(retry_after, bool)
        and math.isfinite(retry_after)
    ):
        retryable, wait = False, max(0.0, float(retry_after))
    else:
        wait = None
        own = getattr(exc, "retryable", None)
        if isinstance(own, bool):
            retryable = own
        elif isinstance(exc, _NOT_RETRYABLE):
            retryable = False
        else:
            retryable = isinstance(exc, _RETRYABLE)
    return {
        "type": type(exc).__name__,
        "message": str(exc) or type(exc).__name__,
        "retryable": retryable,
        "retry_after": wait,
    }


def _value_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError):
        return json.dumps(value, ensure_ascii=False, default=repr, allow_nan=True)


def result_text(result: ToolResult) -> str:
    """A call's outcome as the text a model reads.

    A success is its value: a string as it is, anything else as JSON. A failure says the
    error's type and message and what to do next (fix the arguments, wait, try again or
    not).
    """
    if result.ok:
        return _value_text(result.value)
    if result.error is None:
        return "Error: the call failed without an error (a bug in whoever made this result)."
    return error_text(result.error)


def error_text(exc: BaseException) -> str:
    """An error as the text a model reads: its type, its message, what to do next."""
    info = error_info(exc)
    assert info is not None
    text = f"Error ({info['type']}): {info['message']}"
    if isinstance(exc, ValidationError):
        return f"{text}. Fix the arguments and call again."
    if info["retry_after"] is not None:
        return f"{text}. Do not call again before {info['retry_after']:.3g} s have passed."
    if info["retryable"]:
        return f"{text}. Trying again may help."
    return f"{text}. Trying again with the same arguments will not help."


def _paired(results: Sequence[ToolResult], ids: Sequence[str], what: str) -> None:
    if isinstance(ids, str) or len(results) != len(ids):
        raise ValueError(
            f"give one {what} per result: {len(results)} results, "
            f"{1 if isinstance(ids, str) else len(ids)} ids"
        )


def openai_tool_messages(
    results: Sequence[ToolResult],
    call_ids: Sequence[str],
    *,
    api: Literal["chat", "responses"] = "chat",
) -> list[dict[str, Any]]:
    """One message per result, answering the tool calls with ``call_ids`` (same order).

    ``api="chat"``: ``{"role": "tool", "tool_call_id", "content"}`` (Chat Completions);
    ``api="responses"``: ``{"type": "function_call_output", "call_id", "output"}``.
    """
    if api not in ("chat", "responses"):
        raise ValueError(f"api must be 'chat' or 'responses', got {api!r}")
    _paired(results, call_ids, "call id")
    if api == "responses":
        return [
            {"type": "function_call_output", "call_id": cid, "output": result_text(r)}
            for r, cid in zip(results, call_ids, strict=True)
        ]
    return [
        {"role": "tool", "tool_call_id": cid, "content": result_text(r)}
        for r, cid in zip(results, call_ids, strict=True)
    ]


def anthropic_tool_results(
    results: Sequence[ToolResult], tool_use_ids: Sequence[str]
) -> list[dict[str, Any]]:
    """``tool_result`` content blocks answering the ``tool_use`` blocks with those ids.

    Put them, in this order, in the content of the next ``user`` message.
    """
    _paired(results, tool_use_ids, "tool_use id")
    return [
        {
            "type": "tool_result",
            "tool_use_id": tid,
            "content": result_text(r),
            "is_error": not r.ok,
        }
        for r, tid in zip(results, tool_use_ids, strict=True)
    ]
