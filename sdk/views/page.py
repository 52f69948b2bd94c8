"""A run's results page (``csflow runs open``): one self-contained HTML file.

``run_page(run, inputs, outputs)`` is a pure function of the run record, the
inputs it was submitted with and its outputs (``Client.results``' shape); it
fetches nothing. The page has no outside references: BokehJS, images and
downloadable files are inlined, so it opens offline and can be mailed.

Outputs are the model's, so untrusted. Nothing the model wrote reaches the page
as markup: ``table`` HTML is read into cells and written back escaped
(``core.tables``), Markdown is rendered with raw HTML off, text and titles are
escaped, images are ``data:`` URIs of the declared type, and downloads are
``application/octet-stream`` (saved, never shown). A Content-Security-Policy
lets only the page's own scripts run (by hash): no injected script, inline event
handler, ``eval`` (bokeh's ``CustomJS``) or network request does.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import html
import json
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from csflow.sdk.core.contract import Output, output_filenames
from csflow.sdk.core.run import Run
from csflow.sdk.core.status import RunStatus
from csflow.sdk.core.tables import read_table, write_html

__all__ = ["run_page", "MAX_EMBEDDED_DOWNLOADS"]

# Downloadable files are inlined up to this many bytes in all; past it, the page
# names the command that writes them (a page stays small enough to open).
MAX_EMBEDDED_DOWNLOADS = 20 * 1024 * 1024

_IMAGE_TYPES = {"PNG": "image/png", "JPEG": "image/jpeg"}
_PLAYERS = {"MP3": ("audio", "audio/mpeg"), "MP4": ("video", "video/mp4")}

_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1.5em;
color:#1d1d1f}h1{font-size:1.5em;margin:0 0 .2em}h2{font-size:1.2em;margin:1.6em 0 .5em;
border-bottom:1px solid #ddd}
h3{font-size:1.05em;margin:1.2em 0 .4em}.muted{color:#666}.note{background:#fff6dd;
border-left:4px solid #e0b000;padding:.5em .8em;margin:.5em 0}
table{border-collapse:collapse;margin:.3em 0}th,td{border:1px solid #ddd;padding:.25em .6em;
text-align:left;vertical-align:top}td{font-variant-numeric:tabular-nums}
.output table td+td{text-align:right}dl{display:grid;grid-template-columns:max-content 1fr;
gap:.2em 1em;margin:0}dt{font-weight:600}dd{margin:0}pre{background:#f6f6f6;padding:.6em;
overflow:auto;white-space:pre-wrap}.status{display:inline-block;padding:.05em .6em;
border-radius:1em;color:#fff;background:#888}.status-SUCCESS{background:#1a7f37}.status-FAIL,.status-INTERRUPTED,
.status-INVALID{background:#c62828}img{max-width:100%}.output{margin-bottom:1.5em}
"""

# Draws each chart into its element; a chart BokehJS refuses becomes a note.
_EMBED_SCRIPT = """
for (const data of document.querySelectorAll("script[data-chart]")) {
  const target = data.getAttribute("data-chart");
  const say = (why) => {
    const note = document.createElement("p");
    note.className = "note";
    note.textContent = "this chart could not be drawn: " + why;
    document.getElementById(target).replaceChildren(note);
  };
  // EvalError: the chart carries code (CustomJS), which the page's policy refuses.
  const why = (error) => error instanceof EvalError
    ? "it carries JavaScript of its own (bokeh CustomJS), which this page does not run"
    : String(error);
  try {
    Promise.resolve(Bokeh.embed.embed_item(JSON.parse(data.textContent), target))
      .catch((error) => say(why(error)));
  } catch (error) {
    say(why(error));
  }
}
"""


def run_page(
    run: Run,
    inputs: Mapping[str, Any] | None,
    outputs: Mapping[str, Any] | None,
    inputs_note: str = "",
) -> str:
    """The HTML page of ``run``. ``inputs`` None: a note says the job store no
    longer has them (``inputs_note``, when given, says it instead). ``outputs`` is
    read only for a ``SUCCESS`` run; a failed or invalid run's page shows its
    status, reason, errors and inputs."""
    page = _Page()
    title = f"{run.model} · run {run.id}"
    body = [
        f"<h1>{_e(run.model)} <span class='status status-{_e(run.status)}'>{_e(run.status)}"
        "</span></h1>",
        f"<p class='muted'>run {_e(run.id)} · {_e(run.kind)}</p>",
        _summary(run),
        _errors_warnings(run.errors_warnings),
        _steps(run.steps),
        _inputs(inputs, inputs_note),
    ]
    if run.status == RunStatus.SUCCESS and outputs is not None:
        body.append(_outputs(page, run, outputs))
    if page.charts:
        page.add_script(_EMBED_SCRIPT)
    return page.document(title, "\n".join(part for part in body if part))


