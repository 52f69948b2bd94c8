"""Both secret stores, held to the same contract: local files (mode 0600) and
Google Secret Manager (the real client against a local double, see doubles.py)."""

from __future__ import annotations

import stat

import pytest

from csflow.sdk.core.errors import BadInput, NotFound
from csflow.sdk.core.settings import Settings
from csflow.sdk.dataplane.secrets import (
    LocalSecretStore,
    SecretError,
    SecretManagerStore,
    open_secret_store,
)


@pytest.fixture(params=["local", "gcp"])
def store(request, tmp_path):
    if request.param == "local":
        return LocalSecretStore(tmp_path / "home")
    server = request.getfixturevalue("secret_manager")
    return SecretManagerStore("csflow-test", endpoint=server.url, retry=None, timeout=5)


def test_set_get_list_delete(store):
    store.set("API_KEY", "v1", "PSLmodels", "Tax-Cruncher")
    store.set("API_KEY", "v2", "PSLmodels", "Tax-Cruncher")  # a new value replaces the old
    store.set("OTHER", "o", "PSLmodels", "Tax-Cruncher")
    assert store.get("API_KEY", "PSLmodels", "Tax-Cruncher") == "v2"
    assert store.list("PSLmodels", "Tax-Cruncher") == ["API_KEY", "OTHER"]
    store.delete("API_KEY", "PSLmodels", "Tax-Cruncher")
    assert store.list("PSLmodels", "Tax-Cruncher") == ["OTHER"]
    with pytest.raises(NotFound, match="no secret 'API_KEY' for PSLmodels/Tax-Cruncher"):
        store.get("API_KEY", "PSLmodels", "Tax-Cruncher")
    with pytest.raises(NotFound):
        store.delete("API_KEY", "PSLmodels", "Tax-Cruncher")


def test_scopes_stay_apart(store):
    store.set("TOKEN", "service", None, None)
    store.set("TOKEN", "model-a", "a__b", "c")
    store.set(
        "TOKEN", "model-b", "a", "b__c"
    )  # would share "a__b__c" with the one above if joined naively
    store.set("TOKEN", "model-c", "A", "B__C")  # same Kubernetes name as a/b__c
    store.set("TOKEN", "dotted", "Some.Org", "My_Model.v2")
    assert store.get("TOKEN") == "service"
    assert store.get("TOKEN", "a__b", "c") == "model-a"
    assert store.get("TOKEN", "a", "b__c") == "model-b"
    assert store.get("TOKEN", "A", "B__C") == "model-c"
    assert store.get("TOKEN", "Some.Org", "My_Model.v2") == "dotted"
    assert store.list() == ["TOKEN"]
    assert store.list("nobody", "nothing") == []
    with pytest.raises(NotFound, match="in the service scope"):
        store.get("NOPE")


def test_values_gives_only_the_wanted_secrets_that_are_set(store):
    store.set("A", "1", "o", "t")
    store.set("B", "2", "o", "t")
    store.set("C", "3", "other", "t")
    assert store.values("o", "t", ["A", "C", "MISSING"]) == {"A": "1"}
    assert store.values("o", "t", []) == {}


def test_bad_names_and_values_are_refused(store):
    for name in ("", "1ABC", "A-B", "A B", "../x", "a" * 200):
        with pytest.raises(BadInput):
            store.set(name, "v")
    with pytest.raises(BadInput, match="CSFLOW_ are csflow's own"):
        store.set("CSFLOW_JOB_STORE_URL", "redis://evil", "o", "t")
    store.set("CSFLOW_WEBAPP_TOKEN", "fine in the service scope")
    with pytest.raises(BadInput, match="may not be empty"):
        store.set("A", "")
    with pytest.raises(BadInput, match="exceed"):
        store.set("A", "x" * (64 * 1024 + 1))
    with pytest.raises(BadInput, match="invalid owner"):
        store.set("A", "v", "../etc", "t")
    with pytest.raises(BadInput, match="both owner and title"):
        store.set("A", "v", "o", None)


def test_values_are_not_in_the_store_repr(store):
    store.set("A", "hunter2-secret")
    assert "hunter2" not in repr(store)


def test_unicode_and_newlines_survive(store):
    value = "line one\nline two ✓ \t"
    store.set("MULTI", value)
    assert store.get("MULTI") == value


# -- local files -------------------------------------------------------------------


def test_the_local_store_is_readable_by_its_owner_only(tmp_path):
    store = LocalSecretStore(tmp_path / "home")
    store.set("S", "v", "PSLmodels", "Tax-Cruncher")
    store.set("S", "v")
    root = tmp_path / "home" / "secrets"
    for path in [root, root / "models", root / "models" / "PSLmodels"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in [root / "service.json", root / "models" / "PSLmodels" / "Tax-Cruncher.json"]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


# -- Secret Manager ----------------------------------------------------------------


def test_secret_manager_ids_are_valid_and_labelled(secret_manager):
    store = SecretManagerStore("p", endpoint=secret_manager.url, retry=None, timeout=5)
    store.set("API_KEY", "v", "Some.Org", "My_Model.v2")
    store.set("CS_API_TOKEN", "t")
    [model_secret, service_secret] = sorted(secret_manager.secrets.values(), key=lambda s: s.name)
    assert model_secret.name.startswith("projects/p/secrets/csflow-m-some-org-my-model-v2-")
    assert model_secret.name.endswith("--API_KEY")
    assert model_secret.labels == {"managed-by": "csflow", "csflow-scope": "model"}
    assert service_secret.name == "projects/p/secrets/csflow-svc--CS_API_TOKEN"


def test_secret_manager_lists_across_pages(secret_manager):
    store = SecretManagerStore("p", endpoint=secret_manager.url, retry=None, timeout=5)
    for i in range(8):  # the double pages by 3
        store.set(f"S{i}", "v", "o", "t")
    store.set("OTHER", "v", "o2", "t")
    assert store.list("o", "t") == [f"S{i}" for i in range(8)]


def test_a_corrupted_payload_is_caught(secret_manager):
    store = SecretManagerStore("p", endpoint=secret_manager.url, retry=None, timeout=5)
    store.set("A", "value")
    secret_manager.corrupt_next_access = True
    with pytest.raises(SecretError, match="CRC32C mismatch"):
        store.get("A")
    assert store.get("A") == "value"


def test_an_unreachable_secret_manager_is_one_line():
    from .conftest import free_port

    store = SecretManagerStore(
        "p", endpoint=f"http://127.0.0.1:{free_port()}", retry=None, timeout=2
    )
    with pytest.raises(SecretError, match="cannot reach Secret Manager") as caught:
        store.get("A")
    assert "\n" not in str(caught.value)


def test_the_backend_comes_from_settings(tmp_path, secret_manager):
    assert isinstance(open_secret_store(Settings(home=tmp_path)), LocalSecretStore)
    with pytest.raises(BadInput, match="needs a project"):
        open_secret_store(Settings(home=tmp_path, secrets_backend="gcp"))
    store = open_secret_store(
        Settings(
            home=tmp_path,
            secrets_backend="gcp",
            gcp_project="p",
            secret_manager_endpoint=secret_manager.url,
        )
    )
    assert isinstance(store, SecretManagerStore)
    store.set("A", "through-settings")
    assert (
        SecretManagerStore("p", endpoint=secret_manager.url, retry=None).get("A")
        == "through-settings"
    )
