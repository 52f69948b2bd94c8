"""JSON from users, read strictly, and users' values shown briefly in messages.

Inputs come as a file (``csflow simulate --inputs``), as text or as a dict (the
SDK) and as ``--meta NAME=VALUE`` pairs. All of them go through the rules here,
before anything runs or is stored; a violation is a one-line ``BadInput``:

- at most ``max_inputs_bytes`` (a setting) of UTF-8 text; a file is measured
  before it is read whole;
- standard JSON only: no ``NaN``, ``Infinity`` or ``-Infinity``, no number
  beyond a float's range (``1e400`` would read as infinity), no integer beyond
  Python's digit limit (the model's interpreter could not read it back), no
  duplicate key in any object (JSON readers disagree on which one wins);
- at most ``MAX_DEPTH`` levels of nesting;
- for a value handed over already parsed: only dicts with string keys, lists,
  strings, finite numbers, booleans and ``None``.

``excerpt`` is the one way a user's value appears in a message: its ``repr``,
bounded (a 5,000-character tag is not echoed whole).
"""

from __future__ import annotations

import codecs
import json
import math
import os
import reprlib
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from csflow.sdk.core.errors import BadInput

__all__ = [
    "EXCERPT_CHARS",
    "MAX_DEPTH",
    "MAX_INT_DIGITS",
    "NotJSON",
    "check_value",
    "excerpt",
    "loads",
    "location",
    "read_limited",
]

# How much of a user's value a message shows.
EXCERPT_CHARS = 60
# C/S inputs are ``{"adjustment": {section: {param: [{"value": [[...]]}]}}}``:
# seven levels at most; deeper is a mistake or an attack (json recurses).
MAX_DEPTH = 32
# Python's default ``sys.int_info.default_max_str_digits``: the model's
# interpreter, reading the job back, refuses longer integers.
MAX_INT_DIGITS = 4300
_INT_BOUND = 10**MAX_INT_DIGITS  # the least integer with more digits


class NotJSON(BadInput):
    """Text that is not JSON at all (a syntax error), as opposed to JSON the rules
    refuse."""


class _Repr(reprlib.Repr):
    """``reprlib`` with small limits, and integers too long to print shown by size."""

    def __init__(self, limit: int):
        super().__init__()
        self.maxlevel = 3
        self.maxdict = self.maxlist = self.maxtuple = self.maxset = 4
        self.maxstring = self.maxother = self.maxlong = limit

    def repr_int(self, x: int, level: int) -> str:
        digits = _int_digits(x)
        if digits > self.maxlong:
            return f"<an integer of {digits} digits>"
        return repr(x)

    def repr_str(self, x: str, level: int) -> str:
        return _head(x, self.maxstring, "characters")


def _int_digits(x: int) -> int:
    """How many decimal digits ``x`` has, without printing it (at most one too many)."""
    return max(1, math.ceil(abs(x).bit_length() * math.log10(2)))


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _head(value: str | bytes, limit: int, unit: str) -> str:
    """The repr of a string's first ``limit`` characters (at most twice as long, for
    escapes), and its length when that is not all of it."""
    text = repr(value[:limit])
    if len(value) <= limit and len(text) <= 2 * limit:
        return text
    return f"{text[: 2 * limit]}... ({len(value)} {unit})"


def excerpt(value: object, limit: int = EXCERPT_CHARS) -> str:
    """``repr(value)`` for a one-line message, bounded: a long string keeps its head
    and says how long it was; containers show their first items; an integer too
    long to print shows its size."""
    if isinstance(value, (bytes, bytearray)):
        return _head(bytes(value), limit, "bytes")
    try:
        return _cut(_Repr(limit).repr(value), limit * 3)
    except Exception:  # a user's object whose repr fails
        return f"<{type(value).__name__}>"


def location(parts: Sequence[object]) -> str:
    """Where in the inputs: ``adjustment.Knobs.x[0].value`` (keys shortened, the
    middle of a deep path elided), or ``top level``."""
    text = ""
    for part in parts:
        if isinstance(part, int) and not isinstance(part, bool):
            text += f"[{part}]"
        else:
            key = str(part)
            key = key if len(key) <= 30 else key[:27] + "..."
            text += ("." if text else "") + key
    if len(text) > 120:
        text = text[:50] + "..." + text[-60:]
    return text or "top level"


class _Flag:
    """A token the parser met that the rules refuse; ``check_value`` reports it
    with its place in the document."""

    def __init__(self, problem: str):
        self.problem = problem


class _DuplicateKeys(dict):
    """An object in which a key appears twice."""

    duplicate: str = ""


def _constant(name: str) -> _Flag:
    return _Flag(f"{name} is not allowed (JSON has no NaN or Infinity)")


def _float(text: str) -> float | _Flag:
    value = float(text)
    if not math.isfinite(value):
        return _Flag(f"number {excerpt(text)} is out of range")
    return value


def _int(text: str) -> int | _Flag:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        return _Flag(f"an integer of {digits} digits is too long (at most {MAX_INT_DIGITS})")
    return int(text)


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            flagged = _DuplicateKeys(result)
            flagged.duplicate = key
            return flagged
        result[key] = value
    return result


