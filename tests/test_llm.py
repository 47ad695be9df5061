"""toolvisor.llm: provider shapes checked against the providers' own SDK types and rules."""

from __future__ import annotations

import importlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace as Obj
from typing import Any

import jsonschema
import pydantic
import pytest
import trio
import trio.lowlevel
from hypothesis import given
from hypothesis import strategies as st
from test_parameters import EVERY_KIND

from toolvisor import (
    ArrayParameter,
    BooleanParameter,
    CircuitOpenError,
    FunctionToolSpec,
    IntegerParameter,
    NumericParameter,
    ObjectParameter,
    StandardCircuitBreakerPolicy,
    StringParameter,
    ToolResult,
    ToolTimeoutError,
    UnknownToolError,
    ValidationError,
    open_supervisor,
)
from toolvisor.errors import FieldError
from toolvisor.llm import (
    anthropic_tool_results,
    anthropic_tools,
    error_info,
    function_schemas,
    openai_tool_messages,
    openai_tools,
    parse_arguments,
    result_text,
)

#: Every kind that strict mode can express (free-form objects and arrays cannot).
STRICT_KINDS = [p for p in EVERY_KIND if p.name not in ("meta", "anything")]


def spec(*params: Any, name: str = "order", **kw: Any) -> FunctionToolSpec:
    return FunctionToolSpec(
        id=f"{name}-v1",
        tool_name=name,
        description=f"The {name} tool",
        parameters=list(params),
        **kw,
    )


def sdk_type(path: str) -> Any:
    """A provider SDK's type by its dotted path, imported when a test first needs it.

    The two SDKs take about 4 s to import, half of collecting the whole suite; every test
    process collects this module, and only the one that runs these tests needs them.
    """
    module, _, name = path.rpartition(".")
    return getattr(importlib.import_module(module), name)


def transform_schema(schema: Mapping[str, Any]) -> Any:
    """The anthropic SDK's strict-mode transform of ``schema``."""
    return sdk_type("anthropic.lib._parse._transform.transform_schema")(schema)


def conforms(path: str, value: Mapping[str, Any]) -> None:
    """``value`` validates as the SDK's TypedDict at ``path`` and uses none but its keys."""
    typed_dict = sdk_type(path)
    pydantic.TypeAdapter(typed_dict).validate_python(value)
    known = typed_dict.__required_keys__ | typed_dict.__optional_keys__
    assert set(value) <= known, set(value) - known
    assert typed_dict.__required_keys__ <= set(value)


# OpenAI's Structured Outputs rules, as its guide states them.
OPENAI_STRICT_KEYWORDS = {
    "type", "properties", "required", "additionalProperties", "items", "enum", "const",
    "anyOf", "description", "title", "$defs", "$ref", "pattern", "format", "multipleOf",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems",
}  # fmt: skip


def check_openai_strict(schema: Mapping[str, Any], *, root: bool = True) -> None:
    """All properties required, additionalProperties false, only supported keywords."""
    assert set(schema) <= OPENAI_STRICT_KEYWORDS, set(schema) - OPENAI_STRICT_KEYWORDS
    assert not isinstance(schema.get("type"), list), "type lists: use anyOf"
    if root:
        assert schema["type"] == "object" and "anyOf" not in schema
    if schema.get("type") == "object":
        assert schema["additionalProperties"] is False
        assert schema["required"] == list(schema["properties"])
        for sub in schema["properties"].values():
            check_openai_strict(sub, root=False)
    if schema.get("type") == "array":
        check_openai_strict(schema["items"], root=False)
    for sub in schema.get("anyOf", ()):
        check_openai_strict(sub, root=False)


# --------------------------------------------------------------------------- tool lists


def test_openai_chat_tools_match_the_sdk_type_and_strict_rules() -> None:
    tools = openai_tools(spec(*STRICT_KINDS))
    assert len(tools) == 1
    conforms("openai.types.chat.ChatCompletionFunctionToolParam", tools[0])
    fn = tools[0]["function"]
    assert (fn["name"], fn["description"], fn["strict"]) == ("order", "The order tool", True)
    check_openai_strict(fn["parameters"])
    jsonschema.Draft202012Validator.check_schema(fn["parameters"])


