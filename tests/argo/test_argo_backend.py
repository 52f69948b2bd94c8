"""The ``argo`` backend through hera's real WorkflowsService, against a local
test double of the Argo Server (argo_server_double.py says what it stands in
for), with the job store on a real redis-server with its ACL users."""

from __future__ import annotations

import json
import threading

import pytest
import redis
import requests
from pydantic import SecretStr

from csflow.sdk.backends import argo as argo_backend
from csflow.sdk.backends.argo import ArgoBackend, ArgoError, ndjson, pod_name, run_from_workflow
from csflow.sdk.client import Client, parse_inputs
from csflow.sdk.core.errors import BadInput, CsflowError, NotFound
from csflow.sdk.dataplane.storage import open_storage, run_prefix
from csflow.sdk.ops import redis_acl

from .conftest import INPUTS, TOKEN, submit


def node(
    workflow: str,
    task: str,
    phase: str,
    template: str | None = None,
    message: str = "",
    index: int = 0,
):
    name = f"{workflow}.onExit" if task == "notify" else f"{workflow}.{task}"
    return {
        "id": f"{workflow}-{1000 + index}",
        "name": name,
        "displayName": name if task == "notify" else task,
        "type": "Pod",
        "templateName": template or task,
        "phase": phase,
        "message": message,
        "startedAt": f"2026-01-01T00:00:{10 + index:02d}Z",
        **(
            {"finishedAt": f"2026-01-01T00:00:{11 + index:02d}Z"}
            if phase not in ("Running", "Pending")
            else {}
        ),
    }


def nodes(workflow: str, phases: dict[str, str], message: str = "") -> dict:
    built = {
        f"{workflow}": {
            "id": workflow,
            "name": workflow,
            "displayName": workflow,
            "type": "DAG",
            "phase": "Running",
            "templateName": "simulate",
        }
    }
    for index, (task, phase) in enumerate(phases.items()):
        item = node(
            workflow, task, phase, message=message if phase == "Failed" else "", index=index
        )
        built[item["id"]] = item
    return built


def test_retried_steps_are_named_after_their_task_and_the_last_attempt_counts():
    """As a real Argo v4.0.5 names the pods of steps with a retryStrategy (upload,
    notify): one pod node per attempt, "upload(0)", "<workflow>.onExit(0)"."""
    workflow = "sim-0b4c1f0e-1d7b-4b7c-9d41-7f5cbb1f7c6e"
    built = nodes(workflow, {"inputs": "Succeeded", "run": "Succeeded", "outputs": "Succeeded"})
    attempts = [
        node(workflow, "upload", "Failed", message="HTTP 503", index=3),
        node(workflow, "upload", "Succeeded", index=4),
        node(workflow, "notify", "Succeeded", index=5),
    ]
    for attempt, item in zip((0, 1, 0), attempts, strict=True):
        item["displayName"] += f"({attempt})"
        built[item["id"]] = item
    run = run_from_workflow(
        {
            "metadata": {"name": workflow, "labels": {}},
            "spec": {},
            "status": {"phase": "Succeeded", "nodes": built},
        }
    )
    assert list(run.steps) == ["inputs", "run", "outputs", "upload", "notify"]
    assert run.steps["upload"]["phase"] == "Succeeded" and run.status == "SUCCESS"


