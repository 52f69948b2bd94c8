"""A model's Debian packages (config ``system_packages``) and a base image of its own
(``image.base``): in its content tag, on this machine for the embedded engine, and
unpacked into the image's layer on a cluster (``sdk/builds/debian.py``).

The layer tests run real apt against this machine's Debian mirror, resolving against
a base's dpkg database; the cluster test (``tests/cluster/test_publish_on_pods.py``)
does the same in a build pod.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import yaml

from csflow.runtime.image_build import _run as run_or_fail
from csflow.sdk.builds import debian, model_image
from csflow.sdk.builds.environments import plan_build, uv_bin, write_build_context
from csflow.sdk.client import Client
from csflow.sdk.core.errors import BadInput
from csflow.sdk.core.model_config import load_model_config
from csflow.sdk.registry.local import Registry

from .conftest import OK_INPUTS, REPO, tiny_config

TOY_CONFIGS = REPO / "tests" / "models" / "config"
ABSENT = "csflow-absent-package-for-tests"
TOY_INPUTS = {"adjustment": {"Knobs": {"x": [{"value": 2}]}}}
REPORT = "<h1>Policy Report</h1>\n<p>The reform sets x to <strong>2.0</strong>.</p>\n"


def _with(path: Path, **fields) -> Path:
    config = yaml.safe_load(path.read_text())
    path.write_text(yaml.safe_dump({**config, **fields}, sort_keys=False))
    return path


def _tag(path: Path, tmp_path: Path) -> str:
    with plan_build(load_model_config(path), tmp_path / "cache") as plan:
        return plan.tag


def test_packages_and_an_own_base_image_are_part_of_the_content_tag(configs, tmp_path):
    plain = tiny_config(configs)
    before = _tag(plain, tmp_path)
    assert "system_packages" not in load_model_config(plain).canonical()  # old tags stay
    assert _tag(_with(plain, system_packages=[]), tmp_path) == before
    with_cmark = _tag(_with(plain, system_packages=["cmark"]), tmp_path)
    pinned = _tag(_with(plain, system_packages=["cmark=0.30.2-6"]), tmp_path)
    own_base = _tag(
        _with(plain, system_packages=[], image={"base": "ghcr.io/me/tex:3.11"}), tmp_path
    )
    assert len({before, with_cmark, pinned, own_base}) == 4


@pytest.mark.parametrize(
    "spec", ["-oAPT::Get::Download-Only=0", "Cmark", "cmark texlive", "cmark=", "c", "a;b", ""]
)
def test_an_entry_that_is_no_debian_package_name_is_refused_in_the_config(configs, spec):
    path = _with(tiny_config(configs), system_packages=[spec])
    with pytest.raises(BadInput, match="system_packages"):
        load_model_config(path)


def test_an_own_base_image_must_be_an_image_reference(configs):
    with pytest.raises(BadInput, match="image.base"):
        load_model_config(_with(tiny_config(configs), image={"base": "--insecure x"}))


def test_the_own_base_image_replaces_the_installations(configs, tmp_path):
    path = _with(tiny_config(configs), image={"base": "registry.example/me/tex-python:3.11"})
    with plan_build(load_model_config(path), tmp_path / "cache") as plan:
        assert model_image.base_image(plan.info) == "registry.example/me/tex-python:3.11"
    with plan_build(load_model_config(tiny_config(configs)), tmp_path / "cache") as plan:
        assert model_image.base_image(plan.info, "py:{python}") == "py:3.11"


def test_what_dpkg_knows_decides_what_is_missing_here():
    assert debian.missing_on_host(["dpkg", "cmark"]) == []
    assert debian.missing_on_host(["dpkg=0.0-no-such-version", ABSENT]) == sorted(["dpkg", ABSENT])


# -- the embedded engine: the host is the image ----------------------------------------------


def test_a_tax_brain_like_model_simulates_with_its_debian_program(toy):
    """An empty title, titles ending in .csv/.pdf, and a report written by cmark."""
    run = toy.simulate("tests/ToyTaxBrain", TOY_INPUTS)
    assert run.status == "SUCCESS", run.reason
    renderable = toy.results(run.id)["renderable"]
    assert [r["title"] for r in renderable] == ["", "Policy Report"]
    assert renderable[1]["data"] == REPORT


def test_a_package_missing_here_stops_the_simulation_before_any_model_code(home, configs, tmp_path):
    client = Client(home=home, config_dirs=[configs])
    _with(tiny_config(configs), system_packages=["cmark", ABSENT])
    with pytest.raises(debian.SystemPackagesError) as raised:
        client.simulate("publish-tests/Tiny", OK_INPUTS)
    assert str(raised.value).startswith(
        f"publish-tests/Tiny needs Debian packages that are not installed on this machine: {ABSENT}"
    )
    assert client.list() == [] and not (home / "envs").exists()


def test_the_cli_says_which_package_is_missing_in_one_line(home, configs, tmp_path):
    _with(tiny_config(configs), system_packages=[ABSENT])
    inputs = tmp_path / "inputs.json"
    inputs.write_text(json.dumps(OK_INPUTS))
    done = subprocess.run(
        [str(Path(sys.executable).parent / "csflow"), "simulate", "publish-tests/Tiny"]
        + ["--inputs", str(inputs)],
        env={
            "PATH": "/usr/bin:/bin",
            "HOME": str(tmp_path),
            "CSFLOW_HOME": str(home),
            "CSFLOW_CONFIG_DIRS": json.dumps([str(configs)]),
        },
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 1, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and ABSENT in lines[0] and "apt-get install" in lines[0], done.stderr


def test_a_publish_whose_package_is_missing_fails_at_build_naming_it(home, configs):
    client = Client(home=home, config_dirs=[configs])
    run = client.publish(_with(tiny_config(configs), system_packages=[ABSENT]))
    assert run.status == "FAIL"
    assert run.steps["build"]["phase"] == "Failed" and ABSENT in run.reason, run.reason
    assert run.steps["test"]["phase"] in ("Skipped", "Omitted")


def test_a_tax_brain_like_model_publishes_its_tests_running_the_program(home):
    client = Client(home=home, config_dirs=[TOY_CONFIGS])
    run = client.publish(TOY_CONFIGS / "tests" / "ToyTaxBrain.yaml")
    assert run.status == "SUCCESS", run.reason
    version = Registry(home).document("tests", "ToyTaxBrain")["versions"][run.tag]
    assert version["tests"]["failed"] == 0 and version["config"]["system_packages"] == ["cmark"]


# -- the cluster's layer: packages the base lacks, unpacked -----------------------------------


def _stanzas_without(status: str, names: set[str]) -> str:
    kept = [s for s in status.split("\n\n") if s.split("\n", 1)[0].partition(": ")[2] not in names]
    return "\n\n".join(kept)


@pytest.fixture
def base_status(tmp_path) -> Path:
    """This machine's dpkg database without cmark: a base image that lacks it."""
    status = tmp_path / "base-status"
    status.write_text(_stanzas_without(Path("/var/lib/dpkg/status").read_text(), {"cmark"}))
    return status


