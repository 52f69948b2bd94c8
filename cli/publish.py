"""``csflow publish CONFIG``: build, test, push and deploy a model; ``csflow publish approve RUN``.

The group takes the config path as its argument (``csflow publish
config/OWNER/TITLE.yaml``) and has one subcommand, ``approve``. A typer group
with an optional argument would swallow ``approve`` as that argument, so the
group hands a path (anything that is not a subcommand) to a hidden ``run``
command instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from csflow.cli.common import (
    EXIT_FAILED,
    BackendName,
    BackendOption,
    OutputFormat,
    OutputOption,
    client,
    console,
    emit,
    err_console,
    handle_errors,
)
from csflow.cli.display import StepProgress, log_hint, show_run
from csflow.sdk.core.status import RunStatus

DEFAULT_COMMAND = "run"
RESULT_STYLE = {"passed": "green", "skipped": "yellow", "failed": "red", "not run": "dim"}


class _ConfigOrCommand(TyperGroup):
    """``csflow publish CONFIG ...`` runs the hidden default command with CONFIG;
    ``csflow publish approve RUN`` runs ``approve``."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        positional = [a for a in args if not a.startswith("-")]
        if positional and positional[0] not in self.commands:
            args = [DEFAULT_COMMAND, *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_ConfigOrCommand,
    help=(
        "Publish a model: clone → build → test → push (staging) → approve (optional) "
        "→ deploy (latest).\n\n"
        "Usage: csflow publish CONFIG [--require-approval], e.g. "
        "csflow publish config/PSLmodels/Tax-Cruncher.yaml; csflow publish approve RUN."
    ),
    subcommand_metavar="CONFIG | approve RUN",
    no_args_is_help=True,
)


@app.command(DEFAULT_COMMAND, hidden=True)
@handle_errors
def publish(
    config: Path = typer.Argument(..., help="The model's config, config/OWNER/TITLE.yaml."),
    require_approval: bool = typer.Option(
        False,
        "--require-approval",
        help="Stop after push (staging) until `csflow publish approve RUN`.",
    ),
    detach: bool = typer.Option(
        False, "--detach", "-d", help="Print the run id and return at once."
    ),
    backend: BackendName | None = BackendOption,
    output: OutputFormat = OutputOption,
) -> None:
    """Publish the model CONFIG describes."""
    sdk = client(backend=backend)
    if output != OutputFormat.table:
        finish(sdk, sdk.publish(config, require_approval=require_approval, detach=detach), output)
        return
    if detach:
        run = sdk.publish(config, require_approval=require_approval, detach=True)
        console.print(run.id, highlight=False, markup=False)
        return
    with StepProgress(err_console) as progress:
        run = sdk.publish(config, require_approval=require_approval, events=progress.event)
    finish(sdk, run, output)


@app.command("approve")
@handle_errors
def approve(
    run_id: str = typer.Argument(..., metavar="RUN", help="The publish run waiting for approval."),
    detach: bool = typer.Option(False, "--detach", "-d", help="Approve and return at once."),
    backend: BackendName | None = BackendOption,
    output: OutputFormat = OutputOption,
) -> None:
    """Approve a publish waiting at its approval step: it deploys (moves latest)."""
    sdk = client(backend=backend)
    if output != OutputFormat.table or detach:
        run = sdk.approve(run_id, detach=detach)
        if detach and output == OutputFormat.table:
            console.print(
                f"{run.id}: approved, deploying in the background", highlight=False, markup=False
            )
            return
        finish(sdk, run, output)
        return
    with StepProgress(err_console) as progress:
        run = sdk.approve(run_id, events=progress.event)
    finish(sdk, run, output)


def finish(sdk, run, output: OutputFormat) -> None:
    """Show a publish run and its tests; exit 0 when deployed or waiting for
    approval (or detached), 1 when it failed."""
    report = (
        sdk.publish_report(run.id)
        if run.status not in (RunStatus.PENDING, RunStatus.RUNNING)
        else None
    )
    if output != OutputFormat.table:
        emit({**run.to_dict(), "tests": report}, output)
    else:
        if report is not None:
            show_report(report)
        show_run(console, run)
        if run.status == RunStatus.SUCCESS:
            console.print(
                f"[green]{escape(run.model)}: latest and staging are now {escape(run.tag)}[/]",
                highlight=False,
            )
        elif run.status == RunStatus.SUSPENDED:
            console.print(
                f"{run.model}: {run.tag} is on staging, waiting for approval: "
                f"csflow publish approve {run.id}",
                highlight=False,
                markup=False,
            )
        elif run.done:
            console.print(
                "nothing was promoted; logs: " + log_hint(run), highlight=False, markup=False
            )
    if run.done and run.status != RunStatus.SUCCESS:
        raise typer.Exit(EXIT_FAILED)


def show_report(report: dict[str, Any]) -> None:
    """Every contract test's result, then the model's own output for each failure."""
    model, version = escape(report.get("model", "")), escape(report.get("version", ""))
    table = Table(
        title=f"Contract tests: {model} {version}",
        header_style="bold",
    )
    for column in ("test", "result", "time", "detail"):
        table.add_column(column)
    for test in report["tests"]:
        style = RESULT_STYLE.get(test["status"], "white")
        detail = escape(test.get("detail", ""))
        for warning in test.get("warnings", []):
            detail += f"\n[yellow]warning: {escape(warning)}[/]"
        table.add_row(
            escape(test["title"]),
            f"[{style}]{test['status']}[/]",
            f"{test.get('seconds', 0):.2f}s",
            detail,
        )
    console.print(table)
    for test in report["tests"]:
        if test["status"] == "failed" and test.get("output"):
            console.print(
                f"[bold red]{escape(test['title'])}[/]: the model's output", highlight=False
            )
            console.print(escape(test["output"].rstrip()), highlight=False, soft_wrap=True)
