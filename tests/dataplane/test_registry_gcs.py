"""The model registry and inputs cache on Cloud Storage (``sdk/registry/gcs.py``),
with the real google-cloud-storage client.

Servers: gcp-storage-emulator, in this process, always. It does NOT honour
request preconditions: it ignores ``ifGenerationMatch`` (a write with a stale
generation, or with ``0`` over an existing object, succeeds; see
``test_whether_the_server_honours_preconditions``). So on it the tests that need
a refused write (a lost race, two writers at once) are skipped, saying so, and
only what it can show honestly is tested: the documents, the tag moves, the
layout, the chooser, and the publish steps writing through it.

The lost-race and two-writer tests run where a server honours preconditions:
set ``CSFLOW_FAKE_GCS_SERVER`` to a ``fake-gcs-server`` binary
(github.com/fsouza/fake-gcs-server, ``go install``), started here on a free
port, in memory. Real Cloud Storage honours them by contract
(https://cloud.google.com/storage/docs/request-preconditions).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import urlparse

import pytest
import requests
from google.cloud import storage

from csflow.runtime import publish_step
from csflow.sdk.core.errors import BadInput, NotFound
from csflow.sdk.registry import gcs as registry_gcs
from csflow.sdk.registry.gcs import GCSInputsCache, GCSRegistry, RegistryBusy
from csflow.sdk.registry.inputs_cache import InputsCache
from csflow.sdk.registry.local import Registry, open_inputs_cache, open_registry

from .conftest import free_port

BUCKET = "csflow-results"
OWNER, TITLE = "PSLmodels", "Tax-Cruncher"


# -- servers ------------------------------------------------------------------------


@pytest.fixture(scope="session")
def fake_gcs_server(tmp_path_factory):
    """fake-gcs-server, when CSFLOW_FAKE_GCS_SERVER names its binary."""
    binary = os.environ.get("CSFLOW_FAKE_GCS_SERVER")
    if not binary:
        pytest.skip("CSFLOW_FAKE_GCS_SERVER is not set (a fake-gcs-server binary)")
    if not (Path(binary).is_file() or shutil.which(binary)):
        pytest.fail(f"CSFLOW_FAKE_GCS_SERVER={binary} does not exist")
    data = tmp_path_factory.mktemp("fake-gcs")
    (data / BUCKET).mkdir()  # a folder under -data becomes a bucket
    port = free_port()
    log = open(data.parent / "fake-gcs.log", "wb")
    process = subprocess.Popen(
        [
            binary,
            "-backend",
            "memory",
            "-scheme",
            "http",
            "-host",
            "127.0.0.1",
            "-port",
            str(port),
            "-data",
            str(data),
            "-log-level",
            "error",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(200):  # until it answers
        if process.poll() is not None:
            pytest.fail("fake-gcs-server exited at start")
        try:
            requests.get(f"{endpoint}/storage/v1/b", timeout=1)
            break
        except requests.ConnectionError:
            time.sleep(0.05)
    yield endpoint
    process.terminate()
    process.wait(10)
    log.close()


@pytest.fixture(params=["gcp-storage-emulator", "fake-gcs-server"])
def server(request, monkeypatch) -> str:
    """A Cloud Storage endpoint the real client talks to (STORAGE_EMULATOR_HOST)."""
    fixture = "gcs_emulator" if request.param == "gcp-storage-emulator" else "fake_gcs_server"
    endpoint = request.getfixturevalue(fixture)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", endpoint)
    return request.param


@pytest.fixture
def url(server) -> str:
    """A fresh prefix in the bucket."""
    return f"gs://{BUCKET}/reg-{uuid.uuid4().hex[:8]}"


def honours_preconditions() -> bool:
    """Whether the server refuses a write whose ifGenerationMatch is stale."""
    bucket = storage.Client().bucket(BUCKET)
    blob = bucket.blob(f"probe-{uuid.uuid4().hex}")
    blob.upload_from_string(b"1", if_generation_match=0)
    try:
        bucket.blob(blob.name).upload_from_string(b"2", if_generation_match=0)
    except Exception as exc:  # noqa: BLE001 - the kind of refusal is asserted below
        from google.api_core.exceptions import PreconditionFailed

        assert isinstance(exc, PreconditionFailed), exc
        return True
    return False


@pytest.fixture
def preconditions(server, url) -> None:
    if not honours_preconditions():
        pytest.skip(f"{server} ignores ifGenerationMatch: a lost race cannot be shown on it")


def record(tag: str, **extra) -> dict:
    return {
        "owner": OWNER,
        "title": TITLE,
        "tag": tag,
        "image": f"gcr.io/x/pslmodels_tax-cruncher:{tag}",
        **extra,
    }


def stored(url: str, key: str) -> storage.Blob | None:
    parsed = urlparse(url)
    return storage.Client().bucket(parsed.netloc).get_blob(f"{parsed.path.strip('/')}/{key}")


# -- what every server shows ---------------------------------------------------------


def test_whether_the_server_honours_preconditions(server, url):
    """Documents the servers: gcp-storage-emulator ignores preconditions (if
    this starts failing, it honours them now and its lost-race tests run)."""
    assert honours_preconditions() is (server == "fake-gcs-server")


def test_versions_tags_and_rollback_live_in_one_object_per_model(url, tmp_path):
    registry = GCSRegistry(url, tmp_path)
    registry.record_version(record("aaaaaaaaaaaa", tests={"passed": 11}))
    registry.record_version(record("bbbbbbbbbbbb"))
    assert (
        registry.move_tag(OWNER, TITLE, "staging", "aaaaaaaaaaaa", action="push", run="publish-1")
        is None
    )
    registry.move_tag(OWNER, TITLE, "latest", "staging", action="deploy")  # a tag name resolves
    registry.move_tag(OWNER, TITLE, "latest", "bbbbbbbbbbbb", action="deploy")

    fresh = GCSRegistry(url, tmp_path)  # another client sees it all
    doc = fresh.document(OWNER, TITLE)
    assert doc["tags"] == {"staging": "aaaaaaaaaaaa", "latest": "bbbbbbbbbbbb"}
    assert doc["versions"]["aaaaaaaaaaaa"]["tests"] == {"passed": 11}
    assert fresh.resolve(OWNER, TITLE, "latest").tag == "bbbbbbbbbbbb"
    assert fresh.rollback(OWNER, TITLE) == ("bbbbbbbbbbbb", "aaaaaaaaaaaa")
    assert fresh.document(OWNER, TITLE)["tags"]["latest"] == "aaaaaaaaaaaa"
    assert [(h["tag"], h["action"]) for h in fresh.document(OWNER, TITLE)["history"]] == [
        ("staging", "push"),
        ("latest", "deploy"),
        ("latest", "deploy"),
        ("latest", "rollback"),
    ]
    assert fresh.models() == [(OWNER, TITLE)]

    blob = stored(url, f"registry/{OWNER}/{TITLE}.json")
    assert blob.content_type == "application/json"
    assert json.loads(blob.download_as_bytes()) == fresh.document(OWNER, TITLE)


def test_the_document_is_the_file_registrys(url, tmp_path):
    """The same operations give the same document on both (timestamps aside)."""
    on_gcs, on_disk = GCSRegistry(url, tmp_path), Registry(tmp_path)
    for registry in (on_gcs, on_disk):
        registry.record_version(record("aaaaaaaaaaaa"))
        registry.move_tag(OWNER, TITLE, "staging", "aaaaaaaaaaaa", action="push")

    def without_times(doc):
        text = json.dumps(doc, sort_keys=True)
        return json.loads(re.sub(r'"(registered|at)": [0-9.e+]+', r'"\1": 0', text))

    assert without_times(on_gcs.document(OWNER, TITLE)) == without_times(
        on_disk.document(OWNER, TITLE)
    )


def test_unknown_models_tags_and_failed_edits_write_nothing(url, tmp_path):
    registry = GCSRegistry(url, tmp_path)
    key = f"registry/{OWNER}/{TITLE}.json"
    assert registry.document(OWNER, TITLE)["versions"] == {}
    assert stored(url, key) is None  # reading creates nothing
    with pytest.raises(NotFound, match="unknown tag 'latest'"):
        registry.resolve(OWNER, TITLE, "latest")
    registry.record_version(record("aaaaaaaaaaaa"))
    created = stored(url, key).generation
    with pytest.raises(NotFound, match="no version or tag 'cccccccccccc'"):
        registry.move_tag(OWNER, TITLE, "latest", "cccccccccccc")
    assert stored(url, key).generation == created  # a failed edit writes nothing
    registry.move_tag(OWNER, TITLE, "latest", "aaaaaaaaaaaa")
    moved = stored(url, key).generation
    assert moved != created
    with pytest.raises(BadInput, match="no earlier version"):
        registry.rollback(OWNER, TITLE)
    registry.move_tag(OWNER, TITLE, "latest", "aaaaaaaaaaaa")  # already there
    assert stored(url, key).generation == moved  # a no-op is not written
    with pytest.raises(BadInput, match="invalid title"):
        registry.document(OWNER, "../etc")


def test_the_inputs_cache_beside_it(url):
    cache = GCSInputsCache(url)
    assert cache.get(OWNER, TITLE, "aaaaaaaaaaaa") is None
    uri = cache.put(
        OWNER, TITLE, "aaaaaaaaaaaa", {"version": "6.8.5", "inputs": {"meta_parameters": {}}}
    )
    assert uri == f"{url}/inputs/{OWNER}/{TITLE}/aaaaaaaaaaaa.json"
    entry = cache.get(OWNER, TITLE, "aaaaaaaaaaaa")
    assert entry["version"] == "6.8.5" and entry["meta_param_dict"] == {} and entry["cached_at"] > 0


def test_the_chooser(url, tmp_path):
    assert (
        type(open_registry("", tmp_path)) is Registry
        and open_registry("", tmp_path).root == tmp_path / "registry"
    )
    shared = open_registry((tmp_path / "shared").as_uri(), tmp_path)
    assert type(shared) is Registry and shared.root == tmp_path / "shared" / "registry"
    assert isinstance(open_registry(url, tmp_path), GCSRegistry)
    assert isinstance(open_inputs_cache("", tmp_path), InputsCache)
    assert isinstance(open_inputs_cache(url, tmp_path), GCSInputsCache)
    for bad in ("s3://bucket/x", "relative/dir", "file://host/dir", "gs://Bad_Bucket"):
        with pytest.raises(BadInput, match="invalid"):
            open_registry(bad, tmp_path)


# -- the publish steps write through it ----------------------------------------------


@pytest.fixture
def work(tmp_path, monkeypatch) -> Path:
    """A pod's work dir after clone, test and verify, outside the embedded engine."""
    folder = tmp_path / "work"
    folder.mkdir()
    monkeypatch.setenv("CSFLOW_WORK_DIR", str(folder))
    monkeypatch.setenv("CSFLOW_HOME", str(tmp_path / "pod-home"))
    monkeypatch.delenv("CSFLOW_BUILDER", raising=False)
    monkeypatch.delenv("CSFLOW_WEBAPP_URL", raising=False)
    (folder / "build-info.json").write_text(
        json.dumps(
            {
                "owner": OWNER,
                "title": TITLE,
                "tag": "aaaaaaaaaaaa",
                "origin": {"git": "https://example.org/m.git"},
            }
        )
    )
    (folder / "test-report.json").write_text(
        json.dumps(
            {
                "passed": True,
                "version": "6.8.5",
                "summary": {"passed": 11, "failed": 0, "not run": 0, "total": 11},
            }
        )
    )
    (folder / "inputs-cache.json").write_text(
        json.dumps({"version": "6.8.5", "inputs": {"meta_parameters": {}}})
    )
    return folder


