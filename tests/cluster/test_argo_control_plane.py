"""csflow on a real Kubernetes API server and a real Argo v4 (controller and server).

What the control plane alone proves (cluster/dev/up runs no kubelet, so pods are
created and stay Pending; on a cluster with nodes they may start, which changes
nothing checked here):

- every manifest of ``csflow svc config`` is accepted by the API server, with
  strict field validation and Argo's own CRD schemas, and the WorkflowTemplates
  keep every field;
- a simulation submitted through the SDK is accepted by the Argo Server with the
  ``csflow-submitter`` token, and the workflow controller (running with csflow's
  ``argo`` Role) creates the first step's pod as csflow meant it: image,
  resources from the model config, secrets by reference, service accounts and
  tokens, security context that the namespace's "restricted" Pod Security level
  admits, and labels;
- stop runs the exit handler, terminate does not; TTL and podGC settings reach
  the controller and it acts on them;
- the submitter token can do what csflow needs and no more.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from csflow.flows import _common as common
from csflow.flows import simulate
from csflow.sdk.core import steps
from csflow.sdk.core.model_config import find_model_config
from csflow.sdk.core.status import RunStatus
from csflow.sdk.dataplane.jobstore import open_job_store

from .conftest import REPO, eventually
from .conftest import new_job_id as new_id

pytestmark = pytest.mark.cluster

MODEL = "PSLmodels/Tax-Cruncher"
INPUTS = json.loads((REPO / "examples" / "tax-cruncher" / "inputs.json").read_text())
ENVIRONMENT = steps.ENVIRONMENT_LABEL
NODE_NAME = "workflows.argoproj.io/node-name"


def submit(argo_client, workflows) -> tuple[str, str]:
    """Submit the Tax-Cruncher example; returns (job id, workflow name)."""
    run = argo_client.submit(MODEL, INPUTS)
    name = run.extra["workflow"]
    workflows.append(name)
    assert run.status in (RunStatus.PENDING, RunStatus.RUNNING), run
    return run.id, name


def pod_of(cluster, workflow: str, template: str):
    """The pod the controller made for ``template`` (waits for it)."""

    def find():
        for pod in cluster.pods(workflow):
            if (pod.metadata.annotations or {}).get(NODE_NAME, "").endswith(
                f".{template}"
            ) or f"-{template}-" in pod.metadata.name:
                return pod
        return None

    return eventually(find, timeout=60, what=f"a pod for step {template} of {workflow}")


def node_by_template(workflow: dict, template: str) -> list[dict]:
    return [
        n
        for n in (workflow.get("status") or {}).get("nodes", {}).values()
        if n.get("templateName") == template and n.get("type") == "Pod"
    ]


def service_documents(tmp_path) -> list[dict]:
    """Every document `csflow svc config -o -` prints (the console script of this venv)."""
    env = dict(os.environ, CSFLOW_HOME=str(tmp_path / "svc-home"))
    csflow = Path(sys.executable).with_name("csflow")
    done = subprocess.run(
        [str(csflow), "svc", "config", "-o", "-"],
        capture_output=True,
        text=True,
        env=env,
        cwd=REPO,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


# -- manifests ----------------------------------------------------------------------------------


def test_every_service_manifest_is_accepted_strictly_by_the_api_server(cluster, tmp_path):
    """Server-side apply, dry run, fieldValidation=Strict: an unknown or misplaced field
    is refused, not dropped; Argo's CRD schemas check the WorkflowTemplates."""
    from kubernetes.client.rest import ApiException
    from kubernetes.dynamic import DynamicClient

    docs = service_documents(tmp_path)
    kinds = {d["kind"] for d in docs}
    assert {"Namespace", "Role", "ConfigMap", "WorkflowTemplate", "NetworkPolicy"} <= kinds
    dynamic = DynamicClient(cluster.api)
    refused, returned = [], {}
    for doc in docs:
        resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        try:
            answer = dynamic.server_side_apply(
                resource,
                body=doc,
                field_manager="csflow-tests",
                force_conflicts=True,
                query_params=[("dryRun", "All"), ("fieldValidation", "Strict")],
            )
        except ApiException as exc:
            refused.append(
                f"{doc['kind']}/{doc['metadata']['name']}: {exc.status} {exc.body[:400]}"
            )
            continue
        returned[(doc["kind"], doc["metadata"]["name"])] = answer.to_dict()
    assert not refused, "\n".join(refused)
    templates = [d for d in docs if d["kind"] == "WorkflowTemplate"]
    assert {t["metadata"]["name"] for t in templates} >= {simulate.NAME}
    for template in templates:
        # Nothing pruned or rewritten by the CRD's structural schema.
        assert (
            returned[("WorkflowTemplate", template["metadata"]["name"])]["spec"] == template["spec"]
        )


