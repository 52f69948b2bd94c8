"""The result cache on the argo backend, against the Argo Server double and the real
redis-server: a hit creates no Workflow and is a run of its own in the job store;
identical submissions in flight (five backends at once, as five submitters) share
one Workflow, the claim held in Redis."""

from __future__ import annotations

import threading

from csflow.sdk.backends.argo import ArgoBackend
from csflow.sdk.client import Client, parse_inputs
from csflow.sdk.dataplane.storage import RESULT_FILES, open_storage, run_prefix
from csflow.sdk.registry.local import Registry

from .conftest import INPUTS

TAG = "42ce5647434e"
MODEL = "PSLmodels/Tax-Cruncher"


def publish(settings) -> None:
    """The version as a publish records it (the cache keys recorded versions only)."""
    Registry(settings.home).record_version(
        {
            "owner": "PSLmodels",
            "title": "Tax-Cruncher",
            "tag": TAG,
            "image": f"gcr.io/cs-test/pslmodels_tax-cruncher:{TAG}",
            "digest": "sha256:" + "a" * 64,
            "config": ArgoBackend(settings).resolve("PSLmodels", "Tax-Cruncher", TAG).config,
        }
    )


def succeed(settings, double, job_id: str) -> None:
    """The cluster ran the Workflow: its upload step stored the results."""
    storage = open_storage(settings.storage_url)
    for name in RESULT_FILES:
        body = b'{"renderable": [], "downloadable": []}' if name.endswith(".json") else b"zip"
        storage.put(f"{run_prefix('PSLmodels', 'Tax-Cruncher', job_id)}/{name}", body)
    double.set_status(
        f"sim-{job_id}",
        "Succeeded",
        outputs={"errors-warnings": "{}", "model-version": "taxcalc 6.8.5"},
    )


def test_a_hit_creates_no_workflow(settings, double):
    publish(settings)
    client = Client(settings)
    first = client.submit(MODEL, INPUTS, tag=TAG)
    assert f"sim-{first.id}" in double.workflows
    succeed(settings, double, first.id)
    assert client.wait(first.id).status == "SUCCESS"  # the submitter keeps the results
    count = len(double.workflows)
    again = client.simulate(MODEL, INPUTS, tag=TAG)
    assert len(double.workflows) == count  # no Workflow for a hit
    assert again.status == "SUCCESS" and again.cached_from == first.id
    shown = Client(settings).status(again.id)  # another process: from the job store
    assert shown.cached_from == first.id and shown.to_dict()["cached"] is True
    assert shown.model_version == "taxcalc 6.8.5"
    assert Client(settings).wait(again.id).cached_from == first.id
    assert client.results(again.id) == client.results(first.id)
    assert client.run_inputs(again.id) == client.run_inputs(first.id)
    forced = client.submit(MODEL, INPUTS, tag=TAG, no_cache=True)
    assert f"sim-{forced.id}" in double.workflows and not forced.cached_from


def test_an_unrecorded_image_tag_is_never_cached(settings, double):
    client = Client(settings)  # no publish: the config at an image tag that may move
    first = client.submit(MODEL, INPUTS, tag=TAG)
    succeed(settings, double, first.id)
    client.wait(first.id)
    assert not client.submit(MODEL, INPUTS, tag=TAG).cached_from
    assert open_storage(settings.storage_url).list("cache") == []


def test_identical_submissions_in_flight_share_one_workflow(settings, double, redis_server):
    publish(settings)
    settings = settings.model_copy(update={"argo_poll_seconds": 0.05})
    runs: list = []
    errors: list = []

    def submit() -> None:
        try:
            runs.append(ArgoBackend(settings).submit(MODEL, parse_inputs(INPUTS), tag=TAG))
        except Exception as exc:  # shown by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=submit) for _ in range(5)]
    for thread in threads:
        thread.start()
    deadline = 30
    while not double.workflows and deadline > 0:
        threading.Event().wait(0.05)
        deadline -= 0.05
    assert len(double.workflows) == 1
    [name] = double.workflows
    leader = name.removeprefix("sim-")
    admin = redis_server.client("admin")
    assert [k.decode() for k in admin.keys("cache-flight-*")] and admin.ttl(
        admin.keys("cache-flight-*")[0]
    ) > 0
    succeed(settings, double, leader)  # its submitter is gone (detached): a waiter keeps it
    for thread in threads:
        thread.join(30)
    assert errors == [] and len(runs) == 5
    assert len(double.workflows) == 1
    assert sorted(r.cached_from for r in runs) == ["", *[leader] * 4]
