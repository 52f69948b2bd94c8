"""Shared fixtures: a fresh CSFLOW_HOME per test, clients for the test models
(tests/models) and for the real Tax-Cruncher example (one home per session,
so its uv environment is built once)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from paths import ARGO_SCHEMA, REPO, TAX_INPUTS, TOY_CONFIGS

from csflow.sdk.client import Client

# The strict schema checks (sdk/argo/schema.py) read Argo's CRDs from here, in
# this process and in the commands the tests run.
os.environ.setdefault("CSFLOW_ARGO_SCHEMA_DIR", str(ARGO_SCHEMA))


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "home"
    monkeypatch.setenv("CSFLOW_HOME", str(path))
    return path


@pytest.fixture
def toy(home) -> Client:
    """A client whose models are the test models under tests/models/config."""
    return Client(home=home, config_dirs=[TOY_CONFIGS])


@pytest.fixture(scope="session")
def tax_home(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tax-home")


@pytest.fixture
def tax(tax_home, monkeypatch) -> Client:
    monkeypatch.setenv("CSFLOW_HOME", str(tax_home))
    return Client(home=tax_home, config_dirs=[REPO / "config"])


@pytest.fixture
def tax_inputs() -> dict:
    return json.loads(TAX_INPUTS.read_text())
