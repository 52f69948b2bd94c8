from pathlib import Path

import pytest
from paths import REPO

from csflow.sdk.core.errors import BadInput
from csflow.sdk.core.model_config import find_model_config, load_model_config

EXAMPLE = REPO / "config" / "PSLmodels" / "Tax-Cruncher.yaml"


def test_example_config_loads():
    config = load_model_config(EXAMPLE)
    assert config.name == "PSLmodels/Tax-Cruncher"
    assert config.source_dir() == REPO / "examples" / "tax-cruncher"
    assert config.env["NOTAXCALCJIT"] == "1"


def test_memory_limit_is_ceil_of_1_2_times_the_request():
    config = load_model_config(EXAMPLE)
    resources = config.resources.kubernetes()
    request = int(resources["requests"]["memory"].removesuffix("Mi"))
    limit = int(resources["limits"]["memory"].removesuffix("Mi"))
    assert limit == -(-request * 12 // 10)


def _write(tmp_path: Path, owner: str, title: str, text: str) -> Path:
    path = tmp_path / owner / f"{title}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


GOOD = """owner: o
title: t
source: {path: .}
tests: {ok_adjustment: {}, bad_adjustment: {}}
"""


@pytest.mark.parametrize(
    "text, message",
    [
        ("owner: o\ntitle: t\n", "source"),
        (GOOD + "colour: blue\n", "colour"),
        (GOOD.replace("source: {path: .}", "source: {path: ./nowhere}"), None),
        (GOOD + "timeout: -1\n", "timeout"),
        (GOOD + "env: {'1BAD': x}\n", "env"),
        ("[1, 2]", "mapping"),
        ("owner: [", "cannot read"),
    ],
)
def test_bad_configs_get_one_line_errors(tmp_path, text, message):
    path = _write(tmp_path, "o", "t", text)
    with pytest.raises(BadInput) as caught:
        config = load_model_config(path)
        config.source_dir()
    assert "\n" not in str(caught.value)
    if message:
        assert message in str(caught.value)


def test_hostile_owner_in_config_is_rejected(tmp_path):
    path = _write(tmp_path, "o", "t", GOOD.replace("owner: o", "owner: ../../etc"))
    with pytest.raises(BadInput, match="owner"):
        load_model_config(path)


def test_config_must_match_its_path(tmp_path):
    path = _write(tmp_path, "o", "other", GOOD)
    with pytest.raises(BadInput, match="must match its path"):
        load_model_config(path)


def test_unknown_model_is_a_clear_error(tmp_path):
    with pytest.raises(BadInput, match="unknown model"):
        find_model_config("nobody", "nothing", [tmp_path])


def test_fields_added_later_leave_existing_content_tags_alone(tmp_path):
    """A config that sets none of install, tests.timeout or tests.skip_run_model
    has the canonical form (and so the content tag) it had before they existed."""
    plain = load_model_config(_write(tmp_path, "o", "t", GOOD)).canonical()
    assert "install" not in plain
    assert set(plain["tests"]) == {"meta_param_dict", "ok_adjustment", "bad_adjustment"}
    text = GOOD.replace("source: {path: .}", 'source: {path: .}\ninstall: [".", cs-config]')
    text = text.replace("bad_adjustment: {}}", "bad_adjustment: {}, skip_run_model: true}")
    given = load_model_config(_write(tmp_path, "o", "t", text)).canonical()
    assert given["install"] == [".", "cs-config"] and given["tests"]["skip_run_model"] is True


@pytest.mark.parametrize("folder", ["/abs", "../outside", "a/../../b", "", "a\\\\b"])
def test_install_folders_stay_inside_the_source(tmp_path, folder):
    text = GOOD.replace("source: {path: .}", f"source: {{path: .}}\ninstall: ['{folder}']")
    with pytest.raises(BadInput, match="must be a folder of the source"):
        load_model_config(_write(tmp_path, "o", "t", text))
