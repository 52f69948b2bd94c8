"""The ``csflow`` command line (typer + rich).

Configuration comes from flags, then ``CSFLOW_*`` variables, then
``config.yaml`` in the home (``--home``, else ``CSFLOW_HOME``, else
``~/.csflow``). Exit codes: 0 ok, 1 model or run failure, 2 bad input or usage.
"""

from __future__ import annotations

import importlib

import typer

from csflow.cli import runs, simulate
from csflow.cli.common import State

app = typer.Typer(
    name="csflow",
    help="Publish and run computational models, on this machine or on Argo Workflows.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def main_options(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks."),
    home: str | None = typer.Option(
        None,
        "--home",
        help="Data directory, with its config.yaml (default: CSFLOW_HOME, else ~/.csflow).",
    ),
) -> None:
    State.debug = debug
    State.overrides = {"home": home} if home else {}


app.command("simulate")(simulate.simulate)
app.add_typer(runs.app, name="runs")

# Command groups that live in their own modules; each exposes `app` (a group)
# or `command` (a single command).
_GROUPS = {"models": "csflow.cli.models", "publish": "csflow.cli.publish", "svc": "csflow.cli.svc"}
_COMMANDS = {"lint": "csflow.cli.lint"}
for _name, _module in _GROUPS.items():
    try:
        app.add_typer(importlib.import_module(_module).app, name=_name)
    except ModuleNotFoundError as _exc:
        if _exc.name != _module:
            raise
for _name, _module in _COMMANDS.items():
    try:
        app.command(_name)(importlib.import_module(_module).command)
    except ModuleNotFoundError as _exc:
        if _exc.name != _module:
            raise


def main() -> None:
    app()
