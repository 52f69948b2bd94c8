"""The errors csflow raises on purpose.

Each one maps to a CLI exit code (DESIGN.md, Conventions): bad input or usage
exits 2; a model or run failure exits 1. Messages are one line.
"""

from __future__ import annotations


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