def test_openai_responses_tools_match_the_sdk_type() -> None:
    tools = openai_tools(spec(*STRICT_KINDS), api="responses")
    conforms("openai.types.responses.FunctionToolParam", tools[0])
    assert tools[0]["type"] == "function" and tools[0]["name"] == "order"
    check_openai_strict(tools[0]["parameters"])


def test_strict_optional_parameters_become_nullable_and_keep_their_description() -> None:
    params = openai_tools(spec(StringParameter(name="note", description="free text")))[0][
        "function"
    ]["parameters"]
    assert params["required"] == ["note"]
    assert params["properties"]["note"] == {
        "anyOf": [{"type": "string"}, {"type": "null"}],
        "description": "free text",
    }


def test_strict_moves_unsupported_keywords_into_the_description() -> None:
    param = StringParameter(name="sku", required=True, description="Stock unit", max_length=12)
    prop = openai_tools(spec(param))[0]["function"]["parameters"]["properties"]["sku"]
    assert prop == {"type": "string", "description": "Stock unit (maxLength: 12)"}
    quantity = IntegerParameter(name="qty", required=True, minimum=1, default=2)
    prop = openai_tools(spec(quantity))[0]["function"]["parameters"]["properties"]["qty"]
    assert prop == {"type": "integer", "minimum": 1, "description": "default: 2"}


def test_strict_schemas_still_admit_what_the_tool_takes() -> None:
    tool = spec(*STRICT_KINDS)
    strict = openai_tools(tool)[0]["function"]["parameters"]
    valid = {"sku": "AB-1", "currency": None, "qty": 2, "address": {"city": "Oslo"}}
    tool.validate(valid)
    nulls = {name: None for name in strict["properties"] if name != "sku"}
    filled = {**nulls, **valid, "address": {"city": "Oslo", "zip": None}}
    jsonschema.validate(filled, strict)  # what a strict model may send...
    tool.validate(parse_arguments(tool, "order", json.dumps(filled)))  # ...is accepted


@pytest.mark.parametrize(
    ("param", "what"),
    [
        (ObjectParameter(name="meta", additional_properties=True), "takes any key"),
        (ArrayParameter(name="anything"), "array of any JSON value"),
    ],
)
def test_strict_refuses_what_it_cannot_express_and_says_so(param: Any, what: str) -> None:
    with pytest.raises(ValueError, match=r"'meta'|'anything'") as caught:
        openai_tools(spec(param))
    assert what in str(caught.value) and "strict=False" in str(caught.value)
    relaxed = openai_tools(spec(param), strict=False)[0]["function"]
    assert relaxed["strict"] is False
    assert relaxed["parameters"] == spec(param).json_schema()


def test_anthropic_tools_match_the_sdk_type() -> None:
    tools = anthropic_tools(spec(*EVERY_KIND))
    conforms("anthropic.types.ToolParam", tools[0])
    assert tools[0]["input_schema"] == spec(*EVERY_KIND).json_schema()
    assert tools[0]["description"] == "The order tool"


def test_anthropic_sdk_strict_transform_takes_every_kind() -> None:
    # Type lists (["string", "null"]) crash this transform; anyOf does not.
    transform_schema(spec(*EVERY_KIND).json_schema())


def test_anthropic_strict_is_what_its_sdk_transform_would_send() -> None:
    tools = anthropic_tools(spec(*STRICT_KINDS), strict=True)
    conforms("anthropic.types.ToolParam", tools[0])
    assert tools[0]["strict"] is True
    schema = tools[0]["input_schema"]
    assert transform_schema(schema) == schema
    assert schema["required"] == ["sku"]  # Anthropic keeps optional parameters optional


async def test_tool_lists_from_a_supervisor_are_copies_in_name_order() -> None:
    async def fn(args: Any) -> None:
        return None

    async with open_supervisor() as sup:
        for name in ("zeta", "alpha"):
            await sup.spawn(spec(StringParameter(name="q", required=True), name=name), fn)
        first = function_schemas(sup)
        assert [f["name"] for f in first] == ["alpha", "zeta"]
        first[0]["parameters"]["required"].clear()
        assert function_schemas(sup)[0]["parameters"]["required"] == ["q"]
        assert [t["name"] for t in anthropic_tools(sup)] == ["alpha", "zeta"]
        assert [t["function"]["name"] for t in openai_tools(sup)] == ["alpha", "zeta"]
        with pytest.raises(ValidationError):
            await sup.execute("alpha", {})


