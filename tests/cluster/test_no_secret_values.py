"""No secret value shows where a run is shown: a canary scan on the real cluster.

Every Secret in the csflow namespace holds values ``cluster/dev/up`` generated
(``csflow svc secrets set --generate``) or Kubernetes minted (service-account
tokens), so each one is a canary. After a run that succeeds and one whose model
crashes (a traceback is where a leak would be), none of those values may appear
in what the Argo UI shows (the Workflow objects, spec and status), the
namespace's events, the webapp's callbacks, csflow's run records or results.

Not scanned: step logs. Pods are garbage-collected when they finish and
``archiveLogs`` is off, so no log outlives its pod; and with keyless artifacts
the executor has no credential to log (GHSA-7vf8-2cr6-54mf).
"""

from __future__ import annotations

import base64
import json

import pytest

from csflow.runtime import step_env
from csflow.sdk.core import steps

from .conftest import TOY_INPUTS, eventually, settled, submit

pytestmark = pytest.mark.cluster

# Shorter values ("true", a port) would match by chance.
MIN_CANARY_LENGTH = 12


def canaries(cluster) -> dict[str, str]:
    """Every Secret value in the namespace, by ``SECRET/KEY``."""
    values = {}
    for secret in cluster.core.list_namespaced_secret(cluster.namespace).items:
        for key, encoded in (secret.data or {}).items():
            value = base64.b64decode(encoded).decode(errors="replace")
            if len(value) >= MIN_CANARY_LENGTH:
                values[f"{secret.metadata.name}/{key}"] = value
    return values


@pytest.mark.timeout(1200)
def test_no_secret_value_shows_where_runs_are_shown(pods_client, cluster, workflows, webapp):
    secrets = canaries(cluster)
    # The canaries that matter most are among them (else the scan proves nothing).
    assert f"{steps.PLATFORM_SECRET}/{step_env.WEBAPP_TOKEN.name}" in secrets, sorted(secrets)
    assert f"{steps.PLATFORM_SECRET}/{step_env.REDIS_PASSWORD.name}" in secrets, sorted(secrets)
    assert any(name.endswith("/token") for name in secrets), sorted(secrets)

    runs = [
        settled(pods_client, submit(pods_client, workflows, model, TOY_INPUTS).id, timeout=600)
        for model in ("tests/ToyOk", "tests/ToyCrash")
    ]
    for run in runs:  # the webapp heard of both ends before anything is scanned
        eventually(lambda run=run: webapp.for_job(run.id), timeout=120, what="the callback")

    shown: dict[str, str] = {}
    for run in runs:
        name = run.extra["workflow"]
        shown[f"Workflow {name}"] = json.dumps(cluster.workflow(name))
        shown[f"run record {run.id}"] = json.dumps(pods_client.status(run.id).to_dict())
        shown[f"callbacks {run.id}"] = json.dumps(webapp.for_job(run.id))
    shown[f"results {runs[0].id}"] = json.dumps(pods_client.results(runs[0].id))
    events = cluster.core.list_namespaced_event(cluster.namespace).items
    shown["events"] = "\n".join(f"{e.reason}: {e.message}" for e in events)
    # The haystacks hold what they should (the crash's reason reached the webapp).
    assert all(run.id in shown[f"Workflow {run.extra['workflow']}"] for run in runs)
    assert "traceback" in shown[f"callbacks {runs[1].id}"].lower()

    leaks = [
        f"{secret} in {where}"
        for where, text in shown.items()
        for secret, value in secrets.items()
        if value in text
    ]
    assert leaks == []