def test_the_cluster_runs_the_templates_of_this_checkout(cluster, tmp_path):
    """The WorkflowTemplates on the cluster are the ones `csflow svc config` makes now
    (on another cluster: apply them first, or these tests check old templates)."""
    for template in (d for d in service_documents(tmp_path) if d["kind"] == "WorkflowTemplate"):
        live = cluster.custom.get_namespaced_custom_object(
            "argoproj.io",
            "v1alpha1",
            cluster.namespace,
            "workflowtemplates",
            template["metadata"]["name"],
        )
        assert live["spec"] == template["spec"], template["metadata"]["name"]


# -- a simulation's pods ------------------------------------------------------------------------


def test_a_simulation_is_accepted_and_its_first_pod_is_built_as_csflow_means(
    argo_client, cluster, workflows, job_store
):
    job_id, name = submit(argo_client, workflows)
    workflow = cluster.workflow(name)
    labels = workflow["metadata"]["labels"]
    assert labels[f"{steps.LABEL_PREFIX}/owner"] == "PSLmodels"
    assert labels[f"{steps.LABEL_PREFIX}/title"] == "Tax-Cruncher"
    assert labels[f"{steps.LABEL_PREFIX}/job-id"] == job_id
    assert workflow["spec"]["workflowTemplateRef"]["name"] == simulate.NAME
    parameters = {p["name"]: p.get("value") for p in workflow["spec"]["arguments"]["parameters"]}

    # The inputs wait in the job store, where the model's step reads them.
    url, _ = job_store
    assert open_job_store(url).get(job_id)["inputs"]["meta_param_dict"] == INPUTS["meta_param_dict"]

    pod = pod_of(cluster, name, "inputs")
    spec = pod.spec
    main = next(c for c in spec.containers if c.name == "main")
    config = find_model_config("PSLmodels", "Tax-Cruncher", [REPO / "config"])
    expected = config.resources.kubernetes()

    # The model's image, named by the SDK (the same as --dry-run shows).
    rendered = argo_client.render(MODEL, INPUTS)
    rendered_image = {p["name"]: p["value"] for p in rendered["spec"]["arguments"]["parameters"]}[
        "image"
    ]
    assert main.image == parameters["image"] == rendered_image
    assert main.command[-1] == steps.MODEL_STEP_COMMAND[-1]
    assert main.args[:3] == ["inputs", "--job-id", job_id]
    # Requests and limits from config/PSLmodels/Tax-Cruncher.yaml (limit = ceil(1.2 x request)).
    assert main.resources.requests == expected["requests"]
    assert main.resources.limits == expected["limits"]
    # Secrets by reference only: the model's own (optional) and the read-only job store user.
    refs = [(e.secret_ref.name, e.secret_ref.optional) for e in main.env_from if e.secret_ref]
    assert (parameters["model-secret"], True) in refs
    assert (steps.MODEL_JOB_STORE_SECRET, None) in refs
    assert not [e for e in (main.env or []) if e.value_from and e.value_from.secret_key_ref]
    # Model code runs as the model's account with no API token; only Argo's executor
    # containers mount the executor's token.
    assert spec.service_account_name == steps.MODEL_SERVICE_ACCOUNT
    assert spec.automount_service_account_token is False
    assert not [m for m in main.volume_mounts or [] if "serviceaccount" in m.mount_path]
    executor_mounts = {
        c.name: [m.name for m in c.volume_mounts or []]
        for c in [*spec.containers, *(spec.init_containers or [])]
        if c.name != "main"
    }
    token_volumes = {v.name: v.secret.secret_name for v in spec.volumes if v.secret}
    assert executor_mounts and all(
        any(token_volumes.get(m, "").startswith(steps.EXECUTOR_SERVICE_ACCOUNT) for m in mounts)
        for mounts in executor_mounts.values()
    )
    # Security context (the namespace enforces Pod Security "restricted", so the API
    # server would have refused the pod otherwise).
    assert spec.security_context.run_as_non_root is True
    assert spec.security_context.run_as_user == steps.RUN_AS_USER
    assert spec.security_context.seccomp_profile.type == "RuntimeDefault"
    assert main.security_context.allow_privilege_escalation is False
    assert main.security_context.capabilities.drop == ["ALL"]
    namespace = cluster.core.read_namespace(cluster.namespace)
    assert namespace.metadata.labels["pod-security.kubernetes.io/enforce"] == "restricted"
    # Labels: the step's environment (NetworkPolicies select on it) and its workflow.
    assert pod.metadata.labels[ENVIRONMENT] == steps.MODEL
    assert pod.metadata.labels["workflows.argoproj.io/workflow"] == name
    assert (
        spec.active_deadline_seconds
        and spec.active_deadline_seconds
        <= int(parameters["timeout"]) + simulate.WORKFLOW_DEADLINE_MARGIN
    )

    run = argo_client.status(job_id)
    assert run.status in (RunStatus.PENDING, RunStatus.RUNNING)
    assert "inputs" in run.steps
    assert job_id in [r.id for r in argo_client.backend.list()]