def retried_nodes(workflow: str, tries: dict[str, list[str]], phase: str) -> dict:
    """The nodes of a simulation whose steps have a retryStrategy, as Argo v4.0.5 records
    them (workflow/controller/operator.go): a ``Retry`` node per step, named as the task
    (the exit handler: ``<workflow>.onExit``), whose children are its attempts, pods
    ``<name>(0)``, ``<name>(1)``, ... flagged ``retried`` (the exit handler's also
    ``hooked``). ``tries``: each step's attempts' phases, in order."""
    built = {
        workflow: {
            "id": workflow,
            "name": workflow,
            "displayName": workflow,
            "type": "DAG",
            "templateName": "simulate",
            "phase": phase,
            "children": [],
        }
    }
    clock = 10

    def at(second: int) -> str:
        return f"2026-01-01T00:{second // 60:02d}:{second % 60:02d}Z"

    for index, (task, phases) in enumerate(tries.items()):
        exit_handler = task == "notify"
        name = f"{workflow}.onExit" if exit_handler else f"{workflow}.{task}"
        flag = {"hooked": True} if exit_handler else {}
        retry = {
            "id": f"{workflow}-{2000 + 100 * index}",
            "name": name,
            "displayName": name if exit_handler else task,
            "type": "Retry",
            "templateName": task,
            "phase": phases[-1],
            "startedAt": at(clock),
            "children": [],
            **({"nodeFlag": flag} if flag else {}),
        }
        if not exit_handler:
            built[workflow]["children"].append(retry["id"])
        for attempt, attempt_phase in enumerate(phases):
            pod = {
                "id": f"{workflow}-{2001 + 100 * index + attempt}",
                "name": f"{name}({attempt})",
                "displayName": f"{retry['displayName']}({attempt})",
                "type": "Pod",
                "templateName": task,
                "phase": attempt_phase,
                "startedAt": at(clock),
                "finishedAt": at(clock + 1),
                "nodeFlag": {**flag, "retried": True},
            }
            if attempt_phase == "Failed":
                pod["message"] = "Error (exit code 1)"
            clock += 2
            retry["children"].append(pod["id"])
            built[pod["id"]] = pod
        retry["finishedAt"] = at(clock - 1)
        built[retry["id"]] = retry
    return built


def test_a_retried_steps_attempts_are_its_retry_nodes_attempts():
    """The attempts column on argo, as the embedded engine fills it: a step tried five
    times (four failures, then a success) has attempts 5; once, attempts 1."""
    workflow = "sim-0b4c1f0e-1d7b-4b7c-9d41-7f5cbb1f7c6e"
    tries = {
        "inputs": ["Succeeded"],
        "run": ["Succeeded"],
        "outputs": ["Succeeded"],
        "upload": ["Failed", "Failed", "Failed", "Failed", "Succeeded"],
        "notify": ["Failed", "Succeeded"],
    }
    built = retried_nodes(workflow, tries, "Succeeded")
    built[f"{workflow}-1999"] = {  # a step without a retryStrategy: one pod, no Retry node
        **node(workflow, "report", "Succeeded", index=40),
        "id": f"{workflow}-1999",
    }
    run = run_from_workflow(
        {
            "metadata": {"name": workflow, "labels": {}},
            "spec": {},
            "status": {"phase": "Succeeded", "nodes": built},
        }
    )
    assert run.status == "SUCCESS"
    assert {step: info.get("attempts") for step, info in run.steps.items()} == {
        "inputs": 1,
        "run": 1,
        "outputs": 1,
        "upload": 5,
        "notify": 2,
        "report": 1,
    }
    assert run.steps["upload"]["phase"] == "Succeeded"


def test_submit_writes_the_job_then_creates_a_valid_workflow(backend, double, redis_server):
    run = submit(backend)
    name = f"sim-{run.id}"
    assert (
        run.status == "PENDING"
        and run.tag == "42ce5647434e"
        and run.model == "PSLmodels/Tax-Cruncher"
    )
    assert double.requests[-1] == ("POST", "/api/v1/workflows/csflow")
    assert double.rejected == []
    stored = double.workflows[name]
    params = {p["name"]: p["value"] for p in stored["spec"]["arguments"]["parameters"]}
    assert params["image"] == "gcr.io/cs-test/pslmodels_tax-cruncher:42ce5647434e"
    assert params["job-id"] == run.id
    # The model's read-only user can read its job; inputs are not in the Workflow.
    job = json.loads(redis_server.client(redis_acl.MODEL).get(f"job-{run.id}"))
    assert job["inputs"] == parse_inputs(INPUTS).model_dump()
    assert "STD" not in json.dumps(stored)
    assert run.extra["link"] == f"{double.url}/workflows/csflow/{name}?tab=workflow"


def test_a_workflow_that_breaks_the_schema_is_never_sent(
    backend, double, monkeypatch, redis_server
):
    original = backend.workflow

    def broken(version, job_id):
        workflow = original(version, job_id)
        workflow["spec"]["ttlStrategy"]["secondsAfterCompletin"] = 1  # hera's models would drop it
        return workflow

    monkeypatch.setattr(backend, "workflow", broken)
    with pytest.raises(CsflowError, match="invalid Workflow: .*secondsAfterCompletin"):
        submit(backend)
    assert not any(method == "POST" for method, _ in double.requests)
    assert redis_server.client("admin").keys("job-*") == []


