"""A local HTTP test double of the Argo Server (v4.0.5), for the endpoints csflow uses.

What it stands in for: Argo Server's REST API (``argo server``, port 2746),
which needs a Kubernetes cluster with the workflow controller and cannot run
here. csflow's real client stays in the path: hera's ``WorkflowsService`` over
``requests``, and csflow's own NDJSON log reader.

Endpoints (Argo's swagger paths), each checking ``Authorization: Bearer <token>``:

- ``POST /api/v1/workflows/{namespace}``: create. The body is a
  WorkflowCreateRequest; its ``workflow`` is validated against the strict v4.0.5
  CRD schema and linted together with the templates the double holds (as the
  server validates a submission); a bad one gets 400, a duplicate name 409.
- ``POST /api/v1/workflows/{namespace}/lint``: lint (Argo's ``LintWorkflow``,
  which the argo backend calls before it creates a Workflow). The body is a
  WorkflowLintRequest (its envelope checked against ``schema.json``, closed).
  As the real server, it resolves the templates a Workflow refers to in the
  Workflow's own ``metadata.namespace`` (the server's managed namespace when
  that is empty, as ``argo server --namespaced`` does) and answers 200 with
  the Workflow. A Workflow the strict CRD schema rejects gets 400 (the real
  server refuses a body it cannot decode with 400; it *drops* unknown fields,
  where the double refuses them: csflow's own check before the request is
  what catches those); one the semantic lint rejects gets 500 with gRPC code 2
  (Unknown), as the real server answers a validation error: Argo's
  ``ValidateWorkflow`` error is not a Kubernetes status, so its error
  translation leaves it untranslated (server/workflow/workflow_server.go,
  util/grpc/errors.go in v4.0.5).
- ``GET /api/v1/workflows/{namespace}/{name}`` and ``GET /api/v1/workflows/{namespace}``
  (``listOptions.labelSelector`` = a label key that must exist).
- ``PUT .../{name}/stop`` and ``.../terminate``: the body is validated against
  the WorkflowStopRequest / WorkflowTerminateRequest definitions of Argo's
  ``schema.json``, closed.
- ``GET .../{name}/log``: newline-delimited JSON, one ``{"result": LogEntry}``
  per line, sent in small chunks that split lines, as a real stream may.

It does not run workflows: a test moves a workflow along with ``set_status``
and gives pods log lines with ``add_logs``. Given a certificate and its key
(``tls``), it serves HTTPS, as ``argo server`` does by default (with a
self-signed certificate unless given one).
"""

from __future__ import annotations

import copy
import functools
import json
import re
import ssl
import threading
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import jsonschema
from paths import ARGO_SCHEMA

from csflow.sdk.argo import lint
from csflow.sdk.argo import schema as argo_schema


