"""The one line that says why a program failed (sdk/core/reasons.py), from output
real programs leave: a Python traceback whose exception spans lines, git's fatal
line followed by hints, csflow's own last words."""

from __future__ import annotations

import subprocess
import sys

from csflow.sdk.core.reasons import MAX_REASON_CHARS, reason_line

# ParamTools' ValidationError prints its errors as a JSON object over several lines.
RAISES_A_LONG_MESSAGE = """
import json
class ValidationError(Exception):
    pass
def get_inputs(meta):
    raise ValidationError(json.dumps({"model": {"year": ["year 2000 < min 2013"]}}, indent=4))
get_inputs({"year": 2000})
"""


def test_a_traceback_gives_its_exception_with_the_whole_message():
    result = subprocess.run(
        [sys.executable, "-c", RAISES_A_LONG_MESSAGE], capture_output=True, text=True
    )
    assert result.returncode == 1 and result.stderr.rstrip().endswith("}")
    assert reason_line(result.stderr) == (
        'ValidationError: { "model": { "year": [ "year 2000 < min 2013" ] } }'
    )


def test_a_chained_traceback_gives_the_last_exception():
    code = "try:\n    1/0\nexcept ZeroDivisionError:\n    raise KeyError('year')\n"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert reason_line(result.stderr) == "KeyError: 'year'"


def test_git_gives_its_first_fatal_line_not_its_hints(tmp_path):
    result = subprocess.run(
        ["git", "clone", "--quiet", str(tmp_path / "nowhere"), str(tmp_path / "x")],
        capture_output=True,
        text=True,
    )
    assert result.returncode != 0
    hinted = result.stderr + "hint: see 'git help clone'\nhint: or ask someone\n"
    assert reason_line(hinted).startswith("fatal: repository")


def test_csflow_s_own_last_words_and_plain_output():
    assert reason_line("working\ncsflow: the run step produced no outputs\n") == (
        "the run step produced no outputs"
    )
    assert reason_line("one\n\ntwo  words\n") == "two words"
    assert reason_line("") == ""
    assert len(reason_line("x" * 5000)) == MAX_REASON_CHARS
