"""How runs look in a terminal: progress while steps run, then results."""

from __future__ import annotations

import csv
import io
import re
import shlex
import time
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from csflow.sdk.core.run import Run
from csflow.sdk.core.status import RunStatus, StepPhase

# Keyed by the enums, looked up by the plain strings runs and events carry.
STATUS_STYLE: dict[str, str] = {
    RunStatus.SUCCESS: "green",
    RunStatus.INVALID: "yellow",
    RunStatus.FAIL: "red",
    RunStatus.CANCELLED: "magenta",
    RunStatus.INTERRUPTED: "red",
    RunStatus.RUNNING: "cyan",
    RunStatus.PENDING: "dim",
}
# A column narrower than this is unreadable: a wider CSV shows its first columns.
MIN_COLUMN_WIDTH = 12

PHASE_STYLE: dict[str, str] = {
    StepPhase.SUCCEEDED: "green",
    StepPhase.FAILED: "red",
    StepPhase.ERRORED: "red",
    StepPhase.SKIPPED: "dim",
    StepPhase.OMITTED: "dim",
}


def status_text(status: str) -> str:
    return f"[{STATUS_STYLE.get(status, 'white')}]{status}[/]"


def when(timestamp: float | None) -> str:
    return datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S") if timestamp else "-"


def seconds(value: float | None) -> str:
    return f"{value:.1f}s" if value is not None else "-"


class StepProgress:
    """A rich progress display fed by the engine's step events."""

    def __init__(self, console: Console):
        self.progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        )
        self.tasks: dict[str, Any] = {}

    def __enter__(self) -> StepProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.progress.__exit__(*exc)

    def message(self, text: str) -> None:
        """A line of the environment's build (it may name a git ref, a package)."""
        key, description = "environment", f"environment: {escape(text)}"
        if key not in self.tasks:
            self.tasks[key] = self.progress.add_task(description, total=None)
        self.progress.update(self.tasks[key], description=description)

    def finish_messages(self) -> None:
        if "environment" in self.tasks:
            self.progress.update(self.tasks["environment"], total=1, completed=1)

    def event(self, step: str, phase: str, info: dict[str, Any]) -> None:
        """A step's change; its name (a loop child's holds its item) and message are text."""
        self.finish_messages()
        if phase == "Running":
            self.tasks[step] = self.progress.add_task(f"{escape(step)}: running", total=None)
            return
        style = PHASE_STYLE.get(phase, "white")
        detail = f" - {escape(info['message'])}" if info.get("message") else ""
        description = f"{escape(step)}: [{style}]{phase.lower()}[/]{detail}"
        if step in self.tasks:
            self.progress.update(self.tasks[step], description=description, total=1, completed=1)
        else:
            self.progress.add_task(description, total=1, completed=1)


POINT_STATE_STYLE: dict[str, str] = {
    "done": "green",
    "invalid": "yellow",
    "failed": "red",
    "running": "cyan",
    "queued": "dim",
}
_POINT_STEP = re.compile(r"^point\((\d+):[^)]*\)(?:\.(.+))?$")


class SweepProgress(StepProgress):
    """A sweep's progress: one line per point (``year=2025: running run``), its end
    (done, invalid, failed and why), and the other steps' lines as for a run."""

    def __init__(self, console: Console, axis: str, labels: list[str]):
        super().__init__(console)
        self.names = [f"{axis}={label}" for label in labels]
        self.points: dict[int, Any] = {}

    def event(self, step: str, phase: str, info: dict[str, Any]) -> None:
        if step == "point":  # the loop itself: its points say more
            return
        match = _POINT_STEP.match(step)
        if match is None:
            super().event(step, phase, info)
            return
        self.finish_messages()
        index, inner = int(match.group(1)), match.group(2)
        name = escape(self.names[index] if index < len(self.names) else f"point {index}")
        if index not in self.points:
            self.points[index] = self.progress.add_task(f"{name}: running", total=None)
        task = self.points[index]
        if inner is not None:
            if phase == "Running":
                self.progress.update(task, description=f"{name}: running {escape(inner)}")
            elif inner == "run" and phase == StepPhase.SKIPPED:
                self.progress.update(task, description=f"{name}: [yellow]invalid[/]")
            return
        if phase == "Running":
            return
        state = "done" if phase == StepPhase.SUCCEEDED else "failed"
        if state == "done" and "invalid" in str(self.progress.tasks[task].description):
            state = "invalid"
        detail = f" - {escape(info['message'])}" if info.get("message") else ""
        description = f"{name}: [{POINT_STATE_STYLE[state]}]{state}[/]{detail}"
        self.progress.update(task, description=description, total=1, completed=1)


def points_table(axis: str, states: list[Any]) -> Table:
    """A sweep's points: each one's state, and why one failed."""
    table = Table(title="Points", header_style="bold")
    for column in (axis, "state", "job id", "reason"):
        table.add_column(Text(column))
    for point in states:
        style = POINT_STATE_STYLE.get(point.state, "white")
        table.add_row(
            Text(point.label), f"[{style}]{point.state}[/]", Text(point.job_id), Text(point.reason)
        )
    return table


