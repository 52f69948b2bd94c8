"""The steps' environment variables are declared once (runtime/step_env.py), and
every name csflow spells is one of them or a Settings field."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import yaml
from paths import REPO

from csflow.runtime import step_env
from csflow.sdk.core import steps
from csflow.sdk.core.settings import Settings
from csflow.sdk.dataplane.secrets import LocalSecretStore
from csflow.sdk.ops import redis_acl, secret_sync

PACKAGES = ("runtime", "sdk", "cli", "engine", "flows")
NAME = re.compile(r"(CSFLOW_[A-Z0-9_]*[A-Z0-9])(_\*)?")
DECLARED = set(step_env.BY_NAME)
SETTINGS = {f"CSFLOW_{field.upper()}" for field in Settings.model_fields}


def sources(*packages: str) -> list[Path]:
    return sorted(p for package in packages for p in (REPO / package).rglob("*.py"))


def test_every_name_a_step_program_or_sdk_spells_as_a_value_is_declared():
    """A CSFLOW_* name as a string of its own (a key read or set) is a declared variable."""
    spelled: dict[str, list[str]] = {}
    for path in sources(*PACKAGES):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if re.fullmatch(r"CSFLOW_[A-Z0-9_]+", node.value):
                    spelled.setdefault(node.value, []).append(str(path.relative_to(REPO)))
    undeclared = {name: where for name, where in spelled.items() if name not in DECLARED}
    assert not undeclared, f"declare these in runtime/step_env.py: {undeclared}"


def test_every_name_in_the_source_is_declared_or_a_setting():
    """Docstrings, comments and messages included (grep): each CSFLOW_* name is a step
    variable (runtime/step_env.py) or csflow's own setting (CSFLOW_ + a Settings field)."""
    known = DECLARED | SETTINGS
    unknown: dict[str, set[str]] = {}
    for path in sources(*PACKAGES):
        for match in NAME.finditer(path.read_text()):
            name, family = match.groups()
            ok = any(k.startswith(name + "_") for k in known) if family else name in known
            if not ok:
                unknown.setdefault(name, set()).add(str(path.relative_to(REPO)))
    assert not unknown, f"undeclared CSFLOW_* names: {unknown}"


def test_the_step_programs_read_through_the_declaration():
    """No step program or sdk module reads os.environ for a CSFLOW_* literal."""
    offenders = []
    for path in sources("runtime", "sdk"):
        text = path.read_text()
        if re.search(r"environ(\.get)?\s*[\[(]\s*[\"']CSFLOW_", text) or re.search(
            r"getenv\(\s*[\"']CSFLOW_", text
        ):
            offenders.append(str(path.relative_to(REPO)))
    # sdk/argo/schema.py reads CSFLOW_ARGO_SCHEMA_DIR (declared; a tool's, not a step's).
    assert set(offenders) <= {"sdk/argo/schema.py"}, offenders


def test_the_job_store_is_spelled_one_way():
    assert step_env.JOB_STORE_URL.name == "CSFLOW_JOB_STORE_URL"
    assert "job_store_url" in Settings.model_fields
    names = {v.name for v in step_env.VARIABLES}
    assert "CSFLOW_JOB_STORE" not in names
    texts = [*sources(*PACKAGES, "tests"), REPO / "README.md", *REPO.glob("cluster/**/*.yaml")]
    for path in texts:
        if path != Path(__file__).resolve():
            assert not re.search(r"CSFLOW_JOB_STORE\b", path.read_text()), path


def test_variables_that_are_settings_say_so():
    """A step variable read through Settings names its field, and keeps Settings' name."""
    for variable in step_env.STEP_VARIABLES:
        field = variable.name.removeprefix("CSFLOW_").lower()
        if variable.name in SETTINGS:
            assert f"Settings.{field}" in variable.read_by, variable
    assert {v.name for v in step_env.STEP_VARIABLES} & SETTINGS == {
        "CSFLOW_HOME",
        "CSFLOW_STORAGE_URL",
        "CSFLOW_WEBAPP_URL",
        "CSFLOW_JOB_STORE_URL",
        "CSFLOW_MODEL_REGISTRY_URL",
        "CSFLOW_MODEL_BASE_IMAGE",
        "CSFLOW_REGISTRY_INSECURE",
    }


