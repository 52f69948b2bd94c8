"""What the terminal shows of a run: the model's and the user's strings printed as
they are (rich would read ``[tinytex]`` as markup and drop it), and a CSV too wide
for the terminal shown as its first columns with a note. A real rich Console."""

from __future__ import annotations

from rich.console import Console

from csflow.cli.display import show_errors_warnings, show_outputs, show_run
from csflow.sdk.core.run import Run

BRACKETED = "run: pypandoc needs pdflatex: pip install pypandoc[tinytex] or [bold]texlive[/]"


def _failed_run(**fields) -> Run:
    return Run(
        id="0b7f3a5e-9a43-4b3e-8f0e-1d2c3b4a5f60",
        owner="o",
        title="t",
        tag="x",
        status="FAIL",
        **fields,
    )


def _console(width: int = 200) -> Console:
    return Console(record=True, width=width, color_system=None)


def test_a_reason_and_step_messages_print_intact():
    run = _failed_run(
        reason=BRACKETED,
        model_version="taxbrain [dev]",
        steps={"run": {"phase": "Failed", "message": BRACKETED.removeprefix("run: ")}},
    )
    console = _console()
    show_run(console, run)
    text = console.export_text()
    assert f"reason: {BRACKETED}" in text
    assert "model version: taxbrain [dev]" in text
    assert "pip install pypandoc[tinytex]" in text.split("Steps", 1)[1]  # its table too


def test_titles_cells_and_errors_print_intact():
    outputs = {
        "renderable": [{"media_type": "Markdown", "title": "Notes [draft]", "data": "x"}],
        "downloadable": [
            {"media_type": "CSV", "title": "Table [a]", "data": "name,v\n[row],1\n"},
        ],
    }
    console = _console()
    show_outputs(console, outputs)
    show_errors_warnings(console, {"Policy": {"errors": {"STD[0]": ["must be >= [0]"]}}})
    text = console.export_text()
    for fragment in ("Notes [draft]", "Table [a]", "[row]", "STD[0]", "must be >= [0]"):
        assert fragment in text, fragment


def test_a_wide_csv_shows_its_first_columns_and_says_where_the_rest_is():
    header = ",".join(f"year_{2024 + i}" for i in range(40))
    values = ",".join(str(1000 * i) for i in range(40))
    outputs = {
        "renderable": [],
        "downloadable": [
            {"media_type": "CSV", "title": "Liabilities", "data": f"{header}\n{values}\n"}
        ],
    }
    console = _console(width=80)
    show_outputs(console, outputs, "job-1")
    text = console.export_text()
    assert "year_2024" in text and "year_2063" not in text
    assert (
        "Liabilities: 6 of 40 columns shown; all of them: csflow runs results job-1 --out DIR"
        in (" ".join(text.split()))
    )
    assert "5,000.00" in text  # the cells that are shown are readable


def test_progress_lines_step_names_and_paths_print_intact():
    """What rich prints while a run goes: the build's lines (a git ref, a package
    with extras), a loop child's name (its item, a list: ``[a b]``), its message."""
    from csflow.cli.display import StepProgress, runs_table

    console = _console()
    with StepProgress(console) as progress:
        progress.message("cloning https://example.org/m.git at [main]")
        progress.event("sweep(0:[a b])", "Running", {})
        progress.event("sweep(0:[a b])", "Failed", {"message": "pip install pypandoc[tinytex]"})
        progress.event("report[x]", "Omitted", {})
    run = _failed_run(
        results_uri="file:///tmp/[results]",
        steps={"sweep(0:[a b])": {"phase": "Failed"}},
    )
    show_run(console, run)
    console.print(runs_table([run]))
    text = console.export_text()
    for fragment in (
        "environment: cloning https://example.org/m.git at [main]",
        "sweep(0:[a b]): failed - pip install pypandoc[tinytex]",
        "report[x]: omitted",
        "results: file:///tmp/[results]",
    ):
        assert fragment in text, fragment
    assert text.split("Steps", 1)[1].count("sweep(0:[a b])") == 1  # its row