MODEL = ["--owner", OWNER, "--title", TITLE, "--tag", "aaaaaaaaaaaa"]


def test_push_and_deploy_pods_write_the_shared_registry(url, work, tmp_path, monkeypatch):
    monkeypatch.setenv("CSFLOW_MODEL_REGISTRY_URL", url)
    image = "gcr.io/x/pslmodels_tax-cruncher:aaaaaaaaaaaa"
    assert publish_step.main(["push", *MODEL, "--image", image, "--run", "publish-1"]) == 0
    assert GCSRegistry(url, tmp_path).document(OWNER, TITLE)["tags"] == {"staging": "aaaaaaaaaaaa"}
    assert publish_step.main(["deploy", *MODEL, "--run", "publish-1"]) == 0
    doc = GCSRegistry(url, tmp_path).document(OWNER, TITLE)
    assert doc["tags"] == {"staging": "aaaaaaaaaaaa", "latest": "aaaaaaaaaaaa"}
    assert doc["versions"]["aaaaaaaaaaaa"]["image"] == image
    assert doc["versions"]["aaaaaaaaaaaa"]["publish_run"] == "publish-1"
    assert GCSInputsCache(url).get(OWNER, TITLE, "aaaaaaaaaaaa")["version"] == "6.8.5"
    assert not (tmp_path / "pod-home" / "registry").exists()  # nothing in the pod's own files