def test_a_variable_reads_its_default_when_unset_or_empty():
    assert step_env.WORK_DIR.get({}) == steps.WORK_DIR == "/tmp/csflow"
    assert step_env.WORK_DIR.get({"CSFLOW_WORK_DIR": ""}) == "/tmp/csflow"
    assert step_env.WORK_DIR.get({"CSFLOW_WORK_DIR": "/w"}) == "/w"
    assert step_env.MODEL_FUNCTIONS.get({}) == "cs_config.functions"
    with pytest.raises(step_env.MissingVariable) as caught:
        step_env.STORAGE_URL.require({})
    assert isinstance(caught.value, KeyError)
    assert str(caught.value).startswith("CSFLOW_STORAGE_URL is not set (where results go")
    assert "| `CSFLOW_JOB_STORE_URL` |" in step_env.table()


def test_the_declaration_is_standard_library_only():
    tree = ast.parse((REPO / "runtime" / "step_env.py").read_text())
    imported = {
        alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import)
        for alias in node.names
    } | {
        node.module.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and node.module
    }
    assert imported <= set(sys.stdlib_module_names) | {"__future__"}, imported


def test_the_declaration_travels_with_the_model_side_programs():
    assert steps.STEP_ENV_FILE == "step_env.py"
    assert set(steps.MODEL_SIDE_FILES) == {*steps.MODEL_SIDE_PROGRAMS, "step_env.py"}
    for name in steps.MODEL_SIDE_FILES:
        assert (steps.RUNTIME_DIR / name).is_file()


def test_a_copy_of_the_model_side_programs_runs_without_csflow(tmp_path):
    """As in a model's image: the files alone, an interpreter without site-packages
    (so no csflow), the job store named by its one name."""
    folder = tmp_path / "runtime"
    folder.mkdir()
    for name in steps.MODEL_SIDE_FILES:
        (folder / name).write_text((steps.RUNTIME_DIR / name).read_text())
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    env = {
        "PATH": "/usr/bin:/bin",
        step_env.JOB_STORE_URL.name: jobs.as_uri(),
        step_env.WORK_DIR.name: str(tmp_path / "work"),
    }
    job_id = str(uuid.uuid4())
    done = subprocess.run(
        [sys.executable, "-S", "-E", str(folder / "model_step.py"), "run", "--job-id", job_id],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3, done.stderr  # EXIT_BAD_JOB: it looked in the right store
    assert f"job {job_id} not found in the job store" in done.stderr
    helped = subprocess.run(
        [sys.executable, "-S", "-E", str(folder / "contract_tests.py"), "--help"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert helped.returncode == 0, helped.stderr


def test_the_platform_configmap_holds_declared_variables():
    config = yaml.safe_load((REPO / "cluster/argo/platform-config.yaml").read_text())
    assert config["metadata"]["name"] == steps.PLATFORM_CONFIG
    assert set(config["data"]) <= DECLARED


def test_the_secrets_hold_declared_variables(tmp_path):
    store = LocalSecretStore(tmp_path)
    for name in redis_acl.password_secret_names():
        store.set(name, "p" * 20)
    settings = Settings(home=tmp_path, config_dirs=[tmp_path / "no-configs"])
    store.set(settings.webapp_token_secret, "t" * 20)
    keys = {
        s["metadata"]["name"]: set(s["stringData"])
        for s in secret_sync.plan(settings, store).secrets
    }
    assert keys[steps.MODEL_JOB_STORE_SECRET] == {
        step_env.JOB_STORE_URL.name,
        step_env.REDIS_USER.name,
        step_env.REDIS_PASSWORD.name,
    }
    assert keys[steps.PLATFORM_SECRET] == {
        step_env.REDIS_USER.name,
        step_env.REDIS_PASSWORD.name,
        step_env.WEBAPP_TOKEN.name,
    }
