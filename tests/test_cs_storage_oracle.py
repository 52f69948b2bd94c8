"""Outputs C/S accepted, csflow accepts: cs-storage 1.11.1 (the library C/S wrote
every run's outputs with; a test-only dependency, unmaintained) is the oracle.

An output counts as accepted by C/S when cs-storage's ``LocalResult`` loads it and
its ``write`` (without the upload) stores it. For each case here, that verdict is
asserted first, so the table cannot drift from the oracle; every case it accepts
must build csflow's results, whose remote result loads in cs-storage's
``RemoteResult`` with file names that are the zip's entries.

One deliberate exception, not in the table: cs-storage writes NaN and Infinity into
bokeh JSON; csflow refuses them, as no browser's JSON.parse reads them."""

from __future__ import annotations

import base64
import copy
import io
import json
import zipfile

import cs_storage
import pytest

from csflow.runtime.platform_step import StepError, build_results

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + bytes(range(40))).decode()
JSON_ITEM = {"target_id": None, "root_id": "p1", "doc": {"roots": []}, "version": "3.4.1"}


def _result(*outputs, category="renderable"):
    other = "downloadable" if category == "renderable" else "renderable"
    return {category: list(outputs), other: []}


def _out(media_type, title, data, **extra):
    return {"media_type": media_type, "title": title, "data": data, **extra}


CASES = {
    # Tax-Brain's aggregate plot: an empty title.
    "an empty title": (True, _result(_out("bokeh", "", JSON_ITEM))),
    "a title ending in its extension": (
        True,
        _result(
            _out("CSV", "Total Liabilities Change by Calendar Year (Billions).csv", "a,b\n1,2\n"),
            category="downloadable",
        ),
    ),
    "a PDF titled .pdf": (
        True,
        _result(_out("PDF", "Policy Report.pdf", PNG), category="downloadable"),
    ),
    "slashes in a title": (True, _result(_out("table", "Income/Payroll tax", "<table></table>"))),
    "a title of 600 characters": (True, _result(_out("Text", "t" * 600, "text"))),
    "a title that is not ASCII": (True, _result(_out("Markdown", "Δ revenue — 2024", "# Δ"))),
    "bokeh that is not json_item output": (True, _result(_out("bokeh", "Chart", {"doc": {}}))),
    "bokeh as a list": (True, _result(_out("bokeh", "Chart", [1, 2, 3]))),
    "base64 broken over lines": (True, _result(_out("PNG", "p", PNG[:20] + "\n" + PNG[20:]))),
    "the model's own uuid": (
        True,
        _result(_out("Text", "t", "x", id="0b7f3a5e-9a43-4b3e-8f0e-1d2c3b4a5f60")),
    ),
    "empty text": (True, _result(_out("Markdown", "Notes", ""))),
    "two tables alike but for their last words": (
        True,
        _result(
            _out(
                "CSV",
                "Dynamic Baseline Liabilities Change by Calendar Year by expanded income",
                "a",
            ),
            _out("CSV", "Dynamic Baseline Liabilities Change by Calendar Year by decile", "b"),
            _out("CSV", "Dynamic Baseline Liabilities Change by Calendar Year by decile", "c"),
            category="downloadable",
        ),
    ),
    "nothing at all": (True, _result()),
    # What C/S could not store either.
    "an unknown media type": (False, _result(_out("movie", "m", "x"))),
    "no title": (False, _result({"media_type": "Text", "data": "x"})),
    "text that is a number": (False, _result(_out("CSV", "c", 12))),
    "base64 with bad padding": (False, _result(_out("PNG", "p", "abc"))),
    "an unknown key": (False, _result(_out("Text", "t", "x", caption="c"))),
    "no downloadable list": (False, {"renderable": []}),
}


def _c_s_stores(raw) -> bool:
    try:
        cs_storage.LocalResult().load(copy.deepcopy(raw))
        cs_storage.write("job", copy.deepcopy(raw), do_upload=False)
    except Exception:  # noqa: BLE001 - any failure means C/S could not store it
        return False
    return True


@pytest.mark.parametrize("case", CASES)
def test_what_c_s_stored_csflow_stores(case):
    c_s_accepts, raw = CASES[case]
    assert _c_s_stores(raw) is c_s_accepts, "the table disagrees with cs-storage"
    if not c_s_accepts:
        with pytest.raises(StepError):
            build_results(copy.deepcopy(raw))
        return
    files = build_results(copy.deepcopy(raw))
    remote = json.loads(files["remote.json"])
    cs_storage.RemoteResult().load(remote)
    for category in ("renderable", "downloadable"):
        outputs = remote[category]["outputs"]
        names = [o["filename"] for o in outputs]
        with zipfile.ZipFile(io.BytesIO(files[f"{category}.zip"])) as zipped:
            assert zipped.namelist() == names
        assert len({n.casefold() for n in names}) == len(names)
        # The model's titles are kept as it gave them.
        assert [o["title"] for o in outputs] == [o["title"] for o in raw[category]]


def test_bokeh_with_nan_is_refused_though_cs_storage_wrote_it():
    raw = _result(_out("bokeh", "Chart", {"doc": {"x": float("nan")}}))
    assert _c_s_stores(raw)
    with pytest.raises(StepError, match="must be JSON data"):
        build_results(raw)
