"""Cloud Storage results: the real google-cloud-storage client against
gcp-storage-emulator, running in this process."""

from __future__ import annotations

import datetime as dt
import io
import json
import uuid
import zipfile
from urllib.parse import parse_qs, urlparse

import pytest
import requests
from google.cloud import storage

from csflow.runtime import platform_step
from csflow.sdk.core.errors import BadInput, NotFound
from csflow.sdk.dataplane.gcs import GCSStorage, StorageError
from csflow.sdk.dataplane.storage import open_storage, run_prefix

from .conftest import MODEL_CONFIGS, OK_INPUTS

RAW_OUTPUTS = {  # titles repeat, and one holds a '/', as C/S outputs did
    "renderable": [
        {"media_type": "Text", "title": "Report", "data": "one"},
        {"media_type": "Text", "title": "Report", "data": "two"},
        {"media_type": "Markdown", "title": "a/b", "data": "# three"},
    ],
    "downloadable": [
        {"media_type": "CSV", "title": "Table", "data": "a\n1\n"},
        {"media_type": "CSV", "title": "Table", "data": "a\n2\n"},
    ],
}


def blobs(url: str) -> dict[str, storage.Blob]:
    """What the bucket holds under ``url``, read with a plain client."""
    parsed = urlparse(url)
    client = storage.Client()
    return {
        b.name: b for b in client.list_blobs(parsed.netloc, prefix=parsed.path.strip("/") + "/")
    }


def test_put_get_list_under_the_url_prefix(gcs):
    store = open_storage(gcs)
    assert isinstance(store, GCSStorage)
    job_id = str(uuid.uuid4())
    prefix = run_prefix("PSLmodels", "Tax-Cruncher", job_id)
    uri = store.put(f"{prefix}/outputs.json", b'{"a": 1}', "application/json")
    store.put(f"{prefix}/renderable.zip", b"PK", "application/zip")
    store.put(
        "PSLmodels/Tax-Cruncher-2/x/outputs.json", b"{}"
    )  # a sibling that shares a name prefix
    assert uri == f"{gcs}/PSLmodels/Tax-Cruncher/{job_id}/outputs.json"
    assert store.get(f"{prefix}/outputs.json") == b'{"a": 1}'
    assert store.list(prefix) == [f"{prefix}/outputs.json", f"{prefix}/renderable.zip"]
    assert store.list("PSLmodels/Tax-Cruncher") == [
        f"{prefix}/outputs.json",
        f"{prefix}/renderable.zip",
    ]
    stored = blobs(gcs)
    object_name = urlparse(uri).path.lstrip("/")
    assert stored[object_name].content_type == "application/json"


def test_a_bucket_without_prefix(gcs):
    store = GCSStorage("gs://csflow-results")
    key = f"o/t/{uuid.uuid4()}/outputs.json"
    assert store.put(key, b"x") == f"gs://csflow-results/{key}"
    assert store.get(key) == b"x"


def test_missing_objects_and_bad_keys(gcs):
    store = GCSStorage(gcs)
    with pytest.raises(NotFound, match="no stored object"):
        store.get("o/t/nothing.json")
    for key in ("../x", "/abs", "a//b", "a/./b", ""):
        with pytest.raises(BadInput, match="invalid storage key"):
            store.put(key, b"x")
    for url in ("gs://", "gs://Bad_Bucket", "s3://bucket/x", "gs://bucket/../x"):
        with pytest.raises(BadInput):
            GCSStorage(url)


def test_signed_urls_need_credentials_that_can_sign(gcs):
    store = GCSStorage(gcs)
    store.put("o/t/file.txt", b"hello")
    with pytest.raises(StorageError, match="AnonymousCredentials\\) cannot sign"):
        store.signed_url("o/t/file.txt")


