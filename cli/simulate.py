"""``csflow simulate OWNER/TITLE --inputs FILE``: run one simulation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from csflow.cli.common import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    BackendName,
    BackendOption,
    OutputFormat,
    OutputOption,
    client,
    console,
    emit,
    err_console,
    fail,
    handle_errors,
    settings,
)
from csflow.cli.display import (
    StepProgress,
    SweepProgress,
    log_hint,
    points_table,
    run_json,
    show_errors_warnings,
    show_outputs,
    show_run,
)
from csflow.sdk.core import jsonio
from csflow.sdk.core.status import RunStatus

if TYPE_CHECKING:
    from csflow.sdk.core.contract import JobInputs


def read_inputs(path: Path | None, limit: int | None = None) -> JobInputs:
    """The inputs file ('-': stdin) as strict JSON (``sdk/core/jsonio.py``) of the
    contract's shape: at most ``limit`` bytes (default: the ``max_inputs_bytes``
    setting), refused from its size before it is read. ``BadInput`` (exit 2, one
    line) otherwise, before a client is opened."""
    from csflow.sdk.client import parse_inputs  # (imported when used: CLI start-up)
    from csflow.sdk.core.contract import JobInputs

    if path is None:
        return JobInputs()
    if limit is None:
        limit = settings().max_inputs_bytes
    stdin = str(path) == "-"
    what = "inputs on stdin" if stdin else f"inputs file {jsonio.excerpt(str(path))}"
    try:
        data = jsonio.read_limited(typer.get_binary_stream("stdin") if stdin else path, limit, what)
    except OSError as exc:
        raise fail(
            f"cannot read inputs file {jsonio.excerpt(str(path))}: {exc.strerror or exc}",
            EXIT_BAD_INPUT,
        ) from None
    return parse_inputs(jsonio.loads(data, what), limit)


def _print_progress(text: str) -> None:
    """A line of the build's progress (a git ref, a package's name: text, not markup)."""
    err_console.print(text, markup=False)


@handle_errors
def simulate(
    model: str = typer.Argument(..., help="OWNER/TITLE, e.g. PSLmodels/Tax-Cruncher."),
    inputs: Path | None = typer.Option(
        None, "--inputs", "-i", help="JSON file {meta_param_dict, adjustment} ('-' for stdin)."
    ),
    tag: str | None = typer.Option(
        None, "--tag", "-t", help="Model version or tag (default: latest)."
    ),
    detach: bool = typer.Option(
        False, "--detach", "-d", help="Print the job id and return at once."
    ),
    backend: BackendName | None = BackendOption,
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Print the Workflow that would be submitted."
    ),
    sweep: str | None = typer.Option(
        None,
        "--sweep",
        help="One run per point, as one workflow: NAME=START..END (a meta parameter, "
        "e.g. year=2025..2034) or 'SECTION.PARAM=V1,V2,...' (an adjustment).",
    ),
    no_cache: bool = typer.Option(
        False,
        "--no-cache",
        help="Run even if the result cache has this model version's results for these inputs.",
    ),
    output: OutputFormat = OutputOption,
) -> None:
    """Run a model on a set of inputs and show its results (the result cache's,
    at once, when the same version already ran on the same inputs)."""
    data = read_inputs(inputs)
    sdk = client(backend=backend)
    if dry_run:
        workflow = (
            sdk.render(model, data, tag=tag)
            if sweep is None
            else sdk.render_sweep(model, data, sweep, tag=tag)
        )
        emit(workflow, OutputFormat.yaml if output == OutputFormat.table else output)
        return
    if sweep is None:

        def start(**options):
            return sdk.simulate(model, data, tag=tag, no_cache=no_cache, **options)

        def display():
            return StepProgress(err_console)
    else:  # --sweep: one workflow of a run per point, its progress per point
        from csflow.sdk.core.sweep import parse_axis

        axis = parse_axis(sweep, settings().max_sweep_points)  # (the client checks it too)

        def start(**options):
            return sdk.sweep(model, data, sweep, tag=tag, **options)

        def display():
            return SweepProgress(err_console, axis.name, axis.labels())

    quiet = output != OutputFormat.table
    if detach:
        run = start(detach=True, progress=(lambda _: None) if quiet else _print_progress)
        if quiet:
            emit({"job_id": run.id, "status": run.status}, output)
        else:
            console.print(run.id, highlight=False)
        return
    if quiet:
        run = start()
    else:
        with display() as progress:
            run = start(progress=progress.message, events=progress.event)
    finish(sdk, run, output)


def finish(sdk, run, output: OutputFormat) -> None:
    """Show a finished run; exit 0 on success, 2 for invalid inputs, 1 otherwise."""
    outputs = (
        sdk.results(run.id)
        if run.status == RunStatus.SUCCESS and run.kind in ("simulate", "sweep")
        else None
    )
    points = sdk.sweep_points(run) if run.kind == "sweep" else None
    if output != OutputFormat.table:
        data = run_json(run, outputs)
        if points is not None:
            data["points"] = [point.to_dict() for point in points]
        emit(data, output)
    else:
        if outputs is not None:
            show_outputs(console, outputs, run.id)
        if run.status == RunStatus.INVALID:
            show_errors_warnings(console, run.errors_warnings)
        if points is not None:
            console.print(points_table(run.extra["sweep"]["axis"], points))
        show_run(console, run, steps=points is None)
        if run.status not in (RunStatus.SUCCESS, RunStatus.INVALID):
            console.print(f"logs: {log_hint(run)}", highlight=False, markup=False)
    if run.status == RunStatus.INVALID:
        raise typer.Exit(EXIT_BAD_INPUT)
    if run.status != RunStatus.SUCCESS:
        raise typer.Exit(EXIT_FAILED)
