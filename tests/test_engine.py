"""The embedded engine on the test models: every way a run can end."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from csflow import flows
from csflow.sdk.argo import semantics
from csflow.sdk.core.errors import NotFound

OK_INPUTS = {"meta_param_dict": {"year": 2024}, "adjustment": {"Knobs": {"x": [{"value": 2}]}}}


def test_success_writes_results_laid_out_as_the_bucket(toy, home):
    run = toy.simulate("tests/ToyOk", OK_INPUTS)
    assert run.status == "SUCCESS", run.reason
    assert run.model_version == "toy 1.0"
    prefix = home / "results" / "tests" / "ToyOk" / run.id
    assert sorted(p.name for p in prefix.iterdir()) == [
        "downloadable.zip",
        "outputs.json",
        "remote.json",
        "renderable.zip",
    ]
    outputs = toy.results(run.id)
    assert outputs["downloadable"][0]["data"] == "x,double\n2.0,4.0\n"
    remote = json.loads((prefix / "remote.json").read_text())
    filenames = [o["filename"] for o in remote["downloadable"]["outputs"]]
    assert len(set(filenames)) == 2  # two outputs titled "Result"
    assert [s for s in run.steps] == ["inputs", "run", "outputs", "upload", "notify"]
    assert all(step["phase"] == "Succeeded" for step in run.steps.values())


def test_a_runs_inputs_read_back_as_submitted_and_only_for_simulations(toy, home):
    run = toy.simulate("tests/ToyOk", OK_INPUTS)
    assert toy.run_inputs(run.id) == {  # as stored: meta parameters in the value-object form
        "meta_param_dict": {"year": [{"value": 2024}]},
        "adjustment": OK_INPUTS["adjustment"],
    }
    (home / "jobs" / f"job-{run.id}.json").unlink()
    with pytest.raises(NotFound, match=f"job {run.id} not found"):
        toy.run_inputs(run.id)


def test_download_writes_the_downloadable_files(toy, tmp_path):
    run = toy.simulate("tests/ToyOk", OK_INPUTS)
    written = toy.download(run.id, tmp_path / "out")
    assert sorted(p.name for p in written) == ["Result-2.csv", "Result.csv"]
    assert (tmp_path / "out" / "Result.csv").read_text() == "x,double\n2.0,4.0\n"


def test_outputs_titled_as_tax_brain_titles_them_succeed_with_c_s_file_names(toy, tmp_path):
    """An empty title, a title ending in .csv or .pdf, two long titles that differ
    in their last words: stored as C/S stored them, named as C/S named them."""
    run = toy.simulate("tests/ToyCsTitles", OK_INPUTS)
    assert run.status == "SUCCESS", run.reason
    assert toy.results(run.id)["renderable"][0]["title"] == ""
    written = toy.download(run.id, tmp_path / "out")
    tables = "Dynamic Baseline Liabilities Change by Calendar Year, Billions, by "
    assert sorted(p.name for p in written) == sorted(
        [
            "Total Liabilities Change by Calendar Year (Billions).csv",
            tables + "expanded income.csv",
            tables + "decile.csv",
            "Policy Report.pdf",
        ]
    )


def test_invalid_inputs_end_as_invalid_not_as_a_crash(toy):
    run = toy.simulate("tests/ToyOk", {"adjustment": {"Knobs": {"x": [{"value": -1}]}}})
    assert run.status == "INVALID"
    assert run.errors_warnings["Knobs"]["errors"] == {"x": ["x must be at least 0"]}
    assert run.steps["run"]["phase"] == "Skipped"
    assert run.steps["outputs"]["phase"] == "Omitted"
    assert run.steps["notify"]["phase"] == "Succeeded"


def test_unknown_sections_are_errors(toy):
    run = toy.simulate("tests/ToyOk", {"adjustment": {"Knobs": {}, "Nope": {"y": [{"value": 1}]}}})
    assert run.status == "INVALID"
    assert "Nope" in run.errors_warnings["API"]["errors"]["extra_keys"][0]


def test_model_crash_keeps_the_traceback_in_the_logs(toy):
    run = toy.simulate("tests/ToyCrash", OK_INPUTS)
    assert run.status == "FAIL"
    assert run.reason == "run: ZeroDivisionError: float division by zero"
    log = toy.logs(run.id, "run")
    assert "Traceback (most recent call last)" in log and "toy_model.py" in log
    assert run.steps["notify"]["phase"] == "Succeeded"  # the exit handler still reported


def test_model_killed_by_a_signal(toy):
    run = toy.simulate("tests/ToyDie", OK_INPUTS)
    assert run.status == "FAIL"
    assert "SIGKILL" in run.reason


def test_a_hanging_model_is_stopped_at_its_timeout(toy):
    started = time.monotonic()
    run = toy.simulate("tests/ToyHang", OK_INPUTS)
    assert run.status == "FAIL"
    assert "exceeded its timeout of 3s" in run.reason
    assert time.monotonic() - started < 60


def test_a_model_printing_megabytes_still_finishes_and_its_log_is_trimmed(toy):
    run = toy.simulate("tests/ToyChatty", OK_INPUTS)
    assert run.status == "SUCCESS", run.reason
    log = toy.logs(run.id, "run")
    assert "bytes of output cut" in log
    assert len(log) < 5 * 1024 * 1024


def test_outputs_that_break_the_schema_fail_clearly(toy):
    run = toy.simulate("tests/ToyBadOutputs", OK_INPUTS)
    assert run.status == "FAIL"
    assert run.reason.startswith("outputs: outputs break the schema at renderable.0.media_type")


def test_engine_keeps_working_after_failures(toy):
    for model in ("tests/ToyCrash", "tests/ToyBadOutputs"):
        assert toy.simulate(model, OK_INPUTS).status == "FAIL"
    assert toy.simulate("tests/ToyOk", OK_INPUTS).status == "SUCCESS"


def test_fresh_subprocess_launcher_gives_the_same_results(home):
    from paths import TOY_CONFIGS

    from csflow.sdk.client import Client

    warm = Client(home=home, config_dirs=[TOY_CONFIGS]).simulate("tests/ToyOk", OK_INPUTS)
    cold = Client(home=home, config_dirs=[TOY_CONFIGS], warm_workers=False)
    run = cold.simulate("tests/ToyOk", OK_INPUTS)
    assert run.status == "SUCCESS"
    assert (
        cold.results(run.id)["downloadable"][0]["data"]
        == cold.results(warm.id)["downloadable"][0]["data"]
    )
    crash = Client(home=home, config_dirs=[TOY_CONFIGS], warm_workers=False).simulate(
        "tests/ToyCrash", OK_INPUTS
    )
    assert crash.reason == "run: ZeroDivisionError: float division by zero"


def test_engine_runs_the_compiled_manifest(toy, home):
    """The engine's task graph is the compiled WorkflowTemplate's: same tasks,
    same order of dependencies, the exit handler last."""
    template = flows.compiled("simulate")
    tasks = semantics.dag_tasks(template["spec"], template["spec"]["entrypoint"])
    manifest_edges = {t.name: t.upstream() for t in tasks}
    run = toy.simulate("tests/ToyOk", OK_INPUTS)
    assert list(run.steps) == [t.name for t in tasks] + [template["spec"]["onExit"]]
    raw = {
        t["name"]: t.get("depends", "")
        for t in next(x for x in template["spec"]["templates"] if x["name"] == "simulate")["dag"][
            "tasks"
        ]
    }
    assert manifest_edges == {
        name: semantics.Task(name, "", depends).upstream() for name, depends in raw.items()
    }
    cached = flows.compiled("simulate", cache_dir=home / "cache")
    assert cached == template


def _wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_detach_then_wait(toy):
    run = toy.simulate("tests/ToyOk", OK_INPUTS, detach=True)
    assert run.status in ("PENDING", "RUNNING", "SUCCESS")
    assert toy.wait(run.id, timeout=60).status == "SUCCESS"


def test_cancel_stops_a_running_simulation(toy):
    run = toy.simulate("tests/ToyHang", OK_INPUTS, detach=True)
    assert _wait_for(lambda: toy.status(run.id).steps.get("run", {}).get("phase") == "Running")
    toy.cancel(run.id)
    final = toy.wait(run.id, timeout=30)
    assert final.status == "CANCELLED"


def test_killing_the_engine_mid_run_marks_the_run_interrupted(toy, home):
    run = toy.simulate("tests/ToyHang", OK_INPUTS, detach=True)
    assert _wait_for(lambda: toy.status(run.id).steps.get("run", {}).get("phase") == "Running")
    engine_pid = toy.status(run.id).engine_pid
    os.kill(engine_pid, signal.SIGKILL)
    assert _wait_for(lambda: toy.status(run.id).status == "INTERRUPTED", timeout=10)
    # The orphaned model step is stopped too, and the store still works.
    assert _wait_for(lambda: not _model_processes(home), timeout=10)
    assert toy.simulate("tests/ToyOk", OK_INPUTS).status == "SUCCESS"


def _model_processes(home) -> list[str]:
    out = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if str(home) in line and "worker.py" in line]


def test_runs_are_listed_newest_first(toy):
    first = toy.simulate("tests/ToyOk", OK_INPUTS)
    second = toy.simulate("tests/ToyCrash", OK_INPUTS)
    assert [r.id for r in toy.list(2)] == [second.id, first.id]


def test_unknown_tag_is_a_clear_error(toy):
    from csflow.sdk.core.errors import NotFound

    with pytest.raises(NotFound, match="unknown tag 'nope' for model tests/ToyOk"):
        toy.simulate("tests/ToyOk", OK_INPUTS, tag="nope")
