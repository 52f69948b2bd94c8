"""The embedded engine: runs one compiled Workflow (simulate, publish) on this machine.

It walks the entrypoint DAG of the merged Workflow (``sdk/argo/semantics.py``), runs
each container template as a local process through a launcher
(``engine/launchers.py``): the step table (``sdk/core/steps.py``) names the
program for its command and ``csflow.io/environment`` label, and the backend
makes the launcher (model steps in the model's uv environment, platform steps in csflow's).
``/tmp/csflow`` (the pods' work folder) maps to a folder per task; artifacts
are files handed from task to task by name, and task arguments become the
template's ``inputs.parameters``. Independent steps and a loop's children
(``withItems``, ``withParam``) run at once, in threads, bounded by ``parallelism``
and the machine's cores (``engine/README.md``). A document the engine cannot run
is refused before anything runs (``engine/argo_subset.py``). The exit handler
runs on every end, as on Argo. Every state change goes to the run store at once.

A suspend template (Argo: https://argo-workflows.readthedocs.io/en/latest/walk-through/suspending/)
stops the walk: the run is RunStatus.SUSPENDED, with no engine process. Resuming runs
the Workflow again with the finished steps' records (``resume``): they are
not run again, their outputs are read back from their folders, and the
suspend step, now approved, succeeds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from csflow.engine import argo_subset
from csflow.engine.launchers import (
    Launcher,
    LaunchError,
    StepProcess,
    SubprocessLauncher,
    _kill_group,
)
from csflow.engine.store import RunStore
from csflow.sdk.argo import semantics
from csflow.sdk.core.errors import CsflowError
from csflow.sdk.core.status import RunStatus, StepPhase, classify, failure_reason
from csflow.sdk.core.steps import ENVIRONMENT_LABEL, WORK_DIR, StepProgram, program_for

MAX_LOG_BYTES = 20 * 1024 * 1024
LOG_KEEP_BYTES = 2 * 1024 * 1024

EventSink = Callable[[str, str, dict[str, Any]], None]
# The backend's part: the launcher for a step program and the step's image.
LauncherFactory = Callable[[StepProgram, str], Launcher]


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
    # A loop's: its children's phases, and their parameters as one JSON list.
    children: tuple[str, ...] | None = None
    parameter_list: str | None = None

    def outcome(self) -> semantics.Outcome:
        return semantics.Outcome(self.phase, self.children)


@dataclass
class _Step:
    """A container to run: a task's, or a loop child's (``name``: ``task(0:item)``)."""

    task: str
    name: str
    template: dict[str, Any]
    scope: dict[str, str]
    artifacts: dict[str, Path]


@dataclass
class _Loop:
    """A looped task under way: its children's names in item order, those finished."""

    children: list[str]
    started: float
    finished: dict[str, TaskResult] = field(default_factory=dict)


def _file_name(step: str) -> str:
    """A step's folder and log name: its name, made a safe file name (a loop
    child's name holds its item, which may hold a '/' or be long)."""
    name = step.replace("/", "_").replace("\0", "_")
    if len(name.encode()) > 200:
        name = name[:100] + "-" + hashlib.sha256(step.encode()).hexdigest()[:16]
    return name


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