class _Page:
    """What the page's parts share: its charts (and so the BokehJS it inlines) and
    its scripts, whose hashes the Content-Security-Policy allows."""

    def __init__(self) -> None:
        self.charts = 0
        self.bundles: set[str] = set()
        self.scripts: list[str] = []

    def add_script(self, script: str) -> None:
        self.scripts.append(script)

    def document(self, title: str, body: str) -> str:
        from csflow.sdk.views.charts import bokehjs_scripts

        scripts = bokehjs_scripts(frozenset(self.bundles)) if self.charts else []
        scripts += self.scripts
        hashes = " ".join(f"'sha256-{_sha256(script)}'" for script in scripts) or "'none'"
        policy = (
            f"default-src 'none'; script-src {hashes}; style-src 'unsafe-inline'; "
            "img-src data: blob:; media-src data:; font-src data:; base-uri 'none'; "
            "form-action 'none'"
        )
        tags = "\n".join(f"<script>{script}</script>" for script in scripts)
        return (
            "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>\n"
            f'<meta http-equiv="Content-Security-Policy" content="{policy}">\n'
            "<meta name='viewport' content='width=device-width, initial-scale=1'>\n"
            f"<title>{_e(title)}</title><style>{_STYLE}</style></head>\n"
            f"<body>\n{body}\n{tags}\n</body></html>\n"
        )


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _sha256(script: str) -> str:
    return base64.b64encode(hashlib.sha256(script.encode()).digest()).decode()


def _when(timestamp: float | None) -> str:
    if not timestamp:
        return "—"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _seconds(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest} s" if minutes < 60 else f"{minutes // 60} h {minutes % 60} min"


def _summary(run: Run) -> str:
    rows = [
        ("model", run.model),
        ("tag", run.tag),
        ("model version", run.model_version or "—"),
        ("status", run.status),
        ("reason", run.reason or "—"),
        ("created", _when(run.created)),
        ("started", _when(run.started)),
        ("finished", _when(run.finished)),
        ("duration", _seconds(run.duration)),
    ]
    cells = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in rows)
    return f"<h2>Run</h2><dl>{cells}</dl>"


def _errors_warnings(errors_warnings: Mapping[str, Any]) -> str:
    items = []
    for section, found in (errors_warnings or {}).items():
        if not isinstance(found, Mapping):
            continue
        for kind in ("errors", "warnings"):
            found_kind = found.get(kind)
            for param, messages in found_kind.items() if isinstance(found_kind, Mapping) else []:
                for message in messages if isinstance(messages, list) else [messages]:
                    items.append(
                        f"<li><b>{_e(kind[:-1])}</b> in {_e(section)}, {_e(param)}: "
                        f"{_e(message)}</li>"
                    )
    return f"<h2>Errors and warnings</h2><ul>{''.join(items)}</ul>" if items else ""


