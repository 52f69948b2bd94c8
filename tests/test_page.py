"""A run's results page (sdk/views/page.py), read as HTML: every media type is
shown, nothing a model wrote runs, unservable charts say why, and failed runs
still have a page. The charts are real bokeh json_item output."""

from __future__ import annotations

import base64
import hashlib
import json
import re
from html.parser import HTMLParser

import bokeh
import pytest
from bokeh.embed import json_item
from bokeh.plotting import figure

from csflow.sdk.core.run import Run
from csflow.sdk.views import page as page_module
from csflow.sdk.views.page import run_page

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
JPEG = b"\xff\xd8\xff\xe0" + b"\x00" * 16 + b"\xff\xd9"
ATTACK = "<script>window.attacked=1</script><img src=x onerror=alert(1)>"
TABLE = (
    '<table class="dataframe"><thead><tr><th></th><th>Baseline</th></tr></thead>'
    "<tbody><tr><td>Individual Income Tax</td><td>8,032.00</td></tr></tbody></table>"
)
INPUTS = {
    "meta_param_dict": {"year": [{"value": 2024}]},
    "adjustment": {"Policy": {"STD": [{"MARS": "mjoint", "year": 2024, "value": 40000}]}},
}


def _chart(title: str = "Wages") -> dict:
    fig = figure(title=title, width=300, height=200)
    fig.line([1, 2, 3], [4, 6, 5])
    return json_item(fig)


def _run(status: str = "SUCCESS", **fields) -> Run:
    record = {
        "model_version": "taxcruncher 1.0 (taxcalc 6.8.5)",
        "steps": {"run": {"phase": "Succeeded", "started": 1_700_000_002.0, "seconds": 5.7}},
        **fields,
    }
    return Run(
        id="0d5e9a3c-1111-4222-8333-444455556666",
        owner="PSLmodels",
        title="Tax-Cruncher",
        tag="4e7353aba3a1",
        status=status,
        created=1_700_000_000.0,
        started=1_700_000_001.0,
        finished=1_700_000_016.5,
        **record,
    )


def _out(media_type: str, title: str, data) -> dict:
    return {"media_type": media_type, "title": title, "data": data}


