"""Bokeh charts on a results page: whether csflow can draw one, and the BokehJS
that draws it.

A ``bokeh`` output is ``bokeh.embed.json_item`` output; its ``doc.version`` is the
bokeh that made it. The page draws it with the BokehJS of the ``bokeh`` package
csflow runs with, inlined (no CDN: the page works offline). The rule:

- **same major.minor: drawn.** BokehJS compares versions exactly and, for a
  patch-level difference, only logs a warning (``Bokeh/BokehJS version mismatch``,
  ``console.warn``); bokeh's patch releases keep the document's models, so the
  chart draws (checked in Chromium by ``tests/test_page_browser.py``).
- **another minor or major, no version, not json_item output, or a model this
  BokehJS does not have (a custom extension): not drawn**, and the page says why
  ("this chart was made with bokeh X; csflow serves BokehJS Y"). Minor releases
  add and change models (3.10's documents name models 3.9 does not know), and
  BokehJS draws nothing, or half a chart, for those.

``bokeh`` is imported only here, when a page has a chart: the CLI starts without it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # (bokeh itself is imported only when a page has a chart)
    from bokeh.resources import Component

__all__ = ["Chart", "read_chart", "served_version", "bokehjs_scripts", "item_json"]

# BokehJS bundles in the order they must load (the core first).
_BUNDLES: tuple[Component, ...] = (
    "bokeh",
    "bokeh-gl",
    "bokeh-widgets",
    "bokeh-tables",
    "bokeh-mathjax",
)
_VERSION = re.compile(r"^(\d+)\.(\d+)(?:\.\d+)?")
_MATH_DELIMITERS = ("$$", "\\[", "\\(")  # bokeh's text properties read as TeX
_MAX_NAMED = 5  # models named in a note


@dataclass(frozen=True)
class Chart:
    """One bokeh output, read: ``item`` to draw (None when it cannot be drawn),
    ``note`` for the reader (why it is not drawn, or a patch-level difference),
    and the BokehJS ``bundles`` it needs."""

    item: dict[str, Any] | None
    note: str = ""
    bundles: frozenset[str] = field(default_factory=frozenset)


def served_version() -> str:
    """The bokeh (and so BokehJS) version csflow draws charts with."""
    import bokeh

    return str(bokeh.__version__)


def _major_minor(version: object) -> tuple[int, int] | None:
    match = _VERSION.match(version) if isinstance(version, str) else None
    return (int(match.group(1)), int(match.group(2))) if match else None


def read_chart(data: object) -> Chart:
    """Whether csflow can draw this ``json_item`` output, and with which bundles."""
    served = served_version()
    item: dict[str, Any] = data if isinstance(data, dict) else {}
    doc = item.get("doc")
    if not isinstance(doc, dict) or not isinstance(doc.get("roots"), list):
        return Chart(
            None, "this chart cannot be drawn: its data is not the output of bokeh.embed.json_item"
        )
    made_with = doc.get("version")
    if _major_minor(made_with) is None:
        return Chart(
            None,
            "this chart cannot be drawn: its data does not say which bokeh made it "
            f"(csflow serves BokehJS {served})",
        )
    if _major_minor(made_with) != _major_minor(served):
        major, minor = _major_minor(served) or (0, 0)
        return Chart(
            None,
            f"this chart was made with bokeh {made_with}; csflow serves BokehJS {served}, "
            f"which draws charts made with bokeh {major}.{minor}.x",
        )
    names, strings = _walk(doc)
    bundles, unknown = _bundles_for(names, strings)
    if unknown:
        listed = ", ".join(sorted(unknown)[:_MAX_NAMED]) + (", ..." if len(unknown) > 5 else "")
        return Chart(
            None,
            f"this chart cannot be drawn: it uses models BokehJS {served} does not have "
            f"({listed}; a bokeh extension?)",
        )
    note = "" if made_with == served else f"made with bokeh {made_with}, drawn by BokehJS {served}"
    return Chart(item, note, bundles)


def _walk(doc: dict[str, Any]) -> tuple[set[str], set[str]]:
    """The model names (``{"type": "object", "name": ...}``) and the strings of a
    document, walked without recursion (a model's JSON may nest deeply)."""
    names: set[str] = set()
    strings: set[str] = set()
    stack: list[Any] = [doc]
    while stack:
        value = stack.pop()
        if isinstance(value, dict):
            if value.get("type") == "object" and isinstance(value.get("name"), str):
                names.add(value["name"])
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
        elif isinstance(value, str):
            strings.add(value)
    return names, strings


def _bundles_for(names: set[str], strings: set[str]) -> tuple[frozenset[str], set[str]]:
    """The bundles a document's models need (as bokeh's own ``bundle`` decides them
    for Python objects), and the names this bokeh does not know."""
    import bokeh.models  # noqa: F401  (registers the models by name)
    import bokeh.plotting  # noqa: F401  (registers ``Figure``)
    from bokeh.model import Model
    from bokeh.models.glyphs import MathTextGlyph
    from bokeh.models.text import MathText

    known = Model.model_class_reverse_map
    bundles = {"bokeh"}
    unknown = set()
    for name in names:
        cls = known.get(name)
        if cls is None:
            unknown.add(name)
            continue
        if cls.__module__.startswith("bokeh.models.widgets"):
            bundles.add("bokeh-widgets")
        if cls.__module__.startswith("bokeh.models.widgets.tables"):
            bundles.add("bokeh-tables")
        if issubclass(cls, (MathText, MathTextGlyph)):
            bundles.add("bokeh-mathjax")
    if "webgl" in strings:  # a plot's output_backend
        bundles.add("bokeh-gl")
    if any(mark in text for text in strings for mark in _MATH_DELIMITERS):
        bundles.add("bokeh-mathjax")
    return frozenset(bundles), unknown


def bokehjs_scripts(bundles: frozenset[str]) -> list[str]:
    """The JavaScript of these BokehJS bundles, to inline in ``<script>`` elements,
    in load order."""
    from bokeh.resources import Resources

    wanted: list[Component] = [name for name in _BUNDLES if name in bundles]
    scripts = Resources(mode="inline", components=wanted).js_raw
    return [script.replace("</script", "<\\/script") for script in scripts]


def item_json(item: dict[str, Any]) -> str:
    """A json_item as text safe inside ``<script type="application/json">``: no
    ``<``, ``>`` or ``&`` can end the element or start a comment."""
    text = json.dumps(item, allow_nan=False, separators=(",", ":"))
    for raw, escaped in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        text = text.replace(raw, escaped)
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")
