"""What every ``csflow`` command shares: settings from flags, output formats,
and errors as one line with the right exit code (0 ok, 1 run failure, 2 bad
input or usage; a traceback only with ``--debug``)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from enum import StrEnum
from functools import wraps
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.markup import escape

from csflow.sdk.core.errors import CsflowError

console = Console()
err_console = Console(stderr=True)

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


class OutputFormat(StrEnum):
    table = "table"
    json = "json"
    yaml = "yaml"


OutputOption = typer.Option(OutputFormat.table, "--output", "-o", help="table, json or yaml.")


class State:
    """Global flags, set by the app's callback."""

    debug = False
    overrides: dict[str, Any] = {}


def settings(**flags: Any):
    """Settings from flags (those given), then CSFLOW_* variables, then the config file."""
    from csflow.sdk.core.settings import Settings

    return Settings(**{**State.overrides, **{k: v for k, v in flags.items() if v is not None}})


def client(**flags: Any):
    from csflow.sdk.client import Client

    return Client(settings(**flags))


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
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None
        except Exception as exc:  # an unexpected bug: still one line, unless --debug
            if State.debug:
                raise
            raise fail(
                f"{type(exc).__name__}: {exc} (run with --debug for the traceback)", EXIT_FAILED
            ) from None

    return wrapper