def test_tool_lists_reject_what_is_not_specs() -> None:
    with pytest.raises(TypeError, match="ToolSpec"):
        openai_tools([spec(), "nope"])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="two tools are named 'order'"):
        anthropic_tools([spec(), spec()])
    with pytest.raises(ValueError, match="api"):
        openai_tools(spec(), api="completions")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- arguments


def test_parse_arguments_drops_the_nulls_strict_mode_adds() -> None:
    tool = spec(
        StringParameter(name="sku", required=True),
        StringParameter(name="note"),
        StringParameter(name="gift_note", nullable=True),
        ObjectParameter(name="address", properties=[StringParameter(name="zip")]),
        ArrayParameter(
            name="lines", items=ObjectParameter(name="l", properties=[IntegerParameter(name="q")])
        ),
    )
    text = json.dumps(
        {
            "sku": "A",
            "note": None,
            "gift_note": None,
            "address": {"zip": None},
            "lines": [{"q": None}, {"q": 2}],
        }
    )
    args = parse_arguments(tool, "order", text)
    assert args == {"sku": "A", "gift_note": None, "address": {}, "lines": [{}, {"q": 2}]}
    tool.validate(args)


def test_parse_arguments_reports_bad_json_and_unknown_tools() -> None:
    with pytest.raises(ValidationError, match="not valid JSON"):
        parse_arguments(spec(), "order", "{'sku': 1")
    with pytest.raises(UnknownToolError):
        parse_arguments(spec(), "other", "{}")
    assert parse_arguments(spec(), "order", "") == {}
    assert parse_arguments(spec(), "order", {"x": None}) == {"x": None}  # validation names it


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('{"sku":' + "[" * 100_000 + "]" * 100_000 + "}", "nests too deeply"),
        ('{"sku":' + "9" * 5000 + "}", "4300 digits"),
        ('{"sku": NaN}', "NaN is not allowed"),
        ('{"sku": 1e999}', "must be finite"),
        (b'{"sku": "\xff"}', "can't decode"),
    ],
    ids=["nested-100000-deep", "5000-digit-number", "NaN", "overflowing-float", "not-utf-8"],
)
def test_a_models_arguments_no_tool_could_take_are_a_validation_error(
    text: str | bytes, problem: str
) -> None:
    """What a model writes is untrusted: the error goes back to it, never a crash of the
    loop (a RecursionError before, for the deep case)."""
    with pytest.raises(ValidationError, match="not valid JSON") as info:
        parse_arguments(spec(), "order", text)
    assert problem in str(info.value)
    assert parse_arguments(spec(), "order", b'{"sku": "A"}') == {"sku": "A"}
    for encoding in ("utf-8-sig", "utf-16", "utf-32"):  # as json.loads reads bytes
        assert parse_arguments(spec(), "order", '{"sku": "é"}'.encode(encoding)) == {"sku": "é"}


# --------------------------------------------------------------------------- results


class DeclinedError(Exception):
    pass


class FlakyError(Exception):
    retryable = True


def ok(value: Any) -> ToolResult:
    return ToolResult(tool="t", ok=True, value=value, attempts=1)


def failed(error: BaseException) -> ToolResult:
    return ToolResult(tool="t", ok=False, error=error, attempts=1)


@pytest.mark.parametrize(
    ("error", "retryable", "retry_after"),
    [
        (CircuitOpenError("pay", retry_after=12.5), False, 12.5),
        (ToolTimeoutError("pay", 3.0), True, None),
        (ValidationError([FieldError("/a", "required field is missing")], tool="pay"), False, None),
        (DeclinedError("card declined"), False, None),
        (FlakyError("try me again"), True, None),
        (ConnectionError("reset"), True, None),
        (UnknownToolError("pay", ["x"]), False, None),
    ],
)
def test_error_info_says_whether_trying_again_can_help(
    error: BaseException, retryable: bool, retry_after: float | None
) -> None:
    info = error_info(error)
    assert info == {
        "type": type(error).__name__,
        "message": str(error),
        "retryable": retryable,
        "retry_after": retry_after,
    }


def test_error_info_of_no_error_is_none() -> None:
    assert error_info(None) is None


