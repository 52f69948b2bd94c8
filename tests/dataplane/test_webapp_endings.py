"""Every way a simulation ends reaches the C/S webapp as a call it accepts.

The receiver (tests/webapp_receiver.py) judges each callback with Django REST
framework serializers that follow the webapp's field rules, then with what the
webapp's views read, and answers as the webapp would. The simulations run on the
embedded engine with the webapp URL pointed at it: success, a crash, invalid
inputs (the model's and csflow's own meta-parameter check), a deadline, a cancel.
"""

from __future__ import annotations

import io
import json
import time
import uuid
import zipfile

import pytest
from paths import TOY_CONFIGS
from webapp_receiver import INPUTS_PATH, OUTPUTS_PATH, WebappReceiver

from csflow.sdk.client import Client
from csflow.sdk.dataplane import webapp as webapp_api
from csflow.sdk.dataplane.secrets import LocalSecretStore
from csflow.sdk.dataplane.webapp import WebappClient, WebappError

TOKEN = "tok-3c2b1a09f8e7"
OK_INPUTS = {"meta_param_dict": {"year": 2024}, "adjustment": {"Knobs": {"x": [{"value": 2}]}}}
BAD_X = {"meta_param_dict": {"year": 2024}, "adjustment": {"Knobs": {"x": [{"value": -1}]}}}
BAD_YEAR = {"meta_param_dict": {"year": 1999}, "adjustment": {"Knobs": {"x": [{"value": 2}]}}}
REMOTE = {
    "renderable": {
        "ziplocation": "o/t/j/renderable.zip",
        "outputs": [
            {"id": str(uuid.uuid4()), "title": "T", "media_type": "table", "filename": "T.html"}
        ],
    },
    "downloadable": {"ziplocation": "o/t/j/downloadable.zip", "outputs": []},
}


@pytest.fixture
def receiver():
    server = WebappReceiver(token=TOKEN).start()
    yield server
    server.stop()


def client_of(receiver: WebappReceiver, **kwargs) -> WebappClient:
    return WebappClient(receiver.url, token=TOKEN, backoff=0.01, **kwargs)


# -- the receiver holds csflow's old callbacks to the webapp's rules ---------------------


def test_the_callbacks_csflow_sent_before_are_refused_as_the_webapp_refused_them(receiver):
    """The issue's refusals: no ``meta``; ``INVALID`` is not a choice; the outputs
    nested once too deep (the webapp needs ``version`` beside ``outputs``)."""
    job_id = str(uuid.uuid4())
    sender = client_of(receiver, attempts=1)
    with pytest.raises(WebappError, match="HTTP 400") as caught:
        sender.report(job_id, "INVALID", errors_warnings={}, traceback="")
    assert json.loads(receiver.refused[-1].reply) == {
        "status": ['"INVALID" is not a valid choice.'],
        "traceback": ["This field may not be blank."],
        "meta": ["This field is required."],
    }
    assert "meta" in str(caught.value) and TOKEN not in str(caught.value)
    with pytest.raises(WebappError, match="HTTP 400"):
        sender.report(job_id, "SUCCESS", outputs={"outputs": REMOTE, "version": "v1"})
    assert json.loads(receiver.refused[-1].reply) == {"meta": ["This field is required."]}
    with pytest.raises(WebappError, match="HTTP 500"):  # the view reads data["version"]
        sender.report(job_id, "SUCCESS", meta={"task_times": [1.0]}, outputs=REMOTE)
    with pytest.raises(WebappError, match="HTTP 500"):  # sum(meta["task_times"]) on a FAIL too
        sender.report(job_id, "FAIL", meta={}, traceback="boom")
    with pytest.raises(WebappError, match="HTTP 401"):
        WebappClient(receiver.url, token="wrong", attempts=1).report_failure(job_id, "boom")
    assert receiver.accepted == []


