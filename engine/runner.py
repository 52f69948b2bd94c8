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
import errno
import hashlib
import json
import math
import os
import re
import select
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
    group_stopped,
)
from csflow.engine.store import RunStore, no_space_left
from csflow.sdk.argo import semantics
from csflow.sdk.core.errors import CsflowError
from csflow.sdk.core.reasons import reason_line
from csflow.sdk.core.status import RunStatus, StepPhase, classify, failure_reason
from csflow.sdk.core.steps import ENVIRONMENT_LABEL, WORK_DIR, StepProgram, program_for

# A step's log is held under MAX_LOG_BYTES while the step runs (``_LogPump``; where a
# step writes its log itself, checked every LOG_CHECK_SECONDS): past it, its head and
# its tail (LOG_KEEP_BYTES each) are kept.
MAX_LOG_BYTES = 20 * 1024 * 1024
LOG_KEEP_BYTES = 2 * 1024 * 1024
LOG_CHECK_SECONDS = 0.02
# A step that fails while its disk has less than this free failed for want of space.
DISK_FULL_BYTES = 1024 * 1024

# A cancelled run's reason, by the signal that stopped it (SIGTERM, a cancel: "cancelled").
STOP_REASONS: dict[int, str] = {
    signal.SIGINT: "cancelled by Ctrl-C (SIGINT)",
    signal.SIGHUP: "cancelled by SIGHUP (sent when its terminal closes)",
}

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
    # A nested DAG's: the failed steps inside it (Argo lists them in workflow.failures).
    failures: list[dict[str, str]] = field(default_factory=list)

    def outcome(self) -> semantics.Outcome:
        return semantics.Outcome(self.phase, self.children)


@dataclass
class _Dag:
    """A DAG being walked: the entrypoint, or one a task runs (its template is a
    DAG). Argo names a nested DAG's nodes ``PARENT.TASK`` (``point(0:x).run``): the
    records, folders and logs take those names; ``depends`` and ``tasks.*`` use the
    task names, within the DAG."""

    prefix: str
    graph: dict[str, list[str]]
    scope: dict[str, str]
    results: dict[str, TaskResult] = field(default_factory=dict)

    def node(self, task: str) -> str:
        return self.prefix + task

    def phase(self) -> str:
        return semantics.dag_phase(self.graph, {n: r.phase for n, r in self.results.items()})


@dataclass
class _Step:
    """What a task runs: a container or a nested DAG; a task's, or a loop child's
    (``name``: its node's name, ``task(0:item)``)."""

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


def _log_reason(path: Path) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(max(0, path.stat().st_size - 8192))
            text = handle.read().decode(errors="replace")
    except FileNotFoundError:
        return ""
    return reason_line(text)


