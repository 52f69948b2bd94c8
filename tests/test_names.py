import pytest

from csflow.sdk.core import names
from csflow.sdk.core.errors import BadInput


@pytest.mark.parametrize(
    "name",
    [
        "../etc/passwd",
        "a/b/c",
        "PSLmodels",
        "PSLmodels/",
        "/Tax",
        "a/.hidden",
        "o/t;rm -rf",
        "o/t t",
        "o/" + "x" * 64,
    ],
)
def test_hostile_or_malformed_model_names_are_rejected(name):
    with pytest.raises(BadInput):
        names.parse_model_name(name)


def test_model_name_keeps_case():
    assert names.parse_model_name("PSLmodels/Tax-Cruncher") == ("PSLmodels", "Tax-Cruncher")


@pytest.mark.parametrize("tag", ["", "..", "-x", ".x", "a/b", "a b", "x" * 129, "../latest"])
def test_bad_tags_are_rejected(tag):
    with pytest.raises(BadInput):
        names.check_tag(tag)


def test_kube_name_is_rfc1123():
    assert names.kube_name("PSLmodels", "Tax-Cruncher") == "pslmodels-tax-cruncher"
    assert names.kube_name("a.b", "C_D") == "a-b-c-d"
    assert names.is_rfc1123_label(names.kube_name("X" * 40, "Y" * 40))


def test_job_ids_are_uuids():
    with pytest.raises(BadInput):
        names.check_job_id("../../x")
    assert (
        names.check_job_id("6F1C2B1E-1111-4111-8111-111111111111")
        == "6f1c2b1e-1111-4111-8111-111111111111"
    )