class WorkflowRunner:
    """Runs one Workflow (a simulation, a publish). Each container step's program comes
    from the step table (``sdk/core/steps.py``: its command, in the environment its
    ``csflow.io/environment`` label names); the backend's ``launch(program, image)``
    makes its launcher, once per program and image for the run. ``close`` when done."""

    def __init__(
        self,
        store: RunStore,
        run_dir: Path,
        launch: LauncherFactory,
        events: EventSink | None = None,
    ):
        self.store = store
        self.run_dir = run_dir
        self.launch = launch
        self.made: dict[tuple[StepProgram, str], Launcher] = {}
        self._making = threading.Lock()
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
        records of an earlier, suspended execution (its approval given). A document
        the engine cannot run is refused before anything runs (``argo_subset``)."""
        spec = workflow["spec"]
        try:
            argo_subset.check(spec)
        except semantics.SpecError as exc:
            return RunStatus.FAIL, str(exc)
        self.templates = {t["name"]: t for t in spec["templates"]}
        self.scope = {
            f"workflow.parameters.{p['name']}": p["value"] for p in spec["arguments"]["parameters"]
        }
        self.scope["workflow.name"] = workflow["metadata"].get("name", run_id)
        self.deadline = time.monotonic() + float(spec.get("activeDeadlineSeconds") or 24 * 3600)
        self.resume = resume or {}
        self._abort = threading.Event()  # start no more processes; stop the running ones
        self._running: set[StepProcess] = set()
        self._guard = threading.Lock()  # one record at a time, and the warm workers' turns
        self._turns: dict[int, threading.Lock] = {}
        self._graph: dict[str, list[str]] = {}
        self._loops: dict[str, _Loop] = {}
        changes: dict[str, Any] = {"status": RunStatus.RUNNING, "engine_pid": os.getpid()}
        if not self.resume:
            changes["started"] = time.time()
        self.store.update(run_id, **changes)
        previous = signal.signal(signal.SIGTERM, self._on_term)
        results: dict[str, TaskResult] = {}
        try:
            self._walk(run_id, spec, results)
            failures = self._failures(results)
            status = "Failed" if failures else "Succeeded"
        except Cancelled:
            status, failures = (
                "Failed",
                [{"displayName": "run", "message": "cancelled", "phase": "Failed"}],
            )
        except Suspended as suspended:
            return RunStatus.SUSPENDED, f"waiting for approval at step {suspended}"
        finally:
            signal.signal(signal.SIGTERM, previous)
        self._abort.clear()  # the exit handler reports every end, a cancelled run's too
        self.scope["workflow.status"] = status
        self.scope["workflow.failures"] = json.dumps(failures)
        self.scope.setdefault("workflow.outputs.parameters.errors-warnings", "{}")
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
        """SIGTERM (a cancel): start nothing more and kill the steps' processes; the
        walk ends the run as cancelled once their threads have recorded them."""
        self.cancelled = True
        self._abort.set()
        self._kill_running()

    def _kill_running(self) -> None:
        # A signal only: the step's own thread waits for its process.
        for process in list(self._running):
            _kill_group(process.pid)

    def _walk(self, run_id: str, spec: dict[str, Any], results: dict[str, TaskResult]) -> None:
        """Run the entrypoint DAG into ``results``: each task once the tasks it
        depends on have finished; independent containers (and a loop's children) at
        once, in threads, at most ``parallelism`` of them (the DAG's, the workflow's,
        and this machine's cores). Records and outputs are handled here, in order."""
        dag = self.templates[spec["entrypoint"]]
        tasks = semantics.dag_tasks(spec, dag["name"])
        self._graph = {task.name: task.upstream() for task in tasks}
        bounds = (spec.get("parallelism"), dag.get("parallelism"), os.cpu_count() or 1)
        limit = min(bound for bound in bounds if bound)
        waiting, ready = list(tasks), []
        running: dict[Future[TaskResult], _Step] = {}
        suspended: Suspended | None = None
        pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="csflow-step")
        try:
            while True:
                if suspended is None and not self._abort.is_set():
                    try:
                        ready += self._prepare_ready(run_id, waiting, results)
                    except Suspended as reached:  # the running steps still finish
                        suspended = reached
                    while suspended is None and ready and len(running) < limit:
                        step = ready.pop(0)
                        running[pool.submit(self._run_step, run_id, step)] = step
                if not running:
                    break
                done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    self._finished(run_id, running.pop(future), future.result(), results)
        except BaseException:  # an engine error, or Ctrl-C: leave no step running
            self._abort.set()
            self._kill_running()
            raise
        finally:
            pool.shutdown(wait=True)
        if self.cancelled:
            raise Cancelled()
        if suspended is not None:
            raise suspended

    def _prepare_ready(
        self, run_id: str, waiting: list[semantics.Task], results: dict[str, TaskResult]
    ) -> list[_Step]:
        """Take the tasks whose dependencies have finished off ``waiting``, in DAG
        order: those that end at once (omitted, skipped, resumed) go to ``results``,
        which may ready more; the containers to run are returned."""
        steps: list[_Step] = []
        progressed = True
        while progressed:
            progressed = False
            for task in list(waiting):
                if any(dependency not in results for dependency in self._graph[task.name]):
                    continue
                waiting.remove(task)
                progressed = True
                prepared = self._prepare(run_id, task, results)
                if isinstance(prepared, TaskResult):
                    results[task.name] = prepared
                else:
                    steps += prepared
        return steps

    def _failures(self, results: dict[str, TaskResult]) -> list[dict[str, str]]:
        """The failed and errored steps, as Argo's ``{{workflow.failures}}`` lists them
        (a loop's failed children, not the loop)."""
        failures = []
        for name, result in results.items():
            loop = self._loops.get(name)
            steps = loop.finished.items() if loop is not None else [(name, result)]
            for step, outcome in steps:
                if outcome.phase in (StepPhase.FAILED, StepPhase.ERRORED):
                    failures.append(
                        {"displayName": step, "message": outcome.message, "phase": outcome.phase}
                    )
        return failures

    # -- one task -----------------------------------------------------------

    def _run_task(
        self, run_id: str, task: semantics.Task, results: dict[str, TaskResult]
    ) -> TaskResult:
        """Run one task here and now (the exit handler, after the walk)."""
        prepared = self._prepare(run_id, task, results)
        if isinstance(prepared, TaskResult):
            return prepared
        for step in prepared:
            self._finished(run_id, step, self._run_step(run_id, step), results)
        return results[task.name]

    def _prepare(
        self, run_id: str, task: semantics.Task, results: dict[str, TaskResult]
    ) -> TaskResult | list[_Step]:
        """A task whose dependencies have finished: its result if it ends without a
        process (omitted, skipped, errored, resumed, approved), else what to run."""
        outcomes = {name: result.outcome() for name, result in results.items()}
        if not semantics.evaluate_depends(task.depends, outcomes):
            self._record(run_id, task.name, StepPhase.OMITTED)
            return TaskResult(StepPhase.OMITTED)
        scope = dict(self.scope)
        for name in semantics.ancestors(task.name, self._graph):  # Argo: outputs of ancestors
            result, prefix = results[name], f"tasks.{name}.outputs"
            for key, value in result.parameters.items():
                scope[f"{prefix}.parameters.{key}"] = value
            if result.parameter_list is not None:
                scope[f"{prefix}.parameters"] = result.parameter_list
            for key in result.artifacts:
                scope[f"{prefix}.artifacts.{key}"] = f"{name}/{key}"
        template = self.templates[task.template]
        if task.loops:
            return self._prepare_loop(run_id, task, template, scope, results)
        return self._prepare_step(run_id, task, task.name, template, scope, results)

    def _prepare_step(
        self,
        run_id: str,
        task: semantics.Task,
        name: str,
        template: dict,
        scope: dict[str, str],
        results: dict[str, TaskResult],
    ) -> TaskResult | list[_Step]:
        """One step (a task, or a loop's child ``name``): its ``when``, a suspend, or
        the container to run with the task's arguments."""
        earlier = self.resume.get(name, {}).get("phase")
        if earlier in _DONE:
            return self._resumed(name, template, earlier, self.resume[name].get("message", ""))
        try:
            if task.when and not semantics.evaluate_when(semantics.substitute(task.when, scope)):
                self._record(run_id, name, StepPhase.SKIPPED)
                return TaskResult(StepPhase.SKIPPED)
            if "suspend" in template:
                return self._suspend(run_id, name, earlier == StepPhase.SUSPENDED)
            step_scope = dict(scope)
            for parameter in task.arguments.get("parameters", []):
                step_scope[f"inputs.parameters.{parameter['name']}"] = semantics.substitute(
                    str(parameter.get("value", "")), scope
                )
            artifacts = {}
            for argument in task.arguments.get("artifacts", []):
                producer, _, artifact = semantics.substitute(argument["from"], scope).partition("/")
                source = results.get(producer)
                if source is not None and artifact in source.artifacts:  # else optional, absent
                    artifacts[argument["name"]] = source.artifacts[artifact]
        except semantics.SpecError as exc:  # as on Argo: the step errs, the run goes on
            self._record(run_id, name, StepPhase.ERRORED, finished=time.time(), message=str(exc))
            return TaskResult(StepPhase.ERRORED, str(exc))
        return [_Step(task.name, name, template, step_scope, artifacts)]

    def _prepare_loop(
        self,
        run_id: str,
        task: semantics.Task,
        template: dict,
        scope: dict[str, str],
        results: dict[str, TaskResult],
    ) -> TaskResult | list[_Step]:
        """A looped task (``withItems``, ``withParam``): one child per item, named as
        Argo names it (``sweep(0:2025)``), each its own step with its own folder and
        log; the task finishes when they all have."""
        try:
            children = semantics.loop_children(task.name, semantics.loop_items(task, scope))
        except semantics.SpecError as exc:
            self._record(
                run_id, task.name, StepPhase.ERRORED, finished=time.time(), message=str(exc)
            )
            return TaskResult(StepPhase.ERRORED, str(exc))
        if not children:
            self._record(run_id, task.name, StepPhase.SKIPPED, message="Skipped, empty params")
            return TaskResult(StepPhase.SKIPPED, "Skipped, empty params", children=())
        loop = self._loops[task.name] = _Loop([child.name for child in children], time.time())
        self._record(run_id, task.name, StepPhase.RUNNING, started=loop.started)
        steps: list[_Step] = []
        for child in children:
            child_scope = {**scope, **child.variables}
            prepared = self._prepare_step(run_id, task, child.name, template, child_scope, results)
            if isinstance(prepared, TaskResult):
                loop.finished[child.name] = prepared
            else:
                steps += prepared
        return steps or self._finish_loop(run_id, task.name)

    def _run_step(self, run_id: str, step: _Step) -> TaskResult:
        """In a step's thread: run its container."""
        return self._run_container(run_id, step.name, step.template, step.scope, step.artifacts)

    def _finished(
        self, run_id: str, step: _Step, result: TaskResult, results: dict[str, TaskResult]
    ) -> None:
        """A step's container ended: its global outputs, and its task's result (a
        loop's, once its last child is done)."""
        self._set_globals(step.template, result)
        loop = self._loops.get(step.task)
        if loop is None:
            results[step.task] = result
            return
        loop.finished[step.name] = result
        if len(loop.finished) == len(loop.children):
            results[step.task] = self._finish_loop(run_id, step.task)

    def _finish_loop(self, run_id: str, name: str) -> TaskResult:
        """A loop's result (Argo's TaskGroup node): its phase from its children's, and
        its outputs aggregated (``{{tasks.NAME.outputs.parameters.P}}``: a JSON list)."""
        loop = self._loops[name]
        children = [loop.finished[child] for child in loop.children]
        phases = tuple(child.phase for child in children)
        listed, aggregated = semantics.aggregate_parameters(
            [child.parameters for child in children if child.phase == StepPhase.SUCCEEDED]
        )
        phase = semantics.loop_phase(phases)
        finished = time.time()
        self._record(
            run_id, name, phase, finished=finished, seconds=round(finished - loop.started, 3)
        )
        return TaskResult(phase, "", aggregated, children=phases, parameter_list=listed)

    def _resumed(self, name: str, template: dict, phase: str, message: str) -> TaskResult:
        """A step finished before the run was suspended: its outputs, read back."""
        result = TaskResult(phase, message)
        if phase == StepPhase.SUCCEEDED and "container" in template:
            result = self._collect(template, self.run_dir / "work" / _file_name(name), result)
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

    def launcher(self, environment: str, command: list[str], image: str) -> Launcher:
        """The launcher for a step's command in its environment. Made when first
        needed: a publish builds its model's environment mid-run."""
        try:
            program = program_for(command, environment)
        except CsflowError as exc:
            raise semantics.SpecError(str(exc)) from None
        with self._making:
            if (program, image) not in self.made:
                self.made[program, image] = self.launch(program, image)
            return self.made[program, image]

    def close(self) -> None:
        """Let go of the run's launchers (a warm worker goes back to its pool)."""
        with self._making:
            made, self.made = list(self.made.values()), {}
        for launcher in made:
            launcher.close()

    def _record(self, run_id: str, step: str, phase: str, **info: Any) -> None:
        with self._guard:  # steps end in several threads; their records go one by one
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
        work = self.run_dir / "work" / _file_name(name)
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        for artifact in template.get("inputs", {}).get("artifacts", []):
            if artifact["name"] in artifacts:
                self._place(artifacts[artifact["name"]], self._local(work, artifact["path"]))
            elif not artifact.get("optional"):
                raise semantics.SpecError(
                    f"template {template['name']!r}: "
                    f"input artifact {artifact['name']!r} has no source"
                )
        retry = {
            key: semantics.substitute(str(value), scope)
            for key, value in (template.get("retryStrategy") or {}).items()
            if key in ("limit", "retryPolicy")
        }
        backoff = {
            key: semantics.substitute(str(value), scope)
            for key, value in ((template.get("retryStrategy") or {}).get("backoff") or {}).items()
        }
        attempts = 1 + int(retry.get("limit", 0))
        retried = argo_subset.RETRY_POLICIES[retry.get("retryPolicy", "")]
        delay, factor = _seconds(backoff.get("duration")), float(backoff.get("factor", 1) or 1)
        # Argo's maxDuration: no retry whose backoff would end past it, from the first try.
        give_up = (
            time.monotonic() + _seconds(backoff["maxDuration"])
            if backoff.get("maxDuration")
            else math.inf
        )
        step_deadline = template.get("activeDeadlineSeconds")
        step_limit = None
        if step_deadline is not None:
            step_limit = float(semantics.substitute(str(step_deadline), scope))
        log = self.logs / f"{_file_name(name)}.log"
        started = time.time()
        self._record(run_id, name, StepPhase.RUNNING, started=started)
        for attempt in range(1, attempts + 1):
            phase, message = self._attempt(launcher, args, work, log, step_limit)
            if phase == StepPhase.SUCCEEDED or attempt == attempts or self._abort.is_set():
                break
            if phase not in retried or time.monotonic() + delay > give_up:
                break
            with open(log, "a") as handle:
                handle.write(
                    f"\n[csflow: attempt {attempt} failed ({message}); retrying in {delay:g}s]\n"
                )
            self._abort.wait(delay)  # a cancel ends the wait
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
        step_limit: float | None,
    ) -> tuple[str, str]:
        with self._turn(launcher):
            remaining = self.deadline - time.monotonic()
            limit = remaining if step_limit is None else min(remaining, step_limit)
            if limit <= 0:
                return StepPhase.FAILED, "the workflow's deadline passed"
            if self._abort.is_set():
                return StepPhase.FAILED, "cancelled"
            try:
                process = launcher.start(args, work, log, {"CSFLOW_WORK_DIR": str(work)})
            except LaunchError as exc:
                return StepPhase.ERRORED, str(exc)
            self._running.add(process)
            try:
                if self._abort.is_set():  # the cancel came while it started
                    _kill_group(process.pid)
                code = process.wait(limit)
                if code is None:
                    process.kill()
                    what = "its timeout" if limit < remaining else "the workflow's deadline"
                    return StepPhase.FAILED, f"exceeded {what} of {limit:.0f}s and was stopped"
            finally:
                self._running.discard(process)
        if code != 0 and self._abort.is_set():
            return StepPhase.FAILED, "cancelled"
        if code == 0:
            return StepPhase.SUCCEEDED, ""
        if code < 0:
            signame = signal.Signals(-code).name
            detail = " (it wrote more than the file size limit)" if signame == "SIGXFSZ" else ""
            return StepPhase.FAILED, f"killed by {signame}{detail}"
        return StepPhase.FAILED, _last_line(log) or f"exit code {code}"

    def _turn(self, launcher: Launcher) -> contextlib.AbstractContextManager:
        """Fresh subprocesses run side by side; a warm worker (or any launcher not
        known to start independent processes) runs one step at a time: they take turns."""
        if isinstance(launcher, SubprocessLauncher):
            return contextlib.nullcontext()
        with self._guard:
            return self._turns.setdefault(id(launcher), threading.Lock())

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
