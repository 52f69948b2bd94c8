"""The result cache on the embedded engine (sdk/backends/base.py ResultCaching): a
repeat of a version's inputs is a cached SUCCESS run of its own, at once, shown as
cached; --no-cache runs anyway; INVALID is never kept; a new version misses; five
identical CLI submissions at once make one model run; the webapp hears of a hit
as a success its serializer accepts, marked in ``meta``."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from paths import TOY_CONFIGS
from typer.testing import CliRunner

from csflow.cli.app import app
from csflow.sdk.client import Client
from csflow.sdk.dataplane.secrets import LocalSecretStore

OK = {"meta_param_dict": {"year": 2024}, "adjustment": {"Knobs": {"x": [{"value": 2}]}}}
SAME = {"adjustment": {"Knobs": {"x": 2}}, "meta_param_dict": {"year": [{"value": 2024}]}}
BAD_X = {"meta_param_dict": {"year": 2024}, "adjustment": {"Knobs": {"x": [{"value": -1}]}}}
CSFLOW = Path(sys.executable).with_name("csflow")


def test_a_repeat_is_a_cached_success_of_its_own(toy, home):
    first = toy.simulate("tests/ToyOk", OK)
    assert first.status == "SUCCESS" and not first.cached_from
    again = toy.simulate("tests/ToyOk", SAME)  # the same inputs, in the other shapes
    assert again.status == "SUCCESS" and again.id != first.id
    assert again.cached_from == first.id and again.steps == {}
    assert again.model_version == first.model_version
    assert toy.results(again.id) == toy.results(first.id)
    assert toy.run_inputs(again.id)["adjustment"] == SAME["adjustment"]  # as it was submitted
    shown = CliRunner().invoke(app, ["runs", "show", again.id, "-o", "json"])
    data = json.loads(shown.stdout)
    assert data["cached"] is True and data["cached_from"] == first.id
    assert data["status"] == "SUCCESS" and data["results_uri"].endswith(again.id)
    table = CliRunner().invoke(app, ["runs", "show", again.id])
    assert f"cached: the results of job {first.id}" in table.stdout
    assert "cached_from" not in toy.status(first.id).to_dict()


def test_no_cache_runs_anyway_and_invalid_is_never_kept(toy):
    first = toy.simulate("tests/ToyOk", OK)
    forced = toy.simulate("tests/ToyOk", OK, no_cache=True)
    assert forced.status == "SUCCESS" and not forced.cached_from and forced.steps
    bad = [toy.simulate("tests/ToyOk", BAD_X) for _ in range(2)]
    assert [r.status for r in bad] == ["INVALID", "INVALID"]
    assert not any(r.cached_from for r in bad) and all(r.steps for r in bad)
    assert toy.simulate("tests/ToyOk", OK).cached_from == first.id


def test_the_cli_flag(toy, home):
    toy.simulate("tests/ToyOk", OK)
    inputs = home / "ok.json"
    inputs.write_text(json.dumps(OK))
    config = ["--home", str(home)]
    env = {"CSFLOW_CONFIG_DIRS": json.dumps([str(TOY_CONFIGS)])}
    hit = CliRunner().invoke(
        app, [*config, "simulate", "tests/ToyOk", "-i", str(inputs), "-o", "json"], env=env
    )
    assert json.loads(hit.stdout)["cached"] is True, hit.output
    ran = CliRunner().invoke(
        app,
        [*config, "simulate", "tests/ToyOk", "-i", str(inputs), "-o", "json", "--no-cache"],
        env=env,
    )
    assert "cached" not in json.loads(ran.stdout), ran.output


def test_a_new_version_never_hits_an_old_entry(tmp_path, home):
    configs = tmp_path / "config"
    shutil.copytree(TOY_CONFIGS, configs)
    toy_source = TOY_CONFIGS.parent / "toy"
    config = configs / "tests" / "ToyOk.yaml"
    config.write_text(config.read_text().replace("../../toy", str(toy_source)))
    client = Client(home=home, config_dirs=[configs])
    first = client.simulate("tests/ToyOk", OK)
    assert client.simulate("tests/ToyOk", OK).cached_from == first.id
    config.write_text(config.read_text().replace("TOY_MODE: ok", "TOY_MODE: ok\n  NEW: '1'"))
    newer = client.simulate("tests/ToyOk", OK)
    assert newer.status == "SUCCESS" and not newer.cached_from and newer.tag != first.tag


def test_five_identical_submissions_at_once_make_one_model_run(toy, home, tmp_path):
    toy.backend.resolve("tests", "ToyNap", None)  # its environment built, untimed
    inputs = tmp_path / "ok.json"
    inputs.write_text(json.dumps(OK))
    env = {
        **os.environ,
        "CSFLOW_HOME": str(home),
        "CSFLOW_CONFIG_DIRS": json.dumps([str(TOY_CONFIGS)]),
    }
    command = [str(CSFLOW), "simulate", "tests/ToyNap", "-i", str(inputs), "-o", "json"]
    processes = [
        subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for _ in range(5)
    ]
    runs = []
    for process in processes:
        out, err = process.communicate(timeout=180)
        assert process.returncode == 0, err.decode()[-2000:]
        runs.append(json.loads(out))
    ran = [r for r in runs if not r.get("cached")]
    assert len(ran) == 1, [(r["job_id"], r.get("cached_from")) for r in runs]
    assert {r["cached_from"] for r in runs if r.get("cached")} == {ran[0]["job_id"]}
    assert len({r["job_id"] for r in runs}) == 5
    assert all(r["status"] == "SUCCESS" for r in runs)
    assert len([r for r in toy.list() if r.steps]) == 1  # one run of the model


@pytest.fixture
def receiver():
    from webapp_receiver import WebappReceiver

    server = WebappReceiver(token="tok-3c2b1a09f8e7").start()
    yield server
    server.stop()


def test_the_webapp_hears_of_a_hit_as_a_success_marked_cached(home, receiver, monkeypatch):
    from webapp_receiver import OUTPUTS_PATH, OutputsSerializer

    monkeypatch.setenv("CSFLOW_WEBAPP_BACKOFF", "0.01")
    LocalSecretStore(home).set("CS_API_TOKEN", "tok-3c2b1a09f8e7")
    client = Client(home=home, config_dirs=[TOY_CONFIGS], webapp_url=receiver.url)
    first = client.simulate("tests/ToyOk", OK)
    again = client.simulate("tests/ToyOk", OK)
    assert again.cached_from == first.id and receiver.refused == []
    [call] = receiver.for_job(again.id)
    assert (call.path, call.outcome) == (OUTPUTS_PATH, "SUCCESS")
    assert call.body["meta"] == {"task_times": [0.0], "cached_from": first.id}
    assert all(
        entry["ziplocation"].startswith(f"tests/ToyOk/{again.id}/")
        for entry in call.body["outputs"].values()
    )
    checked = OutputsSerializer(data=call.body)
    assert checked.is_valid(), checked.errors
    assert checked.validated_data["meta"]["cached_from"] == first.id  # kept by the serializer
    # a field of its own would be dropped on the way in:
    top = OutputsSerializer(data={**call.body, "cached_from": first.id})
    assert top.is_valid() and "cached_from" not in top.validated_data