_DECODER = json.JSONDecoder(
    object_pairs_hook=_object, parse_constant=_constant, parse_float=_float, parse_int=_int
)


def loads(data: str | bytes | bytearray, what: str = "inputs", limit: int | None = None) -> Any:
    """Parse JSON text under the rules above (``what`` names it in messages:
    ``inputs file 'x.json'``). A syntax error raises ``NotJSON``, anything else the
    rules refuse ``BadInput``; nothing else escapes."""
    if limit is not None:
        size = len(data) if isinstance(data, (bytes, bytearray)) else _utf8_length(data)
        if size > limit:
            raise _too_large(what, size, limit)
    if isinstance(data, (bytes, bytearray)):
        data = _decode(bytes(data), what)
    try:
        value = _DECODER.decode(data)
    except json.JSONDecodeError as exc:  # its message names a place, never the text
        raise NotJSON(
            f"{what} is not valid JSON: {exc.msg}: line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise BadInput(f"{what}: nested more than {MAX_DEPTH} levels deep") from None
    check_value(value, what)
    return value


def _utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _decode(data: bytes, what: str) -> str:
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8) :]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(
            f"{what} is not UTF-8 text: byte 0x{data[exc.start]:02x} at offset {exc.start}"
        ) from None


def _too_large(what: str, size: int | None, limit: int) -> BadInput:
    """``size``: None when only a lower bound is known (a stream, a value walked)."""
    return BadInput(
        f"{what} is {'' if size is None else f'{size} bytes, '}over the limit of {limit} "
        "bytes (setting max_inputs_bytes, CSFLOW_MAX_INPUTS_BYTES)"
    )


def read_limited(source: str | Path | IO[bytes], limit: int, what: str) -> bytes:
    """At most ``limit`` bytes from a file (or a binary stream): a regular file
    larger than that is refused from its size, before it is read; any other
    source is read up to one byte past the limit. ``OSError`` goes to the caller."""
    if isinstance(source, (str, Path)):
        with open(source, "rb") as handle:
            info = os.fstat(handle.fileno())
            if stat.S_ISREG(info.st_mode) and info.st_size > limit:
                raise _too_large(what, info.st_size, limit)
            return read_limited(handle, limit, what)
    data = source.read(limit + 1)
    if len(data) > limit:
        raise _too_large(what, None, limit)
    return data


_SCALARS = (str, int, float, bool, type(None))


def check_value(value: Any, what: str = "inputs", limit: int | None = None) -> None:
    """Refuse, in one line naming the place, what JSON cannot carry or the rules
    above forbid: flagged tokens from ``loads``, duplicate keys, nesting deeper
    than ``MAX_DEPTH``; and, in a value built in Python, keys that are not
    strings, non-finite floats, integers too long, strings that are not valid
    Unicode and any other type. With ``limit``, also the size of its compact JSON."""
    # Depth first, in document order; a lower bound of the encoded size stops a
    # huge value early.
    stack: list[tuple[Any, tuple[object, ...]]] = [(value, ())]
    size = 0
    while stack:
        item, path = stack.pop()
        size += 1
        if limit is not None and size > limit:
            raise _too_large(what, None, limit)
        if isinstance(item, _Flag):
            raise BadInput(f"{what}: {location(path)}: {item.problem}")
        if isinstance(item, (dict, list, tuple)) and len(path) >= MAX_DEPTH:
            raise BadInput(f"{what}: {location(path)}: nested more than {MAX_DEPTH} levels deep")
        if isinstance(item, dict):
            if isinstance(item, _DuplicateKeys):
                raise BadInput(f"{what}: {location(path)}: duplicate key {excerpt(item.duplicate)}")
            children = []
            for key, child in item.items():
                if not isinstance(key, str):
                    raise BadInput(
                        f"{what}: {location(path)}: key {excerpt(key)} is not a string "
                        f"({type(key).__name__})"
                    )
                size += len(key) + 2
                children.append((child, (*path, key)))
            stack.extend(reversed(children))
        elif isinstance(item, (list, tuple)):
            stack.extend(reversed([(child, (*path, i)) for i, child in enumerate(item)]))
        elif isinstance(item, str):
            size += len(item)
            if not item.isascii():
                try:
                    item.encode("utf-8")
                except UnicodeEncodeError:
                    raise BadInput(
                        f"{what}: {location(path)}: text is not valid Unicode (a lone surrogate)"
                    ) from None
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise BadInput(
                    f"{what}: {location(path)}: {excerpt(item)} is not allowed "
                    "(JSON has no NaN or Infinity)"
                )
        elif isinstance(item, int) and not isinstance(item, bool):
            if abs(item) >= _INT_BOUND:
                raise BadInput(
                    f"{what}: {location(path)}: an integer of {_int_digits(item)} digits "
                    f"is too long (at most {MAX_INT_DIGITS})"
                )
        elif not isinstance(item, _SCALARS):
            raise BadInput(
                f"{what}: {location(path)}: a {type(item).__name__} is not JSON "
                "(objects, arrays, strings, numbers, true, false, null)"
            )
    if limit is not None:
        size = len(json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode())
        if size > limit:
            raise _too_large(what, size, limit)
