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
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from csflow.runtime import step_env
from csflow.sdk.core import names
from csflow.sdk.core.errors import CsflowError

OUTPUTS_PATH = "/outputs/api/"
RETRY_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
TOKEN_ENV = step_env.WEBAPP_TOKEN.name


class WebappError(CsflowError):
    """The webapp did not accept a report after every retry."""


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
    def from_env(cls) -> WebappClient:
        return cls(
            url=step_env.WEBAPP_URL.require(),
            token=step_env.WEBAPP_TOKEN.get(),
            attempts=int(step_env.WEBAPP_ATTEMPTS.get()),
            backoff=float(step_env.WEBAPP_BACKOFF.get()),
            timeout=float(step_env.WEBAPP_TIMEOUT.get()),
        )

    def report(self, job_id: str, status: str, **payload: Any) -> requests.Response:
        """Tell the webapp that job ``job_id`` ended with ``status``."""
        body = {"job_id": names.check_job_id(job_id), "status": status, **payload}
        return self.put(OUTPUTS_PATH, body)

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