def test_the_reports_csflow_builds_are_accepted(receiver):
    job_id = str(uuid.uuid4())
    sender = client_of(receiver)
    sender.report_success(job_id, REMOTE, 1.23456, "toy 1.0")
    sender.report_failure(job_id, "run: ZeroDivisionError: float division by zero")
    sender.report_invalid_inputs(
        job_id, {"Knobs": {"errors": {"x": ["x must be at least 0"]}, "warnings": {}}}
    )
    sender.report_invalid_inputs(job_id, {"Knobs": {"errors": {}, "warnings": {}}})
    assert receiver.refused == []
    success, failure, invalid, valid = receiver.for_job(job_id)
    assert (success.path, success.outcome) == (OUTPUTS_PATH, "SUCCESS")
    assert success.body == {
        "job_id": job_id,
        "status": "SUCCESS",
        "meta": {"task_times": [1.235]},
        "model_version": "toy 1.0",
        "outputs": REMOTE,
        "version": "v1",
    }
    assert (failure.path, failure.outcome) == (OUTPUTS_PATH, "FAIL")
    assert failure.body["meta"] == {"task_times": [0.0]}
    assert (invalid.path, invalid.outcome) == (INPUTS_PATH, "INVALID")
    assert not invalid.submits_simulation
    # What csflow never sends (a valid run reports to /outputs/api/): valid inputs
    # on /inputs/api/ make the webapp submit the simulation again.
    assert valid.submits_simulation


def test_reports_keep_to_the_webapps_limits():
    job_id = str(uuid.uuid4())
    long_version = "v" * 80
    report = webapp_api.success_report(job_id, REMOTE, float("nan"), long_version)
    assert report["meta"] == {"task_times": [0.0]} and len(report["model_version"]) == 50
    assert "model_version" not in webapp_api.success_report(job_id, REMOTE, 1.0, "  ")
    assert webapp_api.failure_report(job_id, "  ")["traceback"] == "the simulation failed"
    long = webapp_api.failure_report(job_id, "x" * 9000 + " the end")["traceback"]
    assert len(long) == webapp_api.MAX_TRACEBACK_CHARS and long.endswith("the end")


def test_a_traceback_never_carries_a_credential(monkeypatch):
    monkeypatch.setenv("CSFLOW_WEBAPP_TOKEN", TOKEN)
    monkeypatch.setenv("CSFLOW_REDIS_PASSWORD", "redis-pw-5566aa")
    text = (
        f"run: RuntimeError: cannot log in with {TOKEN} to redis://model:redis-pw-5566aa@h:6379/0;"
        " Authorization: Token abcdef0123456789, {'api_key': 'AKIA0000SECRET'}, password=hunter22"
    )
    traceback = webapp_api.failure_report(str(uuid.uuid4()), text)["traceback"]
    for secret in (TOKEN, "redis-pw-5566aa", "abcdef0123456789", "AKIA0000SECRET", "hunter22"):
        assert secret not in traceback, traceback
    assert traceback.startswith("run: RuntimeError: cannot log in with [redacted] to redis://")


# -- every ending on the embedded engine ------------------------------------------------


@pytest.fixture
def toy(home, receiver, monkeypatch) -> Client:
    """The test models on the embedded engine, telling the receiver (with the
    webapp token from the secret store, as in production)."""
    monkeypatch.setenv("CSFLOW_WEBAPP_BACKOFF", "0.01")
    LocalSecretStore(home).set("CS_API_TOKEN", TOKEN)
    return Client(home=home, config_dirs=[TOY_CONFIGS], webapp_url=receiver.url)


def only_call(receiver: WebappReceiver, job_id: str):
    assert receiver.refused == [], receiver.refused
    calls = receiver.for_job(job_id)
    assert len(calls) == 1, calls
    [call] = calls
    assert call.method == "PUT" and call.headers["Authorization"] == f"Token {TOKEN}"
    return call