def service_account_client() -> storage.Client:
    """A client with a freshly made service-account key (signing is local
    crypto; the emulator does not check the signature)."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from google.oauth2 import service_account

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    credentials = service_account.Credentials.from_service_account_info(
        {
            "type": "service_account",
            "client_email": "results@csflow-test.iam.gserviceaccount.com",
            "private_key": pem,
            "token_uri": "https://oauth2.googleapis.com/token",
            "project_id": "csflow-test",
        }
    )
    return storage.Client(credentials=credentials, project="csflow-test")


def test_a_signed_url_reads_the_object_until_it_expires(gcs):
    GCSStorage(gcs).put("o/t/file.txt", b"hello")
    store = GCSStorage(gcs, client=service_account_client())
    url = store.signed_url("o/t/file.txt", dt.timedelta(minutes=10))
    query = parse_qs(urlparse(url).query)
    assert query["X-Goog-Expires"] == ["600"]
    assert query["X-Goog-Algorithm"] == ["GOOG4-RSA-SHA256"]
    assert "X-Goog-Signature" in query
    assert requests.get(url, timeout=10).content == b"hello"
    with pytest.raises(BadInput, match="within 7 days"):
        store.signed_url("o/t/file.txt", dt.timedelta(days=8))


def test_upload_writes_one_prefix_per_run_and_tells_the_webapp(gcs, webapp, tmp_path, monkeypatch):
    job_id = str(uuid.uuid4())
    work = tmp_path / "work"
    for name, data in platform_step.build_results(RAW_OUTPUTS).items():
        (work / "results").mkdir(parents=True, exist_ok=True)
        (work / "results" / name).write_bytes(data)
    monkeypatch.setenv("CSFLOW_WORK_DIR", str(work))
    monkeypatch.setenv("CSFLOW_STORAGE_URL", gcs)
    monkeypatch.setenv("CSFLOW_WEBAPP_URL", webapp.url)
    monkeypatch.setenv("CSFLOW_WEBAPP_TOKEN", "webapp-token-xyz")
    assert (
        platform_step.main(
            ["upload", "--job-id", job_id, "--owner", "dataplane", "--title", "SecretReader"]
        )
        == 0
    )

    prefix = f"{urlparse(gcs).path.strip('/')}/dataplane/SecretReader/{job_id}/"
    stored = blobs(gcs)
    assert sorted(stored) == sorted(prefix + name for name in platform_step.RESULT_FILES)
    assert stored[prefix + "renderable.zip"].content_type == "application/zip"
    with zipfile.ZipFile(
        io.BytesIO(stored[prefix + "renderable.zip"].download_as_bytes())
    ) as archive:
        assert archive.namelist() == ["Report.txt", "Report-2.txt", "a_b.md"]
        assert archive.read("Report-2.txt") == b"two"
    with zipfile.ZipFile(
        io.BytesIO(stored[prefix + "downloadable.zip"].download_as_bytes())
    ) as archive:
        assert archive.namelist() == ["Table.csv", "Table-2.csv"]

    [call] = webapp.calls
    assert call.method == "PUT" and call.path == "/outputs/api/"
    assert call.headers["Authorization"] == "Token webapp-token-xyz"
    assert call.body["job_id"] == job_id and call.body["status"] == "SUCCESS"
    assert call.body["version"] == "v1" and call.body["meta"] == {"task_times": [0.0]}
    remote = call.body["outputs"]
    assert [o["filename"] for o in remote["downloadable"]["outputs"]] == [
        "Table.csv",
        "Table-2.csv",
    ]
    # Where the webapp reads each zip: its object's name in the bucket.
    assert remote["downloadable"]["ziplocation"] == prefix + "downloadable.zip"
    assert remote["renderable"]["ziplocation"] == prefix + "renderable.zip"
    assert (
        json.loads((work / "results-uri.json").read_text())["uri"]
        == f"{gcs}/dataplane/SecretReader/{job_id}"
    )


def test_an_unreachable_bucket_fails_the_upload_in_one_line(tmp_path, monkeypatch, capsys):
    from .conftest import free_port

    monkeypatch.setenv("STORAGE_EMULATOR_HOST", f"http://127.0.0.1:{free_port()}")
    work = tmp_path / "work"
    (work / "results").mkdir(parents=True)
    for name in platform_step.RESULT_FILES:
        (work / "results" / name).write_bytes(b"{}")
    monkeypatch.setenv("CSFLOW_WORK_DIR", str(work))
    monkeypatch.setenv("CSFLOW_STORAGE_URL", "gs://csflow-results/x")
    from google.cloud.storage.retry import DEFAULT_RETRY

    # Uploads retry for two minutes by default; keep that logic, shorten the wait.
    monkeypatch.setattr("csflow.sdk.dataplane.gcs.DEFAULT_RETRY", DEFAULT_RETRY.with_timeout(0.5))
    code = platform_step.main(
        ["upload", "--job-id", str(uuid.uuid4()), "--owner", "o", "--title", "t"]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert (
        err.startswith("csflow: cannot reach Cloud Storage for gs://csflow-results/x/o/t/")
        and err.count("\n") == 1
    )


@pytest.mark.slow
def test_a_simulation_on_the_embedded_engine_stores_results_in_the_bucket(gcs, home):
    from csflow.sdk.client import Client

    client = Client(home=home, config_dirs=[MODEL_CONFIGS], storage_url=gcs)
    run = client.simulate("dataplane/Neighbour", OK_INPUTS)
    assert run.status == "SUCCESS", run.reason
    assert run.results_uri == f"{gcs}/dataplane/Neighbour/{run.id}"
    prefix = f"{urlparse(gcs).path.strip('/')}/dataplane/Neighbour/{run.id}/"
    stored = blobs(gcs)
    runs = [name for name in stored if "/cache/" not in name]
    assert sorted(runs) == sorted(prefix + n for n in platform_step.RESULT_FILES)
    cached = [name.rpartition("/")[2] for name in stored if "/cache/" in name]
    assert sorted(cached) == sorted([*platform_step.RESULT_FILES, "entry.json"])  # beside them
    assert not (home / "results").exists()  # nothing went to the local folder
    outputs = client.results(run.id)
    assert [o["title"] for o in outputs["renderable"]] == ["Report", "Report", "a/b"]
    written = client.download(run.id, home.parent / "out")
    assert sorted(p.name for p in written) == ["Report.txt", "Table-2.csv", "Table.csv"]
