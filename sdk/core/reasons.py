"""One line that says why a program failed, from the output it left.

A failed step's, build's or ``get_inputs``' reason is shown in one line (the CLI
promises one-line errors; the webapp gets it as the traceback's excerpt); the
whole output stays in the logs. The last line is often the wrong one: git puts
its ``fatal:`` first and hints after it, and a Python exception whose message
spans lines (ParamTools' ``ValidationError`` prints a JSON object) ends in ``}``.
"""

from __future__ import annotations

import re

__all__ = ["MAX_REASON_CHARS", "reason_line"]

MAX_REASON_CHARS = 300
_TOOL_ERROR = re.compile(r"^\s*(error|fatal):", re.IGNORECASE)
_FRAME = re.compile(r"^\s+File \"")


def reason_line(output: str) -> str:
    """A last line of csflow's own (``csflow: ...``); else, after a Python traceback,
    the exception with its whole message; else the first ``error:``/``fatal:`` line
    (git's, uv's); else the last line. Whitespace joined, at most MAX_REASON_CHARS."""
    lines = [line.rstrip() for line in output.splitlines() if line.strip()]
    if not lines:
        return ""
    if lines[-1].startswith("csflow: "):
        return _one_line(lines[-1].removeprefix("csflow: "))
    exception = _exception_after_traceback(lines)
    if exception:
        return _one_line(exception)
    tool = next((line for line in lines if _TOOL_ERROR.match(line)), None)
    return _one_line(tool if tool is not None else lines[-1])


def _exception_after_traceback(lines: list[str]) -> str | None:
    frames = [i for i, line in enumerate(lines) if _FRAME.match(line)]
    if not frames:
        return None
    rest = lines[frames[-1] + 1 :]
    # The frame's source line (and its ^^^ markers) are indented; the exception is not.
    start = next((i for i, line in enumerate(rest) if not line[:1].isspace()), None)
    return None if start is None else " ".join(rest[start:])


def _one_line(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= MAX_REASON_CHARS else line[: MAX_REASON_CHARS - 1] + "…"