def test_a_success_reports_the_outputs_where_they_were_written(toy, receiver, home):
    from cs_storage import RemoteResult  # the oracle: how the webapp read them

    run = toy.simulate("tests/ToyNap", OK_INPUTS)  # run_model sleeps 0.4 s
    assert run.status == "SUCCESS", run.reason
    call = only_call(receiver, run.id)
    assert (call.path, call.outcome) == (OUTPUTS_PATH, "SUCCESS")
    body = call.body
    assert sorted(body) == ["job_id", "meta", "model_version", "outputs", "status", "version"]
    assert (body["job_id"], body["status"], body["version"]) == (run.id, "SUCCESS", "v1")
    assert body["model_version"] == run.model_version == "toy 1.0"
    # run_model's own wall time (what C/S billed on), within the run step's.
    [seconds] = body["meta"]["task_times"]
    assert 0.4 <= seconds <= run.steps["run"]["seconds"]
    remote = body["outputs"]
    schema = RemoteResult()
    assert schema.dump(schema.load(remote)) == remote  # load raises on what it refuses
    outputs = toy.results(run.id)
    for category in ("renderable", "downloadable"):
        entry = remote[category]
        assert entry["ziplocation"] == f"tests/ToyNap/{run.id}/{category}.zip"
        with zipfile.ZipFile(
            io.BytesIO((home / "results" / entry["ziplocation"]).read_bytes())
        ) as z:
            assert z.namelist() == [o["filename"] for o in entry["outputs"]]
        assert [(o["id"], o["title"], o["media_type"]) for o in entry["outputs"]] == [
            (o["id"], o["title"], o["media_type"]) for o in outputs[category]
        ]


def test_a_crash_is_a_fail_with_the_models_exception(toy, receiver):
    run = toy.simulate("tests/ToyCrash", OK_INPUTS)
    assert run.status == "FAIL"
    call = only_call(receiver, run.id)
    assert (call.path, call.outcome) == (OUTPUTS_PATH, "FAIL")
    assert call.body == {
        "job_id": run.id,
        "status": "FAIL",
        "meta": {"task_times": [0.0]},
        "traceback": "run: ZeroDivisionError: float division by zero",
    }


@pytest.mark.parametrize(
    "inputs, section, where",
    [(BAD_X, "Knobs", "x"), (BAD_YEAR, "API", "meta_parameters.year")],
    ids=["validate_inputs", "meta-parameters"],
)
def test_invalid_inputs_reach_the_inputs_callback(toy, receiver, inputs, section, where):
    run = toy.simulate("tests/ToyOk", inputs)
    assert run.status == "INVALID", run.reason
    call = only_call(receiver, run.id)
    assert (call.path, call.outcome) == (INPUTS_PATH, "INVALID")
    assert not call.submits_simulation
    assert call.body == {
        "job_id": run.id,
        "status": "SUCCESS",
        "errors_warnings": run.errors_warnings,
    }
    assert call.body["errors_warnings"][section]["errors"][where]


def test_a_deadline_is_a_fail_that_says_so(toy, receiver):
    run = toy.simulate("tests/ToyHang", OK_INPUTS)  # its timeout: 3 s
    assert run.status == "FAIL"
    call = only_call(receiver, run.id)
    assert (call.path, call.outcome) == (OUTPUTS_PATH, "FAIL")
    assert "run: " in call.body["traceback"]
    assert "exceeded its timeout of 3s" in call.body["traceback"]
    assert call.body["meta"] == {"task_times": [0.0]}


def test_a_cancel_is_a_fail_that_says_so(toy, receiver):
    run = toy.simulate("tests/ToyHang", OK_INPUTS, detach=True)
    deadline = time.monotonic() + 60
    while toy.status(run.id).steps.get("run", {}).get("phase") != "Running":
        assert time.monotonic() < deadline, "the run step never started"
        time.sleep(0.1)
    assert toy.cancel(run.id).status == "CANCELLED"
    # The cancel is recorded at once; the engine then stops the run step and runs
    # the exit handler, which tells the webapp.
    deadline = time.monotonic() + 60
    while not receiver.for_job(run.id) and not receiver.refused:
        assert time.monotonic() < deadline, "the exit handler never told the webapp"
        time.sleep(0.1)
    call = only_call(receiver, run.id)
    assert (call.path, call.outcome) == (OUTPUTS_PATH, "FAIL")
    assert call.body["traceback"] == "run: cancelled"
    assert call.body["meta"] == {"task_times": [0.0]}
    assert toy.wait(run.id, timeout=60).status == "CANCELLED"
