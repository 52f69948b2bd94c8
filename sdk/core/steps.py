"""What a step is, for every part of csflow: where it runs, what it runs, what it sees.

The flows (``flows/``) declare steps with these names; the embedded engine
(``engine/``) and the argo backend read them back from the compiled document.
A step's template carries the label ``csflow.io/environment``:

- ``model``: model code runs here (the model's image, or its uv environment in
  the embedded engine). It gets the model's own secrets and its job key, nothing
  more, and no Kubernetes API token.
- ``platform``: csflow's own code (the csflow image, or csflow's environment).
  Storage and webapp credentials live only here.
- ``build``: the image builder (in the csflow image on Argo; the embedded
  engine builds a uv environment from the same build context instead).

``PROGRAMS`` is the one table from a step's command to the program that runs it;
the environment variables the programs read are declared in ``runtime/step_env.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from csflow.runtime import step_env

NAMESPACE = "csflow"
LABEL_PREFIX = "csflow.io"
ENVIRONMENT_LABEL = f"{LABEL_PREFIX}/environment"
MODEL, PLATFORM = "model", "platform"

# Steps read and write files under this folder; Argo moves them between pods
# as artifacts, and the embedded engine maps it to a folder of the run.
WORK_DIR = step_env.POD_WORK_DIR

# The programs the images put on PATH (Dockerfile); the embedded engine maps
# each to its local interpreter and module.
MODEL_STEP_COMMAND = ["csflow-model-step"]
PLATFORM_STEP_COMMAND = ["csflow-step"]
# Publishing: the contract tests (model image) and the publish steps (platform).
CONTRACT_TESTS_COMMAND = ["csflow-contract-tests"]
PUBLISH_STEP_COMMAND = ["csflow-publish-step"]
# A third environment: the image builder (in the csflow image on Argo; the
# embedded engine builds a uv environment from the same build context instead).
BUILD = "build"
IMAGE_BUILD_COMMAND = ["csflow-image-build"]

# Service accounts (cluster/argo/rbac.yaml). Pods run as the workflow's account
# (platform steps) or the model's (model steps); neither has Kubernetes API rights
# and no step mounts a token. Argo's executor sidecar gets its own account, whose
# only right is to report task results.
WORKFLOW_SERVICE_ACCOUNT = "csflow-workflow"
MODEL_SERVICE_ACCOUNT = "csflow-model"
EXECUTOR_SERVICE_ACCOUNT = "csflow-executor"
PLATFORM_SECRET = "csflow-platform"
PLATFORM_CONFIG = "csflow-platform"
# The job store's URL and the model's read-only Redis ACL user (get job-*), for
# model steps; keys CSFLOW_JOB_STORE_URL, CSFLOW_REDIS_USER, CSFLOW_REDIS_PASSWORD
# (runtime/step_env.py).
MODEL_JOB_STORE_SECRET = "csflow-model-jobs"

RUN_AS_USER = 1000


@dataclass(frozen=True)
class StepProgram:
    """A step program: the command the images put on PATH, the environment it runs
    in, and the ``csflow.runtime`` module the embedded engine runs for it.
    ``standalone`` programs use the standard library only: they run with the model's
    interpreter, from a copy of their file (``RUNTIME_DIR``), never importing csflow.
    ``warm`` programs may run in a warm worker of the embedded engine that imported
    the program (and ``preload``) once and forks per step."""

    command: str
    environment: str
    module: str
    standalone: bool = False
    warm: bool = False
    preload: tuple[str, ...] = ()

    @property
    def script(self) -> Path:
        return RUNTIME_DIR / f"{self.module}.py"

    @property
    def qualified_module(self) -> str:
        return f"csflow.runtime.{self.module}"

    @property
    def entry(self) -> str:
        """What a warm worker calls (``runtime/worker.py`` sits beside the standalone ones)."""
        return f"{self.module if self.standalone else self.qualified_module}:main"

    def argv(self, python: str) -> list[str]:
        """The command line that runs the program in a fresh ``python``."""
        if self.standalone:
            return [python, str(self.script)]
        return [python, "-m", self.qualified_module]


# Where the step programs' files are: ``csflow/runtime`` installed, ``runtime/`` in a checkout
# (both sit two folders above this file's).
RUNTIME_DIR = Path(__file__).resolve().parents[2] / "runtime"

PROGRAMS: dict[str, StepProgram] = {
    program.command: program
    for program in (
        StepProgram(MODEL_STEP_COMMAND[0], MODEL, "model_step", standalone=True, warm=True),
        StepProgram(CONTRACT_TESTS_COMMAND[0], MODEL, "contract_tests", standalone=True),
        StepProgram(PLATFORM_STEP_COMMAND[0], PLATFORM, "platform_step", warm=True),
        StepProgram(
            PUBLISH_STEP_COMMAND[0],
            PLATFORM,
            "publish_step",
            warm=True,
            preload=(
                "csflow.sdk.builds.environments",
                "csflow.runtime.platform_step",
                "csflow.sdk.registry.local",
            ),
        ),
        # On a cluster this builds and pushes an image (runtime/image_build.py); the
        # embedded engine builds the model's uv environment from the same context.
        StepProgram(IMAGE_BUILD_COMMAND[0], BUILD, "local_build"),
    )
}
MODEL_SIDE_PROGRAMS = tuple(f"{p.module}.py" for p in PROGRAMS.values() if p.standalone)
# The files a model's image (or build context) carries beside the model: the
# model-side programs and the declaration of the variables they read, which they
# import as a sibling file (standard library only).
STEP_ENV_FILE = Path(step_env.__file__).name
MODEL_SIDE_FILES = (*MODEL_SIDE_PROGRAMS, STEP_ENV_FILE)


def program_for(command: list[str], environment: str) -> StepProgram:
    """The program for a step's command, which must run in the environment its
    template's label names. Anything else is refused in one line that names it."""
    from csflow.sdk.core.errors import CsflowError

    program = PROGRAMS.get(command[0]) if len(command) == 1 else None
    if program is None:
        known = ", ".join(PROGRAMS)
        raise CsflowError(f"unknown step command {command} (step commands: {known})")
    if program.environment != environment:
        raise CsflowError(
            f"step command {command[0]} runs in the {program.environment} "
            f"environment, not {environment}"
        )
    return program
