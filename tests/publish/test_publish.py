"""Publishing on the embedded engine, with the tiny test model: the pipeline,
tags, approval, rollback, and what must not move when something fails."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from csflow.engine.store import RunStore
from csflow.sdk.core.errors import BadInput, NotFound
from csflow.sdk.registry.inputs_cache import InputsCache
from csflow.sdk.registry.local import Registry, version_dir

from .conftest import OK_INPUTS, OWNER, TINY, commit_all, git, tiny_config

CSFLOW = str(Path(sys.executable).parent / "csflow")
STEPS = ["clone", "build", "test", "verify", "push", "approve", "deploy"]


def phases(run) -> dict[str, str]:
    return {name: step["phase"] for name, step in run.steps.items()}


def tags(home, title="Tiny") -> dict[str, str]:
    return Registry(home).document(OWNER, title)["tags"]


def test_publish_builds_tests_pushes_and_deploys(client, home, configs):
    run = client.publish(tiny_config(configs))
    assert run.status == "SUCCESS", run.reason
    assert run.kind == "publish"
    assert phases(run) == {**{s: "Succeeded" for s in STEPS}, "approve": "Skipped"}
    assert tags(home) == {"latest": run.tag, "staging": run.tag}
    record = Registry(home).document(OWNER, "Tiny")["versions"][run.tag]
    # When and from what it was built, and how its tests went.
    assert record["origin"]["path"] == str(TINY)
    assert record["source_hash"] and record["lock_sha256"] and record["built"] and record["pushed"]
    assert record["tests"] == {"passed": 11, "skipped": 0, "failed": 0, "not run": 0, "total": 11}
    assert record["publish_run"] == f"publish-{run.id}"
    assert record["image"].endswith(f"/publish-tests_tiny:{run.tag}")
    assert run.model_version == "tiny 1.0"
    # The deploy refreshed the inputs cache for that version.
    cached = InputsCache(home).get(OWNER, "Tiny", run.tag)
    assert cached["version"] == "tiny 1.0" and set(cached["inputs"]["model_parameters"]) == {
        "Knobs",
        "Extras",
    }
    # Recorded with the simulations.
    assert [r.id for r in client.list()] == [run.id]


def test_an_unchanged_model_skips_the_build(client, home, configs):
    config = tiny_config(configs)
    first = client.publish(config)
    second = client.publish(config)
    assert second.status == "SUCCESS" and second.tag == first.tag
    assert phases(first)["build"] == "Succeeded" and phases(second)["build"] == "Skipped"
    # Moving a tag to where it already points records nothing.
    assert len(Registry(home).document(OWNER, "Tiny")["history"]) == 2


def test_a_changed_source_gives_a_new_version(client, configs, tmp_path):
    source = tmp_path / "tiny"
    shutil.copytree(TINY, source)
    first = client.publish(tiny_config(configs, source=source))
    (source / "tiny_model.py").write_text((source / "tiny_model.py").read_text() + "\n# changed\n")
    second = client.publish(tiny_config(configs, source=source))
    assert first.status == second.status == "SUCCESS"
    assert first.tag != second.tag
    assert phases(second)["build"] == "Succeeded"


def test_simulations_run_latest_unless_a_tag_names_another(client, home, configs):
    v1 = client.publish(tiny_config(configs, TINY_VERSION="1.0"))
    v2 = client.publish(tiny_config(configs, TINY_VERSION="2.0"), require_approval=True)
    assert v2.status == "SUSPENDED" and tags(home) == {"latest": v1.tag, "staging": v2.tag}
    latest = client.simulate(f"{OWNER}/Tiny", OK_INPUTS)
    staging = client.simulate(f"{OWNER}/Tiny", OK_INPUTS, tag="staging")
    by_version = client.simulate(f"{OWNER}/Tiny", OK_INPUTS, tag=v2.tag)
    assert (latest.status, latest.tag, latest.model_version) == ("SUCCESS", v1.tag, "tiny 1.0")
    assert (staging.status, staging.tag, staging.model_version) == ("SUCCESS", v2.tag, "tiny 2.0")
    assert by_version.tag == v2.tag
    with pytest.raises(NotFound, match="unknown tag 'nightly'"):
        client.simulate(f"{OWNER}/Tiny", OK_INPUTS, tag="nightly")


@pytest.mark.parametrize(
    "mode, failing",
    [
        ("bad-outputs", "outputs_schema"),  # outputs that break the schema
        ("lax", "bad_adjustment"),  # a bad adjustment that validates
        ("empty-section", "sections"),  # what cs-kit let through
    ],
)
def test_a_broken_model_fails_the_tests_and_nothing_moves(client, home, configs, mode, failing):
    good = client.publish(tiny_config(configs))
    before = Registry(home).document(OWNER, "Tiny")
    broken = client.publish(tiny_config(configs, TINY_MODE=mode))
    assert broken.status == "FAIL"
    assert phases(broken)["verify"] == "Failed"
    assert {phases(broken)[s] for s in ("push", "approve", "deploy")} == {"Omitted"}
    assert failing in broken.reason and "nothing was promoted" in broken.reason
    after = Registry(home).document(OWNER, "Tiny")
    assert after == before and after["tags"] == {"latest": good.tag, "staging": good.tag}
    assert broken.tag not in after["versions"]
    assert InputsCache(home).get(OWNER, "Tiny", broken.tag) is None
    report = client.publish_report(broken.id)
    assert report["passed"] is False
    assert [t["name"] for t in report["tests"] if t["status"] == "failed"][0] == failing


def test_a_model_that_fails_to_import_shows_its_test_table_and_fails(client, configs):
    """The tests stop before run_model, so raw-outputs is never produced: verify
    still runs (the artifact is optional, as on Argo) and the table says why."""
    config = tiny_config(configs)
    config.write_text(
        config.read_text().replace("functions: tiny_model", "functions: no_such_module")
    )
    run = client.publish(config)
    assert run.status == "FAIL", run.reason
    assert phases(run)["verify"] == "Failed"
    assert "contract tests failed: functions" in run.reason, run.reason
    report = client.publish_report(run.id)
    statuses = {t["name"]: t["status"] for t in report["tests"]}
    assert statuses["functions"] == "failed" and statuses["outputs_schema"] == "not run"
    failed = next(t for t in report["tests"] if t["name"] == "functions")
    assert "no_such_module" in failed["detail"] + failed["output"]


def test_a_schema_failure_shows_the_models_own_output(client, configs):
    run = client.publish(tiny_config(configs, TINY_MODE="bad-outputs"))
    failed = [t for t in client.publish_report(run.id)["tests"] if t["status"] == "failed"]
    assert [t["name"] for t in failed] == ["outputs_schema"]
    assert "media_type" in failed[0]["detail"]
    assert (
        "tiny: returning outputs in the old format" in failed[0]["output"]
    )  # what the model printed
    assert '"media_type": "movie"' in failed[0]["output"]  # and what it returned


def test_rollback_restores_the_previous_version(client, home, configs):
    v1 = client.publish(tiny_config(configs, TINY_VERSION="1.0"))
    v2 = client.publish(tiny_config(configs, TINY_VERSION="2.0"))
    assert tags(home)["latest"] == v2.tag
    assert client.rollback(f"{OWNER}/Tiny") == {
        "model": f"{OWNER}/Tiny",
        "tag": "latest",
        "from": v2.tag,
        "to": v1.tag,
        "webapp": "not configured",
    }
    assert client.simulate(f"{OWNER}/Tiny", OK_INPUTS).model_version == "tiny 1.0"
    # A rollback undoes a move: there is nothing before v1.
    with pytest.raises(BadInput, match="no earlier version"):
        client.rollback(f"{OWNER}/Tiny")
    assert client.promote(f"{OWNER}/Tiny", v2.tag)["to"] == v2.tag
    assert client.rollback(f"{OWNER}/Tiny")["to"] == v1.tag
    # staging was never touched by any of this.
    assert tags(home)["staging"] == v2.tag


def test_rollback_twice_goes_two_versions_back(client, home, configs):
    versions = [client.publish(tiny_config(configs, TINY_VERSION=v)).tag for v in ("1", "2", "3")]
    assert client.rollback(f"{OWNER}/Tiny")["to"] == versions[1]
    assert client.rollback(f"{OWNER}/Tiny")["to"] == versions[0]
    assert tags(home)["latest"] == versions[0]


def test_promote_staging_to_latest(client, home, configs):
    v1 = client.publish(tiny_config(configs, TINY_VERSION="1.0"))
    v2 = client.publish(tiny_config(configs, TINY_VERSION="2.0"), require_approval=True)
    result = client.promote(f"{OWNER}/Tiny", "staging", to="latest")
    assert (result["from"], result["to"]) == (v1.tag, v2.tag)
    with pytest.raises(BadInput, match="--to must be one of"):
        client.promote(f"{OWNER}/Tiny", v1.tag, to="nightly")
    with pytest.raises(NotFound):
        client.promote(f"{OWNER}/Tiny", "0123456789ab")


def test_approval_suspends_before_deploy_and_resumes(client, home, configs):
    first = client.publish(tiny_config(configs, TINY_VERSION="1.0"))
    run = client.publish(tiny_config(configs, TINY_VERSION="2.0"), require_approval=True)
    assert run.status == "SUSPENDED" and run.engine_pid is None
    assert phases(run)["approve"] == "Suspended" and "deploy" not in run.steps
    assert tags(home) == {"latest": first.tag, "staging": run.tag}
    tested = run.steps["test"]["started"]
    with pytest.raises(BadInput, match="not waiting for approval"):
        client.approve(first.id)
    approved = client.approve(run.id)
    assert approved.status == "SUCCESS"
    assert phases(approved) == {**{s: "Succeeded" for s in STEPS}}
    assert approved.steps["test"]["started"] == tested  # finished steps are not run again
    assert tags(home) == {"latest": run.tag, "staging": run.tag}
    with pytest.raises(BadInput, match="SUCCESS, not waiting"):
        client.approve(run.id)


def test_a_cancelled_approval_deploys_nothing(client, home, configs):
    run = client.publish(tiny_config(configs), require_approval=True)
    assert client.cancel(run.id).status == "CANCELLED"
    with pytest.raises(BadInput, match="CANCELLED"):
        client.approve(run.id)
    assert "latest" not in tags(home)


def test_a_killed_publish_leaves_the_previous_latest_serving(client, home, configs, tmp_path):
    first = client.publish(tiny_config(configs, TINY_VERSION="1.0"))
    pidfile = tmp_path / "model.pid"
    config = tiny_config(
        configs, TINY_VERSION="2.0", TINY_MODE="slow", TINY_SLEEP="120", TINY_PIDFILE=str(pidfile)
    )
    run = client.publish(config, detach=True)
    deadline = time.monotonic() + 120
    while not pidfile.exists():  # the model is inside run_model, in the test step
        assert time.monotonic() < deadline, client.status(run.id)
        time.sleep(0.1)
    engine = client.status(run.id).engine_pid
    os.kill(engine, signal.SIGKILL)
    # The test step dies with its engine (its supervisor kills it); if it were left:
    with contextlib.suppress(ProcessLookupError):
        os.kill(int(pidfile.read_text()), signal.SIGKILL)
    while True:  # wait until the kernel has let go of the engine
        try:
            os.waitpid(engine, os.WNOHANG)
        except ChildProcessError:
            pass
        if client.status(run.id).status != "RUNNING":
            break
        time.sleep(0.1)
    assert client.status(run.id).status == "INTERRUPTED"
    assert tags(home) == {"latest": first.tag, "staging": first.tag}
    assert client.simulate(f"{OWNER}/Tiny", OK_INPUTS).model_version == "tiny 1.0"


def test_two_publishes_of_the_same_model_at_once(home, configs):
    """Two `csflow publish` processes race: both succeed, the environment is
    built once, and the registry stays whole."""
    env = {**os.environ, "CSFLOW_HOME": str(home)}
    commands = [
        [CSFLOW, "publish", str(tiny_config(configs / v, TINY_VERSION=v)), "-o", "json"]
        for v in ("a", "a", "b")
    ]
    processes = [
        subprocess.Popen(c, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for c in commands
    ]
    outputs = [p.communicate(timeout=300) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], [err for _, err in outputs]
    runs = [json.loads(out) for out, _ in outputs]
    assert {r["status"] for r in runs} == {"SUCCESS"}
    assert runs[0]["tag"] == runs[1]["tag"] != runs[2]["tag"]
    doc = json.loads((home / "registry" / OWNER / "Tiny.json").read_text())
    assert set(doc["versions"]) == {runs[0]["tag"], runs[2]["tag"]}
    assert doc["tags"]["latest"] in doc["versions"] and doc["tags"]["staging"] in doc["versions"]
    for tag_name in ("latest", "staging"):  # no move was lost: each starts where the last ended
        moves = [h for h in doc["history"] if h["tag"] == tag_name]
        assert [m["from"] for m in moves] == [None] + [m["to"] for m in moves[:-1]]
        assert moves[-1]["to"] == doc["tags"][tag_name]
    built = [
        json.loads((version_dir(home, OWNER, "Tiny", r["tag"]) / "version.json").read_text())[
            "built"
        ]
        for r in runs
    ]
    assert built[0] == built[1]  # one build, shared by both publishes of version a


def test_registry_writers_in_two_processes_lose_nothing(home):
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from csflow.sdk.registry.local import Registry\n"
        "r = Registry(Path(sys.argv[1]))\n"
        "for i in range(40):\n"
        "    tag = f'{sys.argv[2]}{i:03d}'\n"
        "    r.record_version({'owner': 'o', 'title': 't', 'tag': tag, 'n': i})\n"
        "    r.move_tag('o', 't', 'latest', tag, action='deploy')\n"
    )
    writers = [
        subprocess.Popen([sys.executable, "-c", script, str(home), prefix]) for prefix in ("a", "b")
    ]
    assert [w.wait(timeout=120) for w in writers] == [0, 0]
    doc = Registry(home).document("o", "t")
    assert len(doc["versions"]) == 80 and len(doc["history"]) == 80
    assert [h["from"] for h in doc["history"]] == [None] + [h["to"] for h in doc["history"][:-1]]


def test_a_git_source_is_cloned_at_its_ref(client, home, configs, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(TINY, repo / "model")
    commit = commit_all(repo, "v1")
    git(repo, "tag", "v1")
    (repo / "model" / "tiny_model.py").write_text("raise SystemExit('not this revision')\n")
    commit_all(repo, "broken")
    config = tiny_config(configs)
    text = config.read_text().replace(
        f"path: {TINY}", f"git:\n    url: {repo}\n    ref: v1\n    subdir: model"
    )
    config.write_text(text)
    run = client.publish(config)
    assert run.status == "SUCCESS", run.reason
    origin = Registry(home).document(OWNER, "Tiny")["versions"][run.tag]["origin"]
    assert origin == {"git": str(repo), "ref": "v1", "subdir": "model", "commit": commit}


def test_a_git_source_that_cannot_be_cloned_fails_in_clone(client, home, configs, tmp_path):
    config = tiny_config(configs)
    config.write_text(
        config.read_text().replace(f"path: {TINY}", f"git:\n    url: {tmp_path / 'nowhere'}")
    )
    run = client.publish(config)
    assert run.status == "FAIL" and run.reason.startswith("clone: git clone failed")
    assert "fatal: repository" in run.reason and "does not exist" in run.reason  # git's own
    assert "latest" not in tags(home)


def test_a_checkout_missing_an_object_fails_in_clone(client, home, configs, tmp_path):
    """git checks out what it can read, reports an object it cannot read on stderr,
    and exits 0: the clone step fails, naming git's error, and nothing is published."""
    repo = tmp_path / "repo"
    shutil.copytree(TINY, repo / "model")
    commit_all(repo, "v1")
    blob = git(repo, "rev-parse", "HEAD:model/tiny_model.py")
    (repo / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    config = tiny_config(configs)
    config.write_text(
        config.read_text().replace(f"path: {TINY}", f"git:\n    url: {repo}\n    subdir: model")
    )
    run = client.publish(config)
    assert run.status == "FAIL", run.reason
    assert run.reason.startswith("clone: git checkout HEAD failed: error: unable to read"), (
        run.reason
    )
    assert "latest" not in tags(home)


def test_publish_runs_show_in_runs_and_logs(client, configs):
    run = client.publish(tiny_config(configs))
    assert client.status(run.id).kind == "publish"
    assert "11 of 11 contract tests passed" in client.logs(run.id, "verify")
    assert "latest (none) -> " + run.tag in client.logs(run.id, "deploy")


def test_the_store_keeps_suspended_runs_active(home):
    from csflow.sdk.core.run import Run
    from csflow.sdk.core.status import ACTIVE, FINAL, RunStatus

    assert RunStatus.SUSPENDED in ACTIVE and RunStatus.SUSPENDED not in FINAL
    runs = RunStore(home / "runs.db")
    runs.create(Run(id="r1", owner="o", title="t", tag="", status=RunStatus.SUSPENDED))
    assert not runs.update_if("r1", RunStatus.RUNNING, status=RunStatus.PENDING)
    assert runs.update_if("r1", RunStatus.SUSPENDED, status=RunStatus.PENDING)
    assert runs.get("r1").status == RunStatus.PENDING


def test_every_step_works_in_the_clients_home_not_the_environments(configs, tmp_path, monkeypatch):
    from csflow.sdk.client import Client

    monkeypatch.setenv("CSFLOW_HOME", str(tmp_path / "elsewhere"))
    home = tmp_path / "mine"
    run = Client(home=home).publish(tiny_config(configs))
    assert run.status == "SUCCESS", run.reason
    assert (version_dir(home, OWNER, "Tiny", run.tag) / "version.json").is_file()
    assert tags(home) == {"latest": run.tag, "staging": run.tag}
    assert not (tmp_path / "elsewhere").exists()


def test_the_webapp_is_told_of_staging_and_latest(home, configs):
    """The webapp double (tests/dataplane/doubles.py) is a real HTTP server that
    records calls; the real WebappClient talks to it."""
    from dataplane.doubles import RecordingWebapp

    from csflow.sdk.client import Client
    from csflow.sdk.dataplane.secrets import LocalSecretStore

    LocalSecretStore(home).set("CS_API_TOKEN", "token-value-1234")
    webapp = RecordingWebapp().start()
    try:
        client = Client(home=home, webapp_url=webapp.url)
        v1 = client.publish(tiny_config(configs, TINY_VERSION="1.0"))
        v2 = client.publish(tiny_config(configs, TINY_VERSION="2.0"))
        assert client.rollback(f"{OWNER}/Tiny")["webapp"] == "told (HTTP 200)"
    finally:
        webapp.stop()
    path = f"/publish/api/{OWNER}/Tiny/deployments/"
    assert [(c.method, c.path, c.body) for c in webapp.calls] == [
        ("PUT", path, {"staging_tag": v1.tag}),
        ("PUT", path, {"latest_tag": v1.tag}),
        ("PUT", path, {"staging_tag": v2.tag}),
        ("PUT", path, {"latest_tag": v2.tag}),
        ("PUT", path, {"latest_tag": v1.tag}),
    ]
    assert {c.headers["Authorization"] for c in webapp.calls} == {"Token token-value-1234"}
    # The token reached the platform steps only through their environment.
    for path in (home / "runs").rglob("*"):
        if path.is_file():
            assert b"token-value-1234" not in path.read_bytes(), path
    assert "token-value-1234" not in (home / "registry" / OWNER / "Tiny.json").read_text()


def test_a_config_can_skip_the_slow_run_model_test_and_the_version_says_so(client, home, configs):
    """OG-USA's run_model takes hours (C/S's publish needed --skip-test): with
    tests.skip_run_model, run_model (here: one that would sleep a minute) and the
    outputs check are skipped, the publish passes, and the version records it."""
    import yaml

    config = tiny_config(configs, TINY_MODE="slow", TINY_SLEEP="60")
    data = yaml.safe_load(config.read_text())
    data["tests"] = {**data["tests"], "skip_run_model": True, "timeout": 300}
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    started = time.monotonic()
    run = client.publish(config)
    assert run.status == "SUCCESS", run.reason
    assert time.monotonic() - started < 50  # run_model did not run
    record = Registry(home).document(OWNER, "Tiny")["versions"][run.tag]
    assert record["skipped_tests"] == ["run_model", "outputs_schema"]
    assert record["tests"]["skipped"] == 2 and record["tests"]["failed"] == 0
