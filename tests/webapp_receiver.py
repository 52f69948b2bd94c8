"""A small HTTP receiver that judges csflow's callbacks by the C/S webapp's rules.

Stands in for the C/S webapp, a Django project that cannot run here (it needs
Postgres, its users and projects). It checks each callback with Django REST
framework serializers, as the webapp does, then with what the webapp's views read
from the validated data, and answers as they would: 400 with the serializer's
errors (DRF's JSON), 500 where the view itself would fail, 401 without the token,
200 otherwise. Accepted calls are recorded (``accepted``), refused ones too
(``refused``). Django is configured minimally (``settings.configure``: no
database, no apps); the serializers are plain ``serializers.Serializer`` classes
with the fields the webapp's serializers have, ModelSerializer fields spelled out
as DRF derives them from the webapp's model columns.

Read in the public ``compute-tooling/compute-studio`` repository, the mid-2020
webapp (its ``serializers.py`` imports ``PublishSerializer``; commit
002d86f4b64eb6ef42f5acc2a758f93ed71ee73b of that file):

- ``webapp/apps/comp/serializers.py``:
  - ``OutputsSerializer`` (a plain Serializer), mirrored field by field as
    ``OutputsSerializer`` below: ``job_id`` UUIDField, ``status`` ChoiceField
    (``SUCCESS``, ``FAIL``) and ``meta`` JSONField, required; ``traceback``,
    ``model_version`` and ``version`` CharFields (so never blank or null),
    ``outputs`` and ``aggr_outputs`` JSONFields, not required.
  - ``InputsSerializer`` (a ModelSerializer over ``comp.models.Inputs``),
    mirrored as ``InputsSerializer`` below. Its declared fields, all
    ``required=False``: ``job_id`` UUIDField, ``status`` ChoiceField (``SUCCESS``,
    ``FAIL``), ``client`` ChoiceField (``web-alpha``, ``web-beta``, ``rest-api``),
    ``parent_model_pk`` IntegerField, ``api_url``/``gui_url`` CharFields,
    ``notify_on_completion`` BooleanField, ``sim`` (a nested
    ``MiniSimulationSerializer``). Its model fields, from ``comp/models.py``:
    ``adjustment``, ``custom_adjustment``, ``errors_warnings`` and
    ``meta_parameters`` are ``JSONField(default=..., blank=True, null=True)``,
    which DRF makes ``JSONField(required=False, allow_null=True)``; ``traceback``
    is ``CharField(null=True, blank=True, default=None, max_length=8000)``, made
    ``CharField(required=False, allow_null=True, allow_blank=True,
    max_length=8000)``.
  - ``MiniSimulationSerializer`` (nested as ``sim``), mirrored as
    ``MiniSimulationSerializer``: its writable declared fields (``title``,
    ``model_pk``, ``readme``, ``status``, ``api_url``, ``gui_url``, not required)
    and model fields (``creation_date``, ``is_public``, ``model_version``: at most
    50 characters, ``notify_on_completion``), not required; ``owner`` and
    ``project`` are read-only there.
- ``webapp/apps/comp/views/api.py``: ``OutputsAPIView.put`` (``PUT
  /outputs/api/``) and ``MyInputsAPIView.put`` (``PUT /inputs/api/``) answer
  ``400`` with ``serializer.errors``. Then ``MyInputsAPIView`` reads
  ``data["job_id"]`` and ``data["status"]``; for ``SUCCESS``,
  ``data["errors_warnings"]`` (the inputs become ``INVALID`` when a section has
  errors, else ``SUCCESS`` and the webapp submits the simulation); for ``FAIL``,
  ``data["traceback"]``.
- ``webapp/apps/comp/views/core.py``, ``RecordOutputsMixin.record_outputs`` (with
  ``billing/utils.py``'s ``ChargeRunMixin.charge_run``): ``sum(meta["task_times"])``
  on every ending (the run time billed); ``data["outputs"]`` and
  ``data["version"]`` for ``SUCCESS``; ``data["traceback"]`` for ``FAIL``;
  ``model_version`` saved in ``Simulation.model_version``, a 50-character column.
- ``webapp/apps/comp/tests/test_asyncviews.py`` and ``tests/compute.py``: the
  callbacks the webapp's own tests send (``{"status": "SUCCESS", "job_id",
  "errors_warnings"}`` to ``/inputs/api/``, ``Matchups_v1_fail.json``'s ``FAIL``
  with ``traceback`` and ``meta.task_times`` to ``/outputs/api/``).

Not mirrored: the user behind the token (a token given to the receiver must come
as ``Authorization: Token ...``; anything else is 401), the lookup of the job (any
job id stands for a pending simulation or inputs), emails. Other paths (csflow's
publish step's ``/publish/api/O/T/deployments/``) are recorded unjudged, with 200.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import django
from django.conf import settings

if not settings.configured:
    settings.configure(USE_TZ=True, USE_I18N=False)
    django.setup()

from rest_framework import serializers  # noqa: E402 (needs the settings above)
from rest_framework.renderers import JSONRenderer  # noqa: E402

OUTPUTS_PATH = "/outputs/api/"
INPUTS_PATH = "/inputs/api/"
CALLBACK_PATHS = (OUTPUTS_PATH, INPUTS_PATH)
MODEL_VERSION_COLUMN = 50  # Simulation.model_version = CharField(max_length=50)

_SUCCESS_OR_FAIL = (("SUCCESS", "Success"), ("FAIL", "Fail"))


class OutputsSerializer(serializers.Serializer):
    """The webapp's ``OutputsSerializer`` (``PUT /outputs/api/``), field by field."""

    job_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=_SUCCESS_OR_FAIL)
    traceback = serializers.CharField(required=False)
    model_version = serializers.CharField(required=False)
    meta = serializers.JSONField()
    outputs = serializers.JSONField(required=False)
    aggr_outputs = serializers.JSONField(required=False)  # "only used with v0!"
    version = serializers.CharField(required=False)


