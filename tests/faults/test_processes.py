"""Processes under faults (issue 12, "Processes"; and a run's steps and hint after it
ends): Ctrl-C or SIGHUP of a foreground ``csflow simulate``, SIGKILL or SIGHUP of a
detached engine, ``runs cancel``, on both launchers (warm workers; a fresh
interpreter per step, under its supervisor). The model hangs in its ``run`` step
and has a child process of its own, as a model's helper would. After each: no
process of the run is left (``/proc``), the run's record is final and no step
reads Running, the store passes ``PRAGMA integrity_check``, and a later
simulation succeeds. Everything runs as real ``csflow`` processes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from paths import TESTS, TOY_CONFIGS

from .harness import CSFLOW, cli_env, no_orphans, processes_of

OK_INPUTS = {"meta_param_dict": {"year": 2024}, "adjustment": {"Knobs": {"x": [{"value": 2}]}}}
LAUNCHERS = [pytest.param("true", id="warm"), pytest.param("false", id="fresh")]
UNFINISHED = {"Pending", "Running", "Suspended"}
# The command line of the model's own child (fault_model.py below).
GRANDCHILD = "fault-grandchild"

# The toy model, with a child process of its own started from run_model.
FAULT_MODEL = f'''"""The toy model (toy_model.py beside it); with FAULT_CHILD set, run_model first
starts a process of its own that sleeps, as a model's helper process would."""
import os
import subprocess
import sys

from toy_model import get_inputs, get_version, validate_inputs  # noqa: F401
from toy_model import run_model as toy_run_model


def run_model(meta_param_dict, adjustment):
    if os.environ.get("FAULT_CHILD"):
        subprocess.Popen([sys.executable, "-c", "import time; time.sleep(3600)", "{GRANDCHILD}"])
    return toy_run_model(meta_param_dict, adjustment)
