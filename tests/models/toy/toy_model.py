"""A tiny C/S model for tests, standard library only.

Its behaviour comes from the TOY_MODE variable, set in each test config's
``env``: ok, crash, die, hang, chatty, flood, fill, bad-outputs, cs-titles, tax-brain,
secret.
TOY_SLEEP (seconds, default 0) makes run_model take that long first.
"""

import base64
import os
import subprocess
import sys
import time

PNG_1x1 = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


def get_version():
    return "toy 1.0"


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
                "x": {"title": "x", "description": "a number", "type": "float", "value": 1.0,
                      "validators": {"range": {"min": 0, "max": 100}}}
            }
        },
    }


def _x(adjustment):
    values = adjustment.get("Knobs", {}).get("x", [{"value": 1.0}])
    return float(values[0]["value"])


def validate_inputs(meta_param_dict, adjustment, errors_warnings):
    x = adjustment.get("Knobs", {}).get("x")
    if x is not None:
        try:
            value = float(x[0]["value"])
            if value < 0:
                errors_warnings["Knobs"]["errors"]["x"] = ["x must be at least 0"]
        except (TypeError, ValueError, KeyError, IndexError):
            errors_warnings["Knobs"]["errors"]["x"] = ["x must be a number"]
    return {"errors_warnings": errors_warnings}


def run_model(meta_param_dict, adjustment):
    time.sleep(float(os.environ.get("TOY_SLEEP", "0")))
    mode = os.environ.get("TOY_MODE", "ok")
    x = _x(adjustment)
    if x == 13:  # one point of a sweep that crashes, the others not
        raise RuntimeError("thirteen is unlucky")
    if mode == "crash":
        return {"renderable": [], "downloadable": [1 / (x - x)]}
    if mode == "die":
        os.kill(os.getpid(), 9)
    if mode == "hang":
        time.sleep(3600)
    if mode == "chatty":
        chunk = "x" * 1023 + "\n"
        for _ in range(30 * 1024):  # 30 MB of output
            sys.stdout.write(chunk)
    if mode == "flood":  # TOY_FLOOD_MB megabytes of output, as fast as it can, then its last words
        chunk = ("y" * 1023 + "\n") * 64
        for _ in range(int(os.environ.get("TOY_FLOOD_MB", "200")) * 16):
            sys.stdout.write(chunk)
        print("flood: done", flush=True)
    if mode == "fill":  # a file in its work folder until the disk is full
        with open("filler", "wb") as handle:
            block = b"z" * (1 << 20)
            while True:
                handle.write(block)
                handle.flush()
    if mode == "bad-outputs":
        return {"renderable": [{"media_type": "movie", "title": "t", "data": "d"}], "downloadable": []}
    if mode in ("cs-titles", "tax-brain"):  # titled as Tax-Brain titles its outputs
        tables = "Dynamic Baseline Liabilities Change by Calendar Year, Billions, by "
        outputs = {
            "renderable": [
                {"media_type": "bokeh", "title": "", "data": {"target_id": None, "root_id": "1", "doc": {}}},
            ],
            "downloadable": [
                {"media_type": "CSV", "title": "Total Liabilities Change by Calendar Year (Billions).csv", "data": "a\n1\n"},
                {"media_type": "CSV", "title": tables + "expanded income", "data": "b\n2\n"},
                {"media_type": "CSV", "title": tables + "decile", "data": "c\n3\n"},
                {"media_type": "PDF", "title": "Policy Report.pdf", "data": PNG_1x1},
            ],
        }
        if mode == "tax-brain":  # its report, written by a Debian package's program (as pandoc)
            markdown = f"# Policy Report\n\nThe reform sets x to **{x}**.\n"
            report = subprocess.run(["cmark"], input=markdown, capture_output=True, text=True, check=True)
            outputs["renderable"].append({"media_type": "table", "title": "Policy Report", "data": report.stdout})
        return outputs
    secret = os.environ.get("TOY_SECRET", "") if mode == "secret" else ""
    return {
        "renderable": [
            {"media_type": "table", "title": "Result", "data": f"<table><tr><td>{2 * x}</td></tr></table>"},
            {"media_type": "PNG", "title": "Picture", "data": PNG_1x1},
        ],
        "downloadable": [
            {"media_type": "CSV", "title": "Result", "data": f"x,double\n{x},{2 * x}\n"},
            {"media_type": "CSV", "title": "Result", "data": f"x,triple,secret_length\n{x},{3 * x},{len(secret)}\n"},
        ],
    }