def _deb(tmp_path: Path, name: str, files: dict[str, str], postinst: bool) -> Path:
    """A .deb made here with dpkg-deb, for layouts no small real package has."""
    root = tmp_path / f"{name}-pkg"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t.invalid>\n"
        "Description: test\n"
    )
    if postinst:
        (root / "DEBIAN" / "postinst").write_text("#!/bin/sh\nexit 0\n")
        (root / "DEBIAN" / "postinst").chmod(0o755)
    for where, text in files.items():
        (root / where).parent.mkdir(parents=True, exist_ok=True)
        (root / where).write_text(text)
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root)], check=True,
                   capture_output=True)  # fmt: skip
    return root.with_suffix(".deb")


def test_apt_fetches_what_the_base_lacks_and_the_program_runs_from_the_layer(
    configs, tmp_path, base_status
):
    debs = debian.download(["cmark"], base_status, tmp_path / "apt", "amd64", run_or_fail)
    assert [d.name.partition("_")[0] for d in debs] == ["cmark"]  # libc6 is in the base

    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    path = _with(tiny_config(configs), python=python, system_packages=["cmark"])
    with plan_build(load_model_config(path), tmp_path / "cache") as plan:
        write_build_context(plan, tmp_path / "context")
    info = json.loads((tmp_path / "context" / "build.json").read_text())
    layer = tmp_path / "layer.tar"
    model_image.write_layer(tmp_path / "context", info, layer, uv_bin(), run_or_fail, debs)
    with tarfile.open(layer) as tar:
        names = set(tar.getnames())
        assert "usr/bin/cmark" in names and "usr/local/bin/csflow-model-step" in names
        tar.extractall(tmp_path / "root", filter="tar")
    markdown = "# Policy Report\n\nThe reform sets x to **2.0**.\n"
    done = subprocess.run(
        [str(tmp_path / "root/usr/bin/cmark")], input=markdown, capture_output=True, text=True
    )
    assert done.stdout == REPORT, done.stderr


