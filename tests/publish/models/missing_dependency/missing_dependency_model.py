"""A model for the publish tests that fails to import: it needs a package that its
config does not install (a maintainer who forgot a dependency), so the contract
tests stop at their first test, before ``get_inputs`` or ``run_model`` runs."""

import csflow_tests_missing_package  # noqa: F401 - installed nowhere: ModuleNotFoundError


def get_version():
    return "missing-dependency 1.0"


def get_inputs(meta_param_dict):
    return {"meta_parameters": {}, "model_parameters": {}}


def validate_inputs(meta_param_dict, adjustment, errors_warnings):
    return {"errors_warnings": errors_warnings}


def run_model(meta_param_dict, adjustment):
    return {"renderable": [], "downloadable": []}
