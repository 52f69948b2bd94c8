"""The Redis job store and the model step that reads it, on a real redis-server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from csflow.sdk.core.errors import BadInput, NotFound
from csflow.sdk.dataplane.jobstore import open_job_store
from csflow.sdk.dataplane.redis_jobs import JobStoreError, RedisJobStore

from .conftest import MODEL_SOURCE, REPO

JOB = {
    "owner": "dataplane",
    "title": "SecretReader",
    "inputs": {"meta_param_dict": {"year": [{"value": 2024}]}, "adjustment": {"Knobs": {}}},
}


def scheduler_store(server, **kwargs) -> RedisJobStore:
    return RedisJobStore(server.url, "scheduler", server.passwords["scheduler"], **kwargs)


def test_a_job_round_trips_with_an_expiry(redis_server, redis_admin):
    store = scheduler_store(redis_server)
    job_id = str(uuid.uuid4())
    store.put(job_id, JOB, ttl=300)
    assert store.get(job_id) == JOB
    assert 0 < redis_admin.ttl(f"job-{job_id}") <= 300
    model = RedisJobStore(redis_server.url, "model", redis_server.passwords["model"])
    assert model.get(job_id) == JOB
    store.expire(job_id, 30)
    assert 0 < redis_admin.ttl(f"job-{job_id}") <= 30


def test_an_expired_job_gives_a_clear_error(redis_server, redis_admin):
    store = scheduler_store(redis_server)
    job_id = str(uuid.uuid4())
    store.put(job_id, JOB, ttl=1)
    assert store.get(job_id) == JOB
    for _ in range(60):  # Redis expires the key after a second
        if not redis_admin.exists(f"job-{job_id}"):
            break
        time.sleep(0.05)
    with pytest.raises(NotFound, match=f"job {job_id} is not in the job store: it has expired"):
        store.get(job_id)
    with pytest.raises(NotFound, match="expired"):
        store.expire(job_id, 60)


def test_a_missing_job_and_a_bad_id(redis_server, redis_admin):
    store = scheduler_store(redis_server)
    with pytest.raises(NotFound, match="expired or was never written"):
        store.get(str(uuid.uuid4()))
    with pytest.raises(BadInput, match="job ids are UUIDs"):
        store.get("../../etc/passwd")
    with pytest.raises(BadInput, match="expiry must be positive"):
        store.put(str(uuid.uuid4()), JOB, ttl=0)


def test_the_model_user_may_not_write_jobs(redis_server, redis_admin):
    model = RedisJobStore(redis_server.url, "model", redis_server.passwords["model"])
    job_id = str(uuid.uuid4())
    with pytest.raises(JobStoreError, match=f"user 'model' may not write job-{job_id}"):
        model.put(job_id, JOB)
    assert redis_admin.exists(f"job-{job_id}") == 0


def test_a_wrong_password_is_one_clear_line_without_the_password(redis_server, redis_admin):
    store = RedisJobStore(redis_server.url, "scheduler", "wrong-password-123")
    with pytest.raises(JobStoreError) as caught:
        store.put(str(uuid.uuid4()), JOB)
    message = str(caught.value)
    assert "refused user 'scheduler': wrong password" in message
    assert "wrong-password-123" not in message and "\n" not in message
    assert "wrong-password-123" not in repr(store)


def test_passwords_never_ride_in_the_url(redis_server):
    with pytest.raises(BadInput, match="CSFLOW_REDIS_PASSWORD, not in the job store URL"):
        RedisJobStore(
            f"redis://scheduler:{redis_server.passwords['scheduler']}@127.0.0.1:{redis_server.port}/0"
        )


def test_open_job_store_reads_the_user_from_the_environment(redis_server, redis_admin, monkeypatch):
    monkeypatch.setenv("CSFLOW_REDIS_USER", "scheduler")
    monkeypatch.setenv("CSFLOW_REDIS_PASSWORD", redis_server.passwords["scheduler"])
    store = open_job_store(redis_server.url)
    assert isinstance(store, RedisJobStore)
    job_id = str(uuid.uuid4())
    store.put(job_id, JOB)
    assert json.loads(redis_admin.get(f"job-{job_id}")) == JOB


def test_an_unreachable_store(redis_server):
    from .conftest import free_port

    store = RedisJobStore(f"redis://127.0.0.1:{free_port()}/0", "scheduler", "x" * 20, timeout=2)
    with pytest.raises(JobStoreError, match="cannot reach the job store"):
        store.get(str(uuid.uuid4()))


# -- the model step reads its job as the model user ------------------------------


def run_model_step(
    tmp_path: Path, job_store: str, job_id: str, user: str | None, password: str | None
):
    env = {
        "PATH": os.environ["PATH"],
        "PYTHONPATH": str(MODEL_SOURCE),
        "CSFLOW_MODEL_FUNCTIONS": "dataplane_model",
        "CSFLOW_JOB_STORE_URL": job_store,
        "CSFLOW_WORK_DIR": str(tmp_path / "work"),
    }
    if user:
        env.update(CSFLOW_REDIS_USER=user, CSFLOW_REDIS_PASSWORD=password or "")
    # csflow's own interpreter: it has redis, as a model image does.
    return subprocess.run(
        [sys.executable, str(REPO / "runtime" / "model_step.py"), "inputs", "--job-id", job_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_model_step_reads_its_job_as_the_model_user(redis_server, redis_admin, tmp_path):
    job_id = str(uuid.uuid4())
    scheduler_store(redis_server).put(job_id, JOB)
    done = run_model_step(
        tmp_path, redis_server.url, job_id, "model", redis_server.passwords["model"]
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "work" / "valid").read_text() == "true"
    assert (tmp_path / "work" / "model-version").read_text() == "dataplane 1.0"


def test_the_model_step_reports_an_expired_job(redis_server, redis_admin, tmp_path):
    job_id = str(uuid.uuid4())
    scheduler_store(redis_server).put(job_id, JOB, ttl=1)
    for _ in range(60):
        if not redis_admin.exists(f"job-{job_id}"):
            break
        time.sleep(0.05)
    done = run_model_step(
        tmp_path, redis_server.url, job_id, "model", redis_server.passwords["model"]
    )
    assert done.returncode == 3  # EXIT_BAD_JOB: not a model error
    assert f"job {job_id} not found in the job store (expired or never written)" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_model_step_with_a_wrong_password(redis_server, redis_admin, tmp_path):
    job_id = str(uuid.uuid4())
    scheduler_store(redis_server).put(job_id, JOB)
    done = run_model_step(tmp_path, redis_server.url, job_id, "model", "not-the-model-password")
    assert done.returncode == 3
    assert (
        done.stderr.strip()
        == "csflow: the job store refused user 'model': wrong password, or the user is disabled"
    )
    # and with the scheduler's user name but the model's password: refused as well
    done = run_model_step(
        tmp_path, redis_server.url, job_id, "scheduler", redis_server.passwords["model"]
    )
    assert done.returncode == 3 and "refused user 'scheduler'" in done.stderr


def test_the_model_step_reports_an_expired_file_job(tmp_path):
    from csflow.sdk.dataplane.jobstore import FileJobStore

    job_id = str(uuid.uuid4())
    jobs = (tmp_path / "jobs").as_uri()
    FileJobStore(jobs).put(job_id, JOB, ttl=-1)  # already expired
    done = run_model_step(tmp_path, jobs, job_id, None, None)
    assert done.returncode == 3
    assert f"job {job_id} has expired" in done.stderr
