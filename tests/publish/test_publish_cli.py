"""`csflow publish` and `csflow models` as a maintainer meets them: tables, exit
codes, and one-line errors for bad configs."""

from __future__ import annotations

import json
import re

import pytest
import yaml

from .conftest import CONFIGS, OWNER, TESTS_SECTION, TINY, one_line_error, tiny_config


def test_publish_shows_every_test_and_exits_0(cli, configs):
    result = cli("publish", tiny_config(configs))
    assert result.exit_code == 0, result.output
    for title in (
        "the four functions exist",
        "every section has at least one parameter",
        "the bad adjustment has errors in every section",
        "run_model()'s outputs pass the schema",
    ):
        assert title in result.output
    assert "latest and staging are now" in result.output


def test_a_broken_model_shows_its_failure_and_output_and_exits_1(cli):
    result = cli("publish", CONFIGS / OWNER / "Broken-Outputs.yaml")
    assert result.exit_code == 1, result.output
    assert "failed" in result.output and "outputs break the schema" in result.output
    assert "tiny: returning outputs in the old format" in result.output  # the model's own output
    assert "nothing was promoted" in result.output
    assert (
        cli("models", "show", f"{OWNER}/Broken-Outputs").exit_code == 2
    )  # no version was recorded


def test_a_model_that_fails_to_import_shows_its_test_table_and_ends_fail(cli):
    """The tests stop before run_model, so the optional raw-outputs artifact is not
    produced: verify runs without it (as on Argo), and the maintainer reads why."""
    result = cli("publish", CONFIGS / OWNER / "Missing-Dependency.yaml")
    assert result.exit_code == 1, result.output
    output = " ".join(result.output.split())  # rich wraps long cells
    table = output.split("Contract tests: publish-tests/Missing-Dependency", 1)[1]
    assert re.search(
        r"the four functions exist │ failed │ [0-9.]+s │ "
        r"ModuleNotFoundError: No module named 'csflow_tests_missing_package'",
        table,
    ), table
    assert "run_model()'s outputs pass the schema │ not run" in table
    assert "publish-tests/Missing-Dependency job" in output and ": FAIL" in output
    assert "reason: verify: 1 of 11 contract tests failed: functions; nothing was promoted" in (
        output
    )
    assert "failed to resolve" not in output and "INTERRUPTED" not in output
    assert "nothing was promoted; logs: csflow runs logs" in output
    assert cli("models", "show", f"{OWNER}/Missing-Dependency").exit_code == 2  # no version


def test_publish_json_output_carries_the_tests(cli):
    result = cli("publish", CONFIGS / OWNER / "Lax-Validation.yaml", "-o", "json")
    assert result.exit_code == 1
    data = json.loads(result.output)
    assert data["kind"] == "publish" and data["status"] == "FAIL"
    failed = [t["name"] for t in data["tests"]["tests"] if t["status"] == "failed"]
    assert failed == ["bad_adjustment"]


def test_approve_from_the_command_line(cli, configs, home):
    result = cli("publish", tiny_config(configs), "--require-approval", "-o", "json")
    assert result.exit_code == 0, result.output
    run = json.loads(result.output)
    assert run["status"] == "SUSPENDED" and run["tests"]["passed"]  # tested before anyone approves
    listed = json.loads(cli("runs", "list", "-o", "json").output)
    assert [(r["kind"], r["status"]) for r in listed] == [("publish", "SUSPENDED")]
    result = cli("publish", "approve", run["job_id"])
    assert result.exit_code == 0, result.output
    assert "latest and staging are now" in result.output
    assert one_line_error(cli("publish", "approve", run["job_id"])).endswith(
        "is SUCCESS, not waiting for approval"
    )


def test_models_list_show_promote_rollback(cli, configs):
    v1 = json.loads(cli("publish", tiny_config(configs, TINY_VERSION="1.0"), "-o", "json").output)[
        "tag"
    ]
    v2 = json.loads(cli("publish", tiny_config(configs, TINY_VERSION="2.0"), "-o", "json").output)[
        "tag"
    ]
    listed = json.loads(cli("models", "list", "-o", "json").output)
    assert [(m["model"], m["latest"], m["versions"]) for m in listed] == [(f"{OWNER}/Tiny", v2, 2)]
    shown = cli("models", "show", f"{OWNER}/Tiny")
    assert shown.exit_code == 0 and v1 in shown.output and "11/11 passed" in shown.output
    assert str(TINY) in shown.output  # from what it was built
    result = cli("models", "rollback", f"{OWNER}/Tiny")
    assert result.exit_code == 0 and f"latest {v2} → {v1}" in result.output
    result = cli("models", "promote", f"{OWNER}/Tiny", v2, "--to", "latest")
    assert result.exit_code == 0 and f"latest {v1} → {v2}" in result.output
    assert (
        json.loads(cli("models", "show", f"{OWNER}/Tiny", "-o", "json").output)["tags"]["latest"]
        == v2
    )
    assert one_line_error(cli("models", "promote", f"{OWNER}/Tiny", v1, "--to", "prod")).startswith(
        "error: --to must be one of latest, staging"
    )
    assert one_line_error(cli("models", "show", f"{OWNER}/Nothing")).startswith(
        "error: publish-tests/Nothing has no versions"
    )
    assert cli("models", "promote", "../x", v1).exit_code == 2


