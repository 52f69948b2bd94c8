"""Publishing on the embedded engine.

``LocalPublishing`` is the ``local`` backend's part for the publish flow
(``flows/publish.py``): it records a publish run in the same run store as
simulations (``kind = "publish"``), so ``csflow runs list/show/logs`` show it;
the backend executes the compiled ``csflow-publish`` template with the same
runner as a simulation. The step table (``sdk/core/steps.py``) names each
step's program; ``_prepare_publish`` says where each environment is:

- ``platform`` (``csflow-publish-step``: clone, verify, push, deploy): csflow's
  interpreter, building with uv;
- ``build`` (``csflow-image-build``): ``runtime/local_build.py`` builds the
  model's uv environment from the same build context the image is built from
  on a cluster, in a scrubbed environment (no csflow credentials);
- ``model`` (``csflow-contract-tests``): the environment the build just made,
  found from the step's image (``REGISTRY/owner_title:TAG``), with the model's
  own secrets and nothing else.

Approval: the flow's suspend step leaves the run RunStatus.SUSPENDED with no engine
process; ``approve`` marks it approved and the next execution resumes it
(finished steps are not run again). ``model_inputs`` runs ``get_inputs`` in a
version's environment for ``csflow models inputs``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from csflow.engine.launchers import Launcher, LaunchError
from csflow.engine.runner import LauncherFactory
from csflow.engine.store import RunStore
from csflow.runtime import step_env
from csflow.runtime.contract_tests import EXIT_BAD_META as CONTRACT_TESTS_BAD_META
from csflow.sdk.argo import semantics
from csflow.sdk.backends.base import EventSink, Progress
from csflow.sdk.backends.local_env import LocalEnvironment, model_process_env
from csflow.sdk.builds.environments import build_process_env
from csflow.sdk.core.errors import BadInput, RunFailed
from csflow.sdk.core.fileutil import write_json_atomic
from csflow.sdk.core.names import model_image
from csflow.sdk.core.reasons import reason_line
from csflow.sdk.core.run import Run
from csflow.sdk.core.settings import Settings
from csflow.sdk.core.status import RunStatus, StepPhase
from csflow.sdk.core.steps import (
    BUILD,
    CONTRACT_TESTS_COMMAND,
    MODEL,
    PLATFORM,
    StepProgram,
    program_for,
)
from csflow.sdk.dataplane.secrets import open_secret_store
from csflow.sdk.registry.local import ModelVersion, version_dir

INPUTS_TIMEOUT = 300


class LocalPublishing:
    """Mixed into ``LocalBackend``, which brings what is declared below."""

    if TYPE_CHECKING:
        settings: Settings
        home: Path
        store: RunStore

        def run_dir(self, job_id: str) -> Path: ...

        def resolve(
            self, owner: str, title: str, tag: str | None, progress: Progress = ...
        ) -> ModelVersion: ...

        def launcher(self, program: StepProgram, where: LocalEnvironment) -> Launcher: ...

        def _platform_environment(self, secret_store) -> dict[str, str]: ...

    # -- publishing -------------------------------------------------------------

    def submit_publish(self, config_path: str | Path, require_approval: bool = False) -> Run:
        """Check the config (one-line errors) and record the publish run."""
        from csflow.flows import publish
        from csflow.sdk.core.model_config import load_model_config

        config = load_model_config(config_path)
        if config.source.path is not None:
            config.source_dir()  # an unreachable path fails now, not in a step
        run_id = str(uuid.uuid4())
        workflow = publish.publish_workflow_for(
            config,
            run_id,
            self.settings.registry,
            require_approval,
            config_dir=str(Path(config_path).resolve().parent),
        ).to_dict()
        run_dir = self.run_dir(run_id)
        run_dir.mkdir(parents=True)
        write_json_atomic(run_dir / "workflow.json", workflow)
        return self.store.create(
            Run(
                id=run_id,
                kind="publish",
                owner=config.owner,
                title=config.title,
                tag="",
                status=RunStatus.PENDING,
                extra={
                    "config": str(Path(config_path).resolve()),
                    "require_approval": require_approval,
                },
            )
        )

    def _prepare_publish(
        self, run: Run, events: EventSink | None
    ) -> tuple[LauncherFactory, EventSink, dict[str, dict[str, Any]] | None]:
        """The publish's launchers (the model's once the build has made its
        environment), its events (the clone step sets the run's tag), and the
        finished steps' records if it resumes after its approval."""
        clone_dir = self.run_dir(run.id) / "work" / "clone"

        def on_event(step: str, phase: str, info: dict[str, Any]) -> None:
            if step == "clone" and phase == StepPhase.SUCCEEDED:
                self.store.update(run.id, tag=(clone_dir / "content-tag").read_text().strip())
            if events is not None:
                events(step, phase, info)

        secret_store = open_secret_store(self.settings)
        where = {
            PLATFORM: LocalEnvironment(
                sys.executable,
                {**self._platform_environment(secret_store), step_env.BUILDER.name: "uv"},
            ),
            BUILD: LocalEnvironment(
                sys.executable, {**build_process_env(), step_env.HOME.name: str(self.home)}
            ),
        }

        def launch(program: StepProgram, image: str) -> Launcher:
            if program.environment != MODEL:
                return self.launcher(program, where[program.environment])
            version = self.built_version(run.owner, run.title, image)
            return self.launcher(
                program,
                LocalEnvironment(str(version.python), model_process_env(version, secret_store)),
            )

        return launch, on_event, run.steps if run.extra.get("approved") else None

    def _finish_publish(self, run: Run, status: str, reason: str) -> None:
        if status == RunStatus.SUSPENDED:
            # Unless it was cancelled meanwhile: a cancel wins.
            self.store.update_if(
                run.id,
                RunStatus.RUNNING,
                status=RunStatus.SUSPENDED,
                reason=reason,
                engine_pid=None,
            )
            return
        report = self.publish_report(run.id) or {}
        self.store.finish(run.id, status, reason, model_version=report.get("version", ""))

    def approve(self, run_id: str) -> Run:
        """Let a publish waiting at its approval step go on (it runs again with
        ``execute`` or ``detach``)."""
        run = self.store.get(run_id)
        if run.kind != "publish":
            raise BadInput(f"run {run.id} is a {run.kind} run, not a publish")
        if run.status != RunStatus.SUSPENDED:
            raise BadInput(f"publish {run.id} is {run.status}, not waiting for approval")
        extra = {**run.extra, "approved": True, "approved_at": time.time()}
        if not self.store.update_if(
            run.id, RunStatus.SUSPENDED, status=RunStatus.PENDING, reason="", extra=extra
        ):
            raise BadInput(f"publish {run.id} was approved or cancelled meanwhile")
        return self.store.get(run.id)

    def publish_report(self, run_id: str) -> dict[str, Any] | None:
        """The contract tests' report (the ``verify`` step's, else the model side's)."""
        run = self.store.get(run_id)
        work = self.run_dir(run.id) / "work"
        for path in (work / "verify" / "test-report.json", work / "test" / "test-results.json"):
            if path.is_file():
                return json.loads(path.read_text())
        return None

    def built_version(self, owner: str, title: str, image: str) -> ModelVersion:
        """The uv environment that stands in for ``image`` (built, maybe not yet pushed)."""
        tag = image.rpartition(":")[2]
        if image != model_image(self.settings.registry, owner, title, tag):
            raise semantics.SpecError(f"image {image!r} is not {owner}/{title}'s")
        path = version_dir(self.home, owner, title, tag)
        try:
            record = json.loads((path / "version.json").read_text())
        except FileNotFoundError:
            raise LaunchError(f"{owner}/{title}:{tag} has not been built") from None
        return ModelVersion(owner, title, tag, record, path)

    # -- a version's inputs ---------------------------------------------------------

    def model_inputs(
        self,
        owner: str,
        title: str,
        meta_param_dict: dict[str, Any] | None = None,
        tag: str | None = None,
        progress: Progress = lambda _: None,
    ) -> dict[str, Any]:
        """``get_version`` and ``get_inputs``: from the inputs cache for the default
        meta parameters, computed in the model's environment otherwise."""
        from csflow.sdk.core.contract import flat_meta_param_dict
        from csflow.sdk.registry.inputs_cache import InputsCache, serves

        meta = flat_meta_param_dict(meta_param_dict or {})
        version = self.resolve(owner, title, tag, progress)
        cache = InputsCache(self.home)
        entry = cache.get(owner, title, version.tag)
        if entry is not None and serves(entry, meta):
            return {**entry, "meta_param_dict": meta, "tag": version.tag, "source": "cache"}
        started = time.perf_counter()
        computed = self._compute_inputs(version, meta)
        computed["seconds"] = round(time.perf_counter() - started, 3)
        if not meta:  # the defaults: keep them (the tag names immutable content)
            cache.put(owner, title, version.tag, computed)
        return {**computed, "tag": version.tag, "source": "computed"}

    def _compute_inputs(self, version: ModelVersion, meta: dict[str, Any]) -> dict[str, Any]:
        # The contract tests' program has an ``inputs`` command: get_inputs alone.
        program = program_for(CONTRACT_TESTS_COMMAND, MODEL)
        with tempfile.TemporaryDirectory(prefix="csflow-inputs-") as tmp:
            out = Path(tmp) / "inputs.json"
            try:
                result = subprocess.run(
                    [
                        *program.argv(str(version.python)),
                        "inputs",
                        "--meta",
                        json.dumps(meta),
                        "--out",
                        str(out),
                    ],
                    cwd=tmp,
                    env=model_process_env(version, open_secret_store(self.settings)),
                    capture_output=True,
                    text=True,
                    timeout=INPUTS_TIMEOUT,
                )
            except subprocess.TimeoutExpired:
                raise RunFailed(
                    f"{version.name}: get_inputs did not finish in {INPUTS_TIMEOUT}s"
                ) from None
            why = reason_line(result.stderr or result.stdout) or "no output"
            if result.returncode == CONTRACT_TESTS_BAD_META:
                raise BadInput(f"{version.name}: {why}")
            if result.returncode != 0:
                raise RunFailed(f"{version.name}: get_inputs failed: {why}")
            return json.loads(out.read_text())
