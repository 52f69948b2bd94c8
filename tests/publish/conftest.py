"""Fixtures for the publish tests: clients on a fresh CSFLOW_HOME, the tiny test
model (tests/publish/models/tiny, standard library only, broken on purpose
by its config's ``env``) and configs for it written on the fly."""

from __future__ import annotations

import json
import subprocess
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


def git(repo: Path, *args: str) -> str:
    """``git -C repo ARGS`` as a test author; its output."""
    identity = ["-c", "user.name=t", "-c", "user.email=t@example.org"]
    done = subprocess.run(
        ["git", "-C", str(repo), *identity, *args], check=True, capture_output=True, text=True
    )
    return done.stdout.strip()


def commit_all(repo: Path, message: str) -> str:
    """Commit everything in ``repo`` (made a repository if it is not one); the commit."""
    if not (repo / ".git").exists():
        git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)
    return git(repo, "rev-parse", "HEAD")


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
