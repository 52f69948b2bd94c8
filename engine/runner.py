"""The embedded engine: runs one compiled Workflow (simulate, publish) on this machine.

It walks the entrypoint DAG of the merged Workflow (``sdk/argo/semantics.py``), runs
each container template as a local process through a launcher
(``engine/launchers.py``), chosen by the template's ``csflow.io/environment``
label: model steps in the model's uv environment, platform steps in csflow's.
``/tmp/csflow`` (the pods' work folder) maps to a folder per task; artifacts
are files handed from task to task by name, and task arguments become the
template's ``inputs.parameters``. The exit handler runs on every end, as on
Argo. Every state change goes to the run store at once.

A suspend template (Argo: https://argo-workflows.readthedocs.io/en/latest/walk-through/suspending/)
stops the walk: the run is RunStatus.SUSPENDED, with no engine process. Resuming runs
the Workflow again with the finished steps' records (``resume``): they are
not run again, their outputs are read back from their folders, and the
suspend step, now approved, succeeds.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from csflow.engine.launchers import Launcher, LaunchError, StepProcess
from csflow.engine.store import RunStore
from csflow.sdk.argo import semantics
from csflow.sdk.core.status import RunStatus, StepPhase, classify, failure_reason
from csflow.sdk.core.steps import (
    ENVIRONMENT_LABEL,
    MODEL_STEP_COMMAND,
    PLATFORM_STEP_COMMAND,
    WORK_DIR,
)

MAX_LOG_BYTES = 20 * 1024 * 1024
LOG_KEEP_BYTES = 2 * 1024 * 1024

EventSink = Callable[[str, str, dict[str, Any]], None]


class Cancelled(Exception):
    pass


class Suspended(Exception):
    """A suspend step was reached and not yet approved."""


# Phases after which a step is not run again when a run resumes.
_DONE = (
    StepPhase.SUCCEEDED,
    StepPhase.FAILED,
    StepPhase.ERRORED,
    StepPhase.SKIPPED,
    StepPhase.OMITTED,
)


@dataclass
class TaskResult:
    phase: str
    message: str = ""
    parameters: dict[str, str] = field(default_factory=dict)
    artifacts: dict[str, Path] = field(default_factory=dict)


def _seconds(duration: str | int | None) -> float:
    if duration is None:
        return 0.0
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s|m|h)?", str(duration))
    if not match:
        raise semantics.SpecError(f"unsupported duration {duration!r}")
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]


def _last_line(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - 8192))
            lines = handle.read().decode(errors="replace").splitlines()
    except FileNotFoundError:
        return ""
    line = next((ln.strip() for ln in reversed(lines) if ln.strip()), "")
    return line.removeprefix("csflow: ")[:300]


def _trim_log(path: Path) -> None:
    """Keep the head and tail of a log that a step flooded."""
    size = path.stat().st_size if path.exists() else 0
    if size <= MAX_LOG_BYTES:
        return
    with open(path, "rb") as handle:
        head = handle.read(LOG_KEEP_BYTES)
        handle.seek(size - LOG_KEEP_BYTES)
        tail = handle.read()
    marker = f"\n[csflow: {size - 2 * LOG_KEEP_BYTES} bytes of output cut]\n".encode()
    tmp = path.with_suffix(".trim")
    tmp.write_bytes(head + marker + tail)
    os.replace(tmp, path)


class SimulationRunner:
    """Runs one Workflow with the given launchers: ``"model"`` and ``"platform"``,
    for the two values of the ``csflow.io/environment`` label."""

    def __init__(
        self,
        store: RunStore,
        run_dir: Path,
        launchers: dict[str, Launcher],
        events: EventSink | None = None,
    ):
        self.store = store
        self.run_dir = run_dir
        self.launchers = launchers
        self.events = events or (lambda *_: None)
        self.logs = run_dir / "logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        self.current: StepProcess | None = None
        self.cancelled = False

    # -- the walk ---------------------------------------------------------

    def execute(
        self, run_id: str, workflow: dict[str, Any], resume: dict[str, dict[str, Any]] | None = None
    ) -> tuple[str, str]:
        """Run the Workflow; return (final status, reason). ``resume``: the step
        records of an earlier, suspended execution (its approval given)."""
        spec = workflow["spec"]
        self.templates = {t["name"]: t for t in spec["templates"]}
        self.scope = {
            f"workflow.parameters.{p['name']}": p["value"] for p in spec["arguments"]["parameters"]
        }
        self.scope["workflow.name"] = workflow["metadata"].get("name", run_id)
        self.deadline = time.monotonic() + float(spec.get("activeDeadlineSeconds") or 24 * 3600)
        self.resume = resume or {}
        changes: dict[str, Any] = {"status": RunStatus.RUNNING, "engine_pid": os.getpid()}
        if not self.resume:
            changes["started"] = time.time()
        self.store.update(run_id, **changes)
        previous = signal.signal(signal.SIGTERM, self._on_term)
        results: dict[str, TaskResult] = {}
        try:
            for task in semantics.dag_tasks(spec, spec["entrypoint"]):
                results[task.name] = self._run_task(run_id, task, results)
            failed = {
                n: r for n, r in results.items() if r.phase in (StepPhase.FAILED, StepPhase.ERRORED)
            }
            status = "Failed" if failed else "Succeeded"
            failures = [
                {"displayName": n, "message": r.message, "phase": r.phase}
                for n, r in failed.items()
            ]
        except Cancelled:
            status, failures = (
                "Failed",
                [{"displayName": "run", "message": "cancelled", "phase": "Failed"}],
            )
        except Suspended as suspended:
            return RunStatus.SUSPENDED, f"waiting for approval at step {suspended}"
        finally:
            signal.signal(signal.SIGTERM, previous)
        self.scope["workflow.status"] = status
        self.scope["workflow.failures"] = json.dumps(failures)
        self.scope.setdefault("workflow.outputs.parameters.errors-warnings", "{}")
        # The exit handler reports every end, a cancelled run's too (Argo's "stop").
        if spec.get("onExit"):
            exit_task = semantics.Task(name=spec["onExit"], template=spec["onExit"])
            self._run_task(run_id, exit_task, results)
        errors_warnings = json.loads(self.scope["workflow.outputs.parameters.errors-warnings"])
        final = RunStatus.CANCELLED if self.cancelled else classify(status, errors_warnings)
        reason = (
            "cancelled"
            if self.cancelled
            else (failure_reason(failures) if final == RunStatus.FAIL else "")
        )
        return final, reason

    def _on_term(self, signum, frame) -> None:
        self.cancelled = True
        if self.current is not None:
            self.current.kill()
        raise Cancelled()

    # -- one task -----------------------------------------------------------

    def _run_task(
        self, run_id: str, task: semantics.Task, results: dict[str, TaskResult]
    ) -> TaskResult:
        phases = {name: r.phase for name, r in results.items()}
        if not semantics.evaluate_depends(task.depends, phases):
            self._record(run_id, task.name, StepPhase.OMITTED)
            return TaskResult(StepPhase.OMITTED)
        scope = dict(self.scope)
        for name, result in results.items():
            for key, value in result.parameters.items():
                scope[f"tasks.{name}.outputs.parameters.{key}"] = value
            for key in result.artifacts:
                scope[f"tasks.{name}.outputs.artifacts.{key}"] = f"{name}/{key}"
        template = self.templates[task.template]
        earlier = self.resume.get(task.name, {}).get("phase")
        if earlier in _DONE:
            return self._resumed(task, template, earlier, self.resume[task.name].get("message", ""))
        if task.when and not semantics.evaluate_when(semantics.substitute(task.when, scope)):
            self._record(run_id, task.name, StepPhase.SKIPPED)
            return TaskResult(StepPhase.SKIPPED)
        if "suspend" in template:
            return self._suspend(run_id, task.name, earlier == StepPhase.SUSPENDED)
        for parameter in task.arguments.get("parameters", []):
            scope[f"inputs.parameters.{parameter['name']}"] = semantics.substitute(
                str(parameter.get("value", "")), scope
            )
        artifacts = {}
        for argument in task.arguments.get("artifacts", []):
            producer, _, name = semantics.substitute(argument["from"], scope).partition("/")
            if name in results[producer].artifacts:  # else an optional artifact not produced
                artifacts[argument["name"]] = results[producer].artifacts[name]
        result = self._run_container(run_id, task.name, template, scope, artifacts)
        self._set_globals(template, result)
        return result

    def _resumed(
        self, task: semantics.Task, template: dict, phase: str, message: str
    ) -> TaskResult:
        """A step finished before the run was suspended: its outputs, read back."""
        result = TaskResult(phase, message)
        if phase == StepPhase.SUCCEEDED and "container" in template:
            result = self._collect(template, self.run_dir / "work" / task.name, result)
            self._set_globals(template, result)
        return result

    def _suspend(self, run_id: str, name: str, approved: bool) -> TaskResult:
        """Argo suspends here until ``argo resume``; the embedded engine stops the
        walk and records the run as RunStatus.SUSPENDED. A resumed run comes back with the
        step recorded as Suspended: it was approved, so it succeeds."""
        if approved:
            self._record(
                run_id, name, StepPhase.SUCCEEDED, finished=time.time(), message="approved"
            )
            return TaskResult(StepPhase.SUCCEEDED)
        self._record(
            run_id, name, StepPhase.SUSPENDED, started=time.time(), message="waiting for approval"
        )
        raise Suspended(name)

    def _set_globals(self, template: dict, result: TaskResult) -> None:
        for parameter in template.get("outputs", {}).get("parameters", []):
            if parameter.get("globalName") and parameter["name"] in result.parameters:
                self.scope[f"workflow.outputs.parameters.{parameter['globalName']}"] = (
                    result.parameters[parameter["name"]]
                )

    def launcher(self, kind: str, command: list[str], image: str) -> Launcher:
        """The launcher for a step, by its environment label. Runners of other
        flows choose per command and image (a publish makes its model's
        environment mid-run)."""
        if command not in (MODEL_STEP_COMMAND, PLATFORM_STEP_COMMAND):
            raise semantics.SpecError(f"unknown step command {command}")
        return self.launchers[kind]

    def _record(self, run_id: str, step: str, phase: str, **info: Any) -> None:
        self.store.set_step(run_id, step, phase=phase, **info)
        self.events(step, phase, info)

    def _run_container(
        self,
        run_id: str,
        name: str,
        template: dict,
        scope: dict[str, str],
        artifacts: dict[str, Path],
    ) -> TaskResult:
        container = template.get("container")
        if container is None:
            raise semantics.SpecError(
                f"template {template['name']!r}: only container templates run locally"
            )
        command = container.get("command", [])
        kind = template.get("metadata", {}).get("labels", {}).get(ENVIRONMENT_LABEL, "platform")
        try:
            launcher = self.launcher(
                kind, command, semantics.substitute(container.get("image", ""), scope)
            )
        except semantics.SpecError as exc:
            raise semantics.SpecError(f"template {template['name']!r}: {exc}") from None
        except LaunchError as exc:  # its environment is missing: the step errs, the run goes on
            self._record(run_id, name, StepPhase.ERRORED, finished=time.time(), message=str(exc))
            return TaskResult(StepPhase.ERRORED, str(exc))
        args = [semantics.substitute(a, scope) for a in container.get("args", [])]
        work = self.run_dir / "work" / name
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        for artifact in template.get("inputs", {}).get("artifacts", []):
            if artifact["name"] in artifacts:
                self._place(artifacts[artifact["name"]], self._local(work, artifact["path"]))
            elif not artifact.get("optional"):
                raise semantics.SpecError(
                    f"template {template['name']!r}: input artifact {artifact['name']!r} has no source"
                )
        retry = template.get("retryStrategy") or {}
        attempts = 1 + int(str(retry.get("limit", 0)))
        backoff = retry.get("backoff") or {}
        delay, factor = _seconds(backoff.get("duration")), float(backoff.get("factor", 1) or 1)
        step_deadline = template.get("activeDeadlineSeconds")
        log = self.logs / f"{name}.log"
        started = time.time()
        self._record(run_id, name, "Running", started=started)
        for attempt in range(1, attempts + 1):
            remaining = self.deadline - time.monotonic()
            limit = remaining
            if step_deadline is not None:
                limit = min(limit, float(semantics.substitute(str(step_deadline), scope)))
            phase, message = self._attempt(
                launcher, args, work, log, limit, step_deadline is not None and limit < remaining
            )
            if phase == StepPhase.SUCCEEDED or attempt == attempts or self.cancelled:
                break
            with open(log, "a") as handle:
                handle.write(
                    f"\n[csflow: attempt {attempt} failed ({message}); retrying in {delay:g}s]\n"
                )
            time.sleep(delay)
            delay *= factor
        _trim_log(log)
        result = TaskResult(phase, message)
        if phase == StepPhase.SUCCEEDED:
            result = self._collect(template, work, result)
        finished = time.time()
        self._record(
            run_id,
            name,
            result.phase,
            started=started,
            finished=finished,
            seconds=round(finished - started, 3),
            attempts=attempt,
            message=result.message,
        )
        return result

    def _attempt(
        self,
        launcher: Launcher,
        args: list[str],
        work: Path,
        log: Path,
        limit: float,
        step_limit: bool,
    ) -> tuple[str, str]:
        if limit <= 0:
            return StepPhase.FAILED, "the workflow's deadline passed"
        try:
            process = launcher.start(args, work, log, {"CSFLOW_WORK_DIR": str(work)})
        except LaunchError as exc:
            return StepPhase.ERRORED, str(exc)
        self.current = process
        try:
            code = process.wait(limit)
            if code is None:
                process.kill()
                what = "its timeout" if step_limit else "the workflow's deadline"
                return StepPhase.FAILED, f"exceeded {what} of {limit:.0f}s and was stopped"
        finally:
            self.current = None
        if code == 0:
            return StepPhase.SUCCEEDED, ""
        if code < 0:
            signame = signal.Signals(-code).name
            detail = " (it wrote more than the file size limit)" if signame == "SIGXFSZ" else ""
            return StepPhase.FAILED, f"killed by {signame}{detail}"
        return StepPhase.FAILED, _last_line(log) or f"exit code {code}"

    @staticmethod
    def _local(work: Path, pod_path: str) -> Path:
        if not (pod_path == WORK_DIR or pod_path.startswith(WORK_DIR + "/")):
            raise semantics.SpecError(f"path {pod_path!r} is outside {WORK_DIR}")
        return work / os.path.relpath(pod_path, WORK_DIR)

    @staticmethod
    def _place(source: Path, target: Path) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, target, dirs_exist_ok=True)
        else:
            shutil.copy2(source, target)

    def _collect(self, template: dict, work: Path, result: TaskResult) -> TaskResult:
        outputs = template.get("outputs", {})
        for parameter in outputs.get("parameters", []):
            source = parameter.get("valueFrom", {})
            path = self._local(work, source["path"])
            if path.is_file():
                result.parameters[parameter["name"]] = path.read_text().strip()
            elif "default" in source:
                result.parameters[parameter["name"]] = source["default"]
            else:
                return TaskResult(
                    StepPhase.FAILED, f"output parameter {parameter['name']!r} was not produced"
                )
        for artifact in outputs.get("artifacts", []):
            path = self._local(work, artifact["path"])
            if not path.exists():
                if artifact.get("optional"):
                    continue
                return TaskResult(
                    StepPhase.FAILED, f"output artifact {artifact['name']!r} was not produced"
                )
            result.artifacts[artifact["name"]] = path
        return result
