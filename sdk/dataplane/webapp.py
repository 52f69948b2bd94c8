"""Telling the C/S webapp how a run ended.

C/S 1.6 pushed results with ``PUT {CS_URL}/outputs/api/`` and ignored the
reply. Here:

- every call carries the job id, and the webapp matches on it, so a repeated
  call (a retry, or Argo re-running ``notify``) is harmless;
- transient failures (connection errors, 408, 429, 5xx) are retried with
  exponential backoff, honouring ``Retry-After`` (urllib3's ``Retry``);
- the reply is checked: anything but 2xx after the last attempt raises
  ``WebappError``, so the step fails and Argo's retry takes over.

Settings: ``CSFLOW_WEBAPP_URL`` (``Settings.webapp_url``), the token in
``CSFLOW_WEBAPP_TOKEN`` (filled from the secret store, service secret
``Settings.webapp_token_secret``; it is never logged or shown in a repr),
``CSFLOW_WEBAPP_ATTEMPTS``, ``CSFLOW_WEBAPP_BACKOFF`` (seconds) and
``CSFLOW_WEBAPP_TIMEOUT`` (seconds per attempt), all declared in
``runtime/step_env.py``.

What the webapp accepts
-----------------------
The C/S webapp checks every callback with Django REST framework serializers
(``webapp/apps/comp/serializers.py`` of ``compute-tooling/compute-studio``, the
mid-2020 version whose ``OutputsSerializer`` sits beside ``PublishSerializer``)
and then reads the fields its views need (``views/api.py``: ``OutputsAPIView``,
``MyInputsAPIView``; ``views/core.py``: ``RecordOutputsMixin``). The reports
built here (``success_report``, ``failure_report``, ``invalid_inputs_report``)
carry what both ask for:

- ``PUT /outputs/api/`` (``OutputsSerializer``): ``job_id`` (a UUID), ``status``
  ``SUCCESS`` or ``FAIL`` (no other choice), ``meta`` (required; the view bills
  ``sum(meta["task_times"])`` on every ending, so ``task_times`` is a list of
  seconds), and optionally ``model_version`` (never blank; at most 50 characters,
  the column it lands in), ``traceback`` (never blank; the view keeps 8000
  characters), ``outputs`` and ``version``. A ``SUCCESS`` needs ``outputs`` (the
  remote result, ``{"renderable"|"downloadable": {"ziplocation", "outputs": [{id,
  title, media_type, filename}]}}``) and ``version`` (``"v1"``) at the top level:
  the webapp stores ``{"outputs": outputs, "version": version}`` itself. A ``FAIL``
  needs ``traceback``. Deadlines, cancels and deleted pods are ``FAIL`` too.
- Invalid inputs go to ``PUT /inputs/api/`` (``InputsSerializer``), as C/S's own
  workers sent validation results: ``job_id``, ``status: "SUCCESS"`` (the
  validation ran; ``INVALID`` is not one of the serializer's choices) and
  ``errors_warnings``. The view stores them and marks the inputs ``INVALID``
  because a section has errors, which is where the webapp shows a user what to
  fix. Sent as a ``FAIL`` to ``/outputs/api/`` instead, they would reach the
  user as a crashed simulation with the errors flattened into a traceback. A run
  whose inputs are valid never calls ``/inputs/api/``: with valid inputs that view
  submits the simulation again (``SubmitSim``). The job id csflow returns at
  submit is the one the webapp matches both callbacks on.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from csflow.runtime import step_env
from csflow.sdk.core import names
from csflow.sdk.core.errors import CsflowError

OUTPUTS_PATH = "/outputs/api/"
INPUTS_PATH = "/inputs/api/"
OUTPUTS_VERSION = "v1"  # the remote result's version (cs-storage's "v1")
MAX_TRACEBACK_CHARS = 8000  # what the webapp keeps of a traceback
MAX_MODEL_VERSION_CHARS = 50  # Simulation.model_version's column
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
TOKEN_ENV = step_env.WEBAPP_TOKEN.name
# Platform credentials a step may hold: their values never go into a report.
SECRET_VARIABLES = (step_env.WEBAPP_TOKEN, step_env.REDIS_PASSWORD)
REDACTED = "[redacted]"

_URL_CREDENTIALS = re.compile(r"(\b[a-z][a-z0-9+.-]*://)[^/\s@]+@", re.IGNORECASE)
_AUTH_HEADER = re.compile(r"\b(authorization['\"]?\s*[:=]\s*['\"]?)(\w+\s+)?[^\s'\",;]+", re.I)
_BEARER = re.compile(r"\b(bearer\s+)[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
# name = value, name: value, 'name': 'value' (a dict's repr), for names that hold credentials
_ASSIGNED = re.compile(
    r"\b([\w.-]*(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|credentials?)"
    r"[\w.-]*['\"]?\s*[:=]\s*)(\"[^\"]*\"|'[^']*'|[^\s,;)}\]]+)",
    re.IGNORECASE,
)


class WebappError(CsflowError):
    """The webapp did not accept a report after every retry."""


def task_times(seconds: float | None) -> list[float]:
    """``meta.task_times``: the model's wall time in seconds, as one task (C/S's
    shape: a list, summed by the webapp into the run time it bills). Unknown,
    negative or not finite is 0."""
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        return [0.0]
    return [round(float(seconds), 3)]


def _model_version(version: str | None) -> dict[str, str]:
    version = " ".join((version or "").split())[:MAX_MODEL_VERSION_CHARS]
    return {"model_version": version} if version else {}


def success_report(
    job_id: str,
    outputs: dict[str, Any],
    task_seconds: float | None,
    model_version: str = "",
    cached_from: str = "",
) -> dict[str, Any]:
    """The body of ``PUT /outputs/api/`` for a run that succeeded: ``outputs`` is
    the remote result (where each category's zip is, and what is in it). A cache
    hit (``cached_from``: the run whose results it returns) is marked in ``meta``
    (``meta.cached_from``; ``task_times`` is 0: nothing ran): ``meta`` is the
    serializer's free-form JSONField, kept whole, where a top-level field of its
    own would be dropped by ``OutputsSerializer``."""
    meta: dict[str, Any] = {"task_times": task_times(0.0 if cached_from else task_seconds)}
    if cached_from:
        meta["cached_from"] = names.check_job_id(cached_from)
    return {
        "job_id": names.check_job_id(job_id),
        "status": "SUCCESS",
        "meta": meta,
        **_model_version(model_version),
        "outputs": outputs,
        "version": OUTPUTS_VERSION,
    }


def failure_report(
    job_id: str, traceback: str, task_seconds: float | None = None, model_version: str = ""
) -> dict[str, Any]:
    """The body of ``PUT /outputs/api/`` for a run that ended otherwise (a crash, a
    deadline, a cancel, a lost pod): ``traceback`` is cut to what the webapp keeps
    and has no credential in it (``excerpt``); never blank."""
    return {
        "job_id": names.check_job_id(job_id),
        "status": "FAIL",
        "meta": {"task_times": task_times(task_seconds)},
        **_model_version(model_version),
        "traceback": excerpt(traceback) or "the simulation failed",
    }


def invalid_inputs_report(job_id: str, errors_warnings: dict[str, Any]) -> dict[str, Any]:
    """The body of ``PUT /inputs/api/`` for inputs the model's ``validate_inputs``
    (or csflow's own checks) found errors in: the validation ran (``SUCCESS``), and
    its errors make the webapp mark the inputs ``INVALID``."""
    return {
        "job_id": names.check_job_id(job_id),
        "status": "SUCCESS",
        "errors_warnings": errors_warnings,
    }


def excerpt(text: str, secrets: Iterable[str] | None = None) -> str:
    """``text`` as the webapp may show it: the values of ``secrets`` (default: the
    platform credentials this process holds, ``SECRET_VARIABLES``) and anything
    shaped like a credential (a URL's ``user:password@``, an ``Authorization``
    header, a bearer token, ``password=...``/``token: ...``/``api_key=...``)
    replaced by ``[redacted]``, then cut to MAX_TRACEBACK_CHARS (its end kept:
    a traceback says why last)."""
    if secrets is None:
        secrets = [v for v in (var.get() for var in SECRET_VARIABLES) if v]
    for secret in sorted({s for s in secrets if len(s) >= 4}, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    text = _URL_CREDENTIALS.sub(rf"\1{REDACTED}@", text)
    text = _AUTH_HEADER.sub(rf"\1{REDACTED}", text)
    text = _BEARER.sub(rf"\1{REDACTED}", text)
    text = _ASSIGNED.sub(rf"\1{REDACTED}", text)
    text = text.strip()
    if len(text) > MAX_TRACEBACK_CHARS:
        text = "…" + text[-(MAX_TRACEBACK_CHARS - 1) :]
    return text


@dataclass
class WebappClient:
    url: str
    token: str = field(default="", repr=False)
    attempts: int = 5
    backoff: float = 1.0
    timeout: float = 10.0

    def __post_init__(self) -> None:
        self.url = self.url.rstrip("/")
        if not self.url.startswith(("http://", "https://")):
            raise WebappError(f"webapp URL must start with http:// or https://, got {self.url!r}")
        if self.attempts < 1:
            raise WebappError("webapp attempts must be at least 1")

    @classmethod
    def from_env(cls, url: str | None = None, token: str | None = None) -> WebappClient:
        """A client as a step makes it, from ``CSFLOW_WEBAPP_*``; ``url`` and ``token``
        replace those two (the SDK, which has them from its settings and secrets)."""
        return cls(
            url=url or step_env.WEBAPP_URL.require(),
            token=step_env.WEBAPP_TOKEN.get() if token is None else token,
            attempts=int(step_env.WEBAPP_ATTEMPTS.get()),
            backoff=float(step_env.WEBAPP_BACKOFF.get()),
            timeout=float(step_env.WEBAPP_TIMEOUT.get()),
        )

    def report(self, job_id: str, status: str, **payload: Any) -> requests.Response:
        """``PUT /outputs/api/`` with ``job_id``, ``status`` and ``payload`` as given
        (the transport; ``report_success``, ``report_failure`` and
        ``report_invalid_inputs`` send what the webapp accepts)."""
        body = {"job_id": names.check_job_id(job_id), "status": status, **payload}
        return self.put(OUTPUTS_PATH, body)

    def report_success(
        self,
        job_id: str,
        outputs: dict[str, Any],
        task_seconds: float | None,
        model_version: str = "",
        cached_from: str = "",
    ) -> requests.Response:
        return self.put(
            OUTPUTS_PATH,
            success_report(job_id, outputs, task_seconds, model_version, cached_from),
        )

    def report_failure(
        self,
        job_id: str,
        traceback: str,
        task_seconds: float | None = None,
        model_version: str = "",
    ) -> requests.Response:
        return self.put(
            OUTPUTS_PATH, failure_report(job_id, traceback, task_seconds, model_version)
        )

    def report_invalid_inputs(
        self, job_id: str, errors_warnings: dict[str, Any]
    ) -> requests.Response:
        return self.put(INPUTS_PATH, invalid_inputs_report(job_id, errors_warnings))

    def _session(self) -> requests.Session:
        retry = Retry(
            total=self.attempts - 1,
            backoff_factor=self.backoff,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"PUT"}),
            raise_on_status=False,  # hand back the last reply, checked below
            respect_retry_after_header=True,
        )
        session = requests.Session()
        session.mount("http://", HTTPAdapter(max_retries=retry))
        session.mount("https://", HTTPAdapter(max_retries=retry))
        return session

    def put(self, path: str, body: dict[str, Any]) -> requests.Response:
        headers = {"Authorization": f"Token {self.token}"} if self.token else {}
        target = f"{self.url}{path}"
        job = f" for job {body['job_id']}" if "job_id" in body else ""
        with self._session() as session:
            try:
                reply = session.put(target, json=body, headers=headers, timeout=self.timeout)
            except requests.RequestException as exc:
                raise WebappError(
                    f"webapp {target} did not answer{job} after {self.attempts} attempt(s): "
                    f"{type(exc).__name__}"
                ) from None
        if not 200 <= reply.status_code < 300:
            detail = " ".join(reply.text.split())[:200]
            raise WebappError(
                f"webapp {target} refused the report{job}: HTTP {reply.status_code}"
                + (f" {detail}" if detail else "")
            )
        return reply