class _StepLog:
    """A step's log (``logs/<step>.log``, mode 0600), held under MAX_LOG_BYTES while
    the step writes it: past that, its head and its last LOG_KEEP_BYTES are kept with
    a line saying how much was cut between them. The cut is made in place (the file
    keeps its inode and mode, and no second copy is needed: the disk may be full);
    the step's writes (``O_APPEND``) go on after it."""

    def __init__(self, path: Path):
        self.path = path
        self.cut = 0  # bytes cut so far
        self.marker = 0  # length of the marker line after the head (0: nothing cut yet)

    def append(self, text: str) -> None:
        """A line of the engine's own (a retry); best effort, the disk may be full."""
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)
        except OSError:
            pass

    def enforce(self, writer: int | None = None) -> int:
        """While the step runs: cut the log once it is past MAX_LOG_BYTES; its size.
        ``writer``: the step's process group when it writes the log itself (no pipe);
        None when the engine's log pump is the only writer."""
        self._cut(MAX_LOG_BYTES, writer)
        try:
            return os.stat(self.path).st_size
        except OSError:
            return 0

    def trim(self, force: bool = False) -> None:
        """Once the step has ended: head, marker, tail, if it was ever cut or is past
        MAX_LOG_BYTES (``force``: however long it is, to free space on a full disk)."""
        self._cut(0 if (force or self.marker) else MAX_LOG_BYTES)

    def _cut(self, above: int, writer: int | None = None) -> None:
        try:
            fd = os.open(self.path, os.O_RDWR)
        except OSError:
            return
        try:
            if not self._too_long(fd, above):
                return
            if writer is None:  # the step has ended: nothing writes meanwhile
                self._cut_open(fd)
                return
            # The step goes on writing (O_APPEND): what it wrote between the read of
            # the tail and the truncate would be lost (its last words, perhaps), so it
            # is held still for the cut; if it cannot be, the next look cuts instead.
            with group_stopped(writer) as still:
                if still and self._too_long(fd, above):
                    self._cut_open(fd)
        except OSError:
            pass
        finally:
            os.close(fd)

    def _too_long(self, fd: int, above: int) -> bool:
        size = os.fstat(fd).st_size
        return size > above and size - (LOG_KEEP_BYTES + self.marker) > LOG_KEEP_BYTES

    def _cut_open(self, fd: int) -> None:
        """Head, marker, tail, in place (the file keeps its inode and mode)."""
        size = os.fstat(fd).st_size
        tail = os.pread(fd, LOG_KEEP_BYTES, size - LOG_KEEP_BYTES)
        self.cut += size - LOG_KEEP_BYTES - self.marker - len(tail)
        marker = f"\n[csflow: {self.cut} bytes of output cut]\n".encode()
        os.pwrite(fd, marker + tail, LOG_KEEP_BYTES)
        os.ftruncate(fd, LOG_KEEP_BYTES + len(marker) + len(tail))
        self.marker = len(marker)