@functools.cache
def request_validator(definition: str) -> jsonschema.protocols.Validator:
    """A validator for one request type of Argo's schema.json, every object closed."""
    schema = json.loads((ARGO_SCHEMA / "schema.json").read_text())
    definitions = argo_schema.close_objects(schema["definitions"])
    return jsonschema.Draft7Validator({**definitions[definition], "definitions": definitions})


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ArgoServerDouble:
    def __init__(
        self,
        token: str,
        templates: list[dict[str, Any]],
        namespace: str = "csflow",
        tls: tuple[Path, Path] | None = None,
    ):
        self.token = token
        self.namespace = namespace
        self.library = lint.library_of(templates)
        self.workflows: dict[str, dict[str, Any]] = {}
        self.logs: dict[str, list[tuple[str, str]]] = {}  # workflow -> [(pod, line)]
        self.requests: list[tuple[str, str]] = []
        self.rejected: list[str] = []
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.scheme = "http"
        if tls is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
            self.scheme = "https"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> ArgoServerDouble:
        self.thread.start()
        return self

    def __exit__(self, *_: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)

    # -- what tests do to the "cluster" -----------------------------------------

    def set_status(
        self,
        name: str,
        phase: str,
        nodes: dict[str, dict[str, Any]] | None = None,
        outputs: dict[str, str] | None = None,
        message: str = "",
    ) -> None:
        with self.lock:
            status = self.workflows[name].setdefault("status", {})
            status["phase"] = phase
            status.setdefault("startedAt", now())
            if phase in ("Succeeded", "Failed", "Error"):
                status["finishedAt"] = now()
            if nodes is not None:
                status["nodes"] = nodes
            if outputs is not None:
                status["outputs"] = {
                    "parameters": [{"name": k, "value": v} for k, v in outputs.items()]
                }
            if message:
                status["message"] = message

    def add_logs(self, name: str, pod: str, lines: list[str]) -> None:
        with self.lock:
            self.logs.setdefault(name, []).extend((pod, line) for line in lines)

    # -- HTTP --------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        double = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                double._dispatch(self, "GET")

            def do_POST(self) -> None:
                double._dispatch(self, "POST")

            def do_PUT(self) -> None:
                double._dispatch(self, "PUT")

        return Handler

    def _send(self, handler: BaseHTTPRequestHandler, status: int, body: Any) -> None:
        data = json.dumps(body).encode()
        handler.send_response(status)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)

    def _error(self, handler: BaseHTTPRequestHandler, status: int, message: str) -> None:
        # grpc-gateway's error shape, as Argo Server answers.
        self.rejected.append(message)
        self._send(
            handler,
            status,
            {"code": {400: 3, 401: 16, 404: 5, 409: 6}.get(status, 2), "message": message},
        )

    def _body(self, handler: BaseHTTPRequestHandler) -> Any:
        length = int(handler.headers.get("Content-Length") or 0)
        return json.loads(handler.rfile.read(length) or b"{}")

    def _dispatch(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        url = urlparse(handler.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.requests.append((method, url.path))
        if handler.headers.get("Authorization") != f"Bearer {self.token}":
            handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
            return self._error(handler, 401, "token not valid")
        prefix = f"/api/v1/workflows/{self.namespace}"
        if not (url.path == prefix or url.path.startswith(prefix + "/")):
            return self._error(handler, 404, f"no route {url.path} (or wrong namespace)")
        parts = [p for p in url.path[len(prefix) :].split("/") if p]
        if method == "POST" and not parts:
            return self._create(handler)
        if method == "POST" and parts == ["lint"]:
            return self._lint(handler)
        if method == "GET" and not parts:
            return self._list(handler, query)
        name = parts[0] if parts else ""
        if name not in self.workflows:
            return self._error(handler, 404, f'workflows.argoproj.io "{name}" not found')
        if method == "GET" and len(parts) == 1:
            return self._send(handler, 200, self.workflows[name])
        if method == "PUT" and len(parts) == 2 and parts[1] in ("stop", "terminate"):
            return self._stop(handler, name, parts[1])
        if method == "GET" and len(parts) == 2 and parts[1] == "log":
            return self._log(handler, name, query)
        return self._error(handler, 404, f"no route {method} {url.path}")

    def _create(self, handler: BaseHTTPRequestHandler) -> None:
        body = self._body(handler)
        errors = sorted(
            request_validator("io.argoproj.workflow.v1alpha1.WorkflowCreateRequest").iter_errors(
                {k: v for k, v in body.items() if k != "workflow"}
            ),
            key=str,
        )
        workflow = body.get("workflow")
        if errors or not isinstance(workflow, dict):
            return self._error(
                handler,
                400,
                f"bad WorkflowCreateRequest: {errors[0].message if errors else 'no workflow'}",
            )
        workflow.setdefault("apiVersion", "argoproj.io/v1alpha1")
        workflow.setdefault("kind", "Workflow")
        findings = argo_schema.schema_findings(workflow) + lint.lint_document(
            workflow, self.library
        )
        if findings:
            return self._error(handler, 400, str(findings[0]))
        name = workflow["metadata"]["name"]
        with self.lock:
            if name in self.workflows:
                return self._error(handler, 409, f'workflows.argoproj.io "{name}" already exists')
            stored = copy.deepcopy(workflow)
            stored["metadata"].update(
                uid=str(uuid.uuid4()),
                creationTimestamp=now(),
                namespace=self.namespace,
                resourceVersion="1",
            )
            stored["status"] = {"phase": "Pending"}
            self.workflows[name] = stored
        self._send(handler, 200, stored)

    def _lint(self, handler: BaseHTTPRequestHandler) -> None:
        body = self._body(handler)
        errors = sorted(
            request_validator("io.argoproj.workflow.v1alpha1.WorkflowLintRequest").iter_errors(
                {k: v for k, v in body.items() if k != "workflow"}
            ),
            key=str,
        )
        workflow = body.get("workflow")
        if errors:
            return self._error(handler, 400, f"bad WorkflowLintRequest: {errors[0].message}")
        if not isinstance(workflow, dict):
            return self._error(handler, 500, "unable to get a workflow")  # as Argo says it
        workflow.setdefault("apiVersion", "argoproj.io/v1alpha1")
        workflow.setdefault("kind", "Workflow")
        findings = argo_schema.schema_findings(workflow)
        if findings:
            return self._error(handler, 400, str(findings[0]))
        # Templates resolve in the Workflow's namespace; the managed one when it has none.
        namespace = (workflow.get("metadata") or {}).get("namespace") or self.namespace
        library = self.library if namespace == self.namespace else {}
        # A real v4.0.5 server fetches the referenced template first: a missing one
        # is the API's NotFound (seen on the dev cluster), before any other check.
        ref = ((workflow.get("spec") or {}).get("workflowTemplateRef") or {}).get("name")
        if ref and ref not in library:
            return self._error(handler, 404, f'workflowtemplates.argoproj.io "{ref}" not found')
        findings = lint.lint_document(workflow, library)
        if findings:
            return self._error(handler, 500, str(findings[0]))
        self._send(handler, 200, workflow)

    def _list(self, handler: BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        selector = query.get("listOptions.labelSelector", "")
        if selector and not re.fullmatch(r"[\w./-]+", selector):
            return self._error(
                handler, 400, f"the double only understands 'key exists' selectors: {selector}"
            )
        items = [
            w
            for w in self.workflows.values()
            if not selector or selector in w["metadata"].get("labels", {})
        ]
        limit = int(query.get("listOptions.limit") or 0)
        self._send(handler, 200, {"metadata": {}, "items": items[:limit] if limit else items})

    def _stop(self, handler: BaseHTTPRequestHandler, name: str, action: str) -> None:
        body = self._body(handler)
        definition = {"stop": "WorkflowStopRequest", "terminate": "WorkflowTerminateRequest"}[
            action
        ]
        errors = list(
            request_validator(f"io.argoproj.workflow.v1alpha1.{definition}").iter_errors(body)
        )
        if errors:
            return self._error(handler, 400, f"bad {definition}: {errors[0].message}")
        if body.get("name") not in (None, name):
            return self._error(handler, 400, f"{definition} names {body.get('name')}, not {name}")
        strategy = "Stop" if action == "stop" else "Terminate"
        self.set_status(name, "Failed", message=f"Stopped with strategy '{strategy}'")
        self._send(handler, 200, self.workflows[name])

    def _log(self, handler: BaseHTTPRequestHandler, name: str, query: dict[str, str]) -> None:
        if query.get("logOptions.container") != "main":
            return self._error(handler, 400, "csflow asks for the main container's logs")
        pod = query.get("podName")
        entries = [(p, line) for p, line in self.logs.get(name, []) if pod in (None, p)]
        stream = b"".join(
            json.dumps({"result": {"content": line, "podName": p}}).encode() + b"\n"
            for p, line in entries
        )
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Transfer-Encoding", "chunked")
        handler.end_headers()
        for start in range(0, len(stream), 7):  # small chunks split lines and JSON
            chunk = stream[start : start + 7]
            handler.wfile.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
        handler.wfile.write(b"0\r\n\r\n")