# -- stop, terminate --------------------------------------------------------------------------


def test_stop_ends_the_steps_and_still_runs_the_exit_handler(argo_client, cluster, workflows):
    job_id, name = submit(argo_client, workflows)
    pod_of(cluster, name, "inputs")
    argo_client.cancel(job_id)

    notify = pod_of(cluster, name, "onExit(0)")
    workflow = cluster.workflow(name)
    assert workflow["spec"]["shutdown"] == "Stop"
    inputs = node_by_template(workflow, "inputs")[0]
    # Stopped while Pending ("workflow shutdown with strategy: Stop"), or killed while
    # running (on a cluster with a node, main: Error).
    assert inputs["phase"] in ("Failed", "Error"), inputs
    # The exit handler is csflow's notify step, in the platform's environment.
    assert node_by_template(workflow, "notify")
    assert notify.metadata.labels[ENVIRONMENT] == steps.PLATFORM
    assert notify.spec.service_account_name == steps.WORKFLOW_SERVICE_ACCOUNT
    main = next(c for c in notify.spec.containers if c.name == "main")
    assert main.args[0] == "notify" and "--status" in main.args
    assert {e.secret_ref.name for e in main.env_from if e.secret_ref} == {steps.PLATFORM_SECRET}
    eventually(
        lambda: (
            not [p for p in cluster.pods(name) if p.metadata.labels.get(ENVIRONMENT) == steps.MODEL]
        ),
        what="the stopped model step's pod is gone",
    )
    # The SDK shows the exit handler as csflow's notify step.
    run = argo_client.status(job_id)
    assert "notify" in run.steps, sorted(run.steps)
    if not run.done:
        # Without a kubelet the exit handler's pod stays Pending: end the run by hand.
        # On a node it runs, and the run ends with it.
        assert run.status == RunStatus.RUNNING
        if not cluster.core.list_node().items:
            argo_client.backend.terminate(job_id)
    final = eventually(
        lambda: argo_client.status(job_id) if argo_client.status(job_id).done else None,
        timeout=180,
        what="the stopped run ends",
    )
    assert final.status == RunStatus.CANCELLED


def test_terminate_ends_the_run_without_the_exit_handler(argo_client, cluster, workflows):
    job_id, name = submit(argo_client, workflows)
    pod_of(cluster, name, "inputs")
    argo_client.backend.terminate(job_id)

    def ended():
        workflow = cluster.workflow(name)
        return (
            workflow if (workflow.get("status") or {}).get("phase") in ("Failed", "Error") else None
        )

    workflow = ended() or eventually(ended, what="the workflow ends")
    assert workflow["spec"]["shutdown"] == "Terminate"
    assert "Terminate" in workflow["status"]["message"]
    assert not node_by_template(workflow, "notify")
    assert eventually(lambda: not cluster.pods(name), what="no pod left")
    run = argo_client.status(job_id)
    assert run.status == RunStatus.CANCELLED and "Terminate" in run.reason


# -- clean-up by Argo -------------------------------------------------------------------------