class _LogPump:
    """Carries a step's output to its log through a pipe: a FIFO beside the log
    (``<step>.log.pipe``), which the launcher opens in the log's place. The engine
    alone writes the log, so it holds it under MAX_LOG_BYTES however fast the step
    writes (the step waits on the pipe, nothing piles up on disk), and it sees the
    disk fill (``full``). Where no FIFO can be made, ``open`` says so (None) and the
    step writes its log itself, cut by the runner as it grows (``_StepLog.enforce``)."""

    def __init__(self, log: _StepLog):
        self.log = log
        self.path = log.path.with_name(log.path.name + ".pipe")
        self.full = False  # a write of the log failed: no space left
        self.lost = 0  # bytes of output not written (the log could not be written)
        self._stopped_writing = False
        self._stop_at: float | None = None
        self._fds: list[int] = []
        self._thread: threading.Thread | None = None

    def open(self) -> Path | None:
        """The path the step is to open as its log, or None: no FIFO here."""
        try:
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()  # left by an engine that was killed
            os.mkfifo(self.path, 0o600)
            self._read = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            self._fds.append(self._read)
            # Held until the step has ended: no end of file before the step opens it.
            self._hold = os.open(self.path, os.O_WRONLY | os.O_NONBLOCK)
            self._fds.append(self._hold)
            self._out = os.open(self.log.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            self._fds.append(self._out)
        except OSError:
            self._close_fds()
            return None
        self._thread = threading.Thread(target=self._pump, name="csflow-log", daemon=True)
        self._thread.start()
        return self.path

    def close(self, grace: float = 1.0) -> None:
        """Once the step's process has ended: all it wrote is in the log, or, after
        ``grace`` seconds, what children it left still write is cut off (EPIPE)."""
        if self._thread is None:
            return
        self._stop_at = time.monotonic() + grace
        os.close(self._hold)
        self._fds.remove(self._hold)
        self._thread.join()
        self._thread = None
        self._close_fds()
        with contextlib.suppress(OSError):
            self.path.unlink()
        if self.lost:
            why = "the disk is full" if self.full else "the log could not be written"
            self.log.append(f"\n[csflow: {why}: {self.lost} bytes of output lost]\n")

    def _close_fds(self) -> None:
        for fd in self._fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._fds = []

    def _pump(self) -> None:
        """Until every writer has closed the pipe (or ``close``'s grace is over). It
        never stops reading while the step runs, or the step would wait on the pipe:
        once the log cannot be written, what comes is counted (``lost``) and dropped."""
        size = os.fstat(self._out).st_size  # an earlier attempt's output, if retried
        while self._stop_at is None or time.monotonic() < self._stop_at:
            ready, _, _ = select.select([self._read], [], [], 0.1)
            if not ready:
                continue
            try:
                chunk = os.read(self._read, 1 << 16)
            except BlockingIOError:
                continue
            except OSError:  # not seen on a pipe; never leave the step waiting on it
                time.sleep(0.05)
                continue
            if not chunk:
                return  # every writer has closed it: the step and its children are done
            if self._stopped_writing:
                self.lost += len(chunk)
                continue
            view = memoryview(chunk)
            try:
                while view:
                    view = view[os.write(self._out, view) :]
                size += len(chunk)
                if size > MAX_LOG_BYTES:
                    self.log.enforce()
                    size = os.fstat(self._out).st_size
            except OSError as exc:  # no space left (or EIO): the rest is counted, not kept
                self.full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
                self.lost += len(view)
                self._stopped_writing = True


def _trim_log(path: Path) -> None:
    """Keep the head and tail of a log that a step flooded (in place)."""
    _StepLog(path).trim()


def _disk_full(path: Path, last_line: str) -> bool:
    """Whether a step that failed did so for want of space: its log's disk is all
    but full (root may use the blocks kept for it), or its last words say so."""
    if "No space left on device" in last_line or "Disk quota exceeded" in last_line:
        return True
    return no_space_left(path.parent, DISK_FULL_BYTES)


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
        # The signal that stopped the run (SIGTERM, SIGINT, SIGHUP), once one came.
        self.stopped_by: int | None = None

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
        self.spec = spec
        self.templates = {t["name"]: t for t in spec["templates"]}
        self.scope = {
            f"workflow.parameters.{p['name']}": p["value"]
            for p in (spec.get("arguments") or {}).get("parameters") or []
        }
        self.scope["workflow.name"] = workflow["metadata"].get("name", run_id)
        self.deadline = time.monotonic() + float(spec.get("activeDeadlineSeconds") or 24 * 3600)
        self.resume = resume or {}
        self._abort = threading.Event()  # start no more processes; stop the running ones
        self._running: set[StepProcess] = set()
        self._guard = threading.Lock()  # one record at a time, and the warm workers' turns
        self._turns: dict[int, threading.Lock] = {}
        self._loops: dict[str, _Loop] = {}  # by node name
        changes: dict[str, Any] = {"status": RunStatus.RUNNING, "engine_pid": os.getpid()}
        if not self.resume:
            changes["started"] = time.time()
        self.store.update(run_id, **changes)
        previous = self._catch_stop_signals()
        try:
            return self._execute(run_id, spec)
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def _execute(self, run_id: str, spec: dict[str, Any]) -> tuple[str, str]:
        """The walk, then the exit handler (a stop signal in either cancels the run)."""
        tasks = semantics.dag_tasks(spec, spec["entrypoint"])
        top = _Dag("", {task.name: task.upstream() for task in tasks}, self.scope)
        try:
            entry = self.templates[spec["entrypoint"]]
            self._walk(run_id, top, tasks, spec.get("parallelism"), entry.get("parallelism"))
            failures = self._failures(top)
            # Argo's rule: the DAG's target tasks decide (a failure a later task
            # handled does not fail the run); every failed step is still listed.
            status = "Succeeded" if top.phase() == StepPhase.SUCCEEDED else "Failed"
        except Cancelled:
            status, failures = (
                "Failed",
                [{"displayName": "run", "message": self.stop_reason(), "phase": "Failed"}],
            )
        except Suspended as suspended:
            return RunStatus.SUSPENDED, f"waiting for approval at step {suspended}"
        self._abort.clear()  # the exit handler reports every end, a cancelled run's too
        self.scope["workflow.status"] = status
        self.scope["workflow.failures"] = json.dumps(failures)
        self.scope.setdefault("workflow.outputs.parameters.errors-warnings", "{}")
        if spec.get("onExit"):
            exit_task = semantics.Task(name=spec["onExit"], template=spec["onExit"])
            self._run_task(run_id, exit_task, top)
        errors_warnings = json.loads(self.scope["workflow.outputs.parameters.errors-warnings"])
        final = RunStatus.CANCELLED if self.cancelled else classify(status, errors_warnings)
        reason = (
            self.stop_reason()
            if self.cancelled
            else (failure_reason(failures) if final == RunStatus.FAIL else "")
        )
        return final, reason

    def _catch_stop_signals(self) -> dict[int, Any]:
        """Take SIGTERM (a cancel: ``runs cancel``), SIGINT (Ctrl-C) and SIGHUP (the
        terminal closed) for the run; the handlers they had, to put back. Only the
        main thread may (Python's rule): elsewhere the caller's stay. A SIGINT or
        SIGHUP this process ignores (``nohup``, a background job) stays ignored."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        previous: dict[int, Any] = {}
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            handler = signal.getsignal(signum)
            if handler is None or (handler == signal.SIG_IGN and signum != signal.SIGTERM):
                continue  # (None: a handler set outside Python; it stays)
            previous[signum] = signal.signal(signum, self._on_stop)
        return previous

    def _on_stop(self, signum, frame) -> None:
        """A stop signal: start nothing more and kill the steps' processes; the walk
        ends the run as cancelled once their threads have recorded them, and the exit
        handler reports it (a second signal stops the exit handler too)."""
        if self.stopped_by is None:
            self.stopped_by = signum
        self.cancelled = True
        self._abort.set()
        self._kill_running()

    def stop_reason(self) -> str:
        """Why a cancelled run stopped, in its record: the signal, in a user's words."""
        return STOP_REASONS.get(self.stopped_by or 0, "cancelled")

    def _kill_running(self) -> None:
        # A signal only: the step's own thread waits for its process.
        for process in list(self._running):
            _kill_group(process.pid)

    def _walk(
        self, run_id: str, dag: _Dag, tasks: list[semantics.Task], *parallelism: int | None
    ) -> None:
        """Run a DAG's tasks into ``dag.results``: each task once the tasks it depends
        on have finished; independent steps (and a loop's children) at once, in
        threads, at most ``parallelism`` of them (the workflow's or the outer DAG's,
        this DAG's, and this machine's cores). Records and outputs are handled here,
        in order. A nested DAG is walked in the thread of the task that runs it."""
        bounds = (*parallelism, os.cpu_count() or 1)
        limit = min(bound for bound in bounds if bound)
        waiting, ready = list(tasks), []
        running: dict[Future[TaskResult], _Step] = {}
        suspended: Suspended | None = None
        pool = ThreadPoolExecutor(max_workers=limit, thread_name_prefix="csflow-step")
        try:
            while True:
                if suspended is None and not self._abort.is_set():
                    try:
                        ready += self._prepare_ready(run_id, dag, waiting)
                    except Suspended as reached:  # the running steps still finish
                        suspended = reached
                    while suspended is None and ready and len(running) < limit:
                        step = ready.pop(0)
                        running[pool.submit(self._run_step, run_id, step)] = step
                if not running:
                    break
                done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
                for future in done:
                    self._finished(run_id, dag, running.pop(future), future.result())
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

    def _prepare_ready(self, run_id: str, dag: _Dag, waiting: list[semantics.Task]) -> list[_Step]:
        """Take the tasks whose dependencies have finished off ``waiting``, in DAG
        order: those that end at once (omitted, skipped, resumed) go to ``results``,
        which may ready more; the containers to run are returned."""
        steps: list[_Step] = []
        progressed = True
        while progressed:
            progressed = False
            for task in list(waiting):
                if any(dependency not in dag.results for dependency in dag.graph[task.name]):
                    continue
                waiting.remove(task)
                progressed = True
                prepared = self._prepare(run_id, dag, task)
                if isinstance(prepared, TaskResult):
                    dag.results[task.name] = prepared
                else:
                    steps += prepared
        return steps

    def _failures(self, dag: _Dag) -> list[dict[str, str]]:
        """The failed and errored steps, as Argo's ``{{workflow.failures}}`` lists them
        (a loop's failed children, not the loop; a nested DAG's steps, then the DAG)."""
        failures = []
        for name, result in dag.results.items():
            loop = self._loops.get(dag.node(name))
            steps = loop.finished.items() if loop is not None else [(dag.node(name), result)]
            for step, outcome in steps:
                failures += outcome.failures
                if outcome.phase in (StepPhase.FAILED, StepPhase.ERRORED):
                    failures.append(
                        {"displayName": step, "message": outcome.message, "phase": outcome.phase}
                    )
        return failures

    # -- one task -----------------------------------------------------------

    def _run_task(self, run_id: str, task: semantics.Task, dag: _Dag) -> TaskResult:
        """Run one task here and now (the exit handler, after the walk)."""
        prepared = self._prepare(run_id, dag, task)
        if isinstance(prepared, TaskResult):
            return prepared
        for step in prepared:
            self._finished(run_id, dag, step, self._run_step(run_id, step))
        return dag.results[task.name]

    def _prepare(self, run_id: str, dag: _Dag, task: semantics.Task) -> TaskResult | list[_Step]:
        """A task whose dependencies have finished: its result if it ends without a
        process (omitted, skipped, errored, resumed, approved), else what to run."""
        results = dag.results
        outcomes = {name: result.outcome() for name, result in results.items()}
        if not semantics.evaluate_depends(task.depends, outcomes):
            self._record(run_id, dag.node(task.name), StepPhase.OMITTED)
            return TaskResult(StepPhase.OMITTED)
        scope = dict(dag.scope)
        for name in semantics.ancestors(task.name, dag.graph):  # Argo: outputs of ancestors
            result, prefix = results[name], f"tasks.{name}.outputs"
            for key, value in result.parameters.items():
                scope[f"{prefix}.parameters.{key}"] = value
            if result.parameter_list is not None:
                scope[f"{prefix}.parameters"] = result.parameter_list
            for key in result.artifacts:
                scope[f"{prefix}.artifacts.{key}"] = f"{name}/{key}"
        template = self.templates[task.template]
        if task.loops:
            return self._prepare_loop(run_id, dag, task, template, scope)
        return self._prepare_step(run_id, dag, task, dag.node(task.name), template, scope)

    def _prepare_step(
        self,
        run_id: str,
        dag: _Dag,
        task: semantics.Task,
        name: str,
        template: dict,
        scope: dict[str, str],
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
            # As on Argo: an optional argument whose artifact was not produced is left
            # out, one that is not optional errs; then the template's inputs decide.
            artifacts = {}
            for argument, reference in semantics.artifact_arguments(task.arguments, scope).items():
                producer, _, artifact = reference.partition("/")
                source = dag.results.get(producer)
                if source is not None and artifact in source.artifacts:
                    artifacts[argument] = source.artifacts[artifact]
            semantics.check_input_artifacts(template, artifacts)
        except semantics.SpecError as exc:  # as on Argo: the step errs, the run goes on
            self._record(run_id, name, StepPhase.ERRORED, finished=time.time(), message=str(exc))
            return TaskResult(StepPhase.ERRORED, str(exc))
        return [_Step(task.name, name, template, step_scope, artifacts)]

    def _prepare_loop(
        self,
        run_id: str,
        dag: _Dag,
        task: semantics.Task,
        template: dict,
        scope: dict[str, str],
    ) -> TaskResult | list[_Step]:
        """A looped task (``withItems``, ``withParam``): one child per item, named as
        Argo names it (``sweep(0:2025)``), each its own step with its own folder and
        log; the task finishes when they all have."""
        node = dag.node(task.name)
        try:
            children = semantics.loop_children(node, semantics.loop_items(task, scope))
        except semantics.SpecError as exc:
            self._record(run_id, node, StepPhase.ERRORED, finished=time.time(), message=str(exc))
            return TaskResult(StepPhase.ERRORED, str(exc))
        if not children:
            self._record(run_id, node, StepPhase.SKIPPED, message="Skipped, empty params")
            return TaskResult(StepPhase.SKIPPED, "Skipped, empty params", children=())
        loop = self._loops[node] = _Loop([child.name for child in children], time.time())
        self._record(run_id, node, StepPhase.RUNNING, started=loop.started)
        steps: list[_Step] = []
        for child in children:
            child_scope = {**scope, **child.variables}
            prepared = self._prepare_step(run_id, dag, task, child.name, template, child_scope)
            if isinstance(prepared, TaskResult):
                loop.finished[child.name] = prepared
            else:
                steps += prepared
        return steps or self._finish_loop(run_id, node)

    def _run_step(self, run_id: str, step: _Step) -> TaskResult:
        """In a step's thread: run its container, or walk its DAG."""
        if "dag" in step.template:
            return self._run_dag(run_id, step)
        return self._run_container(run_id, step.name, step.template, step.scope, step.artifacts)

    def _run_dag(self, run_id: str, step: _Step) -> TaskResult:
        """A task whose template is a DAG: its tasks, walked here, see the workflow's
        variables and the DAG's ``inputs.parameters`` (Argo: not the outer DAG's
        tasks); its phase is Argo's DAG rule on them (``semantics.dag_phase``)."""
        started = time.time()
        self._record(run_id, step.name, StepPhase.RUNNING, started=started)
        tasks = semantics.dag_tasks(self.spec, step.template["name"])
        scope = {k: v for k, v in step.scope.items() if not k.startswith(("tasks.", "item"))}
        dag = _Dag(f"{step.name}.", {task.name: task.upstream() for task in tasks}, scope)
        self._walk(run_id, dag, tasks, step.template.get("parallelism"))
        failures = self._failures(dag)
        phase = dag.phase()
        own = next((f for f in failures if f["phase"] == phase), None)
        message = f"child '{own['displayName']}' {phase.lower()}" if own else ""
        finished = time.time()
        self._record(
            run_id,
            step.name,
            phase,
            started=started,
            finished=finished,
            seconds=round(finished - started, 3),
            message=message,
        )
        return TaskResult(phase, message, failures=failures)

    def _finished(self, run_id: str, dag: _Dag, step: _Step, result: TaskResult) -> None:
        """A step ended: its global outputs, and its task's result (a loop's, once its
        last child is done)."""
        self._set_globals(step.template, result)
        node = dag.node(step.task)
        loop = self._loops.get(node)
        if loop is None:
            dag.results[step.task] = result
            return
        loop.finished[step.name] = result
        if len(loop.finished) == len(loop.children):
            dag.results[step.task] = self._finish_loop(run_id, node)

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
            try:
                self.events(step, phase, info)
            except OSError:  # what shows progress is gone (a closed terminal): run on
                pass

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
        try:
            shutil.rmtree(work, ignore_errors=True)
            work.mkdir(parents=True)
            for artifact in template.get("inputs", {}).get("artifacts", []):
                if artifact["name"] in artifacts:  # (the rest are optional: _prepare_step)
                    self._place(artifacts[artifact["name"]], self._local(work, artifact["path"]))
        except OSError as exc:  # its folder cannot be made (a full disk): the step errs
            full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
            message = self._disk_full_message() if full else f"its work folder: {exc}"
            self._record(run_id, name, StepPhase.ERRORED, finished=time.time(), message=message)
            return TaskResult(StepPhase.ERRORED, message)
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
        log = _StepLog(self.logs / f"{_file_name(name)}.log")
        started = time.time()
        self._record(run_id, name, StepPhase.RUNNING, started=started)
        for attempt in range(1, attempts + 1):
            phase, message = self._attempt(launcher, args, work, log, step_limit)
            if phase == StepPhase.SUCCEEDED or attempt == attempts or self._abort.is_set():
                break
            if phase not in retried or time.monotonic() + delay > give_up:
                break
            log.append(
                f"\n[csflow: attempt {attempt} failed ({message}); retrying in {delay:g}s]\n"
            )
            self._abort.wait(delay)  # a cancel ends the wait
            delay *= factor
        log.trim()
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
        log: _StepLog,
        step_limit: float | None,
    ) -> tuple[str, str]:
        with self._turn(launcher):
            remaining = self.deadline - time.monotonic()
            limit = remaining if step_limit is None else min(remaining, step_limit)
            if limit <= 0:
                return StepPhase.FAILED, "the workflow's deadline passed"
            if self._abort.is_set():
                return StepPhase.FAILED, "cancelled"
            pump = _LogPump(log)
            piped = pump.open()
            try:
                process = launcher.start(
                    args, work, piped or log.path, {"CSFLOW_WORK_DIR": str(work)}
                )
            except LaunchError as exc:
                pump.close(0)
                return StepPhase.ERRORED, str(exc)
            except OSError as exc:  # its log or process could not be made (a full disk)
                pump.close(0)
                if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                    return StepPhase.ERRORED, self._disk_full_message()
                return StepPhase.ERRORED, f"the step could not start: {exc}"
            except BaseException:
                pump.close(0)
                raise
            self._running.add(process)
            try:
                if self._abort.is_set():  # the cancel came while it started
                    _kill_group(process.pid)
                code = self._wait(process, limit, None if piped else log)
                if code is None:
                    process.kill()
                    what = "its timeout" if limit < remaining else "the workflow's deadline"
                    return StepPhase.FAILED, f"exceeded {what} of {limit:.0f}s and was stopped"
            finally:
                self._running.discard(process)
                pump.close()
        if code != 0 and self._abort.is_set():
            return StepPhase.FAILED, "cancelled"
        if code == 0:
            return StepPhase.SUCCEEDED, ""
        last = _log_reason(log.path)
        if pump.full or _disk_full(log.path, last):
            log.trim(force=True)  # free what its flood took, so the end can be recorded
            return StepPhase.FAILED, self._disk_full_message()
        if code < 0:
            signame = signal.Signals(-code).name
            detail = " (it wrote more than the file size limit)" if signame == "SIGXFSZ" else ""
            return StepPhase.FAILED, f"killed by {signame}{detail}"
        return StepPhase.FAILED, last or f"exit code {code}"

    @staticmethod
    def _wait(process: StepProcess, limit: float, log: _StepLog | None) -> int | None:
        """Wait up to ``limit`` seconds for a step's process (None: still running);
        a ``log`` the step writes itself is held under MAX_LOG_BYTES meanwhile."""
        if log is None:
            return process.wait(limit)
        end, size, pause = time.monotonic() + limit, 0, LOG_CHECK_SECONDS
        while True:
            code = process.wait(min(pause, max(0.0, end - time.monotonic())))
            now = log.enforce(process.pid)
            # A flood (a megabyte since the last look, or a cut): look ten times as often.
            flood = now > size + 1024 * 1024 or now < size
            pause, size = LOG_CHECK_SECONDS / 10 if flood else LOG_CHECK_SECONDS, now
            if code is not None or time.monotonic() >= end:
                return code

    def _disk_full_message(self) -> str:
        return (
            f"the disk is full: no space left on the disk holding {self.run_dir}; "
            "free some space and run it again"
        )

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
