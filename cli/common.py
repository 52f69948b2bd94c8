"""What every ``csflow`` command shares: settings from flags, output formats,
and errors as one line with the right exit code (0 ok, 1 run failure, 2 bad
input or usage; a traceback only with ``--debug``)."""

from __future__ import annotations

import errno
import json
import os
import sys
from collections.abc import Callable
from enum import StrEnum
from functools import wraps
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape

from csflow.sdk.core.errors import BadInput, CsflowError

console = Console()
err_console = Console(stderr=True)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


OutputOption = typer.Option(OutputFormat.table, "--output", "-o", help="table, json or yaml.")


class BackendName(StrEnum):
    local = "local"
    argo = "argo"


BackendOption = typer.Option(
    None, "--backend", help="local or argo (default: CSFLOW_BACKEND, else local)."
)
RunsBackendOption = typer.Option(
    None,
    "--backend",
    help="Look for the run on this backend only: local or argo (default: CSFLOW_BACKEND "
    "first, then the other one set up).",
)


class State:
    """Global flags, set by the app's callback."""

    debug = False
    overrides: dict[str, Any] = {}


def settings(**flags: Any):
    """Settings from flags (those given), then CSFLOW_* variables, then the config file."""
    from csflow.sdk.core.settings import Settings

    given = {k: v.value if isinstance(v, StrEnum) else v for k, v in flags.items() if v is not None}
    return Settings(**{**State.overrides, **given})


def client(**flags: Any):
    """The SDK's client. A ``backend`` flag given (``--backend``) keeps every call on
    that backend; without it, a run is looked for wherever it ran (``Client``)."""
    from csflow.sdk.client import Client

    return Client(settings(**flags), look_elsewhere=flags.get("backend") is None)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    # Messages may hold brackets (gs://BUCKET[/PREFIX]): never read them as markup.
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    return typer.Exit(code)


def emit(data: Any, fmt: OutputFormat) -> None:
    """Print data for scripts: JSON or YAML on stdout."""
    if fmt == OutputFormat.json:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")
    else:
        sys.stdout.write(yaml.safe_dump(data, sort_keys=False, default_flow_style=False))


# Errors of a file system that cannot be written: read-only, not allowed, full, a file
# where a folder should be. Anything else an OSError says is an unexpected error.
_STORAGE_ERRNOS = frozenset(
    {errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR}
)


def _storage_error(exc: OSError) -> CsflowError | None:
    """A file system's refusal as one line: naming CSFLOW_HOME and what to do when the
    path is in it (``engine.store.home_error``), else naming the path."""
    if exc.errno not in _STORAGE_ERRNOS:
        return None
    from csflow.engine.store import home_error, no_space_left

    path = Path(os.path.abspath(os.fsdecode(exc.filename))) if exc.filename else None
    try:
        home: Path | None = Path(os.path.abspath(settings().home))
    except Exception:  # settings that cannot be read: name the path only
        home = None
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if home is not None and (
        (path is None and full and no_space_left(home))  # a write through a file handle
        or (path is not None and (path == home or home in path.parents))
    ):
        return home_error(home, exc)
    if path is None:
        return None
    if full:
        return CsflowError(f"the disk holding {path} is full: free some space and try again")
    return BadInput(f"cannot use {path}: {exc.strerror}")


def handle_errors(func: Callable) -> Callable:
    """Turn csflow's errors into one line and an exit code."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (typer.Exit, typer.Abort):
            raise
        except CsflowError as exc:
            if State.debug:
                raise
            raise fail(str(exc), exc.exit_code) from None
        except TimeoutError as exc:
            if State.debug:
                raise
            raise fail(str(exc), EXIT_FAILED) from None
        except KeyboardInterrupt as exc:  # (the SDK's says which run it cancelled)
            raise fail(f"interrupted: {exc}" if str(exc) else "interrupted", 130) from None
        except OSError as exc:
            if State.debug:
                raise
            error = _storage_error(exc)
            if error is None:
                raise fail(
                    f"{type(exc).__name__}: {exc} (run with --debug for the traceback)",
                    EXIT_FAILED,
                ) from None
            raise fail(str(error), error.exit_code) from None
        except Exception as exc:  # an unexpected bug: still one line, unless --debug
            if State.debug:
                raise
            raise fail(
                f"{type(exc).__name__}: {exc} (run with --debug for the traceback)", EXIT_FAILED
            ) from None

    return wrapper
