"""Publishing the real example, Tax-Cruncher on Tax-Calculator, then simulating
the published versions (slow: the contract tests call get_inputs over eight
years and run the model)."""

from __future__ import annotations

import csv
import io

import pytest

from csflow.sdk.client import Client
from csflow.sdk.registry.local import Registry

from .conftest import REPO

pytestmark = pytest.mark.slow

MODEL = "PSLmodels/Tax-Cruncher"
CONFIG = REPO / "config" / "PSLmodels" / "Tax-Cruncher.yaml"


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A home where Tax-Cruncher was published once: its client and the run."""
    home = tmp_path_factory.mktemp("tax-publish-home")
    client = Client(home=home, config_dirs=[REPO / "config"])
    run = client.publish(CONFIG)
    return client, run, home


def _income_tax(client, run) -> list[str]:
    data = next(
        o["data"]
        for o in client.results(run.id)["downloadable"]
        if o["title"] == "Basic Liabilities"
    )
    rows = {row[0]: row[1:] for row in csv.reader(io.StringIO(data))}
    return rows["Individual Income Tax"][:2]


def test_the_example_passes_every_contract_test(published):
    client, run, home = published
    assert run.status == "SUCCESS", run.reason
    report = client.publish_report(run.id)
    assert report["passed"] and report["summary"]["total"] == report["summary"]["passed"] == 11
    tests = {t["name"]: t for t in report["tests"]}
    assert tests["sections"]["detail"].startswith("Tax Information: ")  # Policy is not empty
    assert tests["meta_grid"]["detail"].startswith("8 combination(s): year=2013")
    assert "taxcalc 6.8.5" in run.model_version
    assert Registry(home).document("PSLmodels", "Tax-Cruncher")["tags"] == {
        "latest": run.tag,
        "staging": run.tag,
    }


def test_simulate_latest_and_staging_after_publishing(published, tax_inputs):
    client, run, _ = published
    latest = client.simulate(MODEL, tax_inputs)
    staging = client.simulate(MODEL, tax_inputs, tag="staging")
    for sim in (latest, staging):
        assert sim.status == "SUCCESS", sim.reason
        assert sim.tag == run.tag
        assert _income_tax(client, sim) == ["8032.00", "6736.00"]


def test_inputs_come_from_the_cache_for_the_defaults(published):
    client, run, _ = published
    cached = client.inputs(MODEL)
    assert cached["source"] == "cache" and cached["tag"] == run.tag
    assert len(cached["inputs"]["model_parameters"]["Policy"]) > 100
    other = client.inputs(MODEL, {"year": 2030})
    assert other["source"] == "computed" and other["meta_param_dict"] == {"year": 2030}