def test_the_double_validates_every_request_body(double, sim_workflow):
    headers = {"Authorization": f"Bearer {TOKEN}"}
    base = f"{double.url}/api/v1/workflows/csflow"
    sim_workflow["spec"]["podGC"]["strategi"] = "x"
    refused = requests.post(base, json={"workflow": sim_workflow}, headers=headers, timeout=10)
    assert refused.status_code == 400 and "strategi" in refused.json()["message"]
    sim_workflow["spec"]["podGC"].pop("strategi")
    assert (
        requests.post(
            base, json={"workflow": sim_workflow, "dryRun": True}, headers=headers, timeout=10
        ).status_code
        == 400
    )
    assert (
        requests.post(
            base, json={"workflow": sim_workflow}, headers=headers, timeout=10
        ).status_code
        == 200
    )
    name = sim_workflow["metadata"]["name"]
    assert (
        requests.put(
            f"{base}/{name}/stop",
            json={"name": name, "strategy": "now"},
            headers=headers,
            timeout=10,
        ).status_code
        == 400
    )
    assert (
        requests.post(
            base, json={"workflow": sim_workflow}, headers=headers, timeout=10
        ).status_code
        == 409
    )


def test_a_wrong_token_is_one_clear_error(settings, double):
    backend = ArgoBackend(settings.model_copy(update={"argo_token": SecretStr("wrong")}))
    with pytest.raises(ArgoError, match="Unauthorized"):
        backend.status("0b4c1f0e-1d7b-4b7c-9d41-7f5cbb1f7c6e")


def test_missing_settings_are_bad_input_before_anything_is_written(settings, redis_server):
    with pytest.raises(BadInput, match="CSFLOW_JOB_STORE_URL"):
        submit(ArgoBackend(settings.model_copy(update={"job_store_url": ""})))
    with pytest.raises(BadInput, match="CSFLOW_ARGO_HOST"):
        submit(ArgoBackend(settings.model_copy(update={"argo_host": ""})))
    assert redis_server.client("admin").keys("job-*") == []


def test_an_unreachable_server_is_one_line(settings):
    backend = ArgoBackend(settings.model_copy(update={"argo_host": "http://127.0.0.1:9"}))
    with pytest.raises(ArgoError, match="cannot reach the Argo Server"):
        backend.status("0b4c1f0e-1d7b-4b7c-9d41-7f5cbb1f7c6e")


def test_status_follows_the_workflow_through_its_phases(backend, double):
    run = submit(backend)
    name = f"sim-{run.id}"
    double.set_status(name, "Running", nodes(name, {"inputs": "Succeeded", "run": "Running"}))
    running = backend.status(run.id)
    assert running.status == "RUNNING"
    assert (
        running.steps["inputs"]["phase"] == "Succeeded"
        and running.steps["inputs"]["seconds"] == 1.0
    )
    assert running.steps["run"]["phase"] == "Running"

    double.set_status(
        name,
        "Succeeded",
        nodes(
            name,
            {
                "inputs": "Succeeded",
                "run": "Succeeded",
                "outputs": "Succeeded",
                "upload": "Succeeded",
                "notify": "Succeeded",
            },
        ),
        outputs={"errors-warnings": "{}", "model-version": "taxcalc 6.8.5"},
    )
    done = backend.status(run.id)
    assert done.status == "SUCCESS" and done.model_version == "taxcalc 6.8.5"
    assert list(done.steps) == ["inputs", "run", "outputs", "upload", "notify"]
    assert done.results_uri == open_storage(backend.settings.storage_url).uri(
        run_prefix("PSLmodels", "Tax-Cruncher", run.id)
    )


def test_invalid_inputs_and_failures_map_to_csflow_statuses(backend, double):
    invalid = submit(backend)
    errors = {"Policy": {"errors": {"STD": ["must be positive"]}, "warnings": {}}}
    double.set_status(
        f"sim-{invalid.id}", "Succeeded", outputs={"errors-warnings": json.dumps(errors)}
    )
    result = backend.status(invalid.id)
    assert result.status == "INVALID" and result.errors_warnings == errors

    failed = submit(backend)
    name = f"sim-{failed.id}"
    double.set_status(
        name,
        "Failed",
        nodes(
            name,
            {"inputs": "Succeeded", "run": "Failed", "notify": "Succeeded"},
            message="OOMKilled (exit code 137)",
        ),
    )
    result = backend.status(failed.id)
    assert result.status == "FAIL" and result.reason == "run: OOMKilled (exit code 137)"