def _steps(steps: Mapping[str, Mapping[str, Any]]) -> str:
    if not steps:
        return ""
    rows = []
    for name, step in steps.items():
        seconds = step.get("seconds")
        cells = [
            name,
            step.get("phase", ""),
            _when(step.get("started")),
            _when(step.get("finished")),
            _seconds(seconds if isinstance(seconds, (int, float)) else None),
            step.get("attempts", ""),
            step.get("message", ""),
        ]
        rows.append("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in cells) + "</tr>")
    head = "".join(
        f"<th>{h}</th>"
        for h in ("step", "phase", "started", "finished", "took", "attempts", "message")
    )
    return (
        f"<h2>Steps</h2><table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )


def _value_objects(given: Any) -> str:
    """``[{"MARS": "mjoint", "year": 2024, "value": 40000}]`` as ``MARS=mjoint,
    year=2024: 40000``; anything else as compact JSON."""
    objects = given if isinstance(given, list) else [given]
    parts = []
    for item in objects:
        if isinstance(item, Mapping) and "value" in item:
            labels = ", ".join(f"{k}={_json(v)}" for k, v in item.items() if k != "value")
            value = _json(item["value"])
            parts.append(f"{labels}: {value}" if labels else value)
        else:
            parts.append(_json(item))
    return "; ".join(parts)


def _json(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(", ", ": "))


def _inputs(inputs: Mapping[str, Any] | None, note: str) -> str:
    if inputs is None:
        text = note or "The job store no longer has this run's inputs."
        return f"<h2>Inputs</h2><p class='note'>{_e(text)}</p>"
    meta = inputs.get("meta_param_dict")
    adjustment = inputs.get("adjustment")
    rows = [
        ("meta parameters", k, _value_objects(v))
        for k, v in (meta.items() if isinstance(meta, Mapping) else [])
    ]
    for section, params in adjustment.items() if isinstance(adjustment, Mapping) else []:
        for name, given in (params or {}).items() if isinstance(params, Mapping) else []:
            rows.append((section, name, _value_objects(given)))
    table = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows)
    raw = _e(json.dumps(dict(inputs), indent=2))
    return (
        "<h2>Inputs</h2><table><thead><tr><th>section</th><th>parameter</th><th>value</th></tr>"
        f"</thead><tbody>{table}</tbody></table>"
        f"<details><summary>as JSON</summary><pre>{raw}</pre></details>"
    )


def _valid(items: Any) -> tuple[list[Output], int]:
    """The outputs that hold to the contract, and how many did not."""
    valid, broken = [], 0
    for item in items if isinstance(items, list) else []:
        try:
            valid.append(Output.model_validate(item))
        except ValidationError:
            broken += 1
    return valid, broken


def _outputs(page: _Page, run: Run, outputs: Mapping[str, Any]) -> str:
    renderable, broken = _valid(outputs.get("renderable"))
    downloadable, broken_downloads = _valid(outputs.get("downloadable"))
    parts = ["<h2>Outputs</h2>"]
    for output in renderable:
        title = f"<h3>{_e(output.title)}</h3>" if output.title else ""
        parts.append(f"<section class='output'>{title}{_renderable(page, output)}</section>")
    if not renderable:
        parts.append("<p class='muted'>This run has no outputs to show.</p>")
    if broken or broken_downloads:
        parts.append(
            f"<p class='note'>{broken + broken_downloads} outputs are not shown: "
            "they do not hold to the model contract.</p>"
        )
    parts.append(_downloads(run, downloadable))
    return "\n".join(parts)


def _renderable(page: _Page, output: Output) -> str:
    kind = output.media_type
    if kind in ("table", "CSV"):
        grid = read_table(kind, output.data)
        if grid is None or not (grid.header or grid.rows):
            return "<p class='note'>This table could not be read.</p>"
        return write_html(grid)
    if kind == "bokeh":
        return _chart(page, output.data)
    if kind == "Markdown":
        from markdown_it import MarkdownIt

        # commonmark with raw HTML off: a model's <script> is shown as text.
        return MarkdownIt("commonmark", {"html": False}).render(str(output.data))
    if kind == "Text":
        return f"<pre>{_e(output.data)}</pre>"
    if kind in _IMAGE_TYPES:
        src = f"data:{_IMAGE_TYPES[kind]};base64,{_base64(output)}"
        return f"<img alt='{_e(output.title)}' src='{src}'>"
    if kind in _PLAYERS:
        element, mime = _PLAYERS[kind]
        return f"<{element} controls src='data:{mime};base64,{_base64(output)}'></{element}>"
    return f"<p class='muted'>A {_e(kind)} file: see the downloads.</p>"


def _base64(output: Output) -> str:
    """Binary data as strict base64 (the contract decodes leniently, as C/S did)."""
    try:
        data = base64.b64decode(output.data)
    except (binascii.Error, ValueError):
        data = b""
    return base64.b64encode(data).decode("ascii")


def _chart(page: _Page, data: Any) -> str:
    from csflow.sdk.views.charts import item_json, read_chart

    chart = read_chart(data)
    if chart.item is None:
        return f"<p class='note'>{_e(chart.note)}</p>"
    page.charts += 1
    page.bundles |= chart.bundles
    target = f"chart-{page.charts}"
    note = f"<p class='muted'>{_e(chart.note)}</p>" if chart.note else ""
    return (
        f"<div class='chart' id='{target}'></div>{note}"
        f"<script type='application/json' data-chart='{target}'>{item_json(chart.item)}</script>"
    )


def _downloads(run: Run, downloadable: list[Output]) -> str:
    if not downloadable:
        return ""
    budget = MAX_EMBEDDED_DOWNLOADS
    items = []
    for output, name in zip(downloadable, output_filenames(downloadable), strict=True):
        content = output.content()
        size = _size(len(content))
        if len(content) > budget:
            items.append(
                f"<li>{_e(name)} ({size}): too large to put in this page; "
                f"<code>csflow runs results {_e(run.id)} --out DIR</code> writes it</li>"
            )
            continue
        budget -= len(content)
        href = "data:application/octet-stream;base64," + base64.b64encode(content).decode()
        items.append(f"<li><a download='{_e(name)}' href='{href}'>{_e(name)}</a> ({size})</li>")
    return f"<h2>Downloads</h2><ul>{''.join(items)}</ul>"


def _size(count: int) -> str:
    if count < 1024:
        return f"{count} B"
    if count < 1024 * 1024:
        return f"{count / 1024:.1f} KB"
    return f"{count / 1024 / 1024:.1f} MB"
