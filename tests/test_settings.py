"""Settings' one precedence: flags > CSFLOW_* variables > config.yaml in the home
actually chosen (--home, else CSFLOW_HOME, else ~/.csflow) > defaults."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml
from paths import TOY_CONFIGS
from typer.testing import CliRunner

from csflow.cli.app import app
from csflow.sdk.core.settings import Settings

CORES = os.cpu_count() or 1


@pytest.fixture(autouse=True)
def clean(tmp_path, monkeypatch) -> Path:
    """No CSFLOW_* variable from the caller's shell; ~ is a fresh folder."""
    for name in list(os.environ):
        if name.upper().startswith("CSFLOW_"):
            monkeypatch.delenv(name)
    monkeypatch.setenv("HOME", str(tmp_path / "user"))
    return tmp_path


def homes(tmp_path: Path) -> dict[str, Path]:
    """The three homes a row can name: the flag's, CSFLOW_HOME's, and ~/.csflow."""
    return {"flag": tmp_path / "flag", "env": tmp_path / "env", "user": tmp_path / "user/.csflow"}


def write_config(home: Path, values: dict) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.yaml").write_text(yaml.safe_dump(values))


# Each row: config files (home -> values), whether --home / CSFLOW_HOME are given,
# other CSFLOW_* variables, other flags; then the home and max_parallel expected.
ROWS = {
    "defaults": ({}, False, False, {}, {}, "user", CORES),
    "~/.csflow/config.yaml": ({"user": {"max_parallel": 4}}, False, False, {}, {}, "user", 4),
    "CSFLOW_HOME's config.yaml, not ~/.csflow's": (
        {"user": {"max_parallel": 4}, "env": {"max_parallel": 5}},
        False,
        True,
        {},
        {},
        "env",
        5,
    ),
    "--home's config.yaml, not CSFLOW_HOME's": (
        {"env": {"max_parallel": 5}, "flag": {"max_parallel": 6}},
        True,
        True,
        {},
        {},
        "flag",
        6,
    ),
    "--home without a config.yaml reads no other": (
        {"env": {"max_parallel": 5}, "user": {"max_parallel": 4}},
        True,
        True,
        {},
        {},
        "flag",
        CORES,
    ),
    "a CSFLOW_* variable beats the file": (
        {"flag": {"max_parallel": 6}},
        True,
        False,
        {"CSFLOW_MAX_PARALLEL": "2"},
        {},
        "flag",
        2,
    ),
    "a flag beats the variable": (
        {"flag": {"max_parallel": 6}},
        True,
        True,
        {"CSFLOW_MAX_PARALLEL": "2"},
        {"max_parallel": 1},
        "flag",
        1,
    ),
}


@pytest.mark.parametrize("row", ROWS.values(), ids=list(ROWS))
def test_precedence(row, clean, monkeypatch):
    files, flag_home, env_home, env, flags, expected_home, expected_parallel = row
    where = homes(clean)
    for home, values in files.items():
        write_config(where[home], values)
    if env_home:
        monkeypatch.setenv("CSFLOW_HOME", str(where["env"]))
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    if flag_home:
        flags = {"home": str(where["flag"]), **flags}
    settings = Settings(**flags)
    assert settings.home == where[expected_home]
    assert settings.max_parallel == expected_parallel


def test_every_setting_of_the_chosen_homes_file_is_read(clean, monkeypatch):
    where = homes(clean)
    write_config(where["flag"], {"backend": "argo", "argo_namespace": "from-the-file"})
    write_config(where["env"], {"backend": "local", "argo_namespace": "from-csflow-home"})
    monkeypatch.setenv("CSFLOW_HOME", str(where["env"]))
    settings = Settings(home=where["flag"])
    assert (settings.backend, settings.argo_namespace) == ("argo", "from-the-file")
    monkeypatch.setenv("CSFLOW_BACKEND", "local")
    assert Settings(home=where["flag"]).backend == "local"
    assert Settings(home=where["flag"], backend="argo").backend == "argo"


def test_the_cli_reads_the_config_file_of_home(clean, monkeypatch, tmp_path):
    """`csflow --home X` reads X/config.yaml: here it names the models' folder, and
    CSFLOW_HOME's file (which would send the run to Argo) is not read."""
    where = homes(clean)
    write_config(where["flag"], {"config_dirs": [str(TOY_CONFIGS)], "max_parallel": 1})
    write_config(where["env"], {"backend": "argo"})
    monkeypatch.setenv("CSFLOW_HOME", str(where["env"]))
    monkeypatch.setenv("COLUMNS", "200")
    inputs = tmp_path / "inputs.json"
    inputs.write_text(
        json.dumps(
            {
                "meta_param_dict": {"year": [{"value": 2024}]},
                "adjustment": {"Knobs": {"x": [{"value": 3}]}},
            }
        )
    )
    runner = CliRunner()
    done = runner.invoke(
        app,
        ["--home", str(where["flag"]), "simulate", "tests/ToyOk", "--inputs", str(inputs)],
    )
    assert done.exit_code == 0, done.output
    assert "SUCCESS" in done.output
    listed = runner.invoke(app, ["--home", str(where["flag"]), "runs", "list", "-o", "json"])
    assert listed.exit_code == 0, listed.output
    assert len(json.loads(listed.stdout)) == 1
    assert not (where["env"] / "runs").exists()


def test_settings_pass_to_another_process_as_variables(tmp_path, monkeypatch):
    """The detached engine gets its client's settings through the environment
    (Settings.environment); a flag still beats the other process's config file."""
    home = tmp_path / "home"
    write_config(home, {"webapp_url": "https://from-the-file", "max_parallel": 1})
    given = Settings(
        home=home,
        webapp_url="http://127.0.0.1:8000",
        config_dirs=[tmp_path / "a", tmp_path / "b"],
        warm_workers=False,
        argo_token="never-exported",
    )
    variables = given.environment()
    assert "CSFLOW_ARGO_TOKEN" not in variables
    assert "never-exported" not in json.dumps(variables)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    again = Settings()
    assert again.webapp_url == "http://127.0.0.1:8000"
    assert again.config_dirs == [tmp_path / "a", tmp_path / "b"]
    assert again.warm_workers is False and again.max_parallel == 1 and again.home == home
