"""docs/agents.md and the README's agent section: every example runs as written.

The python blocks of a page run in order in one namespace (a later block uses the
tools an earlier one defines); a block whose first line starts with ``# fragment``
needs what a test cannot have (an API key, a network) and is compiled only. JSON
blocks (client configurations) must parse.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
FENCE = re.compile(r"^```(\w*)\n(.*?)^```$", re.MULTILINE | re.DOTALL)


def blocks(text: str) -> list[tuple[str, str]]:
    return [(m.group(1), m.group(2)) for m in FENCE.finditer(text)]


def agent_section(readme: str) -> str:
    start = readme.index("## Use it from an agent")
    end = readme.index("\n## ", start + 1)
    return readme[start:end]


@pytest.mark.parametrize("page", ["docs/agents.md", "README.md#agents"])
def test_every_example_runs(page: str, capsys: pytest.CaptureFixture[str]) -> None:
    text = (ROOT / page.split("#")[0]).read_text()
    if page.endswith("#agents"):
        text = agent_section(text)
    found = blocks(text)
    assert any(lang == "python" for lang, _ in found)
    namespace: dict[str, object] = {"__name__": "docs_example"}
    for lang, code in found:
        if lang == "json":
            json.loads(code)
        elif lang == "python":
            compiled = compile(code, page, "exec")
            if not code.startswith("# fragment"):
                exec(compiled, namespace)
    out = capsys.readouterr().out
    if page == "docs/agents.md":
        assert "{'city': 'Oslo', 'temperature': 21, 'unit': 'C'}" in out
        assert "True ValidationError" in out
        assert "Do not call again before 12 s" in out
