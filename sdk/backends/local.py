"""The ``local`` backend: the embedded engine, state under ``$CSFLOW_HOME``.

- runs: SQLite (``runs.db``); run folders with logs and step files (``runs/ID/``);
- jobs: ``jobs/job-<uuid>.json`` (the local job store);
- results: ``results/OWNER/TITLE/JOB_ID/``, laid out as the bucket is;
- model environments: ``envs/``; the model registry: ``registry/``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

from csflow import flows
from csflow.engine.launchers import Launcher, SubprocessLauncher
from csflow.engine.pool import WorkerPool
from csflow.engine.runner import STOP_REASONS, LauncherFactory, WorkflowRunner
from csflow.engine.slots import slot
from csflow.engine.store import RunStore, _pid_alive, prepare_home
from csflow.runtime import step_env
from csflow.sdk.argo import semantics
from csflow.sdk.backends.base import (
    EventSink,
    Progress,
    ResultCaching,
    RunResults,
    SimulationWorkflows,
    put_jobs,
    sweep_jobs,
)
from csflow.sdk.backends.local_env import LocalEnvironment, model_process_env
from csflow.sdk.backends.local_publish import LocalPublishing
from csflow.sdk.builds import debian
from csflow.sdk.builds.environments import build_environment
from csflow.sdk.core import names
from csflow.sdk.core.contract import JobInputs
from csflow.sdk.core.errors import CsflowError, NotFound
from csflow.sdk.core.fileutil import write_json_atomic
from csflow.sdk.core.model_config import ModelConfig, find_model_config
from csflow.sdk.core.run import RUN_OUTPUTS, Run, output_fields
from csflow.sdk.core.settings import Settings
from csflow.sdk.core.status import RunStatus, StepPhase
from csflow.sdk.core.steps import (
    MODEL,
    MODEL_STEP_COMMAND,
    PLATFORM,
    PLATFORM_STEP_COMMAND,
    StepProgram,
    program_for,
)
from csflow.sdk.core.sweep import POINT_TASK, SweepAxis
from csflow.sdk.dataplane.jobstore import open_job_store
from csflow.sdk.dataplane.secrets import open_secret_store
from csflow.sdk.registry.local import ModelVersion, Registry
from csflow.sdk.registry.views import RegistryViews

# The programs a simulation's steps run (flows/simulate.py): their warm workers start ahead.
SIMULATION_PROGRAMS = (
    program_for(MODEL_STEP_COMMAND, MODEL),
    program_for(PLATFORM_STEP_COMMAND, PLATFORM),
)


# A step's phases until it has ended.
_UNFINISHED = (StepPhase.PENDING, StepPhase.RUNNING, StepPhase.SUSPENDED)


def _worker(program: StepProgram, where: LocalEnvironment) -> tuple[str, str, list[str], dict]:
    """A warm worker for a program (the pool's key): interpreter, entry, preloads, environment."""
    return where.python, program.entry, [*program.preload, *where.preload], where.env


class LocalBackend(SimulationWorkflows, RunResults, ResultCaching, RegistryViews, LocalPublishing):
    def __init__(self, settings: Settings):
        self.settings = settings
        self.home = settings.home
        # One line naming the home if it cannot be a folder; a read-only home opens
        # its store read-only (reading works, recording a run fails in one line).
        prepare_home(self.home)
        self.store = RunStore(self.home / "runs.db", runs_dir=self.home / "runs")
        self.registry = Registry(self.home)
        self.pool = WorkerPool(self.home / "workers")

    # -- models -------------------------------------------------------------

    def config(self, owner: str, title: str) -> ModelConfig:
        return find_model_config(owner, title, self.settings.config_dirs)

    def resolve(
        self, owner: str, title: str, tag: str | None, progress: Progress = lambda _: None
    ) -> ModelVersion:
        """``--tag`` names a published tag or version. Without one: ``latest`` if
        the model was published, else the config's current content, built on demand."""
        if tag is not None:
            return self.registry.resolve(owner, title, tag)
        if "latest" in self.registry.document(owner, title)["tags"]:
            return self.registry.resolve(owner, title, "latest")
        record = build_environment(self.config(owner, title), self.home, progress)
        self.registry.add_version(record)
        return self.registry.resolve(owner, title, record["tag"])

    # -- simulations --------------------------------------------------------

    def submit(
        self,
        model: str,
        inputs: JobInputs,
        tag: str | None = None,
        progress: Progress = lambda _: None,
        warm_up: bool = False,
        no_cache: bool = False,
    ) -> Run:
        version = self._version(model, tag, progress, warm_up=False)
        key = self.cache_key_for(version, inputs, no_cache)

        def run(job_id: str) -> Run:
            if warm_up:  # (not for a cache hit: nothing will run)
                self.warm_up(version)
            workflow = self.workflow(version, job_id)
            jobs = {job_id: inputs.model_dump()}
            extra = {"cache_key": key} if key else None
            return self._record(version, job_id, "simulate", workflow, jobs, tag, extra)

        return self.through_cache(version, inputs, key, tag, run, progress)

    def record_cached(self, run: Run) -> Run:
        """A cache hit's record (``ResultCaching``): in the run store, as any run."""
        return self.store.create(run)

    def submit_sweep(
        self,
        model: str,
        inputs: JobInputs,
        axis: SweepAxis,
        tag: str | None = None,
        progress: Progress = lambda _: None,
        warm_up: bool = False,
    ) -> Run:
        version = self._version(model, tag, progress, warm_up)
        job_id = str(uuid.uuid4())
        points, jobs = sweep_jobs(inputs, axis)
        workflow = self.sweep_workflow(version, job_id, axis, points)
        extra = {"sweep": {"axis": axis.name, "points": points}}
        return self._record(version, job_id, "sweep", workflow, jobs, tag, extra)

    def _version(self, model: str, tag: str | None, progress: Progress, warm_up: bool):
        """The version a submission runs, its workers started now if ``warm_up``."""
        owner, title = names.parse_model_name(model)
        version = self.resolve(owner, title, tag, progress)
        # Before any job is written: a run that would fail deep inside the model stops here.
        debian.require_on_host(version.config.get("system_packages", []), version.name)
        if warm_up:
            self.warm_up(version)
        return version

    def _record(
        self,
        version: ModelVersion,
        job_id: str,
        kind: str,
        workflow: dict,
        jobs: dict[str, dict],
        tag: str | None,
        extra: dict | None = None,
    ) -> Run:
        """A submitted simulation or sweep: its jobs in the job store, its Workflow in
        its run folder, its record PENDING."""
        put_jobs(open_job_store(self.job_store_url), version.owner, version.title, jobs)
        run_dir = self.run_dir(job_id)
        run_dir.mkdir(parents=True)
        write_json_atomic(run_dir / "workflow.json", workflow)
        return self.store.create(
            Run(
                id=job_id,
                owner=version.owner,
                title=version.title,
                tag=version.tag,
                kind=kind,
                status=RunStatus.PENDING,
                extra={"requested_tag": tag or "latest", **(extra or {})},
            )
        )

    def run_dir(self, job_id: str) -> Path:
        return self.home / "runs" / names.check_job_id(job_id)

    def execute(self, job_id: str, events: EventSink | None = None) -> Run:
        """Run a submitted simulation or publish in this process (waits for a free slot).
        Ctrl-C cancels the run: its steps are stopped and it is recorded CANCELLED
        (the exit handler reporting it), then ``KeyboardInterrupt`` goes on to the
        caller. Whatever else ends this call, the run is left final, no step Running."""
        run = self.store.get(job_id)
        self.store.update(job_id, engine_pid=os.getpid())
        try:
            with slot(self.home / "slots", self.settings.max_parallel):
                if self.store.get(job_id).done:  # cancelled while it waited
                    return self.store.get(job_id)
                self._run(run, events)
        except BaseException as exc:
            self._ended_by(job_id, exc)
            raise
        return self.store.get(job_id)

    def _ended_by(self, job_id: str, exc: BaseException) -> None:
        """The run's record when ``execute`` ends by an exception: final (Ctrl-C:
        CANCELLED; anything else: INTERRUPTED, with what it was), no step Running.
        Best effort: the exception itself is what the caller gets."""
        try:
            if isinstance(exc, KeyboardInterrupt):
                self.store.finish(job_id, RunStatus.CANCELLED, STOP_REASONS[signal.SIGINT])
            else:
                what = f"{type(exc).__name__}: {exc}".rstrip(": ")
                self.store.finish(job_id, RunStatus.INTERRUPTED, f"the engine failed: {what}")
            self._settled(self.store.get(job_id), engine_gone=True)
        except Exception:
            pass

    def _run(self, run: Run, events: EventSink | None) -> None:
        """Run a simulation's or a publish's Workflow (its own, merged with the compiled
        flow) with one runner; each kind prepares its launchers and records its end."""
        run = self.store.get(run.id)
        prepare, finish = {
            "simulate": (self._prepare_simulation, self._finish_simulation),
            "publish": (self._prepare_publish, self._finish_publish),
            "sweep": (self._prepare_simulation, self._finish_simulation),
        }[run.kind]
        run_dir = self.run_dir(run.id)
        try:
            template = flows.compiled(run.kind, cache_dir=self.home / "cache")
            workflow = semantics.merge_workflow(
                json.loads((run_dir / "workflow.json").read_text()), template
            )
            launch, events, resume = prepare(run, events)
        except CsflowError as exc:
            self.store.finish(run.id, RunStatus.FAIL, str(exc))
            return
        runner = WorkflowRunner(self.store, run_dir, launch, events=events)
        try:
            status, reason = runner.execute(run.id, workflow, resume=resume)
        finally:
            runner.close()
        finish(run, status, reason)
        if runner.stopped_by == signal.SIGINT:  # recorded: now the caller's Ctrl-C
            ended = "was cancelled" if status == RunStatus.CANCELLED else f"ended {status}"
            raise KeyboardInterrupt(f"run {run.id} {ended}")

    def launcher(self, program: StepProgram, where: LocalEnvironment) -> Launcher:
        """A step program's launcher: a warm worker lent by the pool (``warm`` programs,
        with ``warm_workers``), else a fresh interpreter per step."""
        if self.settings.warm_workers and program.warm:
            return self.pool.lend(*_worker(program, where))
        return SubprocessLauncher(program.argv(where.python), where.env)

    def _simulation_environments(self, version: ModelVersion) -> dict[str, LocalEnvironment]:
        """Where a simulation's steps run: model steps with the version's interpreter
        (a warm worker imports the model too), platform steps with csflow's."""
        secret_store = open_secret_store(self.settings)
        return {
            MODEL: LocalEnvironment(
                str(version.python),
                model_process_env(version, secret_store, self.job_store_url),
                (version.config["functions"],),
            ),
            PLATFORM: LocalEnvironment(sys.executable, self._platform_environment(secret_store)),
        }

    def _platform_environment(self, secret_store) -> dict[str, str]:
        platform_env = {
            **os.environ,
            step_env.STORAGE_URL.name: self.settings.results_url,
            step_env.HOME.name: str(self.home),
        }
        if self.settings.webapp_url:
            platform_env[step_env.WEBAPP_URL.name] = self.settings.webapp_url
            token = secret_store.values(None, None, [self.settings.webapp_token_secret])
            if token:
                platform_env[step_env.WEBAPP_TOKEN.name] = token[self.settings.webapp_token_secret]
        return platform_env

    def _prestart(self, environments: dict[str, LocalEnvironment]) -> None:
        if self.settings.warm_workers:
            for program in SIMULATION_PROGRAMS:
                if program.warm:
                    self.pool.prestart(*_worker(program, environments[program.environment]))

    def warm_up(self, version: ModelVersion) -> None:
        """Start the version's workers now, so the model imports while the engine
        records the job and compiles the flow."""
        if self.settings.warm_workers:
            self._prestart(self._simulation_environments(version))

    def _prepare_simulation(
        self, run: Run, events: EventSink | None
    ) -> tuple[LauncherFactory, EventSink | None, None]:
        version = self.registry.resolve(run.owner, run.title, run.tag)
        environments = self._simulation_environments(version)
        self._prestart(environments)  # (started already, if submitted with warm_up)

        def launch(program: StepProgram, image: str) -> Launcher:
            if program.environment not in environments:
                raise semantics.SpecError(f"a simulation has no {program.environment} environment")
            return self.launcher(program, environments[program.environment])

        return launch, events, None

    def _finish_simulation(self, run: Run, status: str, reason: str) -> None:
        # What the model said of itself and of the inputs: its inputs step's outputs
        # (a sweep's: its first point's).
        inputs = self.run_dir(run.id) / "work" / "inputs"
        if run.kind == "sweep":
            first = run.extra["sweep"]["points"][0]["job_id"]
            inputs = inputs.with_name(f"{POINT_TASK}(0:{first}).inputs")
        outputs = {n: (inputs / n).read_text() for n in RUN_OUTPUTS if (inputs / n).is_file()}
        fields = output_fields(outputs)
        if status == RunStatus.SUCCESS:  # kept before the run reads SUCCESS to its waiters
            self.keep_result(dataclasses.replace(run, **fields))
        self.store.finish(
            run.id,
            status,
            reason,
            **fields,
            results_uri=self.results_uri(run) if status == RunStatus.SUCCESS else "",
        )
        self.release_claim(run)

    def detach(self, job_id: str) -> None:
        """Run the simulation in a background engine process; return at once. The
        engine gets this backend's settings (a client's ``webapp_url``, storage and
        job store too), so a detached run reports and stores as an attached one."""
        log = open(self.run_dir(job_id) / "engine.log", "ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "csflow.sdk.backends.local_engine", job_id],
            env={**os.environ, **self.settings.environment(), step_env.HOME.name: str(self.home)},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.store.update(job_id, engine_pid=process.pid)

    # -- reading runs ---------------------------------------------------------

    def status(self, job_id: str) -> Run:
        return self._settled(self.store.get(job_id))

    def find(self, job_id: str) -> Run | None:
        try:
            return self.status(job_id)
        except NotFound:  # (a home without a run store holds no run either)
            return None

    def list(self, limit: int = 50) -> list[Run]:
        return [self._settled(run) for run in self.store.list(limit)]

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 0.2) -> Run:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self._settled(self.store.get(job_id))
            if run.done:
                return run
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"run {job_id} still {run.status} after {timeout:g}s")
            time.sleep(poll)

    def logs(self, job_id: str, step: str | None = None) -> str:
        run = self.store.get(job_id)
        logs = self.run_dir(run.id) / "logs"
        if step is not None:
            path = logs / f"{step}.log"
            if not path.is_file():
                steps = sorted(
                    p.stem for p in logs.glob("*.log") if not p.stem.startswith("worker-")
                )
                raise NotFound(
                    f"no log for step {step!r} of run {run.id} (steps: {', '.join(steps)})"
                )
            return path.read_text(errors="replace")
        parts = []
        for name in [*run.steps]:
            path = logs / f"{name}.log"
            if path.is_file():
                parts.append(f"==> {name} <==\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    @property
    def job_store_url(self) -> str:
        return self.settings.jobs_url

    def results_url(self) -> str:
        return self.settings.results_url

    def cancel(self, job_id: str) -> Run:
        run = self.store.get(job_id)
        if run.done:
            return run
        self.store.finish(run.id, "CANCELLED", "cancelled by the user")
        if run.engine_pid and run.engine_pid != os.getpid():
            try:
                os.kill(run.engine_pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        return self._settled(self.store.get(job_id))

    def _settled(self, run: Run, engine_gone: bool = False) -> Run:
        """A final run whose engine is gone, or is not running it any more
        (``engine_gone``), has no step left Running, Pending or Suspended: its engine
        was killed (INTERRUPTED), or it was cancelled where no engine could record
        its steps (a publish waiting for approval). Such steps are recorded Failed
        with the run's reason, as Argo fails the nodes of a stopped workflow. A live
        engine records its steps itself (a cancel: ``Failed: cancelled``)."""
        unfinished = [name for name, step in run.steps.items() if step.get("phase") in _UNFINISHED]
        if not unfinished or not run.done:
            return run
        if not engine_gone and run.status != RunStatus.INTERRUPTED and _pid_alive(run.engine_pid):
            return run
        info = {
            "phase": StepPhase.FAILED,
            "message": run.reason or str(run.status).lower(),
            "finished": run.finished or time.time(),
        }
        for name in unfinished:
            try:
                self.store.set_step(run.id, name, **info)
            except CsflowError:  # a store that cannot be written: shown so, recorded later
                pass
            run.steps[name] = {**run.steps[name], **info}
        return run