def runs_table(runs: list[Run]) -> Table:
    table = Table(title="Runs", header_style="bold")
    for column in ("job id", "kind", "model", "tag", "status", "created", "duration"):
        table.add_column(column)
    for run in runs:
        table.add_row(
            Text(run.id),
            run.kind,
            Text(run.model),
            Text(run.tag),
            status_text(run.status),
            when(run.created),
            seconds(run.duration),
        )
    return table


def steps_table(run: Run) -> Table:
    table = Table(title="Steps", header_style="bold")
    for column in ("step", "phase", "time", "attempts", "message"):
        table.add_column(column)
    for name, step in run.steps.items():
        phase = step.get("phase", "")
        table.add_row(
            Text(name),
            f"[{PHASE_STYLE.get(phase, 'white')}]{phase}[/]",
            seconds(step.get("seconds")),
            str(step.get("attempts", "")),
            Text(step.get("message", "")),
        )
    return table


def show_run(console: Console, run: Run, steps: bool = True) -> None:
    console.print(
        f"[bold]{escape(run.model)}[/] job [bold]{escape(run.id)}[/] at tag {escape(run.tag)}: "
        f"{status_text(run.status)}"
    )
    if run.reason:
        console.print(f"reason: {escape(run.reason)}", highlight=False)
    if run.model_version:
        console.print(f"model version: {escape(run.model_version)}", highlight=False)
    if run.cached_from:
        console.print(
            f"cached: the results of job {escape(run.cached_from)} (same version and inputs)",
            highlight=False,
        )
    console.print(f"created {when(run.created)}, ran {seconds(run.duration)}")
    if run.steps and steps:
        console.print(steps_table(run))
    if run.results_uri:
        console.print(f"results: {escape(run.results_uri)}", highlight=False)


def log_hint(run: Run) -> str:
    """The command that shows why a run failed: the log of the step its reason names
    ("outputs: ..."), else of the failed step that ended first, else the whole run's."""
    failed = [
        name
        for name, step in run.steps.items()
        if step.get("phase") in (StepPhase.FAILED, StepPhase.ERRORED)
    ]
    named = run.reason.partition(": ")[0]
    if named not in failed:
        failed.sort(key=lambda name: run.steps[name].get("finished") or float("inf"))
        named = failed[0] if failed else ""
    return f"csflow runs logs {run.id}" + (f" --step {shlex.quote(named)}" if named else "")


def show_errors_warnings(console: Console, errors_warnings: dict[str, Any]) -> None:
    table = Table(title="Errors and warnings", header_style="bold")
    for column in ("section", "kind", "parameter", "message"):
        table.add_column(column)
    for section, found in errors_warnings.items():
        for kind in ("errors", "warnings"):
            for parameter, messages in (found.get(kind) or {}).items():
                for message in messages:
                    table.add_row(Text(section), kind[:-1], Text(parameter), Text(str(message)))
    console.print(table)


def show_outputs(console: Console, outputs: dict[str, Any], job_id: str = "") -> None:
    """CSV outputs as tables (a wide one as its first columns and a note: Tax-Brain's
    have dozens); everything else listed by title and type. The model's strings
    are shown as text, never read as markup."""
    fits = max(2, console.width // MIN_COLUMN_WIDTH)
    for output in outputs.get("downloadable", []):
        if output["media_type"] == "CSV":
            rows = list(csv.reader(io.StringIO(output["data"])))
            if not rows:
                continue
            shown = min(len(rows[0]), fits)
            table = Table(title=Text(output["title"]), header_style="bold")
            for index, header in enumerate(rows[0][:shown]):
                table.add_column(Text(header or ""), justify="left" if index == 0 else "right")
            for row in rows[1:]:
                cells = [_number(cell) if i else cell for i, cell in enumerate(row[:shown])]
                table.add_row(*map(Text, cells))
            console.print(table)
            if shown < len(rows[0]):
                where = f"csflow runs results {job_id} --out DIR" if job_id else "--out DIR"
                console.print(
                    Text(
                        f"({output['title']}: {shown} of {len(rows[0])} columns shown; "
                        f"all of them: {where})"
                    ),
                    style="dim",
                )
    listing = Table(title="Outputs", header_style="bold")
    for column in ("kind", "title", "type", "size"):
        listing.add_column(column)
    for kind in ("renderable", "downloadable"):
        for output in outputs.get(kind, []):
            size = (
                len(output["data"]) if isinstance(output["data"], str) else len(str(output["data"]))
            )
            listing.add_row(
                kind, Text(output["title"]), Text(str(output["media_type"])), f"{size:,} B"
            )
    console.print(listing)


def _number(cell: str) -> str:
    try:
        return f"{float(cell):,.2f}"
    except ValueError:
        return cell


def run_json(run: Run, outputs: dict[str, Any] | None) -> dict[str, Any]:
    data = run.to_dict()
    data["timings"] = {name: step.get("seconds") for name, step in run.steps.items()}
    data["outputs"] = outputs
    data["generated"] = time.time()
    return data