class MiniSimulationSerializer(serializers.Serializer):
    """The writable fields of the webapp's ``MiniSimulationSerializer`` (``sim``)."""

    title = serializers.CharField(required=False)
    model_pk = serializers.IntegerField(required=False)
    readme = serializers.JSONField(required=False)
    status = serializers.CharField(required=False)
    api_url = serializers.CharField(required=False)
    gui_url = serializers.CharField(required=False)
    creation_date = serializers.DateTimeField(required=False)
    is_public = serializers.BooleanField(required=False)
    model_version = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=MODEL_VERSION_COLUMN
    )
    notify_on_completion = serializers.BooleanField(required=False)


class InputsSerializer(serializers.Serializer):
    """The webapp's ``InputsSerializer`` (``PUT /inputs/api/``): its declared
    fields, and the ones DRF derives from ``Inputs``' columns."""

    job_id = serializers.UUIDField(required=False)
    status = serializers.ChoiceField(choices=_SUCCESS_OR_FAIL, required=False)
    client = serializers.ChoiceField(
        choices=(("web-alpha", "Web-Alpha"), ("web-beta", "Web-Beta"), ("rest-api", "REST API")),
        required=False,
    )
    parent_model_pk = serializers.IntegerField(required=False)
    api_url = serializers.CharField(required=False)
    gui_url = serializers.CharField(required=False)
    sim = MiniSimulationSerializer(required=False)
    notify_on_completion = serializers.BooleanField(required=False)
    # Model fields: JSONField(default=..., blank=True, null=True), CharField(null=True,
    # blank=True, default=None, max_length=8000).
    adjustment = serializers.JSONField(required=False, allow_null=True)
    custom_adjustment = serializers.JSONField(required=False, allow_null=True)
    errors_warnings = serializers.JSONField(required=False, allow_null=True)
    meta_parameters = serializers.JSONField(required=False, allow_null=True)
    traceback = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, max_length=8000
    )


class ViewError(Exception):
    """What the webapp's view would fail on once the serializer passed (a 500)."""


def _read(data: dict[str, Any], key: str, view: str) -> Any:
    try:
        return data[key]
    except KeyError:
        raise ViewError(f"{view}: KeyError: {key!r}") from None


def outputs_view(data: dict[str, Any]) -> str:
    """What ``OutputsAPIView.put`` and ``record_outputs`` do with validated data:
    the simulation's new status."""
    view = "OutputsAPIView.put"
    meta = _read(data, "meta", view)
    try:
        sum(meta["task_times"])  # ChargeRunMixin.charge_run: the run time billed
    except (KeyError, TypeError, IndexError) as exc:
        raise ViewError(f"{view}: sum(meta['task_times']): {type(exc).__name__}: {exc}") from None
    version = data.get("model_version", "NA")
    if len(version) > MODEL_VERSION_COLUMN:
        raise ViewError(
            f"{view}: model_version: value too long for type character varying"
            f"({MODEL_VERSION_COLUMN})"
        )
    if data["status"] == "SUCCESS":
        _read(data, "outputs", view)
        _read(data, "version", view)
        return "SUCCESS"
    _read(data, "traceback", view)
    return "FAIL"


