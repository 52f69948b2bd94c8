"""Fixtures for the data plane: the real servers, started by the tests.

- ``redis_admin``: the admin connection to the ``redis_server`` fixture (a real
  ``redis-server``, once per session; tests/conftest.py, as the Argo and
  cluster tests use it too), on an empty database;
- ``gcs``: the real google-cloud-storage client against ``gcp-storage-emulator``,
  in this process;
- ``secret_manager``: the real Secret Manager client against a local double
  (tests/dataplane/doubles.py says what it stands in for);
- ``webapp``: a local HTTP server that records the webapp calls.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import redis
from servers import free_port

from .doubles import KubernetesDouble, RecordingWebapp, SecretManagerDouble

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
MODEL_CONFIGS = HERE / "models" / "config"
MODEL_SOURCE = HERE / "models" / "reader"
OK_INPUTS = {"meta_param_dict": {"year": 2024}, "adjustment": {"Knobs": {"x": [{"value": 2}]}}}


@pytest.fixture
def redis_admin(redis_server) -> redis.Redis:
    """The admin connection, on an empty database."""
    admin = redis_server.client("admin")
    admin.flushall()
    return admin


@pytest.fixture(scope="session")
def gcs_emulator():
    from gcp_storage_emulator.server import create_server

    port = free_port()
    server = create_server("127.0.0.1", port, in_memory=True, default_bucket="csflow-results")
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture
def gcs(gcs_emulator, monkeypatch) -> str:
    """A gs:// URL with a fresh prefix in the emulator's bucket; the real client
    finds the emulator through STORAGE_EMULATOR_HOST."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", gcs_emulator)
    return f"gs://csflow-results/t-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def secret_manager():
    server = SecretManagerDouble().start()
    yield server
    server.stop()


@pytest.fixture
def webapp():
    server = RecordingWebapp().start()
    yield server
    server.stop()


@pytest.fixture
def kube():
    server = KubernetesDouble().start()
    yield server
    server.stop()


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("CSFLOW_HOME", str(path))
    for name in (
        "CSFLOW_REDIS_USER",
        "CSFLOW_REDIS_PASSWORD",
        "CSFLOW_WEBAPP_TOKEN",
        "CSFLOW_STORAGE_URL",
        "CSFLOW_WEBAPP_URL",
        "CSFLOW_JOB_STORE_URL",
        "CSFLOW_SECRETS_BACKEND",
    ):
        monkeypatch.delenv(name, raising=False)
    return path
