"""The environment variables csflow's steps read, each declared once, here.

A step (``sdk/core/steps.py``, ``PROGRAMS``) gets its settings as environment
variables. They are set by the images (the csflow image's Dockerfile, a
model's image: ``sdk/builds/model_image.py``), by the cluster's ConfigMap
``csflow-platform`` (``cluster/argo/platform-config.yaml``, filled by
``csflow svc config``) and Secrets (``csflow svc secrets sync``:
``sdk/ops/secret_sync.py``), and by the embedded engine (``sdk/backends/``,
``engine/``). Every program that reads one of these names, and every place
that sets one, uses the ``Variable`` declared below, so each name is spelled
once. Variables a step reads through ``Settings`` (``sdk/core/settings.py``:
``CSFLOW_`` plus the field's name in capitals) are declared here too, under
the same name.

Standard library only, and importable two ways: as ``csflow.runtime.step_env``
by csflow, and as the sibling module ``step_env`` by the model-side programs
(``model_step.py``, ``contract_tests.py``), which run in the model's own
interpreter from copies of their files and never import csflow. This file
travels with them wherever they go (``sdk/core/steps.py``,
``MODEL_SIDE_FILES``): this folder for the embedded engine, a build context's
``csflow/`` folder, and ``/opt/csflow/runtime`` in a model's image.

``python step_env.py`` prints the table.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

# Where steps read and write their files in a pod (``sdk/core/steps.py`` WORK_DIR).
POD_WORK_DIR = "/tmp/csflow"


@dataclass(frozen=True)
class Variable:
    """One environment variable: its name, the steps that read it, who sets it,
    what it means, and the value an unset (or empty) variable stands for."""

    name: str
    read_by: str
    set_by: str
    meaning: str
    default: str = ""

    def get(self, environ: Mapping[str, str] | None = None) -> str:
        """The value in ``environ`` (default: this process's), else the default."""
        return (os.environ if environ is None else environ).get(self.name) or self.default

    def require(self, environ: Mapping[str, str] | None = None) -> str:
        """The value; an unset variable without a default raises ``MissingVariable``."""
        value = self.get(environ)
        if not value:
            raise MissingVariable(self)
        return value


class MissingVariable(KeyError):
    """A step needs a variable that is not set."""

    def __init__(self, variable: Variable):
        super().__init__(variable.name)
        self.variable = variable

    def __str__(self) -> str:
        v = self.variable
        return f"{v.name} is not set ({v.meaning}; set by {v.set_by})"


# -- every step ---------------------------------------------------------------------

WORK_DIR = Variable(
    "CSFLOW_WORK_DIR",
    read_by="every step program",
    set_by="the csflow image and each model image; the csflow-platform ConfigMap; "
    "the embedded engine (a folder per step)",
    meaning="where a step reads and writes its files (Argo moves them as artifacts)",
    default=POD_WORK_DIR,
)

# -- model steps (model_step.py, contract_tests.py) ---------------------------------

MODEL_FUNCTIONS = Variable(
    "CSFLOW_MODEL_FUNCTIONS",
    read_by="model_step, contract_tests",
    set_by="the model's image (its config's `functions`); the embedded engine",
    meaning="the module with the model's four functions",
    default="cs_config.functions",
)
JOB_STORE_URL = Variable(
    "CSFLOW_JOB_STORE_URL",
    read_by="model_step; the submitter (Settings.job_store_url)",
    set_by="the Secret csflow-model-jobs (model steps on a cluster); the embedded engine; "
    "the user (the submitter: empty means $CSFLOW_HOME/jobs)",
    meaning="where job inputs wait: file:///DIR or redis://HOST:PORT/DB (no password in it)",
)
REDIS_USER = Variable(
    "CSFLOW_REDIS_USER",
    read_by="model_step; the Redis job store client (sdk/dataplane/redis_jobs.py)",
    set_by="the Secrets csflow-model-jobs (user `model`) and csflow-platform (`scheduler`); "
    "the embedded engine (`model`); the user (the submitter)",
    meaning="the Redis ACL user the job store is read or written as",
)
REDIS_PASSWORD = Variable(
    "CSFLOW_REDIS_PASSWORD",
    read_by="model_step; the Redis job store client (sdk/dataplane/redis_jobs.py)",
    set_by="the same as CSFLOW_REDIS_USER",
    meaning="that Redis user's password",
)

# -- platform steps (platform_step.py, publish_step.py) -----------------------------

HOME = Variable(
    "CSFLOW_HOME",
    read_by="publish_step, local_build; Settings.home",
    set_by="the csflow image (/tmp/csflow-home); the embedded engine (its home); the user",
    meaning="csflow's data folder (default ~/.csflow, see settings.default_home)",
)
STORAGE_URL = Variable(
    "CSFLOW_STORAGE_URL",
    read_by="platform_step (upload); Settings.storage_url",
    set_by="the csflow-platform ConfigMap; the embedded engine (its results_url)",
    meaning="where results go: file:///DIR or gs://BUCKET[/PREFIX]",
)
WEBAPP_URL = Variable(
    "CSFLOW_WEBAPP_URL",
    read_by="platform_step, publish_step (sdk/dataplane/webapp.py); Settings.webapp_url",
    set_by="the csflow-platform ConfigMap; the embedded engine (Settings.webapp_url)",
    meaning="the C/S webapp told about finished runs and tags (empty: nobody)",
)
WEBAPP_TOKEN = Variable(
    "CSFLOW_WEBAPP_TOKEN",
    read_by="platform_step, publish_step (sdk/dataplane/webapp.py)",
    set_by="the Secret csflow-platform; the embedded engine (both from the service secret "
    "Settings.webapp_token_secret)",
    meaning="the webapp's API token (never logged)",
)
WEBAPP_ATTEMPTS = Variable(
    "CSFLOW_WEBAPP_ATTEMPTS",
    read_by="platform_step, publish_step (sdk/dataplane/webapp.py)",
    set_by="the operator (optional)",
    meaning="how many times a webapp call is tried",
    default="5",
)
WEBAPP_BACKOFF = Variable(
    "CSFLOW_WEBAPP_BACKOFF",
    read_by="platform_step, publish_step (sdk/dataplane/webapp.py)",
    set_by="the operator (optional)",
    meaning="the first retry's backoff in seconds (doubling after)",
    default="1.0",
)
WEBAPP_TIMEOUT = Variable(
    "CSFLOW_WEBAPP_TIMEOUT",
    read_by="platform_step, publish_step (sdk/dataplane/webapp.py)",
    set_by="the operator (optional)",
    meaning="seconds per webapp call",
    default="10",
)
BUILDER = Variable(
    "CSFLOW_BUILDER",
    read_by="publish_step",
    set_by="the embedded engine (`uv`)",
    meaning="`uv`: versions are uv environments built here (else images a registry knows)",
)
MODEL_REGISTRY_URL = Variable(
    "CSFLOW_MODEL_REGISTRY_URL",
    read_by="publish_step (Settings.model_registry_url)",
    set_by="the csflow-platform ConfigMap (csflow svc config; cluster/dev)",
    meaning="the shared model registry and inputs cache: file:///DIR or gs://BUCKET/PREFIX",
)
MODEL_BASE_IMAGE = Variable(
    "CSFLOW_MODEL_BASE_IMAGE",
    read_by="image_build (Settings.model_base_image)",
    set_by="the csflow-platform ConfigMap (optional; cluster/dev sets a mirror)",
    meaning="the image a model's image is built on; {python} is the config's version",
)
REGISTRY_INSECURE = Variable(
    "CSFLOW_REGISTRY_INSECURE",
    read_by="image_build (Settings.registry_insecure)",
    set_by="the csflow-platform ConfigMap (a development cluster's plain-HTTP registry)",
    meaning="push model images over plain HTTP (never in production)",
)

# Every variable a step reads, in the order above.
STEP_VARIABLES: tuple[Variable, ...] = (
    WORK_DIR,
    MODEL_FUNCTIONS,
    JOB_STORE_URL,
    REDIS_USER,
    REDIS_PASSWORD,
    HOME,
    STORAGE_URL,
    WEBAPP_URL,
    WEBAPP_TOKEN,
    WEBAPP_ATTEMPTS,
    WEBAPP_BACKOFF,
    WEBAPP_TIMEOUT,
    BUILDER,
    MODEL_REGISTRY_URL,
    MODEL_BASE_IMAGE,
    REGISTRY_INSECURE,
)

# -- read outside the steps, not through Settings ------------------------------------

ARGO_SCHEMA_DIR = Variable(
    "CSFLOW_ARGO_SCHEMA_DIR",
    read_by="the manifest checks (sdk/argo/schema.py: csflow lint, csflow svc config)",
    set_by="the user",
    meaning="a folder of Argo's CRD files, the schema manifests are checked against",
)

IMAGE_REGISTRIES = Variable(
    "CSFLOW_IMAGE_REGISTRIES",
    read_by="the admission policy csflow-workflows (cluster/argo/admission-policy.yaml)",
    set_by="the csflow-platform ConfigMap (csflow svc config, from the configured registry)",
    meaning="space-separated registries whose images a submitted Workflow may run",
)

VARIABLES: tuple[Variable, ...] = (*STEP_VARIABLES, ARGO_SCHEMA_DIR, IMAGE_REGISTRIES)
BY_NAME: dict[str, Variable] = {v.name: v for v in VARIABLES}


def table() -> str:
    """The variables as a Markdown table."""
    rows = ["| variable | read by | set by | meaning | default |", "|---|---|---|---|---|"]
    for v in VARIABLES:
        rows.append(f"| `{v.name}` | {v.read_by} | {v.set_by} | {v.meaning} | {v.default} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
