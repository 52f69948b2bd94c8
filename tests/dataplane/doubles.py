"""Local HTTP servers that stand in for services no real server exists for here.

Each is a small ``http.server`` in a thread. The real client library talks to
it over HTTP, so the client's request building, error mapping and response
parsing all run for real:

- ``SecretManagerDouble``: Google Secret Manager's REST API (v1), the subset
  csflow uses: create a secret, add a version, access a version, list, get and
  delete secrets. It checks ids, labels and CRC32C as the real service does.
  The real ``google-cloud-secret-manager`` client reaches it with
  ``transport="rest"``, ``client_options={"api_endpoint": URL}`` and
  anonymous credentials. No local Secret Manager server exists (see
  ../shared/reference/environment-notes.md).
- ``RecordingWebapp``: the C/S webapp's ``PUT /outputs/api/``; it records
  every call and answers from a script (e.g. 503, 503, then 200).
- ``KubernetesDouble``: the Kubernetes API's Secret endpoints (create,
  replace), for the real ``kubernetes`` client; no kube-apiserver runs here.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlparse

import google_crc32c


class _Server:
    """A ThreadingHTTPServer on a free local port, running in a thread."""

    def __init__(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, reply, headers = owner.handle(
                    self.command, self.path, dict(self.headers), body
                )
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def start(self):
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def handle(self, method: str, path: str, headers: dict[str, str], body: bytes):
        raise NotImplementedError


# -- Secret Manager -------------------------------------------------------------

_SECRET_ID = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_LABEL_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_LABEL_VALUE = re.compile(r"^[a-z0-9_-]{0,63}$")


def _google_error(code: int, status: str, message: str):
    return code, {"error": {"code": code, "status": status, "message": message}}, None


@dataclass
class _Secret:
    name: str
    labels: dict[str, str]
    versions: list[bytes] = field(default_factory=list)


class SecretManagerDouble(_Server):
    """Stands in for Google Secret Manager (REST v1) in tests; see the module docstring."""

    PAGE_SIZE = 3  # small, so the client's pager follows nextPageToken

    def __init__(self) -> None:
        super().__init__()
        self.secrets: dict[str, _Secret] = {}
        self.corrupt_next_access = False
        self.calls: list[tuple[str, str]] = []

    def handle(self, method, path, headers, body):
        parsed = urlparse(path)
        query = {k: v[0] for k, v in parse_qs(parsed.query).items()}
        route = parsed.path
        with self.lock:
            self.calls.append((method, route))
            if match := re.fullmatch(r"/v1/projects/([^/]+)/secrets", route):
                project = match.group(1)
                if method == "POST":
                    return self._create(
                        project, query.get("secretId", ""), json.loads(body or b"{}")
                    )
                if method == "GET":
                    return self._list(project, query)
            if match := re.fullmatch(r"/v1/(projects/[^/]+/secrets/[^/:]+):addVersion", route):
                return self._add_version(match.group(1), json.loads(body or b"{}"))
            if match := re.fullmatch(
                r"/v1/(projects/[^/]+/secrets/[^/:]+)/versions/([^/:]+):access", route
            ):
                return self._access(match.group(1), match.group(2))
            if match := re.fullmatch(r"/v1/(projects/[^/]+/secrets/[^/:]+)", route):
                secret = self.secrets.get(match.group(1))
                if secret is None:
                    return _google_error(404, "NOT_FOUND", f"Secret [{match.group(1)}] not found.")
                if method == "DELETE":
                    del self.secrets[secret.name]
                    return 200, {}, None
                if method == "GET":
                    return 200, self._secret_json(secret), None
        return _google_error(404, "NOT_FOUND", f"no route {method} {route}")

    def _secret_json(self, secret: _Secret) -> dict[str, Any]:
        return {"name": secret.name, "replication": {"automatic": {}}, "labels": secret.labels}

    def _create(self, project: str, secret_id: str, body: dict[str, Any]):
        if not _SECRET_ID.match(secret_id):
            return _google_error(400, "INVALID_ARGUMENT", f"invalid secret id {secret_id!r}")
        if "automatic" not in body.get("replication", {}) and "userManaged" not in body.get(
            "replication", {}
        ):
            return _google_error(400, "INVALID_ARGUMENT", "replication is required")
        labels = body.get("labels", {})
        if any(not _LABEL_KEY.match(k) or not _LABEL_VALUE.match(v) for k, v in labels.items()):
            return _google_error(400, "INVALID_ARGUMENT", "invalid labels")
        name = f"projects/{project}/secrets/{secret_id}"
        if name in self.secrets:
            return _google_error(409, "ALREADY_EXISTS", f"Secret [{name}] already exists.")
        self.secrets[name] = _Secret(name, labels)
        return 200, self._secret_json(self.secrets[name]), None

    def _add_version(self, name: str, body: dict[str, Any]):
        secret = self.secrets.get(name)
        if secret is None:
            return _google_error(404, "NOT_FOUND", f"Secret [{name}] not found.")
        payload = body.get("payload", {})
        data = base64.b64decode(payload.get("data", ""))
        if "dataCrc32c" in payload and int(payload["dataCrc32c"]) != google_crc32c.value(data):
            return _google_error(400, "INVALID_ARGUMENT", "Checksum mismatch.")
        secret.versions.append(data)
        return 200, {"name": f"{name}/versions/{len(secret.versions)}", "state": "ENABLED"}, None

    def _access(self, name: str, version: str):
        secret = self.secrets.get(name)
        if secret is None or not secret.versions:
            return _google_error(404, "NOT_FOUND", f"Secret [{name}] not found or has no versions.")
        index = len(secret.versions) if version == "latest" else int(version)
        data = secret.versions[index - 1]
        crc = google_crc32c.value(data)
        if self.corrupt_next_access:
            self.corrupt_next_access = False
            data = data[:-1] + bytes([data[-1] ^ 1])
        return (
            200,
            {
                "name": f"{name}/versions/{index}",
                "payload": {"data": base64.b64encode(data).decode(), "dataCrc32c": str(crc)},
            },
            None,
        )

    def _list(self, project: str, query: dict[str, str]):
        prefix = f"projects/{project}/secrets/"
        names = sorted(n for n in self.secrets if n.startswith(prefix))
        start = int(query.get("pageToken") or 0)
        page = names[start : start + self.PAGE_SIZE]
        reply: dict[str, Any] = {
            "secrets": [self._secret_json(self.secrets[n]) for n in page],
            "totalSize": len(names),
        }
        if start + self.PAGE_SIZE < len(names):
            reply["nextPageToken"] = str(start + self.PAGE_SIZE)
        return 200, reply, None


# -- the webapp -------------------------------------------------------------------


@dataclass
class Call:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


class RecordingWebapp(_Server):
    """Stands in for the C/S webapp's callback API; answers from ``script``
    (HTTP statuses, in order), then 200."""

    def __init__(self, script: list[int] | None = None) -> None:
        super().__init__()
        self.script = list(script or [])
        self.calls: list[Call] = []

    def handle(self, method, path, headers, body):
        with self.lock:
            self.calls.append(Call(method, path, headers, json.loads(body) if body else None))
            status = self.script.pop(0) if self.script else 200
        reply = (
            {"status": "ok"}
            if status < 300
            else {"detail": "try later" if status >= 500 else "refused"}
        )
        return status, reply, None


# -- Kubernetes ----------------------------------------------------------------------


class KubernetesDouble(_Server):
    """Stands in for the Kubernetes API's namespaced Secret endpoints."""

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []

    def handle(self, method, path, headers, body):
        route = urlparse(path).path
        with self.lock:
            self.calls.append((method, route))
            if match := re.fullmatch(r"/api/v1/namespaces/([^/]+)/secrets", route):
                if method == "POST":
                    obj = json.loads(body)
                    key = (match.group(1), obj["metadata"]["name"])
                    if key in self.objects:
                        return (
                            409,
                            {
                                "kind": "Status",
                                "apiVersion": "v1",
                                "status": "Failure",
                                "reason": "AlreadyExists",
                                "code": 409,
                            },
                            None,
                        )
                    self.objects[key] = obj
                    return 201, obj, None
            if match := re.fullmatch(r"/api/v1/namespaces/([^/]+)/secrets/([^/]+)", route):
                key = (match.group(1), match.group(2))
                if method == "PUT":
                    if key not in self.objects:
                        return (
                            404,
                            {
                                "kind": "Status",
                                "apiVersion": "v1",
                                "status": "Failure",
                                "reason": "NotFound",
                                "code": 404,
                            },
                            None,
                        )
                    self.objects[key] = json.loads(body)
                    return 200, self.objects[key], None
        return 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404}, None