def test_ttl_and_pod_gc_reach_the_controller_and_take_effect(argo_client, cluster, workflows):
    job_id, name = submit(argo_client, workflows)
    pod = pod_of(cluster, name, "inputs")
    workflow = cluster.workflow(name)
    assert workflow["spec"]["podGC"]["strategy"] == common.pod_gc().strategy
    assert workflow["spec"]["ttlStrategy"] == common.ttl_strategy().model_dump(
        by_alias=True, exclude_none=True
    )
    # The controller gave the pod its podGC strategy.
    assert pod.metadata.annotations["workflows.argoproj.io/pod-gc-strategy"].startswith(
        common.pod_gc().strategy
    )

    # The controller acts on TTL with csflow's Role (it must be allowed to delete
    # workflows): shorten this run's TTL, end it, and it goes away with its pods.
    cluster.custom.patch_namespaced_custom_object(
        "argoproj.io",
        "v1alpha1",
        cluster.namespace,
        "workflows",
        name,
        {"spec": {"ttlStrategy": {"secondsAfterFailure": 1, "secondsAfterCompletion": 1}}},
        _content_type="application/merge-patch+json",
    )
    argo_client.backend.terminate(job_id)
    eventually(lambda: cluster.workflow(name) is None, timeout=90, what="TTL deletes the workflow")
    eventually(lambda: not cluster.pods(name), what="no pod of the deleted workflow is left")


# -- least privilege through the Argo Server ----------------------------------------------------


def test_the_submitter_token_cannot_delete_runs_or_write_templates(argo_client, workflows):
    from hera.exceptions import Forbidden
    from hera.workflows.models import WorkflowTemplate as TemplateModel
    from hera.workflows.models import WorkflowTemplateCreateRequest

    job_id, name = submit(argo_client, workflows)
    service = argo_client.backend.service
    with pytest.raises(Forbidden):
        service.delete_workflow(name)
    template = simulate.build().to_dict()
    template["metadata"]["name"] = "csflow-test-not-allowed"
    with pytest.raises(Forbidden):
        service.create_workflow_template(
            WorkflowTemplateCreateRequest(template=TemplateModel.model_validate(template))
        )
    assert argo_client.status(job_id).status in (RunStatus.PENDING, RunStatus.RUNNING)


# -- the publish flow's build step --------------------------------------------------------------


def test_the_publish_build_step_gets_a_pod_in_the_csflow_namespace(cluster, workflows):
    """The build step as the controller makes its pod: admitted by the namespace's
    "restricted" Pod Security level (no root, no added capabilities), in the csflow
    image, with no token and no platform secret. The Workflow runs only that step
    (``entrypoint`` overrides the template's), so no kubelet is needed to reach it:
    it is the publish template on the cluster, with its parameters, submitted as an
    operator would (kubeconfig rights; the SDK has no single-step submit)."""
    from csflow.flows import publish

    config = find_model_config("PSLmodels", "Tax-Cruncher", [REPO / "config"])
    workflow = publish.publish_workflow(
        config=config.canonical(),
        config_dir="",
        run_id=new_id(),
        registry="gcr.io/csflow",
        require_approval=False,
        resources=config.resources.kubernetes(),
        test_timeout=600,
        model_secret="pslmodels-tax-cruncher-secrets",
    ).to_dict()
    workflow["spec"]["entrypoint"] = "build"
    workflow["spec"]["arguments"]["parameters"].append(
        {"name": "image", "value": "gcr.io/csflow/pslmodels_tax-cruncher:test"}
    )
    workflow["spec"]["arguments"]["artifacts"] = [
        {"name": "context", "raw": {"data": "FROM scratch\n"}}
    ]
    name = workflow["metadata"]["name"]
    cluster.custom.create_namespaced_custom_object(
        "argoproj.io", "v1alpha1", cluster.namespace, "workflows", workflow
    )
    workflows.append(name)

    def build_node():
        nodes = (cluster.workflow(name).get("status") or {}).get("nodes") or {}
        node = next((n for n in nodes.values() if n.get("templateName") == "build"), None)
        return (
            node
            if node
            and (node.get("phase") != "Pending" or node.get("message") or cluster.pods(name))
            else None
        )

    node = eventually(build_node, what="the controller acts on the build step")
    assert cluster.pods(name), (
        f"no pod for the build step: {node.get('phase')}: {node.get('message')}"
    )
    pod = cluster.pods(name)[0]
    assert pod.metadata.labels[ENVIRONMENT] == steps.BUILD
    assert (
        pod.spec.security_context.run_as_non_root
        and pod.spec.security_context.run_as_user == steps.RUN_AS_USER
    )
    assert pod.spec.automount_service_account_token is False
    main = next(c for c in pod.spec.containers if c.name == "main")
    # Argo's emissary wraps the command: argoexec emissary ... -- COMMAND.
    assert main.command[main.command.index("--") + 1 :] == steps.IMAGE_BUILD_COMMAND
    assert main.image.endswith("/csflow:0.1.0")
    assert [e.config_map_ref.name for e in main.env_from] == [steps.PLATFORM_CONFIG]
