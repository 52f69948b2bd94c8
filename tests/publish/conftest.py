"""Fixtures for the publish tests: clients on a fresh CSFLOW_HOME, the tiny test
model (tests/publish/models/tiny, standard library only, broken on purpose
by its config's ``env``) and configs for it written on the fly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from csflow.cli.app import app
from csflow.sdk.client import Client

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
CONFIGS = HERE / "config"
TINY = HERE / "models" / "tiny"
OWNER = "publish-tests"

TESTS_SECTION = {
    "meta_param_dict": {"year": 2024},
    "ok_adjustment": {
        "Knobs": {"rate": [{"value": 0.25}]},
        "Extras": {"label": [{"value": "hello"}]},
    },
    "bad_adjustment": {"Knobs": {"rate": [{"value": 2}]}, "Extras": {"label": [{"value": 7}]}},
}
OK_INPUTS = {
    "meta_param_dict": {"year": 2024},
    "adjustment": {"Knobs": {"rate": [{"value": 0.75}]}},
}


def tiny_config(root: Path, title: str = "Tiny", source: Path = TINY, **env: str) -> Path:
    """Write ``root/publish-tests/TITLE.yaml`` for the tiny model; ``env`` picks
    its behaviour (TINY_MODE) and version (TINY_VERSION)."""
    path = root / OWNER / f"{title}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    config = {
        "owner": OWNER,
        "title": title,
        "source": {"path": str(source)},
        "python": "3.11",
        "requirements": [],
        "functions": "tiny_model",
        "timeout": 120,
        "env": {"TINY_MODE": "ok", **env},
        "tests": TESTS_SECTION,
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@pytest.fixture
def configs(tmp_path) -> Path:
    """A config folder for configs written by the test."""
    path = tmp_path / "config"
    path.mkdir()
    return path


@pytest.fixture
def client(home, configs) -> Client:
    return Client(home=home, config_dirs=[configs, CONFIGS])


@pytest.fixture
def cli(home, configs, monkeypatch):
    """``csflow ...`` in this process, on the test's home and configs."""
    monkeypatch.setenv("CSFLOW_CONFIG_DIRS", json.dumps([str(configs), str(CONFIGS)]))
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, [str(a) for a in args])

    return invoke


def one_line_error(result) -> str:
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1, result.output
    assert lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    return lines[0]
