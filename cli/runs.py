"""``csflow runs``: list, show, logs, results, open, wait and cancel runs."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from csflow.cli.common import (
    BackendName,
    BackendOption,
    OutputFormat,
    OutputOption,
    RunsBackendOption,
    client,
    console,
    emit,
    handle_errors,
)
from csflow.cli.display import points_table, runs_table, show_outputs, show_run
from csflow.cli.simulate import finish

app = typer.Typer(
    help="Inspect and control runs, wherever they ran: the configured backend "
    "(CSFLOW_BACKEND) first, then the other one set up (argo: CSFLOW_ARGO_HOST); "
    "--backend looks on one only.",
    no_args_is_help=True,
)


@app.command("list")
@handle_errors
def list_runs(
    limit: int = typer.Option(20, "--limit", "-n", help="How many, newest first."),
    backend: BackendName | None = BackendOption,
    output: OutputFormat = OutputOption,
) -> None:
    """List recent runs of one backend (default: CSFLOW_BACKEND, else local)."""
    runs = client(backend=backend).list(limit)
    if output != OutputFormat.table:
        emit([r.to_dict() for r in runs], output)
    else:
        console.print(runs_table(runs))


@app.command()
@handle_errors
def show(
    job_id: str,
    backend: BackendName | None = RunsBackendOption,
    output: OutputFormat = OutputOption,
) -> None:
    """Show one run: status, reason, steps and timings."""
    sdk = client(backend=backend)
    run = sdk.status(job_id)
    points = sdk.sweep_points(run) if run.kind == "sweep" else None
    if output != OutputFormat.table:
        data = run.to_dict()
        if points is not None:
            data["points"] = [point.to_dict() for point in points]
        emit(data, output)
    elif points is not None:
        console.print(points_table(run.extra["sweep"]["axis"], points))
        show_run(console, run, steps=False)
    else:
        show_run(console, run)


@app.command()
@handle_errors
def logs(
    job_id: str,
    step: str | None = typer.Option(
        None, "--step", "-s", help="One step (inputs, run, outputs, upload, notify)."
    ),
    backend: BackendName | None = RunsBackendOption,
) -> None:
    """Print a run's step logs (the model's traceback is in the run step's)."""
    typer.echo(client(backend=backend).logs(job_id, step), nl=False)


@app.command()
@handle_errors
def results(
    job_id: str,
    out: Path | None = typer.Option(None, "--out", help="Write the downloadable files here."),
    backend: BackendName | None = RunsBackendOption,
    output: OutputFormat = OutputOption,
) -> None:
    """Show a run's outputs, or write its downloadable files with --out."""
    sdk = client(backend=backend)
    if out is not None:
        for path in sdk.download(job_id, out):
            console.print(f"wrote {escape(str(path))}", highlight=False)
        return
    outputs = sdk.results(job_id)
    if output != OutputFormat.table:
        emit(outputs, output)
    else:
        show_outputs(console, outputs, job_id)


@app.command()
@handle_errors
def wait(
    job_id: str,
    timeout: float | None = typer.Option(
        None, "--timeout", help="Give up after this many seconds (exit 1)."
    ),
    backend: BackendName | None = RunsBackendOption,
    output: OutputFormat = OutputOption,
) -> None:
    """Wait for a run to end; exit as `csflow simulate` would."""
    sdk = client(backend=backend)
    finish(sdk, sdk.wait(job_id, timeout=timeout), output)


@app.command()
@handle_errors
def cancel(job_id: str, backend: BackendName | None = RunsBackendOption) -> None:
    """Stop a run."""
    run = client(backend=backend).cancel(job_id)
    console.print(f"{run.id}: {run.status}", highlight=False, markup=False)


@app.command()
@handle_errors
def diff(
    job_a: str,
    job_b: str,
    backend: BackendName | None = RunsBackendOption,
    output: OutputFormat = OutputOption,
) -> None:
    """Compare two runs: their inputs, and their tables cell by cell (B - A)."""
    from csflow.cli.diff_display import show_diff

    compared = client(backend=backend).diff(job_a, job_b)
    if output != OutputFormat.table:
        emit(compared.to_dict(), output)
    else:
        show_diff(console, compared)


@app.command("open")
@handle_errors
def open_page(
    job_id: str,
    out: Path | None = typer.Option(
        None, "--out", help="Write the page here (default: CSFLOW_HOME/pages/RUN_ID.html)."
    ),
    no_browser: bool = typer.Option(
        False, "--no-browser", help="Only write the page and print its path."
    ),
    backend: BackendName | None = RunsBackendOption,
) -> None:
    """Write a run's results page (one HTML file: inputs, timings, tables, charts,
    downloads), print its path and open it in a browser when there is one."""
    from csflow.sdk.core.errors import BadInput
    from csflow.sdk.core.fileutil import write_text_atomic

    if out is not None and out.is_dir():
        raise BadInput(f"--out {out} is a folder: name the page's file ({out}/page.html)")
    sdk = client(backend=backend)
    run = sdk.status(job_id)  # the full id, for the file's name (a prefix finds it too)
    page = sdk.page(run.id)
    path = out if out is not None else sdk.settings.home / "pages" / f"{run.id}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(path, page, 0o600)  # the inputs are in it, as in the job store
    typer.echo(str(path))
    if not no_browser and _has_browser():
        _open_in_browser(path)


def _has_browser() -> bool:
    """A browser can be shown: never in CI; where BROWSER names one, on macOS and
    Windows, or under a graphical session (DISPLAY, WAYLAND_DISPLAY)."""
    import os
    import sys

    if os.environ.get("CI"):
        return False
    if os.environ.get("BROWSER") or sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _open_in_browser(path: Path) -> None:
    """Hand the page to the browser; a browser that does not return soon (some stay
    in the foreground) is left to itself rather than holding the command."""
    import threading
    import webbrowser

    opener = threading.Thread(target=webbrowser.open, args=(path.resolve().as_uri(),), daemon=True)
    opener.start()
    opener.join(timeout=10)