class _Elements(HTMLParser):
    """Every element's tag and attributes, and each script's text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self._script: dict[str, str | None] | None = None

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))
        if tag == "script":
            self._script = dict(attrs)
            self.scripts.append((self._script, ""))

    def handle_data(self, data):
        if self._script is not None:
            attrs, text = self.scripts[-1]
            self.scripts[-1] = (attrs, text + data)

    def handle_endtag(self, tag):
        if tag == "script":
            self._script = None


def _parsed(html: str) -> _Elements:
    parser = _Elements()
    parser.feed(html)
    parser.close()
    return parser


def test_every_media_type_is_shown():
    outputs = {
        "renderable": [
            _out("table", "Basic Liabilities", TABLE),
            _out("bokeh", "Income Tax Across Wages", _chart()),
            _out("Markdown", "Notes", "# Heading\n\n*stress* and `code`"),
            _out("PNG", "Picture", base64.b64encode(PNG).decode()),
            _out("JPEG", "Photo", JPEG),  # bytes: the contract encodes them
            _out("Text", "Log", "line one\nline two"),
            _out("CSV", "As CSV", "a,b\n1,2\n"),
        ],
        "downloadable": [
            _out("CSV", "Basic Liabilities", "x,y\n1,2\n"),
            _out("CSV", "Basic Liabilities", "x,z\n3,4\n"),
            _out("PDF", "Report.pdf", base64.b64encode(b"%PDF-1.4").decode()),
        ],
    }
    html = run_page(_run(), INPUTS, outputs)
    assert "<h3>Basic Liabilities</h3><table>" in html
    assert "<td>8,032.00</td>" in html
    assert "class='chart' id='chart-1'" in html and "Bokeh.embed.embed_item" in html
    assert "BEGIN bokeh.min.js" in html  # BokehJS inlined: no CDN
    # Nothing is fetched: no element refers to anything outside the page.
    refs = [
        value
        for _, attrs in _parsed(html).elements
        for name, value in attrs.items()
        if name in ("src", "href") and value and not value.startswith("data:")
    ]
    assert refs == []
    assert "<h1>Heading</h1>" in html and "<em>stress</em>" in html
    assert f"src='data:image/png;base64,{base64.b64encode(PNG).decode()}'" in html
    assert f"src='data:image/jpeg;base64,{base64.b64encode(JPEG).decode()}'" in html
    assert "<pre>line one\nline two</pre>" in html
    assert "<td>1</td><td>2</td>" in html
    # Downloads carry C/S's file names (output_filenames) and are never rendered.
    for name in ("Basic Liabilities.csv", "Basic Liabilities-2.csv", "Report.pdf"):
        assert f"download='{name}' href='data:application/octet-stream;base64," in html
    assert base64.b64encode(b"x,z\n3,4\n").decode() in html
    # The run itself: model, version, tag, timings, inputs.
    for text in ("taxcruncher 1.0 (taxcalc 6.8.5)", "4e7353aba3a1", "2023-11-14 22:13:21 UTC"):
        assert text in html
    assert "<dd>15.5 s</dd>" in html and "<td>5.7 s</td>" in html
    assert "<td>MARS=mjoint, year=2024: 40000</td>" in html


def test_nothing_a_model_wrote_runs():
    chart = _chart(title="</script><script>window.attacked=1</script>")
    outputs = {
        "renderable": [
            _out("table", ATTACK, TABLE.replace("Individual Income Tax", ATTACK)),
            _out("table", "raw", "<table><tr><td>1</td></tr></table><script>alert(2)</script>"),
            _out("Markdown", ATTACK, f"text {ATTACK} [link](javascript:alert(3))"),
            _out("Text", ATTACK, f"</pre>{ATTACK}"),
            _out("bokeh", ATTACK, chart),
            _out("PNG", ATTACK, base64.b64encode(PNG).decode()),
        ],
        "downloadable": [_out("CSV", ATTACK, "a\n1\n")],
    }
    html = run_page(
        _run(reason=ATTACK, model_version=ATTACK),
        {"meta_param_dict": {}, "adjustment": {"S": {ATTACK: [{"value": ATTACK}]}}},
        outputs,
    )
    assert "<script>window.attacked" not in html and "alert(2)" not in html
    assert "<img src=x" not in html and "href='javascript:" not in html
    assert 'href="javascript:' not in html  # markdown-it refuses the link: it stays text
    assert "&lt;script&gt;window.attacked=1&lt;/script&gt;" in html
    parsed = _parsed(html)
    # No element has an event handler, and every script is the page's own: charts'
    # JSON (not run) or code whose hash the Content-Security-Policy allows.
    assert not [(tag, a) for tag, attrs in parsed.elements for a in attrs if a.startswith("on")]
    assert all(
        attrs["src"].startswith("data:image/png;base64,")
        for tag, attrs in parsed.elements
        if tag == "img"
    )
    policy = next(
        attrs["content"]
        for tag, attrs in parsed.elements
        if tag == "meta" and attrs.get("http-equiv") == "Content-Security-Policy"
    )
    assert "default-src 'none'" in policy and "unsafe-eval" not in policy
    allowed = set(re.findall(r"'sha256-([^']+)'", policy))
    for attrs, text in parsed.scripts:
        if attrs.get("type") == "application/json":
            json.loads(text)  # data, and all of it inside its element
            continue
        assert base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() in allowed
    # The chart's title still reaches BokehJS, as text.
    item = next(json.loads(t) for a, t in parsed.scripts if a.get("type") == "application/json")
    assert item["doc"] == json.loads(json.dumps(chart["doc"]))  # (json_item holds tuples)


@pytest.mark.parametrize(
    "data, note",
    [
        (
            lambda chart: chart["doc"].update(version="2.4.3"),
            f"this chart was made with bokeh 2.4.3; csflow serves BokehJS {bokeh.__version__}",
        ),
        (lambda chart: chart["doc"].pop("version"), "does not say which bokeh made it"),
        (lambda chart: chart.pop("doc"), "not the output of bokeh.embed.json_item"),
        (
            lambda chart: chart["doc"]["roots"][0].update(name="MyExtensionPlot"),
            "uses models BokehJS",
        ),
    ],
    ids=["other minor", "no version", "no doc", "unknown model"],
)
def test_a_chart_csflow_cannot_draw_is_a_note(data, note):
    chart = _chart()
    data(chart)
    html = run_page(_run(), INPUTS, {"renderable": [_out("bokeh", "C", chart)]})
    assert "<h3>C</h3><p class='note'>this chart" in html and note in html
    assert "BEGIN bokeh.min.js" not in html  # no BokehJS for nothing to draw


def test_garbage_chart_data_is_a_note():
    html = run_page(_run(), INPUTS, {"renderable": [_out("bokeh", "C", [1, 2, 3])]})
    assert "not the output of bokeh.embed.json_item" in html


def test_a_patch_level_difference_is_drawn_with_a_note():
    chart = _chart()
    major, minor, _ = bokeh.__version__.split(".", 2)
    chart["doc"]["version"] = f"{major}.{minor}.99"
    html = run_page(_run(), INPUTS, {"renderable": [_out("bokeh", "C", chart)]})
    assert "id='chart-1'" in html
    assert f"made with bokeh {major}.{minor}.99, drawn by BokehJS {bokeh.__version__}" in html


def test_a_failed_run_has_a_page_without_outputs():
    errors = {"Policy": {"errors": {"STD": ["STD must be at least 0"]}, "warnings": {}}}
    run = _run("INVALID", reason="the inputs are invalid", errors_warnings=errors)
    html = run_page(run, INPUTS, {"renderable": [_out("Text", "never", "shown")]})
    assert "status-INVALID'>INVALID<" in html
    assert "the inputs are invalid" in html
    assert "<b>error</b> in Policy, STD: STD must be at least 0" in html
    assert "<td>MARS=mjoint, year=2024: 40000</td>" in html
    assert "<h2>Outputs</h2>" not in html and "never" not in html
    failed = run_page(_run("FAIL", reason="run: ZeroDivisionError: division by zero"), None, None)
    assert "ZeroDivisionError: division by zero" in failed and "<h2>Outputs</h2>" not in failed


def test_inputs_the_job_store_no_longer_has_are_a_note():
    html = run_page(_run(), None, {"renderable": []})
    assert "<p class='note'>The job store no longer has this run&#x27;s inputs.</p>" in html
    html = run_page(_run(), None, {"renderable": []}, inputs_note="<b>gone</b>")
    assert "<p class='note'>&lt;b&gt;gone&lt;/b&gt;</p>" in html


def test_downloads_past_the_budget_name_the_command(monkeypatch):
    monkeypatch.setattr(page_module, "MAX_EMBEDDED_DOWNLOADS", 10)
    outputs = {"downloadable": [_out("CSV", "small", "a\n1\n"), _out("CSV", "big", "b\n" * 20)]}
    html = run_page(_run(), INPUTS, outputs)
    assert "download='small.csv'" in html and "download='big.csv'" not in html
    assert "big.csv (40 B): too large to put in this page" in html
    assert f"csflow runs results {_run().id} --out DIR" in html
