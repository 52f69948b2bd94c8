"""Webapp callbacks against a local HTTP server that records every call."""

from __future__ import annotations

import json
import uuid

import pytest

from csflow.runtime import platform_step
from csflow.sdk.core.errors import BadInput
from csflow.sdk.dataplane.webapp import WebappClient, WebappError

from .doubles import RecordingWebapp

TOKEN = "tok-9f8e7d6c5b4a"


def client(server: RecordingWebapp, **kwargs) -> WebappClient:
    return WebappClient(server.url, token=TOKEN, backoff=0.01, **kwargs)


def test_a_webapp_that_fails_twice_then_accepts(webapp):
    webapp.script = [503, 502]
    job_id = str(uuid.uuid4())
    reply = client(webapp).report(job_id, "SUCCESS", outputs={"outputs": {}, "version": "v1"})
    assert reply.status_code == 200
    assert len(webapp.calls) == 3
    for call in webapp.calls:  # the same report each time: the job id makes repeats harmless
        assert call.method == "PUT" and call.path == "/outputs/api/"
        assert call.body == {
            "job_id": job_id,
            "status": "SUCCESS",
            "outputs": {"outputs": {}, "version": "v1"},
        }
        assert call.headers["Authorization"] == f"Token {TOKEN}"


def test_a_refusal_is_not_retried(webapp):
    webapp.script = [400]
    job_id = str(uuid.uuid4())
    with pytest.raises(WebappError) as caught:
        client(webapp).report(job_id, "FAIL", traceback="boom")
    assert len(webapp.calls) == 1
    message = str(caught.value)
    assert f"refused the report for job {job_id}: HTTP 400" in message
    assert TOKEN not in message and "\n" not in message


def test_it_gives_up_after_the_last_attempt(webapp):
    webapp.script = [503] * 10
    with pytest.raises(WebappError, match="HTTP 503"):
        client(webapp, attempts=3).report(str(uuid.uuid4()), "SUCCESS")
    assert len(webapp.calls) == 3


def test_rate_limits_and_timeouts_are_retried(webapp):
    webapp.script = [429, 408]
    client(webapp).report(str(uuid.uuid4()), "SUCCESS")
    assert len(webapp.calls) == 3


def test_an_unreachable_webapp(webapp):
    from .conftest import free_port

    failing = WebappClient(
        f"http://127.0.0.1:{free_port()}", token=TOKEN, attempts=2, backoff=0.01, timeout=2
    )
    with pytest.raises(WebappError, match="did not answer for job .* after 2 attempt"):
        failing.report(str(uuid.uuid4()), "SUCCESS")


def test_the_token_stays_out_of_reprs_and_bad_ids_are_refused(webapp):
    assert TOKEN not in repr(client(webapp))
    with pytest.raises(BadInput, match="job ids are UUIDs"):
        client(webapp).report("not-a-uuid", "SUCCESS")
    assert webapp.calls == []


# -- the notify step (the exit handler) ------------------------------------------


def notify(monkeypatch, webapp, *args: str) -> int:
    monkeypatch.setenv("CSFLOW_WEBAPP_URL", webapp.url)
    monkeypatch.setenv("CSFLOW_WEBAPP_TOKEN", TOKEN)
    monkeypatch.setenv("CSFLOW_WEBAPP_BACKOFF", "0.01")
    return platform_step.main(["notify", "--owner", "o", "--title", "t", *args])


FAILURES = [{"displayName": "run", "message": "OOMKilled (exit code 137)", "phase": "Failed"}]
# What a real Argo v4.0.5 lists (the DAG around the failed step too, in map order).
ARGO_FAILURES = [
    {
        "displayName": "sim-0b4c1f0e",
        "message": "child 'sim-0b4c1f0e-3712' failed",
        "templateName": "simulate",
        "phase": "Failed",
        "podName": "sim-0b4c1f0e",
        "finishedAt": "2026-12-01T22:40:09Z",
    },
    {
        "displayName": "run",
        "message": "OOMKilled (exit code 137)",
        "templateName": "run",
        "phase": "Failed",
        "podName": "sim-0b4c1f0e-run-3712",
        "finishedAt": "2026-12-01T22:40:08Z",
    },
]


