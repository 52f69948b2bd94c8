"""A tiny C/S model for the publish tests, standard library only.

It is correct unless its config's ``env`` breaks it on purpose (TINY_MODE):

- ``ok``: passes every contract test;
- ``bad-outputs``: ``run_model`` returns outputs that break the schema
  (an unknown media type, a CSV output whose data is not text);
- ``lax``: ``validate_inputs`` never reports an error, so the bad adjustment
  validates;
- ``empty-section``: ``get_inputs`` returns a section without parameters
  (what cs-kit let through for Tax-Cruncher's "Policy" on taxcalc 6.8.5);
- ``slow``: ``run_model`` writes its pid to TINY_PIDFILE, then sleeps TINY_SLEEP
  seconds (to interrupt a publish).

TINY_VERSION is what ``get_version`` says, so two configs give two versions.
"""

import os
import time

MODE = os.environ.get("TINY_MODE", "ok")


def get_version():
    return f"tiny {os.environ.get('TINY_VERSION', '1.0')}"


def _meta(meta_param_dict):
    value = (meta_param_dict or {}).get("year", 2024)
    if isinstance(value, list):
        value = value[0]["value"]
    return int(value)


def get_inputs(meta_param_dict):
    year = _meta(meta_param_dict)
    knobs = {
        "rate": {"title": "Rate", "description": f"A rate in {year}", "type": "float", "value": 0.5,
                 "validators": {"range": {"min": 0, "max": 1}}},
    }
    return {
        "meta_parameters": {
            "year": {"title": "Year", "description": "Tax year", "type": "int", "value": 2024,
                     "validators": {"range": {"min": 2023, "max": 2025}}},
        },
        "model_parameters": {
            "Knobs": knobs,
            "Extras": {} if MODE == "empty-section" else {
                "label": {"title": "Label", "description": "A label", "type": "str", "value": "x"},
            },
        },
    }


def validate_inputs(meta_param_dict, adjustment, errors_warnings):
    if MODE == "lax":
        return {"errors_warnings": errors_warnings}
    for section, params in adjustment.items():
        for name, values in params.items():
            value = values[0]["value"]
            if name == "rate" and not (isinstance(value, (int, float)) and 0 <= value <= 1):
                errors_warnings[section]["errors"][name] = ["rate must be between 0 and 1"]
            if name == "label" and not isinstance(value, str):
                errors_warnings[section]["errors"][name] = ["label must be text"]
    return {"errors_warnings": errors_warnings}


def run_model(meta_param_dict, adjustment):
    if MODE == "slow":
        if os.environ.get("TINY_PIDFILE"):  # so a test can find and stop this process
            with open(os.environ["TINY_PIDFILE"], "w") as handle:
                handle.write(str(os.getpid()))
        time.sleep(float(os.environ.get("TINY_SLEEP", "60")))
    rate = adjustment.get("Knobs", {}).get("rate", [{"value": 0.5}])[0]["value"]
    if MODE == "bad-outputs":
        print("tiny: returning outputs in the old format")
        return {
            "renderable": [{"media_type": "movie", "title": "Rate", "data": str(rate)}],
            "downloadable": [{"media_type": "CSV", "title": "Table", "data": 12}],
        }
    return {
        "renderable": [{"media_type": "table", "title": "Rate", "data": f"<table><tr><td>{rate}</td></tr></table>"}],
        "downloadable": [{"media_type": "CSV", "title": "Rate", "data": f"year,rate\n{_meta(meta_param_dict)},{rate}\n"}],
    }
