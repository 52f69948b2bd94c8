"""Telling the C/S webapp how a run ended.

C/S 1.6 pushed results with ``PUT {CS_URL}/outputs/api/`` and ignored the
reply. Here every call carries the job id (a repeat is harmless: the webapp
matches on it), the reply is checked, and failures are retried with backoff.
The token comes from the environment, filled from the secret store; it is
never logged.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

import requests

from csflow.sdk.errors import CsflowError


class WebappError(CsflowError):
    """The webapp did not accept a report after every retry."""


@dataclass
class WebappClient:
    url: str
    token: str = ""
    attempts: int = 5
    backoff: float = 1.0
    timeout: float = 10.0

    @classmethod
    def from_env(cls) -> WebappClient:
        return cls(
            url=os.environ["CSFLOW_WEBAPP_URL"].rstrip("/"),
            token=os.environ.get("CSFLOW_WEBAPP_TOKEN", ""),
            attempts=int(os.environ.get("CSFLOW_WEBAPP_ATTEMPTS", "5")),
            backoff=float(os.environ.get("CSFLOW_WEBAPP_BACKOFF", "1.0")),
        )

    def report(self, job_id: str, status: str, **payload: Any) -> None:
        body = {"job_id": job_id, "status": status, **payload}
        self.put("/outputs/api/", body)

    def put(self, path: str, body: dict[str, Any]) -> requests.Response:
        headers = {"Authorization": f"Token {self.token}"} if self.token else {}
        last = ""
        for attempt in range(self.attempts):
            try:
                reply = requests.put(self.url + path, json=body, headers=headers, timeout=self.timeout)
                if reply.status_code < 300:
                    return reply
                last = f"HTTP {reply.status_code}"
                if 400 <= reply.status_code < 500 and reply.status_code not in (408, 429):
                    break  # the webapp refused it; asking again will not help
            except requests.RequestException as exc:
                last = type(exc).__name__
            if attempt + 1 < self.attempts:
                time.sleep(self.backoff * 2**attempt)
        raise WebappError(f"webapp {self.url}{path} did not accept the report: {last}")
