"""The ``local`` backend: the embedded engine, state under ``$CSFLOW_HOME``.

- runs: SQLite (``runs.db``); run folders with logs and step files (``runs/ID/``);
- jobs: ``jobs/job-<uuid>.json`` (the local job store);
- results: ``results/OWNER/TITLE/JOB_ID/``, laid out as the bucket is;
- model environments: ``envs/``; the model registry: ``registry/``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from csflow import flows
from csflow.engine.launchers import RUNTIME_DIR, Launcher, SubprocessLauncher, WarmLauncher
from csflow.engine.pool import WorkerPool
from csflow.engine.runner import SimulationRunner
from csflow.engine.slots import slot
from csflow.engine.store import RunStore
from csflow.flows import simulate
from csflow.sdk.argo import semantics
from csflow.sdk.backends.local_env import model_environment
from csflow.sdk.backends.local_publish import LocalPublishing
from csflow.sdk.builds.environments import build_environment
from csflow.sdk.core import names
from csflow.sdk.core.contract import JobInputs
from csflow.sdk.core.errors import BadInput, CsflowError, NotFound
from csflow.sdk.core.fileutil import write_json_atomic
from csflow.sdk.core.model_config import ModelConfig, find_model_config
from csflow.sdk.core.run import Run
from csflow.sdk.core.settings import Settings
from csflow.sdk.core.status import RunStatus
from csflow.sdk.core.steps import MODEL, PLATFORM
from csflow.sdk.dataplane.jobstore import open_job_store
from csflow.sdk.dataplane.secrets import open_secret_store
from csflow.sdk.dataplane.storage import open_storage, read_outputs, run_prefix, write_downloadables
from csflow.sdk.ops.redis_acl import model_job_store_env
from csflow.sdk.registry.local import ModelVersion, Registry

Progress = Callable[[str], None]
EventSink = Callable[[str, str, dict[str, Any]], None]


class LocalBackend(LocalPublishing):
    def __init__(self, settings: Settings):
        self.settings = settings
        self.home = settings.home
        self.home.mkdir(parents=True, exist_ok=True)
        self.store = RunStore(self.home / "runs.db")
        self.registry = Registry(self.home)
        self.job_store_url = settings.jobs_url
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
    ) -> Run:
        owner, title = names.parse_model_name(model)
        version = self.resolve(owner, title, tag, progress)
        if warm_up:
            self.warm_up(version)
        job_id = str(uuid.uuid4())
        workflow = self.workflow(version, job_id)
        run_dir = self.run_dir(job_id)
        run_dir.mkdir(parents=True)
        write_json_atomic(run_dir / "workflow.json", workflow)
        open_job_store(self.job_store_url).put(
            job_id, {"owner": owner, "title": title, "inputs": inputs.model_dump()}
        )
        return self.store.create(
            Run(
                id=job_id,
                owner=owner,
                title=title,
                tag=version.tag,
                status=RunStatus.PENDING,
                extra={"requested_tag": tag or "latest"},
            )
        )

    def workflow(self, version: ModelVersion, job_id: str) -> dict[str, Any]:
        """The simulation Workflow, exactly as Argo would receive it."""
        return simulate.simulation_workflow_for(version, job_id, self.settings.registry).to_dict()

    def render(self, model: str, inputs: JobInputs, tag: str | None = None) -> dict[str, Any]:
        owner, title = names.parse_model_name(model)
        return self.workflow(self.resolve(owner, title, tag), str(uuid.uuid4()))

    def run_dir(self, job_id: str) -> Path:
        return self.home / "runs" / names.check_job_id(job_id)

    def execute(self, job_id: str, events: EventSink | None = None) -> Run:
        """Run a submitted simulation in this process (waits for a free slot)."""
        run = self.store.get(job_id)
        self.store.update(job_id, engine_pid=os.getpid())
        with slot(self.home / "slots", self.settings.max_parallel):
            if self.store.get(job_id).done:  # cancelled while it waited
                return self.store.get(job_id)
            if run.kind == "publish":
                self._execute_publish(run, events)
            else:
                self._execute(run, events)
        return self.store.get(job_id)

    def _environments(self, owner: str, title: str, version: ModelVersion) -> tuple[dict, dict]:
        """The model steps' and the platform steps' process environments."""
        secret_store = open_secret_store(self.settings)
        secrets = secret_store.values(owner, title, version.config.get("secrets", []))
        # A redis:// job store: the model reads its job as the read-only ACL user.
        secrets.update(model_job_store_env(secret_store, self.job_store_url))
        return model_environment(version, self.job_store_url, secrets), self._platform_environment(
            secret_store
        )

    def _platform_environment(self, secret_store) -> dict[str, str]:
        platform_env = {
            **os.environ,
            "CSFLOW_STORAGE_URL": self.settings.results_url,
            "CSFLOW_HOME": str(self.home),
        }
        if self.settings.webapp_url:
            platform_env["CSFLOW_WEBAPP_URL"] = self.settings.webapp_url
            token = secret_store.values(None, None, [self.settings.webapp_token_secret])
            if token:
                platform_env["CSFLOW_WEBAPP_TOKEN"] = token[self.settings.webapp_token_secret]
        return platform_env

    def _worker_specs(self, version: ModelVersion, model_env: dict, platform_env: dict) -> dict:
        return {
            MODEL: (
                str(version.python),
                "model_step:main",
                [version.config["functions"]],
                model_env,
            ),
            PLATFORM: (sys.executable, "csflow.runtime.platform_step:main", [], platform_env),
        }

    def _launchers(
        self, version: ModelVersion, model_env: dict, platform_env: dict
    ) -> dict[str, Launcher]:
        if not self.settings.warm_workers:
            return {
                MODEL: SubprocessLauncher(
                    [str(version.python), str(RUNTIME_DIR / "model_step.py")], model_env
                ),
                PLATFORM: SubprocessLauncher(
                    [sys.executable, "-m", "csflow.runtime.platform_step"], platform_env
                ),
            }
        specs = self._worker_specs(version, model_env, platform_env)
        return {kind: self.pool.acquire(*spec) for kind, spec in specs.items()}

    def warm_up(self, version: ModelVersion) -> None:
        """Start the version's workers now, so the model imports while the engine
        records the job and compiles the flow."""
        if self.settings.warm_workers:
            for spec in self._worker_specs(
                version, *self._environments(version.owner, version.title, version)
            ).values():
                self.pool.prestart(*spec)

    def _execute(self, run: Run, events: EventSink | None) -> None:
        run_dir = self.run_dir(run.id)
        try:
            version = self.registry.resolve(run.owner, run.title, run.tag)
            template = flows.compiled("simulate", cache_dir=self.home / "cache")
            workflow = semantics.merge_workflow(
                json.loads((run_dir / "workflow.json").read_text()), template
            )
            launchers = self._launchers(version, *self._environments(run.owner, run.title, version))
        except CsflowError as exc:
            self.store.finish(run.id, RunStatus.FAIL, str(exc))
            return
        try:
            status, reason = SimulationRunner(
                self.store, run_dir, launchers, events=events
            ).execute(run.id, workflow)
        finally:
            for launcher in launchers.values():
                if isinstance(launcher, WarmLauncher):
                    self.pool.release(launcher)
        model_version = ""
        version_file = run_dir / "work" / "inputs" / "model-version"
        if version_file.is_file():
            model_version = version_file.read_text().strip()
        errors_warnings_file = run_dir / "work" / "inputs" / "errors-warnings"
        errors_warnings = (
            json.loads(errors_warnings_file.read_text()) if errors_warnings_file.is_file() else {}
        )
        uri = ""
        if status == "SUCCESS":
            uri = open_storage(self.settings.results_url).uri(
                run_prefix(run.owner, run.title, run.id)
            )
        self.store.finish(
            run.id,
            status,
            reason,
            model_version=model_version,
            errors_warnings=errors_warnings,
            results_uri=uri,
        )

    def detach(self, job_id: str) -> None:
        """Run the simulation in a background engine process; return at once."""
        log = open(self.run_dir(job_id) / "engine.log", "ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "csflow.sdk.backends.local_engine", job_id],
            env={**os.environ, "CSFLOW_HOME": str(self.home)},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.store.update(job_id, engine_pid=process.pid)

    # -- reading runs ---------------------------------------------------------

    def status(self, job_id: str) -> Run:
        return self.store.get(job_id)

    def list(self, limit: int = 50) -> list[Run]:
        return self.store.list(limit)

    def wait(self, job_id: str, timeout: float | None = None, poll: float = 0.2) -> Run:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            run = self.store.get(job_id)
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

    def _finished(self, job_id: str) -> Run:
        run = self.store.get(job_id)
        if run.status != "SUCCESS":
            raise BadInput(f"run {run.id} has no results: it is {run.status}")
        return run

    def results(self, job_id: str) -> dict[str, Any]:
        run = self._finished(job_id)
        return read_outputs(open_storage(self.settings.results_url), run.owner, run.title, run.id)

    def download(self, job_id: str, out: Path) -> list[Path]:
        """Write the downloadable outputs of a run as files under ``out``."""
        run = self._finished(job_id)
        return write_downloadables(
            open_storage(self.settings.results_url), run.owner, run.title, run.id, out
        )

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
        return self.store.get(job_id)
