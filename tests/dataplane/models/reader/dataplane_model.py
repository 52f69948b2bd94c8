"""A tiny C/S model for the data-plane tests (standard library only).

It reports, without ever printing a value, what its process can see: the
SHA-256 of its declared secret ``DP_API_KEY`` and which platform variables
reached it (none should). Its outputs repeat titles, so archive names must be
made unique. ``DP_MODE=crash`` makes ``run_model`` fail.
"""

import hashlib
import json
import os

WATCHED = (
    "DP_API_KEY",
    "CSFLOW_WEBAPP_TOKEN",
    "CSFLOW_WEBAPP_URL",
    "CSFLOW_STORAGE_URL",
    "CSFLOW_REDIS_USER",
    "CSFLOW_REDIS_PASSWORD",
    "STORAGE_EMULATOR_HOST",
)


def get_version():
    return "dataplane 1.0"


def get_inputs(meta_param_dict):
    return {
        "meta_parameters": {
            "year": {
                "title": "Year",
                "description": "Year",
                "type": "int",
                "value": 2024,
                "validators": {"range": {"min": 2020, "max": 2030}},
            }
        },
        "model_parameters": {
            "Knobs": {
                "x": {
                    "title": "x",
                    "description": "a number",
                    "type": "float",
                    "value": 1.0,
                    "validators": {"range": {"min": 0, "max": 100}},
                }
            }
        },
    }


def validate_inputs(meta_param_dict, adjustment, errors_warnings):
    return {"errors_warnings": errors_warnings}


def run_model(meta_param_dict, adjustment):
    if os.environ.get("DP_MODE") == "crash":
        raise RuntimeError("the data-plane test model crashed on purpose")
    key = os.environ.get("DP_API_KEY")
    seen = {
        "secret_sha256": hashlib.sha256(key.encode()).hexdigest() if key else None,
        "visible": sorted(name for name in WATCHED if name in os.environ),
        "redis_user": os.environ.get("CSFLOW_REDIS_USER"),  # a user name, not a secret
    }
    report = json.dumps(seen, sort_keys=True)
    return {
        "renderable": [
            {"media_type": "Text", "title": "Report", "data": report},
            {"media_type": "Text", "title": "Report", "data": "the same title again"},
            {"media_type": "Markdown", "title": "a/b", "data": "# slash in the title"},
        ],
        "downloadable": [
            {"media_type": "CSV", "title": "Table", "data": "a,b\n1,2\n"},
            {"media_type": "CSV", "title": "Table", "data": "a,b\n3,4\n"},
            {"media_type": "Text", "title": "Report", "data": report},
        ],
    }
