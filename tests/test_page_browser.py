"""The results page in a real browser: Debian's Chromium, driven by Playwright,
shows the Tax-Cruncher example's page (a real run on the embedded engine) with
no console error, its bokeh chart drawn and its tables' numbers; a screenshot is
kept under tests/artifacts/ (git-ignored).

Playwright's own browser downloads are never used: the browser is
/usr/bin/chromium (``apt-get install chromium``; scripts/test and CI install it),
and the test skips, saying so, only where it is missing."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import bokeh
import pytest

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parent / "artifacts"
# Flags that work as root in a container without a GPU; nothing is fetched.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Every canvas of each chart, looked for inside BokehJS's shadow roots, with how
# many of its pixels are not blank (transparent or white).
_CHART_PIXELS = """
() => [...document.querySelectorAll(".chart")].map((chart) => {
  const canvases = [];
  const walk = (root) => {
    for (const node of root.querySelectorAll("*")) {
      if (node.tagName === "CANVAS") canvases.push(node);
      if (node.shadowRoot) walk(node.shadowRoot);
    }
  };
  walk(chart);
  return canvases.map((canvas) => {
    if (!canvas.width || !canvas.height) return 0;
    const pixels = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let drawn = 0;
    for (let i = 0; i < pixels.length; i += 4) {
      const white = pixels[i] > 250 && pixels[i + 1] > 250 && pixels[i + 2] > 250;
      if (pixels[i + 3] > 0 && !white) drawn++;
    }
    return drawn;
  });
})
"""


@pytest.fixture(scope="module")
def chromium():
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install -y chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, timeout=60_000
        )
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def tax_run(tax_home):
    """One real Tax-Cruncher run (its record, inputs and outputs) for the module."""
    from paths import REPO, TAX_INPUTS

    from csflow.sdk.client import Client

    client = Client(home=tax_home, config_dirs=[REPO / "config"])
    run = client.simulate("PSLmodels/Tax-Cruncher", TAX_INPUTS.read_text())
    assert run.status == "SUCCESS", run.reason
    return client, run


def _show(chromium, html: str, path: Path):
    """Open the page in a fresh context; return it with its console errors and
    warnings (CSP violations are console errors too)."""
    path.write_text(html)
    context = chromium.new_context(viewport={"width": 1000, "height": 800})
    page = context.new_page()
    errors: list[str] = []
    warnings: list[str] = []
    page.on(
        "console",
        lambda m: (
            errors.append(m.text)
            if m.type == "error"
            else warnings.append(m.text)
            if m.type == "warning"
            else None
        ),
    )
    page.on("pageerror", lambda exc: errors.append(f"page error: {exc}"))
    page.goto(path.as_uri(), wait_until="load")
    return page, errors, warnings


def _wait_for_charts(page, count: int) -> list[list[int]]:
    page.wait_for_function(
        f"() => ({_CHART_PIXELS})().filter((c) => c.some((n) => n > 500)).length === {count}",
        timeout=30_000,
    )
    return page.evaluate(_CHART_PIXELS)


def test_the_tax_cruncher_page_in_chromium(chromium, tax_run, tmp_path, capsys):
    client, run = tax_run
    page, errors, _ = _show(chromium, client.page(run.id), tmp_path / "page.html")
    pixels = _wait_for_charts(page, 1)
    assert len(pixels) == 1 and max(pixels[0]) > 500, pixels
    # The tables, re-rendered from the model's HTML: income tax under current law
    # and under the reform (the numbers test_tax_cruncher.py checks in the CSV).
    basic = page.locator("section.output", has=page.locator("h3", has_text="Basic Liabilities"))
    row = basic.locator("tr", has=page.locator("td", has_text="Individual Income Tax"))
    assert row.locator("td").all_inner_texts()[1:3] == ["8,032.00", "6,736.00"]
    assert page.locator("h1").inner_text().startswith("PSLmodels/Tax-Cruncher")
    assert page.locator("td", has_text="MARS=mjoint, year=2024: 40000").count() == 1
    assert page.locator("a[download='Basic Liabilities.csv']").count() == 1
    ARTIFACTS.mkdir(exist_ok=True)
    shot = ARTIFACTS / "runs-open.png"
    page.screenshot(path=str(shot), full_page=True)
    with capsys.disabled():
        print(f"\nscreenshot of the results page: {shot}")
    page.context.close()
    assert errors == []


def test_bokeh_version_rule_in_chromium(chromium, tax_run, tmp_path):
    """Same major.minor, another patch: BokehJS warns and draws. Another minor: the
    page shows the note, and BokehJS is never asked."""
    from csflow.sdk.views.page import run_page

    client, run = tax_run
    outputs = client.results(run.id)
    chart = next(o for o in outputs["renderable"] if o["media_type"] == "bokeh")
    major, minor, _ = bokeh.__version__.split(".", 2)
    patch = copy.deepcopy(chart)
    patch["data"]["doc"]["version"] = f"{major}.{minor}.99"
    other = copy.deepcopy(chart)
    other["data"]["doc"]["version"] = f"{major}.{int(minor) + 1}.0"
    html = run_page(run, None, {"renderable": [patch, other], "downloadable": []})
    page, errors, warnings = _show(chromium, html, tmp_path / "versions.html")
    pixels = _wait_for_charts(page, 1)
    assert len(pixels) == 1 and max(pixels[0]) > 500
    assert any("version mismatch" in w and f"{major}.{minor}.99" in w for w in warnings), warnings
    note = f"this chart was made with bokeh {major}.{int(minor) + 1}.0; csflow serves BokehJS"
    assert page.locator("p.note", has_text=note).count() == 1
    page.context.close()
    assert errors == []


def test_a_charts_own_javascript_never_runs(chromium, tmp_path):
    """A json_item may carry code (CustomJS, here a tick formatter BokehJS runs while
    drawing); the page's Content-Security-Policy has no 'unsafe-eval', so it never
    runs and the page says why."""
    from bokeh.embed import json_item
    from bokeh.models import CustomJSTickFormatter
    from bokeh.plotting import figure

    from csflow.sdk.core.run import Run
    from csflow.sdk.views.page import run_page

    fig = figure(width=300, height=200)
    fig.line([1, 2, 3], [3, 1, 2])
    fig.xaxis.formatter = CustomJSTickFormatter(code="window.attacked = 1; return String(tick)")
    run = Run(
        id="c0ffee00-0000-4000-8000-000000000000", owner="o", title="t", tag="x", status="SUCCESS"
    )
    html = run_page(
        run, None, {"renderable": [{"media_type": "bokeh", "title": "c", "data": json_item(fig)}]}
    )
    page, _, _ = _show(chromium, html, tmp_path / "customjs.html")
    note = page.locator("p.note", has_text="bokeh CustomJS")
    note.wait_for(timeout=30_000)
    assert "which this page does not run" in note.inner_text()
    assert page.evaluate("() => window.attacked") is None
    page.context.close()


def test_artifacts_folder_is_ignored_by_git():
    git = shutil.which("git")
    if git is None:
        pytest.skip("git is not installed")
    import subprocess

    probe = ARTIFACTS / "probe.png"
    checked = subprocess.run(
        [git, "check-ignore", "-q", str(probe)], cwd=ARTIFACTS.parent, check=False
    )
    assert checked.returncode == 0, "tests/artifacts/ must be git-ignored"
