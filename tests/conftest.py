"""Shared fixtures: a fresh CSFLOW_HOME per test, clients for the test models
(tests/models) and for the real Tax-Cruncher example (one home per session,
so its uv environment is built once), and ``redis_server``: a real
``redis-server`` (Debian package) on a free port, once per session, loading the
ACL users rendered by ``csflow.sdk.ops.redis_acl`` (the same file the
cluster's Redis gets) with random passwords. It is defined here, once, because
the data-plane, Argo and cluster tests all use it."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
import redis
from paths import ARGO_SCHEMA, REPO, TAX_INPUTS, TOY_CONFIGS
from servers import RedisServer, free_port

from csflow.sdk.client import Client
from csflow.sdk.ops import redis_acl

# The strict schema checks (sdk/argo/schema.py) read Argo's CRDs from here, in
# this process and in the commands the tests run.
os.environ.setdefault("CSFLOW_ARGO_SCHEMA_DIR", str(ARGO_SCHEMA))

# The engines the tests start get SIGHUP's default action, as from a terminal: an
# engine started under nohup (which ignores SIGHUP, as do some CI runners) keeps
# ignoring it on purpose, and the SIGHUP tests would read that as a bug.
signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("CSFLOW_HOME", str(path))
    return path


@pytest.fixture
def toy(home) -> Client:
    """A client whose models are the test models under tests/models/config."""
    return Client(home=home, config_dirs=[TOY_CONFIGS])


@pytest.fixture(scope="session")
def tax_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tax-home")


@pytest.fixture
def tax(tax_home, monkeypatch) -> Client:
    monkeypatch.setenv("CSFLOW_HOME", str(tax_home))
    return Client(home=tax_home, config_dirs=[REPO / "config"])


@pytest.fixture
def tax_inputs() -> dict:
    return json.loads(TAX_INPUTS.read_text())


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
def crds(tmp_path) -> Path:
    """A folder of Argo's CRD files as Argo publishes them (manifests/base/crds/full),
    copied for a test that gives it to ``--crds``."""
    from csflow.sdk.argo import schema

    folder = tmp_path / "crds"
    folder.mkdir()
    for name in schema.CRD_FILES:
        shutil.copy(ARGO_SCHEMA / name, folder / name)
    return folder