'''


# -- the set-up: a home, the models, the commands ---------------------------------------


@pytest.fixture
def home(tmp_path) -> Path:
    """A home whose path no other test's processes carry (the /proc checks look for it)."""
    return tmp_path / f"home-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def configs(tmp_path, home) -> Path:
    """``tests/FaultHang`` (hangs in run_model, after starting a child) and
    ``tests/FaultOk`` (starts a child, returns), on a copy of the toy model. Their
    processes carry the home in their environment (FAULT_HOME), so /proc finds them."""
    source = tmp_path / "fault-model"
    source.mkdir()
    shutil.copy(TESTS / "models" / "toy" / "toy_model.py", source)
    (source / "fault_model.py").write_text(FAULT_MODEL)
    folder = tmp_path / "config"
    (folder / "tests").mkdir(parents=True)
    for title, mode in (("FaultHang", "hang"), ("FaultOk", "ok")):
        config = {
            "owner": "tests",
            "title": title,
            "source": {"path": str(source)},
            "python": "3.11",
            "requirements": [],
            "functions": "fault_model",
            "timeout": 600,
            "env": {"TOY_MODE": mode, "FAULT_CHILD": "1", "FAULT_HOME": str(home)},
            "tests": {
                "ok_adjustment": {"Knobs": {"x": [{"value": 2}]}},
                "bad_adjustment": {"Knobs": {"x": [{"value": -1}]}},
            },
        }
        (folder / "tests" / f"{title}.yaml").write_text(yaml.safe_dump(config))
    return folder


@pytest.fixture
def inputs(tmp_path) -> Path:
    path = tmp_path / "inputs.json"
    path.write_text(json.dumps(OK_INPUTS))
    return path


# As a terminal's foreground job: SIGINT and SIGHUP at their defaults (a test run in
# the background, or under nohup, would pass them on ignored), then the command.
_AS_IN_A_TERMINAL = (
    "import os, signal, sys\n"
    "signal.signal(signal.SIGINT, signal.SIG_DFL)\n"
    "signal.signal(signal.SIGHUP, signal.SIG_DFL)\n"
    "os.execv(sys.argv[1], sys.argv[1:])\n"
)


def _start(env: dict[str, str], *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", _AS_IN_A_TERMINAL, CSFLOW, *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _csflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CSFLOW, *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )


# -- what /proc and the store say -------------------------------------------------------


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _model_step(processes: dict[int, str], warm: str) -> int | None:
    """The run step's model process: a fresh interpreter running ``model_step.py run``
    (not its supervisor), or a warm model worker's forked child."""
    for pid, command in processes.items():
        if warm == "false":
            if "model_step.py run" in command and "--exec" not in command:
                return pid
        elif "--preload fault_model" in command and "--preload fault_model" in processes.get(
            _parent(pid), ""
        ):
            return pid
    return None


def _store(home: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{home / 'runs.db'}?mode=ro", uri=True, timeout=30)


def _only_run(home: Path) -> tuple[str, int | None, dict]:
    with _store(home) as db:
        rows = db.execute("SELECT id, engine_pid, steps FROM runs").fetchall()
    assert len(rows) == 1, rows
    job_id, engine_pid, steps = rows[0]
    return job_id, engine_pid, json.loads(steps)


def _wait_for_the_model(home: Path, warm: str, cli: subprocess.Popen | None = None) -> int:
    """Until the run step is Running, its model process exists and so does the model's
    own child; the model process's pid."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if cli is not None and cli.poll() is not None:
            pytest.fail(f"csflow ended early: {cli.communicate()}")
        if (home / "runs.db").exists():
            try:
                _, _, steps = _only_run(home)
            except (sqlite3.Error, AssertionError):
                steps = {}
            if steps.get("run", {}).get("phase") == "Running":
                processes = processes_of(home)
                model = _model_step(processes, warm)
                if model and any(GRANDCHILD in command for command in processes.values()):
                    return model
        time.sleep(0.1)
    pytest.fail(f"the model never ran: {processes_of(home)}")


def assert_final(env: dict[str, str], home: Path, job_id: str) -> dict:
    """The run's record, as ``csflow runs show`` reads it, is final with no step
    unfinished; so is the record in the store itself; the store is intact."""
    shown = _csflow(env, "runs", "show", job_id, "-o", "json")
    assert shown.returncode == 0, shown.stderr
    run = json.loads(shown.stdout)
    assert run["status"] in {"SUCCESS", "INVALID", "FAIL", "CANCELLED", "INTERRUPTED"}, run
    assert not {n for n, s in run["steps"].items() if s.get("phase") in UNFINISHED}, run
    with _store(home) as db:
        status, steps = db.execute(
            "SELECT status, steps FROM runs WHERE id = ?", (job_id,)
        ).fetchone()
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert status == run["status"]
    assert not {n for n, s in json.loads(steps).items() if s.get("phase") in UNFINISHED}
    return run


def assert_a_later_simulation_succeeds(env: dict[str, str], inputs: Path) -> None:
    later = _csflow(env, "simulate", "tests/ToyOk", "--inputs", str(inputs), "-o", "json")
    assert later.returncode == 0, later.stderr
    assert json.loads(later.stdout)["status"] == "SUCCESS"


# -- a foreground simulation ------------------------------------------------------------


@pytest.mark.parametrize("warm", LAUNCHERS)
def test_ctrl_c_cancels_a_foreground_simulation_and_stops_its_processes(
    warm, home, configs, inputs
):
    """Ctrl-C is a user's cancel: the steps' processes are stopped, the exit handler
    reports the end, the run reads CANCELLED, and csflow says so in one line, exit 130."""
    env = cli_env(home, configs, TOY_CONFIGS, CSFLOW_WARM_WORKERS=warm)
    cli = _start(env, "simulate", "tests/FaultHang", "--inputs", str(inputs))
    _wait_for_the_model(home, warm, cli)
    cli.send_signal(signal.SIGINT)
    _, stderr = cli.communicate(timeout=60)
    job_id, _, _ = _only_run(home)
    assert cli.returncode == 130, stderr
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert [line for line in lines if line.startswith("error:")] == [
        f"error: interrupted: run {job_id} was cancelled"
    ], stderr
    assert lines[-1].startswith("error:") and "Traceback" not in stderr
    no_orphans(home)
    run = assert_final(env, home, job_id)
    assert (run["status"], run["reason"]) == ("CANCELLED", "cancelled by Ctrl-C (SIGINT)")
    assert run["steps"]["run"]["phase"] == "Failed"
    assert run["steps"]["run"]["message"] == "cancelled"
    assert run["steps"]["notify"]["phase"] == "Succeeded"  # the exit handler reported it
    assert_a_later_simulation_succeeds(env, inputs)


@pytest.mark.parametrize("warm", LAUNCHERS)
def test_a_closed_terminal_cancels_a_foreground_simulation(warm, home, configs, inputs):
    """SIGHUP (the terminal closed) ends the run as a cancel, nothing left running."""
    env = cli_env(home, configs, TOY_CONFIGS, CSFLOW_WARM_WORKERS=warm)
    cli = _start(env, "simulate", "tests/FaultHang", "--inputs", str(inputs))
    _wait_for_the_model(home, warm, cli)
    cli.send_signal(signal.SIGHUP)
    _, stderr = cli.communicate(timeout=60)
    assert cli.returncode == 1, stderr
    job_id, _, _ = _only_run(home)
    no_orphans(home)
    run = assert_final(env, home, job_id)
    assert run["status"] == "CANCELLED" and "SIGHUP" in run["reason"]
    assert run["steps"]["notify"]["phase"] == "Succeeded"
    assert_a_later_simulation_succeeds(env, inputs)


# -- a detached engine ------------------------------------------------------------------


def _detach(env: dict[str, str], inputs: Path, home: Path, warm: str) -> tuple[str, int]:
    started = _csflow(env, "simulate", "tests/FaultHang", "--inputs", str(inputs), "--detach")
    assert started.returncode == 0, started.stderr
    job_id = started.stdout.strip().splitlines()[-1]
    _wait_for_the_model(home, warm)
    _, engine_pid, _ = _only_run(home)
    assert engine_pid and "local_engine" in processes_of(home).get(engine_pid, "")
    return job_id, engine_pid


@pytest.mark.parametrize("warm", LAUNCHERS)
def test_kill_9_of_a_detached_engine_takes_its_steps_down(warm, home, configs, inputs):
    """Nothing can run in a SIGKILLed engine: its steps' watchers (the warm worker, a
    fresh step's supervisor) see it gone and kill the step's process group."""
    env = cli_env(home, configs, TOY_CONFIGS, CSFLOW_WARM_WORKERS=warm)
    job_id, engine_pid = _detach(env, inputs, home, warm)
    os.kill(engine_pid, signal.SIGKILL)
    no_orphans(home)
    run = assert_final(env, home, job_id)
    assert run["status"] == "INTERRUPTED"
    assert run["steps"]["run"]["phase"] == "Failed"
    assert run["steps"]["run"]["message"] == run["reason"]
    assert_a_later_simulation_succeeds(env, inputs)


@pytest.mark.parametrize("warm", LAUNCHERS)
def test_sighup_of_a_detached_engine_cancels_its_run(warm, home, configs, inputs):
    env = cli_env(home, configs, TOY_CONFIGS, CSFLOW_WARM_WORKERS=warm)
    job_id, engine_pid = _detach(env, inputs, home, warm)
    os.kill(engine_pid, signal.SIGHUP)
    no_orphans(home)
    run = assert_final(env, home, job_id)
    assert run["status"] == "CANCELLED" and "SIGHUP" in run["reason"]
    assert run["steps"]["run"]["phase"] == "Failed"
    assert run["steps"]["notify"]["phase"] == "Succeeded"
    assert_a_later_simulation_succeeds(env, inputs)


@pytest.mark.parametrize("warm", LAUNCHERS)
def test_runs_cancel_leaves_no_step_running_and_no_process(warm, home, configs, inputs):
    env = cli_env(home, configs, TOY_CONFIGS, CSFLOW_WARM_WORKERS=warm)
    job_id, _ = _detach(env, inputs, home, warm)
    cancelled = _csflow(env, "runs", "cancel", job_id)
    assert cancelled.returncode == 0, cancelled.stderr
    no_orphans(home)
    run = assert_final(env, home, job_id)
    assert run["status"] == "CANCELLED"
    assert run["steps"]["run"]["phase"] == "Failed"
    assert run["steps"]["notify"]["phase"] == "Succeeded"
    assert_a_later_simulation_succeeds(env, inputs)


# -- what a step leaves behind ----------------------------------------------------------


@pytest.mark.parametrize("warm", LAUNCHERS)
def test_a_step_ends_with_the_processes_it_started(warm, home, configs, inputs):
    """A model that leaves a child running when it returns: the child is stopped with
    its step (as a pod's processes end with its container)."""
    env = cli_env(home, configs, TOY_CONFIGS, CSFLOW_WARM_WORKERS=warm)
    result = _csflow(env, "simulate", "tests/FaultOk", "--inputs", str(inputs), "-o", "json")
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    assert run["status"] == "SUCCESS"
    # Warm workers stay for the next simulation until csflow exits; so nothing is left.
    no_orphans(home)
    assert_final(env, home, run["job_id"])


def test_a_cancelled_approval_leaves_no_step_suspended(tmp_path, home):
    """A publish waiting for approval has no engine: cancelling it fails its
    approval step, which no engine is left to record."""
    from publish.conftest import tiny_config

    from csflow.sdk.client import Client

    client = Client(home=home, config_dirs=[tmp_path / "publish-config"])
    run = client.publish(tiny_config(tmp_path / "publish-config"), require_approval=True)
    assert run.status == "SUSPENDED" and run.steps["approve"]["phase"] == "Suspended"
    cancelled = client.cancel(run.id)
    assert cancelled.status == "CANCELLED"
    assert cancelled.steps["approve"]["phase"] == "Failed"
    assert client.status(run.id).steps["approve"]["message"] == "cancelled by the user"
    with _store(home) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


# -- the hint after a failure -----------------------------------------------------------


@pytest.mark.parametrize(
    "model, step", [("tests/ToyBadOutputs", "outputs"), ("tests/ToyCrash", "run")]
)
def test_the_hint_after_a_failure_names_the_step_that_failed(model, step, home, configs, inputs):
    env = cli_env(home, configs, TOY_CONFIGS, CSFLOW_WARM_WORKERS="true")
    result = _csflow(env, "simulate", model, "--inputs", str(inputs))
    assert result.returncode == 1, result.stderr
    job_id, _, steps = _only_run(home)
    assert steps[step]["phase"] == "Failed"
    hints = [line for line in result.stdout.splitlines() if line.startswith("logs: ")]
    assert hints == [f"logs: csflow runs logs {job_id} --step {step}"], result.stdout
    logs = _csflow(env, "runs", "logs", job_id, "--step", step)
    assert logs.returncode == 0 and logs.stdout.strip()


def test_the_hint_after_a_failed_publish_names_the_step_that_failed(tmp_path, home):
    from publish.conftest import tiny_config

    config = tiny_config(tmp_path / "publish-config", TINY_MODE="bad-outputs")
    env = cli_env(home, tmp_path / "publish-config", TOY_CONFIGS, CSFLOW_WARM_WORKERS="true")
    result = _csflow(env, "publish", str(config))
    assert result.returncode == 1, result.stderr
    job_id, _, steps = _only_run(home)
    failed = [name for name, step in steps.items() if step["phase"] == "Failed"]
    assert failed == ["verify"], steps
    assert f"nothing was promoted; logs: csflow runs logs {job_id} --step verify" in (
        result.stdout.replace("\n", " ")
    )