def test_a_pod_without_a_shared_registry_refuses_in_one_line(work, tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("CSFLOW_MODEL_REGISTRY_URL", raising=False)
    assert (
        publish_step.main(["push", *MODEL, "--image", "gcr.io/x/y:aaaaaaaaaaaa", "--run", "r"]) == 1
    )
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "CSFLOW_MODEL_REGISTRY_URL" in error
    assert not (tmp_path / "pod-home" / "registry").exists()


# -- lost races: only where the server honours preconditions ----------------------------


def test_a_writer_that_lost_the_race_reads_again_and_keeps_both_changes(
    url, preconditions, tmp_path
):
    first, second = GCSRegistry(url, tmp_path), GCSRegistry(url, tmp_path)  # two clients
    first.record_version(record("aaaaaaaaaaaa"))
    first.record_version(record("bbbbbbbbbbbb"))
    calls = []

    def move_latest_while_the_other_writes(doc):
        calls.append(dict(doc["tags"]))
        if len(calls) == 1:  # between this read and this write, the other publish pushes
            second.move_tag(OWNER, TITLE, "staging", "bbbbbbbbbbbb", action="push")
        doc["tags"]["latest"] = "aaaaaaaaaaaa"

    first.change(OWNER, TITLE, move_latest_while_the_other_writes)
    assert calls == [
        {},
        {"staging": "bbbbbbbbbbbb"},
    ]  # read again after the 412, edit applied again
    assert first.document(OWNER, TITLE)["tags"] == {
        "staging": "bbbbbbbbbbbb",
        "latest": "aaaaaaaaaaaa",
    }


def test_a_writer_that_always_loses_gives_up_in_one_line(url, preconditions, tmp_path, monkeypatch):
    monkeypatch.setattr(registry_gcs, "MAX_ATTEMPTS", 3)
    monkeypatch.setattr(registry_gcs, "FIRST_PAUSE", 0.001)
    first, second = GCSRegistry(url, tmp_path), GCSRegistry(url, tmp_path)
    first.record_version(record("aaaaaaaaaaaa"))
    counter = iter(range(100))

    def always_overtaken(doc):
        second.record_version(record("aaaaaaaaaaaa", n=next(counter)))
        doc["tags"]["latest"] = "aaaaaaaaaaaa"

    with pytest.raises(RegistryBusy, match="other writers changed it 3 times"):
        first.change(OWNER, TITLE, always_overtaken)
    assert "latest" not in first.document(OWNER, TITLE)["tags"]


def test_two_writers_at_once_lose_nothing(url, preconditions, tmp_path):
    """Two publishes of one model at once, each with its own client: every version
    and every move is kept, and each move starts where the one before it ended."""
    errors = []

    def publish_many(prefix: str) -> None:
        registry = GCSRegistry(url, tmp_path)
        try:
            for i in range(15):
                tag = f"{prefix}{i:011d}"
                registry.record_version(record(tag))
                registry.move_tag(OWNER, TITLE, "latest", tag, action="deploy")
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)

    writers = [threading.Thread(target=publish_many, args=(p,)) for p in "ab"]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join(120)
    assert errors == []
    doc = GCSRegistry(url, tmp_path).document(OWNER, TITLE)
    assert len(doc["versions"]) == 30 and len(doc["history"]) == 30
    assert [h["from"] for h in doc["history"]] == [None] + [h["to"] for h in doc["history"][:-1]]
