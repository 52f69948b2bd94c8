"""The backend contract (sdk/backends/base.py) and the step program table (sdk/core/steps.py):
both backends implement every method the client calls, a backend says in one line what
it cannot do, and a step's program is chosen in one place, by one rule."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

from csflow.engine.runner import WorkflowRunner
from csflow.engine.store import RunStore
from csflow.sdk.argo.semantics import SpecError
from csflow.sdk.backends.argo import ArgoBackend
from csflow.sdk.backends.base import Backend
from csflow.sdk.backends.local import LocalBackend
from csflow.sdk.backends.lookup import lookup_order
from csflow.sdk.client import Client
from csflow.sdk.core.errors import BadInput, CsflowError, NotFound, translated
from csflow.sdk.core.run import Run, output_fields
from csflow.sdk.core.settings import Settings
from csflow.sdk.core.steps import (
    CONTRACT_TESTS_COMMAND,
    ENVIRONMENT_LABEL,
    MODEL,
    MODEL_STEP_COMMAND,
    PLATFORM,
    PLATFORM_STEP_COMMAND,
    PROGRAMS,
    program_for,
)

# -- the Backend protocol ---------------------------------------------------------------


@pytest.fixture
def settings(tmp_path) -> Settings:
    return Settings(home=tmp_path / "home", config_dirs=[tmp_path / "config"])


def test_both_backends_satisfy_the_backend_protocol(settings):
    assert isinstance(LocalBackend(settings), Backend)
    assert isinstance(ArgoBackend(settings.model_copy(update={"backend": "argo"})), Backend)


def test_the_client_calls_only_what_the_protocol_declares():
    """Thin delegation: every ``self.backend.X``, and every call on the backend that
    holds a run (``self._on(ID).X``), in the client is a Backend method, and the
    client never asks a backend what it has."""
    source = inspect.getsource(Client)
    called = set(re.findall(r"(?:\bbackend|self\._on\(\w+(?:\.id)?\))\.(\w+)\(", source))
    declared = {name for name in dir(Backend) if not name.startswith("_")}
    assert called and called <= declared, called - declared
    assert "hasattr" not in source and "settings.backend" not in source


def test_the_argo_backend_refuses_what_it_cannot_do_in_one_line(settings):
    client = Client(settings.model_copy(update={"backend": "argo"}))
    with pytest.raises(BadInput) as refused:
        client.inputs("tests/ToyOk")
    assert str(refused.value) == "the argo backend cannot compute inputs yet; use the local backend"


def test_results_of_a_run_that_did_not_succeed_say_why(settings):
    backend = LocalBackend(settings)
    backend.store.create(Run(id="r1", owner="o", title="t", tag="x", status="FAIL"))
    for read in (backend.results, lambda job: backend.download(job, settings.home / "out")):
        with pytest.raises(BadInput, match="run r1 has no results: it is FAIL"):
            read("r1")


# -- one way to read what a finished run said of itself -----------------------------------


def test_output_fields_read_the_global_outputs_and_tolerate_garbage():
    assert output_fields({"model-version": "toy 1.0\n", "errors-warnings": '{"A": {}}'}) == {
        "model_version": "toy 1.0",
        "errors_warnings": {"A": {}},
    }
    assert output_fields({"errors-warnings": "not json"}) == {
        "model_version": "",
        "errors_warnings": {},
    }
    assert output_fields({}) == {"model_version": "", "errors_warnings": {}}


# -- one error translation ---------------------------------------------------------------


def test_translated_turns_the_first_matching_exception_into_one_line():
    def call(error: Exception):
        with translated(
            (KeyError, lambda exc: NotFound(f"no {exc}")),
            ((ValueError, TypeError), lambda _: None),  # passes through unchanged
        ):
            raise error

    with pytest.raises(NotFound, match="no 'x'") as caught:
        call(KeyError("x"))
    assert caught.value.__cause__ is None and caught.value.__suppress_context__
    with pytest.raises(ValueError):
        call(ValueError("kept"))
    with pytest.raises(OSError):
        call(OSError("no rule"))


# -- the step program table --------------------------------------------------------------


def test_each_step_command_maps_to_one_program_in_one_environment():
    assert program_for(MODEL_STEP_COMMAND, MODEL).module == "model_step"
    assert program_for(PLATFORM_STEP_COMMAND, PLATFORM).module == "platform_step"
    assert program_for(CONTRACT_TESTS_COMMAND, MODEL).standalone
    for command, program in PROGRAMS.items():
        assert program_for([command], program.environment) is program


def test_a_standalone_program_runs_from_its_file_and_others_as_csflow_modules():
    model_step = program_for(MODEL_STEP_COMMAND, MODEL)
    assert model_step.argv("/env/bin/python") == ["/env/bin/python", str(model_step.script)]
    assert model_step.entry == "model_step:main"
    platform_step = program_for(PLATFORM_STEP_COMMAND, PLATFORM)
    assert platform_step.argv("py") == ["py", "-m", "csflow.runtime.platform_step"]
    assert platform_step.entry == "csflow.runtime.platform_step:main"


@pytest.mark.parametrize(
    "command, environment, message",
    [
        (["csflow-nope"], PLATFORM, "unknown step command ['csflow-nope']"),
        ([], PLATFORM, "unknown step command []"),
        (["csflow-step", "--x"], PLATFORM, "unknown step command ['csflow-step', '--x']"),
        (
            MODEL_STEP_COMMAND,
            PLATFORM,
            "step command csflow-model-step runs in the model environment, not platform",
        ),
        (
            PLATFORM_STEP_COMMAND,
            MODEL,
            "step command csflow-step runs in the platform environment, not model",
        ),
    ],
)
def test_an_unknown_command_or_the_wrong_environment_is_refused_in_one_line(
    command, environment, message
):
    with pytest.raises(CsflowError) as refused:
        program_for(command, environment)
    assert str(refused.value).startswith(message)
    assert "\n" not in str(refused.value)


# -- one runner, its launchers from the backend's factory ----------------------------------


class _Done:
    pid = 0

    def wait(self, timeout):
        return 0

    def kill(self):
        pass


class _Launcher:
    def __init__(self, made: list, program, image: str):
        self.program, self.image, self.closed, self.steps = program, image, False, 0
        made.append(self)

    def start(self, args, cwd, log, env):
        self.steps += 1
        return _Done()

    def close(self):
        self.closed = True


def _workflow(*steps: tuple[str, str, list[str], str]) -> dict:
    """A DAG of container steps (name, environment label, command, image), one after another."""
    tasks, templates = [], []
    for index, (name, environment, command, image) in enumerate(steps):
        tasks.append(
            {"name": name, "template": name} | ({"depends": steps[index - 1][0]} if index else {})
        )
        templates.append(
            {
                "name": name,
                "metadata": {"labels": {ENVIRONMENT_LABEL: environment}},
                "container": {"image": image, "command": command, "args": []},
            }
        )
    return {
        "metadata": {"name": "test"},
        "spec": {
            "entrypoint": "main",
            "arguments": {"parameters": []},
            "templates": [{"name": "main", "dag": {"tasks": tasks}}, *templates],
        },
    }


def _runner(tmp_path: Path, made: list) -> WorkflowRunner:
    store = RunStore(tmp_path / "runs.db")
    store.create(Run(id="r1", owner="o", title="t", tag="x", status="PENDING"))
    return WorkflowRunner(store, tmp_path / "run", lambda p, image: _Launcher(made, p, image))


def test_the_runner_asks_the_backend_for_one_launcher_per_program_and_image(tmp_path):
    made: list[_Launcher] = []
    runner = _runner(tmp_path, made)
    workflow = _workflow(
        ("inputs", MODEL, MODEL_STEP_COMMAND, "model:1"),
        ("run", MODEL, MODEL_STEP_COMMAND, "model:1"),
        ("outputs", PLATFORM, PLATFORM_STEP_COMMAND, "csflow:1"),
    )
    assert runner.execute("r1", workflow) == ("SUCCESS", "")
    assert [(m.program.module, m.image, m.steps) for m in made] == [
        ("model_step", "model:1", 2),
        ("platform_step", "csflow:1", 1),
    ]
    runner.close()
    assert all(m.closed for m in made)


@pytest.mark.parametrize(
    "environment, command, message",
    [
        (PLATFORM, ["csflow-nope"], "template 'step': unknown step command ['csflow-nope']"),
        (
            PLATFORM,
            MODEL_STEP_COMMAND,
            "template 'step': step command csflow-model-step runs in the model environment, "
            "not platform",
        ),
    ],
)
def test_the_runner_refuses_a_step_whose_program_the_table_does_not_give(
    tmp_path, environment, command, message
):
    made: list[_Launcher] = []
    runner = _runner(tmp_path, made)
    with pytest.raises(SpecError) as refused:
        runner.execute("r1", _workflow(("step", environment, command, "img")))
    assert str(refused.value).startswith(message)
    assert made == []


def test_a_run_is_looked_for_on_the_configured_backend_then_the_other_one_set_up(settings):
    argo = settings.model_copy(update={"backend": "argo"})
    host = {"argo_host": "https://argo.example:2746"}
    assert lookup_order(settings) == ("local",)  # no Argo Server: the engine only
    assert lookup_order(settings.model_copy(update=host)) == ("local", "argo")
    assert lookup_order(argo) == ("argo", "local")
    assert lookup_order(argo.model_copy(update=host)) == ("argo", "local")
    assert Client(settings.model_copy(update=host), look_elsewhere=False).runs.order == ("local",)