def inputs_view(data: dict[str, Any]) -> str:
    """What ``MyInputsAPIView.put`` does with validated data: the inputs' new status
    (``SUCCESS`` also submits the simulation)."""
    view = "MyInputsAPIView.put"
    _read(data, "job_id", view)
    if _read(data, "status", view) == "SUCCESS":
        errors_warnings = _read(data, "errors_warnings", view)
        try:  # utils.is_valid: no section has errors
            valid = not any(section["errors"] for section in errors_warnings.values())
        except (AttributeError, KeyError, TypeError) as exc:
            raise ViewError(f"{view}: is_valid: {type(exc).__name__}: {exc}") from None
        return "SUCCESS" if valid else "INVALID"
    _read(data, "traceback", view)
    return "FAIL"


@dataclass
class Callback:
    """An accepted call: its path and JSON body, and what the webapp would record
    (``outcome``: a simulation's status from ``/outputs/api/``, the inputs' status
    from ``/inputs/api/``; ``None`` for a path not judged)."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    outcome: str | None

    @property
    def submits_simulation(self) -> bool:
        """Valid inputs reported to ``/inputs/api/``: the webapp submits the
        simulation (``SubmitSim``), a second run of the job."""
        return self.path == INPUTS_PATH and self.outcome == "SUCCESS"


@dataclass
class Refusal:
    method: str
    path: str
    body: Any
    status: int
    reply: Any


@dataclass
class WebappReceiver:
    """The receiver on ``host:port`` (port 0: a free one), in a thread: ``start()``,
    ``url``, ``stop()``. ``token``: the one ``Authorization: Token ...`` accepted
    (None: any caller)."""

    host: str = "127.0.0.1"
    port: int = 0
    token: str | None = None
    accepted: list[Callback] = field(default_factory=list)
    refused: list[Refusal] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, reply = receiver.judge(self.command, self.path, dict(self.headers), raw)
                data = reply if isinstance(reply, bytes) else json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _handle

            def log_message(self, *args: Any) -> None:
                pass

        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer((self.host, self.port), Handler)
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> WebappReceiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def for_job(self, job_id: str) -> list[Callback]:
        """The accepted calls about one job, in order."""
        with self._lock:
            return [c for c in self.accepted if _job_of(c.body) == job_id]

    def judge(self, method: str, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, Any]:
        """The webapp's answer to one request: (HTTP status, body)."""
        status, reply, outcome, body = self._judge(method, path, headers, raw)
        with self._lock:
            if 200 <= status < 300:
                self.accepted.append(Callback(method, path, headers, body, outcome))
            else:
                self.refused.append(Refusal(method, path, body, status, reply))
        return status, reply

    def _judge(self, method: str, path: str, headers: dict[str, str], raw: bytes):
        try:
            body = json.loads(raw) if raw else {}
        except ValueError as exc:
            return 400, {"detail": f"JSON parse error - {exc}"}, None, raw
        if path not in CALLBACK_PATHS:
            return 200, {"status": "ok"}, None, body
        if method != "PUT":
            return 405, {"detail": f'Method "{method}" not allowed.'}, None, body
        if self.token is not None and _header(headers, "Authorization") != f"Token {self.token}":
            return 401, {"detail": "Authentication credentials were not provided."}, None, body
        serializer = (OutputsSerializer if path == OUTPUTS_PATH else InputsSerializer)(data=body)
        if not serializer.is_valid():
            return 400, JSONRenderer().render(serializer.errors), None, body
        view = outputs_view if path == OUTPUTS_PATH else inputs_view
        try:
            outcome = view(dict(serializer.validated_data))
        except ViewError as exc:
            return 500, {"detail": f"Server Error (500): {exc}"}, None, body
        return 200, b"", outcome, body


def _header(headers: dict[str, str], name: str) -> str | None:
    return next((v for k, v in headers.items() if k.lower() == name.lower()), None)


def _job_of(body: Any) -> str | None:
    return body.get("job_id") if isinstance(body, dict) else None