def test_unpacking_keeps_merged_usr_and_names_the_scripts_it_did_not_run(tmp_path):
    debs = [
        _deb(tmp_path, "oldstyle", {"bin/oldtool": "#!/bin/sh\n", "lib/x.conf": "x"}, True),
        _deb(tmp_path, "plain", {"usr/share/plain/readme": "hi"}, False),
    ]
    root = tmp_path / "root"
    root.mkdir()
    skipped = debian.unpack(debs, root, run_or_fail)
    assert skipped == ["oldstyle (postinst)"]
    # /bin and /lib stay the base's symlinks into /usr: the files go there.
    assert not (root / "bin").exists() and not (root / "lib").exists()
    assert (root / "usr/bin/oldtool").read_text() == "#!/bin/sh\n"
    assert (root / "usr/lib/x.conf").read_text() == "x"
    assert (root / "usr/share/plain/readme").read_text() == "hi"


def _image(tmp_path: Path, files: dict[str, bytes]) -> Path:
    """A flattened image file system as ``crane export`` writes it."""
    path = tmp_path / "image.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            entry = tarfile.TarInfo(name)
            entry.size = len(data)
            tar.addfile(entry, io.BytesIO(data))
        link = tarfile.TarInfo("etc/os-release")
        link.type, link.linkname = tarfile.SYMTYPE, "../usr/lib/os-release"
        tar.addfile(link)
    return path


def test_the_base_images_dpkg_database_and_release_are_read_from_its_export(tmp_path, base_status):
    image = _image(
        tmp_path,
        {
            "var/lib/dpkg/status": base_status.read_bytes(),
            "usr/lib/os-release": b'PRETTY_NAME="Debian"\nVERSION_CODENAME=bookworm\n',
        },
    )
    debs = debian.fetch_for_image(
        ["cmark"], ["cat", str(image)], tmp_path / "work", "amd64", run_or_fail
    )
    assert [d.name.partition("_")[0] for d in debs] == ["cmark"]


@pytest.mark.parametrize(
    ("files", "command", "said"),
    [
        ({"usr/lib/os-release": b"VERSION_CODENAME=bookworm\n"}, None, "need a Debian base"),
        (
            {"var/lib/dpkg/status": b"", "usr/lib/os-release": b"VERSION_CODENAME=trixie\n"},
            None,
            "the base image is Debian trixie, but this builder fetches bookworm",
        ),
        ({}, ["sh", "-c", "echo 'MANIFEST_UNKNOWN: no such image' >&2; exit 1"], "MANIFEST_UNK"),
        ({}, ["echo", "not a tarball"], "reading the base image failed: not a file system"),
    ],
)
def test_a_base_that_cannot_take_debian_packages_fails_the_build_saying_why(
    tmp_path, files, command, said
):
    command = command or ["cat", str(_image(tmp_path, files))]
    with pytest.raises(debian.SystemPackagesError, match=said):
        debian.fetch_for_image(["cmark"], command, tmp_path / "work", "amd64", run_or_fail)


def test_apt_never_sees_an_entry_that_is_no_package_name(tmp_path, base_status):
    with pytest.raises(debian.SystemPackagesError, match="not a Debian package name"):
        debian.download(["-oDir::Etc=/tmp"], base_status, tmp_path, "amd64", run_or_fail)
    assert not (tmp_path / "lists").exists()  # stopped before apt was set up
