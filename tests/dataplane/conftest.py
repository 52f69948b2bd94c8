"""Fixtures for the data plane: the real servers, started by the tests.

- ``redis_server``: a real ``redis-server`` (Debian package) on a free port,
  once per session, loading the ACL users rendered by ``csflow.sdk.ops.redis_acl``
  (the same file the cluster's Redis gets) with random passwords;
- ``gcs``: the real google-cloud-storage client against ``gcp-storage-emulator``,
  in this process;
- ``secret_manager``: the real Secret Manager client against a local double
  (tests/dataplane/doubles.py says what it stands in for);
- ``webapp``: a local HTTP server that records the webapp calls.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis

from csflow.sdk.ops import redis_acl

from .doubles import KubernetesDouble, RecordingWebapp, SecretManagerDouble

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
MODEL_CONFIGS = HERE / "models" / "config"
MODEL_SOURCE = HERE / "models" / "reader"
OK_INPUTS = {"meta_param_dict": {"year": 2024}, "adjustment": {"Knobs": {"x": [{"value": 2}]}}}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RedisServer:
    port: int
    passwords: dict[str, str]
    acl_file: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, user: str | None, password: str | None = None) -> redis.Redis:
        if user is not None and password is None:
            password = self.passwords[user]
        # from_url, as the job stores connect (redis-py's Redis(host=...) retries
        # a refused login for seconds).
        return redis.Redis.from_url(self.url, username=user, password=password, socket_timeout=5)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory) -> RedisServer:
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    if not Path(binary).exists():
        pytest.fail("redis-server is not installed (apt-get install -y redis-server)")
    folder = tmp_path_factory.mktemp("redis")
    passwords = {u.name: redis_acl.generate_password() for u in redis_acl.acl_users() if u.enabled}
    (folder / redis_acl.ACL_FILE_KEY).write_text(redis_acl.render_acl_file(passwords))
    port = free_port()
    log = open(folder / "redis.log", "wb")
    process = subprocess.Popen(
        [
            binary,
            *redis_acl.redis_server_args(str(folder), port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(folder),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = RedisServer(port, passwords, folder / redis_acl.ACL_FILE_KEY)
    admin = server.client("admin")
    for _ in range(200):  # until it answers (about 50 ms)
        if process.poll() is not None:
            pytest.fail(f"redis-server exited: {(folder / 'redis.log').read_text()[-500:]}")
        try:
            admin.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.05)
    yield server
    process.terminate()
    process.wait(10)
    log.close()


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
