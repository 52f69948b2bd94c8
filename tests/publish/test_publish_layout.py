"""A model laid out as the real PSLmodels/Tax-Cruncher is (its package at the
repository's root, its cs_config in cs-config/), published from git with
``install: [".", "cs-config"]``: no absolute paths, nothing written into the
maintainer's checkout, and the root package is part of the content tag."""

from __future__ import annotations

import shutil

import yaml

from csflow.sdk.registry.local import version_dir

from .conftest import HERE, OK_INPUTS, OWNER, commit_all, git, tiny_config

LAID_OUT = HERE / "models" / "laid-out"


def _laid_out_config(configs, repo):
    config = tiny_config(configs, title="LaidOut")
    data = yaml.safe_load(config.read_text())
    data["source"] = {"git": {"url": str(repo)}}
    data["install"] = [".", "cs-config"]
    data["functions"] = "cs_config.functions"
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    return config


def test_a_model_laid_out_as_tax_cruncher_publishes_from_git_and_simulates(
    client, home, configs, tmp_path
):
    repo = tmp_path / "Tiny-Cruncher"
    shutil.copytree(LAID_OUT, repo)  # the symlinked module becomes a file
    commit_all(repo, "v1")
    config = _laid_out_config(configs, repo)

    first = client.publish(config)
    assert first.status == "SUCCESS", first.reason
    lock = (version_dir(home, OWNER, "LaidOut", first.tag) / "requirements.lock").read_text()
    assert "six==" in lock  # the root package's dependency is locked
    assert "file:" not in lock and str(tmp_path) not in lock
    pinned = [line for line in lock.splitlines() if line and not line[0].isspace()]
    assert [line.split("==")[0] for line in pinned] == ["six"], lock  # not the model's own
    run = client.simulate(f"{OWNER}/LaidOut", OK_INPUTS)
    assert run.status == "SUCCESS", run.reason
    assert client.results(run.id)["renderable"][0]["title"] == "Rate"

    # Nothing was written into the maintainer's checkout (no build/, no *.egg-info).
    assert git(repo, "status", "--porcelain", "--ignored") == ""

    # A change to the root package is a new version.
    (repo / "tiny_core" / "__init__.py").write_text('LABEL = "tiny core, revised"\n')
    commit_all(repo, "v2")
    second = client.publish(config)
    assert second.status == "SUCCESS", second.reason
    assert second.tag != first.tag


def test_an_install_folder_that_is_not_a_package_fails_in_one_line(client, configs, tmp_path):
    repo = tmp_path / "Tiny-Cruncher"
    shutil.copytree(LAID_OUT, repo)
    (repo / "docs").mkdir()
    (repo / "docs" / "index.md").write_text("# docs\n")
    commit_all(repo, "v1")
    config = _laid_out_config(configs, repo)
    data = yaml.safe_load(config.read_text())
    data["install"] = [".", "docs"]
    config.write_text(yaml.safe_dump(data, sort_keys=False))
    run = client.publish(config)
    assert run.status == "FAIL"
    assert "install folder 'docs' has no pyproject.toml or setup.py" in run.reason, run.reason
