"""Tools for ``toolvisor mcp`` over stdio that touch the process's own stdin and stdout."""

from __future__ import annotations

import os
import sys
from typing import Any

from toolvisor import FunctionToolSpec, StringParameter

SHOUT = FunctionToolSpec(
    id="shout-v1",
    tool_name="shout",
    description="Prints its text to stdout three ways, and reads stdin",
    parameters=[StringParameter(name="text")],
)


async def shout(args: dict[str, Any]) -> dict[str, Any]:
    print(args["text"])  # sys.stdout: Python's buffer over fd 1
    sys.stdout.flush()
    os.write(1, f"{args['text']}\n".encode())  # fd 1 itself, as a C library would
    stdin = os.read(0, 100)  # fd 0: a tool waiting on stdin must not take the protocol
    return {"text": args["text"], "stdin": stdin.decode()}


TOOLS = [(SHOUT, shout)]
