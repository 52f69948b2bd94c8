"""The errors csflow raises on purpose.

Each one maps to a CLI exit code (the CLI's convention, ``cli/common.py``): bad
input or usage exits 2; a model or run failure exits 1; 0 is success. Messages are
one line, with no traceback unless ``--debug``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


class CsflowError(Exception):
    """Base class: a failure csflow explains in one line."""

    exit_code = 1


class BadInput(CsflowError):
    """The user gave something unusable: a file, a name, a tag, a config."""

    exit_code = 2


class NotFound(BadInput):
    """A model, tag, run or secret that does not exist."""


class RunFailed(CsflowError):
    """The model (or the run around it) failed."""

    exit_code = 1


# A translation rule: the exception types it catches, and the csflow error it makes of
# one (``None``: let the exception through unchanged).
Rule = tuple[
    type[BaseException] | tuple[type[BaseException], ...], Callable[[Any], Exception | None]
]


@contextmanager
def translated(*rules: Rule) -> Iterator[None]:
    """Turn a library's exceptions into csflow's one-line errors, in one place per
    library client (``with translated(...): return call()``). The first rule whose
    types match makes the error raised instead, without the library's traceback;
    an exception no rule matches, or whose rule makes ``None``, goes on unchanged."""
    try:
        yield
    except Exception as exc:
        for types, make in rules:
            if isinstance(exc, types):
                error = make(exc)
                if error is None:
                    raise
                raise error from None
        raise