def test_result_text_of_values_and_errors() -> None:
    assert result_text(ok("plain text")) == "plain text"
    assert result_text(ok({"total": 5, "ok": True})) == '{"total": 5, "ok": true}'
    assert result_text(ok(None)) == "null"
    assert "object at" in result_text(ok({"when": object()}))  # not JSON: still readable
    declined = result_text(failed(DeclinedError("card declined")))
    assert declined == (
        "Error (DeclinedError): card declined. Trying again with the same arguments will not help."
    )
    opened = result_text(failed(CircuitOpenError("pay", retry_after=30)))
    assert "Do not call again before 30 s" in opened
    invalid = result_text(failed(ValidationError([FieldError("/a", "bad")], tool="pay")))
    assert "/a: bad" in invalid and invalid.endswith("Fix the arguments and call again.")


async def test_tool_result_members_say_what_the_model_reads() -> None:
    opened = StandardCircuitBreakerPolicy(failure_threshold=1, recovery_timeout=60)
    async with open_supervisor() as sup:
        await sup.spawn(spec(name="pay", circuit_breaker_policy=opened), declines)
        await sup.spawn(spec(IntegerParameter(name="n", required=True), name="count"), counts)
        done, invalid, declined = await sup.execute_many(
            [("count", {"n": 2}), ("count", {}), ("pay", {})]
        )
        [refused] = await sup.execute_many([("pay", {})])  # the breaker opened
    assert done.error_info is None
    assert done.to_text() == '{"counted": 2}'
    assert invalid.error_info is not None and invalid.error_info["type"] == "ValidationError"
    assert invalid.to_text().endswith("Fix the arguments and call again.")
    assert declined.error_info == {
        "type": "DeclinedError",
        "message": "card declined",
        "retryable": False,
        "retry_after": None,
    }
    assert declined.to_text() == result_text(declined)
    assert refused.error_info is not None
    assert refused.error_info["type"] == "CircuitOpenError"
    assert refused.error_info["retryable"] is False
    assert 0 < refused.error_info["retry_after"] <= 60
    assert "Do not call again before" in refused.to_text()
    for result in (done, invalid, declined, refused):
        assert result.error_info == error_info(result.error)
        assert result.to_text() == result_text(result)


async def declines(args: Any) -> None:
    raise DeclinedError("card declined")


async def counts(args: Any) -> dict[str, int]:
    return {"counted": args["n"]}


def test_openai_tool_messages_match_the_sdk_types() -> None:
    results = [ok({"a": 1}), failed(DeclinedError("no"))]
    chat = openai_tool_messages(results, ["call_1", "call_2"])
    for message in chat:
        conforms("openai.types.chat.ChatCompletionToolMessageParam", message)
    assert chat[0] == {"role": "tool", "tool_call_id": "call_1", "content": '{"a": 1}'}
    assert chat[1]["content"].startswith("Error (DeclinedError): no.")
    responses = openai_tool_messages(results, ["c1", "c2"], api="responses")
    for item in responses:
        conforms("openai.types.responses.response_input_param.FunctionCallOutput", item)
    assert responses[1]["call_id"] == "c2"


def test_anthropic_tool_results_match_the_sdk_type() -> None:
    blocks = anthropic_tool_results([ok(3), failed(DeclinedError("no"))], ["tu_1", "tu_2"])
    for block in blocks:
        conforms("anthropic.types.ToolResultBlockParam", block)
    assert blocks[0] == {
        "type": "tool_result",
        "tool_use_id": "tu_1",
        "content": "3",
        "is_error": False,
    }
    assert blocks[1]["is_error"] is True


def test_one_id_per_result() -> None:
    with pytest.raises(ValueError, match="one call id per result: 2 results, 1 ids"):
        openai_tool_messages([ok(1), ok(2)], ["only"])
    with pytest.raises(ValueError, match="tool_use id"):
        anthropic_tool_results([ok(1)], "tu_1")


async def test_an_agent_turn_from_tool_calls_to_tool_messages() -> None:
    calls = [
        {"id": "call_a", "function": {"name": "add", "arguments": '{"a": 2, "b": null}'}},
        {"id": "call_b", "function": {"name": "add", "arguments": '{"a": "x"}'}},
    ]
    add = spec(IntegerParameter(name="a", required=True), IntegerParameter(name="b"), name="add")

    async def fn(args: Any) -> int:
        await trio.lowlevel.checkpoint()
        return int(args["a"]) + int(args.get("b", 0))

    async with open_supervisor() as sup:
        await sup.spawn(add, fn)
        results = await sup.execute_many(
            [
                (c["function"]["name"], parse_arguments(sup, "add", c["function"]["arguments"]))
                for c in calls
            ]
        )
    messages = openai_tool_messages(results, [c["id"] for c in calls])
    assert messages[0]["content"] == "2"
    assert "Fix the arguments" in messages[1]["content"]


