"""Publishing on the embedded engine, and the model registry behind ``csflow models``.

``LocalPublishing`` is the ``local`` backend's part for the publish flow
(``flows/publish.py``): it records a publish run in the same run store as
simulations (``kind = "publish"``), so ``csflow runs list/show/logs`` show it,
and executes the compiled ``csflow-publish`` template with ``PublishRunner``.

``PublishRunner`` is the simulate runner with three more programs:

- ``csflow-publish-step`` (platform): clone, verify, push, deploy;
- ``csflow-image-build`` (the ``build`` environment): ``runtime/local_build.py``
  builds the model's uv environment from the same build context the image
  is built from on a cluster, in a scrubbed environment (no csflow credentials);
- ``csflow-contract-tests`` (model): in the environment the build just made,
  found from the step's image (``REGISTRY/owner_title:TAG``), with the model's
  own secrets and nothing else.

Approval: the flow's suspend step leaves the run RunStatus.SUSPENDED with no engine
process; ``approve`` marks it approved and the next execution resumes it
(finished steps are not run again).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from csflow.engine.launchers import (
    RUNTIME_DIR,
    Launcher,
    LaunchError,
    SubprocessLauncher,
    WarmLauncher,
)
from csflow.engine.runner import SimulationRunner
from csflow.sdk.argo import semantics
from csflow.sdk.backends.local_env import model_environment
from csflow.sdk.builds.environments import build_process_env
from csflow.sdk.core import names
from csflow.sdk.core.errors import BadInput, CsflowError, NotFound, RunFailed
from csflow.sdk.core.fileutil import write_json_atomic
from csflow.sdk.core.names import model_image
from csflow.sdk.core.run import Run
from csflow.sdk.core.status import RunStatus, StepPhase
from csflow.sdk.core.steps import (
    BUILD,
    CONTRACT_TESTS_COMMAND,
    IMAGE_BUILD_COMMAND,
    MODEL,
    PLATFORM,
    PUBLISH_STEP_COMMAND,
)
from csflow.sdk.registry.local import MOVING_TAGS, ModelVersion, version_dir

EventSink = Callable[[str, str, dict[str, Any]], None]
Progress = Callable[[str], None]

# Room for get_inputs over the meta-parameter grid, on top of the model's timeout.
TEST_TIMEOUT_MARGIN = 600
INPUTS_TIMEOUT = 300
_PUBLISH_PRELOAD = [
    "csflow.sdk.builds.environments",
    "csflow.runtime.platform_step",
    "csflow.sdk.registry.local",
]


class PublishRunner(SimulationRunner):
    """Runs a publish Workflow: launchers are made per program, and the model's
    launcher only once the build has made its environment."""

    def __init__(
        self,
        backend,
        run: Run,
        run_dir: Path,
        platform_env: dict[str, str],
        events: EventSink | None = None,
    ):
        super().__init__(backend.store, run_dir, {}, events=events)
        self.backend = backend
        self.owner, self.title = run.owner, run.title
        self.platform_env = platform_env
        self.made: dict[tuple, Launcher] = {}

    def launcher(self, kind: str, command: list[str], image: str) -> Launcher:
        key = (kind, tuple(command), image)
        if key not in self.made:
            self.made[key] = self._make(kind, command, image)
        return self.made[key]

    def _make(self, kind: str, command: list[str], image: str) -> Launcher:
        if (kind, command) == (PLATFORM, PUBLISH_STEP_COMMAND):
            if self.backend.settings.warm_workers:
                return self.backend.pool.acquire(
                    sys.executable,
                    "csflow.runtime.publish_step:main",
                    _PUBLISH_PRELOAD,
                    self.platform_env,
                )
            return SubprocessLauncher(
                [sys.executable, "-m", "csflow.runtime.publish_step"], self.platform_env
            )
        if (kind, command) == (BUILD, IMAGE_BUILD_COMMAND):
            env = {**build_process_env(), "CSFLOW_HOME": str(self.backend.home)}
            return SubprocessLauncher([sys.executable, "-m", "csflow.runtime.local_build"], env)
        if (kind, command) == (MODEL, CONTRACT_TESTS_COMMAND):
            version = self.backend.built_version(self.owner, self.title, image)
            config = version.config
            from csflow.sdk.dataplane.secrets import open_secret_store

            secrets = open_secret_store(self.backend.settings).values(
                self.owner, self.title, config.get("secrets", [])
            )
            return SubprocessLauncher(
                [str(version.python), str(RUNTIME_DIR / "contract_tests.py")],
                model_environment(version, "", secrets),
            )
        raise semantics.SpecError(f"the publish engine has no program for {kind} command {command}")

    def close(self) -> None:
        for launcher in self.made.values():
            if isinstance(launcher, WarmLauncher):
                self.backend.pool.release(launcher)
            else:
                launcher.close()


class LocalPublishing:
    """Mixed into ``LocalBackend`` (``settings``, ``home``, ``store``,
    ``registry``, ``pool``, ``run_dir``, ``resolve`` come from it)."""

    # -- publishing -------------------------------------------------------------

    def submit_publish(self, config_path: str | Path, require_approval: bool = False) -> Run:
        """Check the config (one-line errors) and record the publish run."""
        from csflow.flows import publish
        from csflow.sdk.core.model_config import load_model_config

        config = load_model_config(config_path)
        if config.source.path is not None:
            config.source_dir()  # an unreachable path fails now, not in a step
        kube = names.kube_name(config.owner, config.title)
        model_image(
            self.settings.registry, config.owner, config.title, "0"
        )  # a name Docker accepts
        run_id = str(uuid.uuid4())
        workflow = publish.publish_workflow(
            config=config.model_dump(mode="json"),
            config_dir=str(config.config_path.parent),
            run_id=run_id,
            registry=self.settings.registry,
            require_approval=require_approval,
            resources=config.resources.kubernetes(),
            test_timeout=config.timeout + TEST_TIMEOUT_MARGIN,
            model_secret=f"{kube}-secrets",
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

    def _execute_publish(self, run: Run, events: EventSink | None) -> None:
        from csflow import flows
        from csflow.sdk.dataplane.secrets import open_secret_store

        run = self.store.get(run.id)
        run_dir = self.run_dir(run.id)
        clone_dir = run_dir / "work" / "clone"

        def on_event(step: str, phase: str, info: dict[str, Any]) -> None:
            if step == "clone" and phase == StepPhase.SUCCEEDED:
                self.store.update(run.id, tag=(clone_dir / "content-tag").read_text().strip())
            if events is not None:
                events(step, phase, info)

        try:
            template = flows.compiled("publish", cache_dir=self.home / "cache")
            workflow = semantics.merge_workflow(
                json.loads((run_dir / "workflow.json").read_text()), template
            )
            platform_env = {
                **self._platform_environment(open_secret_store(self.settings)),
                "CSFLOW_BUILDER": "uv",
            }
        except CsflowError as exc:
            self.store.finish(run.id, RunStatus.FAIL, str(exc))
            return
        runner = PublishRunner(self, run, run_dir, platform_env, events=on_event)
        try:
            resume = run.steps if run.extra.get("approved") else None
            status, reason = runner.execute(run.id, workflow, resume=resume)
        finally:
            runner.close()
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

    # -- the model registry ---------------------------------------------------------

    def models(self) -> list[dict[str, Any]]:
        rows = []
        for owner, title in self.registry.models():
            doc = self.registry.document(owner, title)
            moves = [h["at"] for h in doc["history"]]
            rows.append(
                {
                    "model": f"{owner}/{title}",
                    "latest": doc["tags"].get("latest"),
                    "staging": doc["tags"].get("staging"),
                    "versions": len(doc["versions"]),
                    "updated": max(moves, default=None),
                }
            )
        return rows

    def model(self, owner: str, title: str) -> dict[str, Any]:
        doc = self.registry.document(owner, title)
        if not doc["versions"]:
            raise NotFound(
                f"{owner}/{title} has no versions; publish it with `csflow publish config/{owner}/{title}.yaml`"
            )
        tags_of: dict[str, list[str]] = {}
        for name, target in doc["tags"].items():
            tags_of.setdefault(target, []).append(name)
        versions = []
        for tag, record in sorted(
            doc["versions"].items(), key=lambda kv: kv[1].get("registered", 0), reverse=True
        ):
            versions.append(
                {
                    "tag": tag,
                    "tags": sorted(tags_of.get(tag, [])),
                    "model_version": record.get("model_version", ""),
                    "built": record.get("built"),
                    "build_seconds": record.get("build_seconds"),
                    "pushed": record.get("pushed"),
                    "python": record.get("python"),
                    "origin": record.get("origin", {"config": record.get("source", "")}),
                    "requirements": record.get("requirements"),
                    "lock_sha256": record.get("lock_sha256"),
                    "tests": record.get("tests"),
                    "image": record.get("image"),
                    "publish_run": record.get("publish_run"),
                }
            )
        return {
            "model": f"{owner}/{title}",
            "tags": doc["tags"],
            "versions": versions,
            "history": doc["history"][-20:],
        }

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
        from csflow.sdk.dataplane.secrets import open_secret_store

        secrets = open_secret_store(self.settings).values(
            version.owner, version.title, version.config.get("secrets", [])
        )
        with tempfile.TemporaryDirectory(prefix="csflow-inputs-") as tmp:
            out = Path(tmp) / "inputs.json"
            try:
                result = subprocess.run(
                    [
                        str(version.python),
                        str(RUNTIME_DIR / "contract_tests.py"),
                        "inputs",
                        "--meta",
                        json.dumps(meta),
                        "--out",
                        str(out),
                    ],
                    cwd=tmp,
                    env=model_environment(version, "", secrets),
                    capture_output=True,
                    text=True,
                    timeout=INPUTS_TIMEOUT,
                )
            except subprocess.TimeoutExpired:
                raise RunFailed(
                    f"{version.name}: get_inputs did not finish in {INPUTS_TIMEOUT}s"
                ) from None
            if result.returncode != 0:
                lines = [ln for ln in (result.stderr or result.stdout).splitlines() if ln.strip()]
                raise RunFailed(
                    f"{version.name}: get_inputs failed: {lines[-1].strip() if lines else 'no output'}"
                )
            return json.loads(out.read_text())

    def promote(self, owner: str, title: str, tag: str, to: str = "latest") -> dict[str, Any]:
        if to not in MOVING_TAGS:
            raise BadInput(f"--to must be one of {', '.join(MOVING_TAGS)}, not {to!r}")
        previous = self.registry.move_tag(owner, title, to, tag, action="promote")
        current = self.registry.document(owner, title)["tags"][to]
        return {
            "model": f"{owner}/{title}",
            "tag": to,
            "from": previous,
            "to": current,
            "webapp": self._tell_webapp(owner, title, {f"{to}_tag": current}),
        }

    def rollback(self, owner: str, title: str, tag_name: str = "latest") -> dict[str, Any]:
        if tag_name not in MOVING_TAGS:
            raise BadInput(f"--tag must be one of {', '.join(MOVING_TAGS)}, not {tag_name!r}")
        previous, current = self.registry.rollback(owner, title, tag_name)
        return {
            "model": f"{owner}/{title}",
            "tag": tag_name,
            "from": previous,
            "to": current,
            "webapp": self._tell_webapp(owner, title, {f"{tag_name}_tag": current}),
        }

    def _tell_webapp(self, owner: str, title: str, body: dict[str, Any]) -> str:
        """Tell the webapp where a tag points now; the move itself already happened,
        so a webapp that cannot be reached is reported, not raised."""
        if not self.settings.webapp_url:
            return "not configured"
        from csflow.sdk.dataplane.secrets import open_secret_store
        from csflow.sdk.dataplane.webapp import WebappClient, WebappError

        secret = self.settings.webapp_token_secret
        token = open_secret_store(self.settings).values(None, None, [secret]).get(secret, "")
        try:
            reply = WebappClient(url=self.settings.webapp_url, token=token).put(
                f"/publish/api/{owner}/{title}/deployments/", body
            )
        except WebappError as exc:
            return f"not told: {exc}"
        return f"told (HTTP {reply.status_code})"