def test_wait_returns_at_the_end_or_raises_after_its_timeout(backend, double):
    run = submit(backend)
    name = f"sim-{run.id}"
    double.set_status(name, "Running", nodes(name, {"inputs": "Running"}))
    with pytest.raises(TimeoutError, match="still RUNNING"):
        backend.wait(run.id, timeout=0.3, poll=0.05)
    seen = []
    finish = threading.Timer(
        0.3,
        double.set_status,
        (
            name,
            "Succeeded",
            nodes(name, {"inputs": "Succeeded", "run": "Succeeded"}),
            {"errors-warnings": "{}"},
        ),
    )
    finish.start()
    try:
        result = backend.execute(
            run.id, events=lambda step, phase, info: seen.append((step, phase)), poll=0.05
        )
    finally:
        finish.cancel()
    assert result.status == "SUCCESS"
    assert (
        ("inputs", "Running") in seen
        and ("inputs", "Succeeded") in seen
        and ("run", "Succeeded") in seen
    )


def test_logs_are_read_line_by_line_from_the_ndjson_stream(backend, double):
    run = submit(backend)
    name = f"sim-{run.id}"
    workflow_nodes = nodes(name, {"inputs": "Succeeded", "run": "Succeeded"})
    double.set_status(name, "Succeeded", workflow_nodes, {"errors-warnings": "{}"})
    workflow = double.workflows[name]
    pods = {
        n["displayName"]: pod_name(workflow, n)
        for n in workflow_nodes.values()
        if n["type"] == "Pod"
    }
    double.add_logs(name, pods["inputs"], ["checking inputs", 'quote " and \\r inside {json}'])
    double.add_logs(name, pods["run"], ["running model", "done: 8,032.00"])
    assert backend.logs(run.id, step="run") == "running model\ndone: 8,032.00\n"
    everything = backend.logs(run.id)
    assert everything.index("==> inputs <==") < everything.index("==> run <==")
    assert 'quote " and \\r inside {json}' in everything
    assert list(backend.stream_logs(run.id, step="inputs"))[0] == ("inputs", "checking inputs")
    with pytest.raises(NotFound, match="no step 'upload'"):
        backend.logs(run.id, step="upload")


def test_cancel_stops_and_terminate_terminates(backend, double):
    stopped, terminated = submit(backend), submit(backend)
    assert backend.cancel(stopped.id).status == "CANCELLED"
    assert (
        double.workflows[f"sim-{stopped.id}"]["status"]["message"] == "Stopped with strategy 'Stop'"
    )
    assert backend.terminate(terminated.id).status == "CANCELLED"
    assert ("PUT", f"/api/v1/workflows/csflow/sim-{terminated.id}/terminate") in double.requests
    assert double.rejected == []


def test_list_and_results_through_the_client(settings, double):
    client = Client(settings)
    first = client.submit("PSLmodels/Tax-Cruncher", INPUTS, tag="42ce5647434e")
    second = client.submit("PSLmodels/Tax-Cruncher", INPUTS, tag="42ce5647434e")
    assert {r.id for r in client.list()} == {first.id, second.id}
    double.set_status(f"sim-{first.id}", "Succeeded", outputs={"errors-warnings": "{}"})
    storage = open_storage(settings.storage_url)
    storage.put(
        f"{run_prefix('PSLmodels', 'Tax-Cruncher', first.id)}/outputs.json", b'{"renderable": []}'
    )
    assert client.results(first.id) == {"renderable": []}
    with pytest.raises(BadInput, match="no results: it is PENDING"):
        client.results(second.id)


def test_an_unknown_run_is_not_found(backend):
    with pytest.raises(NotFound):
        backend.status("0b4c1f0e-1d7b-4b7c-9d41-7f5cbb1f7c6e")
    with pytest.raises(BadInput, match="job ids are UUIDs"):
        backend.status("not-a-uuid")


def test_the_token_never_shows(settings):
    assert TOKEN not in repr(settings) and TOKEN not in settings.model_dump_json()