# --------------------------------------------------------------------------- properties

NAMES = st.from_regex(r"\A[a-z][a-z0-9_]{0,7}\Z")


def _leaf(draw: Any, name: str) -> Any:
    nullable = draw(st.booleans())
    required = draw(st.booleans())
    kind = draw(st.sampled_from(["string", "number", "integer", "boolean"]))
    if kind == "string":
        return StringParameter(
            name=name,
            required=required,
            nullable=nullable,
            min_length=draw(st.none() | st.integers(0, 3)),
            enum=draw(
                st.none() | st.lists(st.text(max_size=3), min_size=1, max_size=3, unique=True)
            ),
        )
    if kind == "boolean":
        return BooleanParameter(name=name, required=required, nullable=nullable)
    cls = IntegerParameter if kind == "integer" else NumericParameter
    return cls(
        name=name,
        required=required,
        nullable=nullable,
        minimum=draw(st.none() | st.integers(-5, 5)),
    )


@st.composite
def parameters(draw: Any, depth: int = 0) -> list[Any]:
    names = draw(st.lists(NAMES, max_size=4, unique=True))
    out = []
    for name in names:
        shape = draw(
            st.sampled_from(["leaf", "leaf", "array", "object"] if depth < 2 else ["leaf"])
        )
        if shape == "leaf":
            out.append(_leaf(draw, name))
        elif shape == "array":
            item = _leaf(draw, "item")
            out.append(ArrayParameter(name=name, items=item, nullable=draw(st.booleans())))
        else:
            out.append(
                ObjectParameter(
                    name=name,
                    properties=draw(parameters(depth + 1)),
                    required=draw(st.booleans()),
                    nullable=draw(st.booleans()),
                )
            )
    return out


@pytest.mark.slow  # about 0.1 s per example (schema checks and compiled validators)
@given(parameters())
def test_strict_schemas_of_any_parameters_follow_the_rules(params: list[Any]) -> None:
    tool = spec(*params)
    strict = openai_tools(tool)[0]["function"]["parameters"]
    check_openai_strict(strict)
    jsonschema.Draft202012Validator.check_schema(strict)
    claude = anthropic_tools(tool, strict=True)[0]["input_schema"]
    assert transform_schema(claude) == claude
    transform_schema(tool.json_schema())
    # What a strict model sends for "nothing given": every optional top-level value null.
    nothing = {p.name: None for p in params if not p.required}
    if all(not p.required for p in params):
        jsonschema.validate(nothing, strict)
        tool.validate(parse_arguments(tool, "order", json.dumps(nothing)))


async def test_the_readme_agent_loop_runs_a_tool_turn_with_anthropic_shapes() -> None:
    readme = (Path(__file__).parent.parent / "README.md").read_text()
    code = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "run_agent" in b)
    namespace: dict[str, Any] = {}
    exec(compile(code, "README.md", "exec"), namespace)
    use = Obj(type="tool_use", id="toolu_1", name="add", input={"a": 2, "b": 3})
    replies = [Obj(content=[use]), Obj(content=[Obj(type="text", text="2 + 3 = 5")])]
    sent: list[list[Any]] = []

    async def create(**request: Any) -> Any:
        sent.append(list(request["messages"]))
        assert request["tools"][0]["name"] == "add"
        return replies[len(sent) - 1]

    add = spec(IntegerParameter(name="a", required=True), IntegerParameter(name="b"), name="add")

    async def fn(args: Any) -> int:
        await trio.lowlevel.checkpoint()
        return int(args["a"]) + int(args.get("b", 0))

    async with open_supervisor() as sup:
        await sup.spawn(add, fn)
        assert await namespace["run_agent"](sup, "2 + 3?", create) == "2 + 3 = 5"
    answer = sent[1][-1]
    assert answer["role"] == "user"
    assert answer["content"] == [
        {"type": "tool_result", "tool_use_id": "toolu_1", "content": "5", "is_error": False}
    ]