# The embedded engine passes the JSON list; a real Argo v4 passes it JSON-encoded again.
@pytest.mark.parametrize(
    "failures",
    [json.dumps(FAILURES), json.dumps(json.dumps(ARGO_FAILURES))],
    ids=["json", "argo-v4"],
)
def test_a_failure_is_reported_with_its_reason(webapp, monkeypatch, tmp_path, failures):
    monkeypatch.setenv("CSFLOW_WORK_DIR", str(tmp_path))
    job_id = str(uuid.uuid4())
    assert (
        notify(
            monkeypatch,
            webapp,
            "--job-id",
            job_id,
            "--status",
            "Failed",
            "--failures",
            failures,
        )
        == 0
    )
    [call] = webapp.calls
    assert call.path == "/outputs/api/"
    assert call.body == {
        "job_id": job_id,
        "status": "FAIL",
        "meta": {"task_times": [0.0]},  # a failure's model time is not billed
        "traceback": "run: OOMKilled (exit code 137)",
    }


def test_a_failure_without_step_failures_still_has_a_reason(webapp, monkeypatch, tmp_path):
    """A deadline or a deleted pod can end a workflow with no failed step listed."""
    monkeypatch.setenv("CSFLOW_WORK_DIR", str(tmp_path))
    assert (
        notify(
            monkeypatch,
            webapp,
            "--job-id",
            str(uuid.uuid4()),
            "--status",
            "Error",
            "--failures",
            "{{workflow.failures}}",
        )
        == 0
    )
    [call] = webapp.calls
    assert call.body["status"] == "FAIL"
    assert call.body["traceback"] == "the workflow ended Error"


def test_invalid_inputs_are_reported_with_their_errors(webapp, monkeypatch, tmp_path):
    """Through the webapp's inputs callback, as C/S's workers reported validation:
    the validation ran (SUCCESS); its errors make the webapp's inputs INVALID."""
    monkeypatch.setenv("CSFLOW_WORK_DIR", str(tmp_path))
    errors = {"Knobs": {"errors": {"x": ["x must be at least 0"]}, "warnings": {}}}
    job_id = str(uuid.uuid4())
    assert (
        notify(
            monkeypatch,
            webapp,
            "--job-id",
            job_id,
            "--status",
            "Succeeded",
            "--errors-warnings",
            json.dumps(errors),
        )
        == 0
    )
    [call] = webapp.calls
    assert call.method == "PUT" and call.path == "/inputs/api/"
    assert call.body == {"job_id": job_id, "status": "SUCCESS", "errors_warnings": errors}


def test_a_success_is_left_to_upload(webapp, monkeypatch, tmp_path):
    monkeypatch.setenv("CSFLOW_WORK_DIR", str(tmp_path))
    assert notify(monkeypatch, webapp, "--job-id", str(uuid.uuid4()), "--status", "Succeeded") == 0
    assert webapp.calls == []


def test_a_webapp_that_never_accepts_fails_notify_in_one_line(
    webapp, monkeypatch, tmp_path, capsys
):
    """Argo then retries notify (transient_retry); the embedded engine records the failure."""
    monkeypatch.setenv("CSFLOW_WORK_DIR", str(tmp_path))
    monkeypatch.setenv("CSFLOW_WEBAPP_ATTEMPTS", "2")
    webapp.script = [500] * 5
    assert notify(monkeypatch, webapp, "--job-id", str(uuid.uuid4()), "--status", "Failed") == 1
    err = capsys.readouterr().err
    assert err.startswith("csflow: webapp ") and "HTTP 500" in err and err.count("\n") == 1
    assert TOKEN not in err
    assert len(webapp.calls) == 2