@pytest.mark.parametrize(
    "chunks, expected",
    [
        ([b'{"a": 1}\n{"b"', b": 2}\n"], [{"a": 1}, {"b": 2}]),
        ([b'{"a": "x\\r\\ny"}', b"\n\n", b'{"c": 3}'], [{"a": "x\r\ny"}, {"c": 3}]),
        ([b"", b'{"a"', b": 1", b"}"], [{"a": 1}]),
    ],
)
def test_ndjson_reader_handles_any_chunking(chunks, expected):
    assert list(ndjson(chunks)) == expected


def test_ndjson_reader_rejects_garbage():
    with pytest.raises(ArgoError, match="not JSON"):
        list(ndjson([b"<html>\n"]))


def test_pod_names_follow_argo_v2_naming():
    assert argo_backend._fnv1a_32(b"hello") == 0x4F9F2CAB  # the FNV-1a test vector
    workflow = {"metadata": {"name": "sim-x"}}
    assert (
        pod_name(workflow, {"id": "sim-x-1", "name": "sim-x.run", "templateName": "run"})
        == f"sim-x-run-{argo_backend._fnv1a_32(b'sim-x.run')}"
    )
    v1 = {
        "metadata": {
            "name": "sim-x",
            "annotations": {argo_backend.POD_NAME_FORMAT_ANNOTATION: "v1"},
        }
    }
    assert pod_name(v1, {"id": "sim-x-1", "name": "sim-x.run", "templateName": "run"}) == "sim-x-1"


def test_redis_refuses_the_model_user_writes(redis_server):
    with pytest.raises(redis.exceptions.NoPermissionError):
        redis_server.client(redis_acl.MODEL).set("job-x", "1")


def test_a_sweeps_nodes_are_named_by_their_path_as_the_engine_names_them():
    """As Argo v4.0.5 names a sweep's nodes: the loop (TaskGroup ``sweep-x.point``), each
    point's DAG (``sweep-x.point(0:JOB)``) and its pods (``sweep-x.point(0:JOB).run``,
    a retried step's attempts ``...upload(0)``); all display names are the task's."""
    root, job = "sweep-0b4c1f0e-1d7b-4b7c-9d41-7f5cbb1f7c6e", "5e0c5d7a-1111-4222-8333-444455556666"
    point = f"point(0:{job})"

    def made(name: str, display: str, kind: str, phase: str, index: int) -> dict:
        return {
            "id": f"n{index}",
            "name": f"{root}.{name}" if name else root,
            "displayName": display,
            "type": kind,
            "phase": phase,
            "startedAt": f"2026-01-01T00:00:{10 + index:02d}Z",
            "finishedAt": f"2026-01-01T00:00:{30 + index:02d}Z",
        }

    built = [
        made("", root, "DAG", "Succeeded", 0),
        made("point", "point", "TaskGroup", "Failed", 1),
        made(point, point, "DAG", "Failed", 2),
        made(f"{point}.inputs", "inputs", "Pod", "Succeeded", 3),
        made(f"{point}.run", "run", "Pod", "Failed", 4),
        made(f"{point}.outputs", "outputs", "Omitted", "Omitted", 5),
        made("combine(0)", "combine(0)", "Pod", "Succeeded", 6),
    ]
    built[4]["message"] = "RuntimeError: thirteen is unlucky"
    parameters = [
        {"name": "axis", "value": "Knobs.x"},
        {"name": "points", "value": json.dumps([job])},
        {"name": "labels", "value": json.dumps(["13"])},
    ]
    run = run_from_workflow(
        {
            "metadata": {"name": root, "labels": {"csflow.io/flow": "sweep"}},
            "spec": {"arguments": {"parameters": parameters}},
            "status": {"phase": "Succeeded", "nodes": {n["id"]: n for n in built}},
        }
    )
    assert run.kind == "sweep" and run.status == "SUCCESS"
    assert list(run.steps) == [
        "point",
        point,
        f"{point}.inputs",
        f"{point}.run",
        f"{point}.outputs",
        "combine",
    ]
    assert run.extra["sweep"] == {"axis": "Knobs.x", "points": [{"job_id": job, "label": "13"}]}
    (state,) = Client.sweep_points(run)
    assert (state.state, state.reason) == ("failed", "run: RuntimeError: thirteen is unlucky")