def test_models_inputs_from_the_cache_or_computed(cli, configs):
    tag = json.loads(cli("publish", tiny_config(configs), "-o", "json").output)["tag"]
    cached = json.loads(cli("models", "inputs", f"{OWNER}/Tiny", "-o", "json").output)
    assert (cached["source"], cached["tag"], cached["version"]) == ("cache", tag, "tiny 1.0")
    assert set(cached["inputs"]["model_parameters"]) == {"Knobs", "Extras"}
    # The default year is the default: still the cache.
    assert (
        json.loads(
            cli("models", "inputs", f"{OWNER}/Tiny", "--meta", "year=2024", "-o", "json").output
        )["source"]
        == "cache"
    )
    computed = json.loads(
        cli("models", "inputs", f"{OWNER}/Tiny", "--meta", "year=2025", "-o", "json").output
    )
    assert computed["source"] == "computed" and computed["meta_param_dict"] == {"year": 2025}
    assert (
        computed["inputs"]["model_parameters"]["Knobs"]["rate"]["description"] == "A rate in 2025"
    )
    table = cli("models", "inputs", f"{OWNER}/Tiny")
    assert table.exit_code == 0 and "inputs cache" in table.output
    assert one_line_error(cli("models", "inputs", f"{OWNER}/Tiny", "--meta", "year")).startswith(
        "error: --meta 'year': expected NAME=VALUE"
    )
    assert one_line_error(cli("models", "inputs", f"{OWNER}/Tiny", "--tag", "nightly")).startswith(
        "error: unknown tag 'nightly'"
    )


def test_simulate_with_an_unknown_tag_is_a_clear_error(cli, configs):
    cli("publish", tiny_config(configs))
    assert one_line_error(cli("simulate", f"{OWNER}/Tiny", "--tag", "staging2")).startswith(
        "error: unknown tag 'staging2' for model publish-tests/Tiny"
    )


def _config(configs, **changes) -> str:
    """``config/publish-tests/Bad.yaml``, a valid config but for ``changes``."""
    data = {
        "owner": OWNER,
        "title": "Bad",
        "source": {"path": str(TINY)},
        "functions": "tiny_model",
        "python": "3.11",
        "tests": TESTS_SECTION,
        **changes,
    }
    data = {k: v for k, v in data.items() if v is not None}
    path = configs / OWNER / "Bad.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return str(path)


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"tests": None}, "tests: Field required"),
        ({"owner": None}, "owner: Field required"),
        ({"docker_image": "mine"}, "docker_image: Extra inputs are not permitted"),
        ({"image": "mine"}, "image: Input should be a valid dictionary"),
        ({"system_packages": ["Pandoc"]}, "not a Debian package name"),
        ({"tests": {**TESTS_SECTION, "skip": True}}, "tests.skip: Extra inputs are not permitted"),
        (
            {"source": {"path": "/nonexistent/model"}},
            "source path /nonexistent/model does not exist",
        ),
        (
            {"source": {"path": "x", "git": {"url": "y"}}},
            "give exactly one of source.path or source.git",
        ),
        ({"title": "../../etc"}, "invalid title '../../etc'"),
        ({"owner": "-rf"}, "invalid owner '-rf'"),
        ({"python": "2.7; rm -rf /"}, "python: String should match pattern"),
        ({"env": {"A B": "1"}}, "invalid environment variable or secret name 'A B'"),
        ({"title": "Other"}, "owner/title publish-tests/Other must match its path"),
    ],
)
def test_bad_configs_get_one_line_errors(cli, configs, home, changes, message):
    result = cli("publish", _config(configs, **changes))
    assert result.exit_code == 2, result.output
    assert message in one_line_error(result)
    assert not (home / "runs").exists() or not any((home / "runs").iterdir())  # no run was recorded


def test_unreadable_configs_get_one_line_errors(cli, configs):
    assert "config file not found" in one_line_error(cli("publish", configs / "missing.yaml"))
    bad = configs / OWNER / "Broken.yaml"
    bad.parent.mkdir(parents=True)
    bad.write_text("owner: [unclosed\n")
    assert "cannot read config" in one_line_error(cli("publish", bad))
    bad.write_text("- a list\n")
    assert "must be a mapping" in one_line_error(cli("publish", bad))


def test_publish_with_no_arguments_shows_help(cli):
    result = cli("publish")
    assert "CONFIG" in result.output and "approve" in result.output


def test_the_argo_backend_refuses_a_local_source_in_one_line(cli, configs, monkeypatch):
    """A cluster cannot read this machine's folders (publishing on Argo itself:
    tests/argo/test_argo_publish.py)."""
    monkeypatch.setenv("CSFLOW_BACKEND", "argo")
    result = cli("publish", tiny_config(configs))
    assert result.exit_code == 2, result.output
    assert one_line_error(result) == (
        "error: publish-tests/Tiny: source.path is a folder on this machine, "
        "which a cluster cannot read; "
        "give the config a source.git (or publish with the local backend)"
    )
