"""Fixtures for the cluster tests: a real Kubernetes API and a real Argo Server.

Every test here is marked ``cluster`` and is skipped unless ``CSFLOW_ARGO_HOST``
names an Argo Server. Any cluster with csflow installed
(``csflow svc config -o - | kubectl apply -f -``) will do:

- on this machine, ``cluster/dev/up`` starts one and writes the environment
  to source (``cluster/dev/ci`` does both and runs these tests);
- elsewhere (kind on a laptop, a staging GKE cluster), set ``KUBECONFIG`` (or
  use ``~/.kube/config``), ``CSFLOW_ARGO_HOST`` (e.g. ``https://localhost:2746``
  after ``kubectl -n csflow port-forward svc/argo-server 2746``) and, for a
  self-signed server certificate, ``CSFLOW_ARGO_VERIFY_SSL=false``.

The tests submit through csflow's SDK (``Client(backend="argo")``) with the
``csflow-submitter`` token (``CSFLOW_ARGO_TOKEN``, else read from its Secret
with the kubeconfig), and look at what the workflow controller made with the
kubeconfig's rights (pods, workflows). The job store is a real
``redis-server`` (Debian package) with csflow's ACL users, on a free port.
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from webapp_receiver import WebappReceiver

from csflow.runtime import step_env
from csflow.sdk.ops import redis_acl

REPO = Path(__file__).resolve().parents[2]
SUBMITTER_TOKEN_SECRET = "csflow-submitter.service-account-token"
WORKFLOW_LABEL = "workflows.argoproj.io/workflow"


@dataclass
class Cluster:
    """A running cluster: its namespace, Kubernetes API clients and the Argo Server."""

    namespace: str
    argo_host: str
    verify_ssl: bool
    api: Any  # kubernetes.client.ApiClient with the kubeconfig's rights

    @property
    def core(self):
        from kubernetes import client

        return client.CoreV1Api(self.api)

    @property
    def custom(self):
        from kubernetes import client

        return client.CustomObjectsApi(self.api)

    def workflow(self, name: str) -> dict[str, Any] | None:
        from kubernetes.client.rest import ApiException

        try:
            return self.custom.get_namespaced_custom_object(
                "argoproj.io", "v1alpha1", self.namespace, "workflows", name
            )
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def pods(self, workflow: str) -> list:
        return self.core.list_namespaced_pod(
            self.namespace, label_selector=f"{WORKFLOW_LABEL}={workflow}"
        ).items

    def delete_workflow(self, name: str) -> None:
        from kubernetes.client.rest import ApiException

        try:
            self.custom.delete_namespaced_custom_object(
                "argoproj.io", "v1alpha1", self.namespace, "workflows", name
            )
        except ApiException as exc:
            if exc.status != 404:
                raise


def eventually(
    check: Callable[[], Any], timeout: float = 60, every: float = 0.5, what: str = ""
) -> Any:
    """Poll ``check`` until it returns something truthy; fail with ``what`` after ``timeout``.
    (The controller acts asynchronously; this waits for a state, it does not time it.)"""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"not reached within {timeout:g}s: {what or check.__name__} (last: {last!r})")


@pytest.fixture(scope="session")
def cluster() -> Cluster:
    host = os.environ.get("CSFLOW_ARGO_HOST")
    if not host:
        pytest.skip("no Argo Server: set CSFLOW_ARGO_HOST (cluster/dev/up prints how)")
    from kubernetes import config

    try:
        api = config.new_client_from_config(config_file=os.environ.get("KUBECONFIG"))
    except Exception as exc:  # no kubeconfig: the tests cannot look at pods
        pytest.fail(f"CSFLOW_ARGO_HOST is set but no usable kubeconfig ({exc}); set KUBECONFIG")
    verify = os.environ.get("CSFLOW_ARGO_VERIFY_SSL", "true").lower() not in ("0", "false", "no")
    if not verify:
        import urllib3

        urllib3.disable_warnings(urllib3.exceptions.InsecureRequestWarning)
    return Cluster(os.environ.get("CSFLOW_ARGO_NAMESPACE", "csflow"), host, verify, api)


@pytest.fixture(scope="session")
def argo_token(cluster) -> str:
    """The csflow-submitter token: $CSFLOW_ARGO_TOKEN, else its Secret (cluster/argo/rbac.yaml)."""
    token = os.environ.get("CSFLOW_ARGO_TOKEN")
    if token:
        return token
    secret = cluster.core.read_namespaced_secret(SUBMITTER_TOKEN_SECRET, cluster.namespace)
    return base64.b64decode(secret.data["token"]).decode()


@pytest.fixture(scope="session")
def job_store(redis_server) -> tuple[str, dict[str, str]]:
    """The tests' real redis-server with csflow's ACL users: (URL, passwords by user)."""
    return redis_server.url, redis_server.passwords


@pytest.fixture
def argo_client(cluster, argo_token, job_store, tmp_path, monkeypatch):
    """csflow's SDK on the argo backend, as the webapp would use it (scheduler Redis user)."""
    from csflow.sdk.client import Client
    from csflow.sdk.ops import redis_acl

    url, passwords = job_store
    monkeypatch.setenv("CSFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(step_env.REDIS_USER.name, redis_acl.SCHEDULER)
    monkeypatch.setenv(step_env.REDIS_PASSWORD.name, passwords[redis_acl.SCHEDULER])
    return Client(
        backend="argo",
        home=tmp_path / "home",
        config_dirs=[REPO / "config"],
        argo_host=cluster.argo_host,
        argo_token=argo_token,
        argo_namespace=cluster.namespace,
        argo_verify_ssl=cluster.verify_ssl,
        job_store_url=url,
    )


@pytest.fixture(scope="session")
def submitter(cluster, argo_token):
    """Kubernetes API clients that authenticate with the submitter's token only."""
    from kubernetes import client

    base = cluster.api.configuration
    configuration = client.Configuration()
    configuration.host = base.host
    configuration.ssl_ca_cert = base.ssl_ca_cert
    configuration.verify_ssl = base.verify_ssl
    configuration.api_key = {"authorization": f"Bearer {argo_token}"}
    return client.ApiClient(configuration)


@pytest.fixture
def workflows(cluster) -> Iterator[list[str]]:
    """Names of workflows a test created; deleted after it (with the kubeconfig's rights)."""
    names: list[str] = []
    yield names
    for name in names:
        cluster.delete_workflow(name)


def new_job_id() -> str:
    return str(uuid.uuid4())


def simulation_workflow() -> dict[str, Any]:
    """A Tax-Cruncher simulation Workflow exactly as csflow submits one, for a new job."""
    from csflow.flows import simulate

    return simulate.simulation_workflow(
        owner="PSLmodels",
        title="Tax-Cruncher",
        tag="latest",
        image="gcr.io/csflow/pslmodels_tax-cruncher:latest",
        job_id=new_job_id(),
        resources={"requests": {"cpu": "1", "memory": "512Mi"}, "limits": {"memory": "615Mi"}},
        timeout=60,
        model_secret="pslmodels-tax-cruncher-secrets",
    ).to_dict()


# -- csflow's images on the node (the simulate and publish flows on real pods) -----------------

TOY_INPUTS = {"meta_param_dict": {"year": 2024}, "adjustment": {"Knobs": {"x": [{"value": 2}]}}}
CONFIG_DIRS = [
    REPO / "config",
    REPO / "tests" / "models" / "config",
    REPO / "tests" / "cluster" / "models" / "config",
]


class WebappRecorder(WebappReceiver):
    """Stands in for the C/S webapp's callback API: judges ``PUT /outputs/api/`` and
    ``PUT /inputs/api/`` by the webapp's serializer rules (tests/webapp_receiver.py),
    answering 400 or 500 as the webapp would, and records each accepted report (any
    other path, e.g. the publish step's deployments, is recorded unjudged). Listens
    where the cluster's CSFLOW_WEBAPP_URL points."""

    def __init__(self, host: str, port: int):
        super().__init__(host, port)
        self.start()

    @property
    def reports(self) -> list[dict]:
        """The accepted reports: each one's path and JSON body."""
        return [{"path": c.path, **c.body} for c in self.accepted if isinstance(c.body, dict)]

    def for_job(self, job_id: str) -> list[dict]:  # the reports, not the calls
        return [r for r in self.reports if r.get("job_id") == job_id]


@pytest.fixture(scope="session")
def node(cluster) -> str:
    nodes = cluster.core.list_node().items
    ready = [
        n.metadata.name
        for n in nodes
        if any(c.type == "Ready" and c.status == "True" for c in n.status.conditions or [])
    ]
    if not ready:
        pytest.skip("the cluster has no Ready node (cluster/dev/up without one: pods stay Pending)")
    missing = [
        v
        for v in ("CSFLOW_JOB_STORE_URL", "CSFLOW_STORAGE_URL", "CSFLOW_DEV_WEBAPP_LISTEN")
        if not os.environ.get(v)
    ]
    if missing:
        pytest.skip(f"set {', '.join(missing)} (cluster/dev/up writes them) to run csflow's images")
    return ready[0]


@pytest.fixture(scope="session")
def webapp(node) -> WebappRecorder:
    host, port = os.environ["CSFLOW_DEV_WEBAPP_LISTEN"].rsplit(":", 1)
    recorder = WebappRecorder(host, int(port))
    yield recorder
    recorder.server.shutdown()


@pytest.fixture
def pods_client(cluster, argo_token, node, webapp, tmp_path, monkeypatch):
    from csflow.sdk.client import Client

    password = os.environ.get(step_env.REDIS_PASSWORD.name)
    if not password:
        secret = cluster.core.read_namespaced_secret("csflow-platform", cluster.namespace)
        password = base64.b64decode(secret.data[step_env.REDIS_PASSWORD.name]).decode()
    monkeypatch.setenv("CSFLOW_HOME", str(tmp_path / "home"))
    monkeypatch.setenv(
        step_env.REDIS_USER.name, os.environ.get(step_env.REDIS_USER.name, redis_acl.SCHEDULER)
    )
    monkeypatch.setenv(step_env.REDIS_PASSWORD.name, password)
    return Client(
        backend="argo",
        home=tmp_path / "home",
        config_dirs=CONFIG_DIRS,
        argo_host=cluster.argo_host,
        argo_token=argo_token,
        argo_namespace=cluster.namespace,
        argo_verify_ssl=cluster.verify_ssl,
        job_store_url=os.environ["CSFLOW_JOB_STORE_URL"],
        storage_url=os.environ["CSFLOW_STORAGE_URL"],
    )


def settled(client, job_id: str, timeout: float = 900):
    """The run once it ended, or once a step other than the exit handler failed (what
    follows then is the exit handler's work, which the tests check at the webapp)."""

    def check():
        run = client.status(job_id)
        failed = [
            s
            for s, i in run.steps.items()
            if i["phase"] in ("Failed", "Error") and s != "notify" and ".onExit" not in s
        ]
        return run if run.done or failed else None

    return eventually(check, timeout=timeout, every=2, what=f"run {job_id} ends or a step fails")


def submit(client, workflows, model: str, inputs: dict):
    run = client.submit(model, inputs)
    workflows.append(run.extra["workflow"])
    return run
