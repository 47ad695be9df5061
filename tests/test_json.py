"""The prebuilt JSON encoders write exactly what the standard library writes."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toolvisor._json import canonical_dumps, compact_dumps

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_same_output_as_the_standard_library(value: object) -> None:
    assert canonical_dumps(value) == json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )
    assert compact_dumps(value) == json.dumps(
        value, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    )


@pytest.mark.parametrize("dumps", [canonical_dumps, compact_dumps])
def test_values_json_cannot_hold_are_refused(dumps: object) -> None:
    assert callable(dumps)
    with pytest.raises(ValueError, match="JSON compliant"):
        dumps({"x": math.nan})
    with pytest.raises(TypeError, match="set is not JSON serializable"):
        dumps({"x": {1, 2}})
    loop: list[object] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="nested too deep"):
        dumps(loop)


def test_compact_dumps_refuses_lone_surrogates_that_no_store_can_keep() -> None:
    assert compact_dumps({"ok": "café 𝄞"}) == '{"ok":"café 𝄞"}'
    with pytest.raises(ValueError, match="lone surrogate"):
        compact_dumps({"bad": ["x", "caf\udce9"]})
