"""``csflow models``: published models, their versions and tags, their inputs.

- ``list``; ``show OWNER/TITLE``: versions, tags, and when and from what each
  version was built;
- ``inputs OWNER/TITLE [--meta year=2024] [--tag T]``: ``get_version`` and
  ``get_inputs``, from the inputs cache for the default meta parameters,
  computed in the model's environment otherwise;
- ``promote OWNER/TITLE TAG --to latest``; ``rollback OWNER/TITLE``;
- ``-n OWNER/TITLE secrets ...``: the model's secrets (``cli/secrets.py``).
"""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from csflow.cli.common import OutputFormat, OutputOption, client, console, emit, handle_errors
from csflow.cli.display import when
from csflow.sdk.core import jsonio, names
from csflow.sdk.core.contract import InputsError, normalize_meta_param_dict
from csflow.sdk.core.errors import BadInput

# Where the group's -n puts the model for subgroups (cli/secrets.py reads it).
MODEL_KEY = "csflow.model"

app = typer.Typer(
    help="Published models: versions, tags (latest, staging), inputs, secrets.",
    no_args_is_help=True,
)


@app.callback()
def models_options(
    ctx: typer.Context,
    name: str | None = typer.Option(
        None, "--name", "-n", metavar="OWNER/TITLE", help="The model, for `secrets`."
    ),
) -> None:
    if name is not None:
        ctx.meta[MODEL_KEY] = name


try:  # the secrets sub-group lives with the data plane (cli/secrets.py)
    from csflow.cli.secrets import model_app as _secrets_app

    app.add_typer(_secrets_app, name="secrets")
except ModuleNotFoundError as _exc:
    if _exc.name != "csflow.cli.secrets":
        raise


def _tag_text(tag: str | None) -> str:
    return tag or "-"


@app.command("list")
@handle_errors
def list_models(output: OutputFormat = OutputOption) -> None:
    """Published models and where latest and staging point."""
    rows = client().models()
    if output != OutputFormat.table:
        emit(rows, output)
        return
    table = Table(title="Models", header_style="bold")
    for column in ("model", "latest", "staging", "versions", "updated"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            escape(row["model"]),
            _tag_text(row["latest"]),
            _tag_text(row["staging"]),
            str(row["versions"]),
            when(row["updated"]),
        )
    console.print(table)


def _origin_text(origin: dict[str, Any]) -> str:
    if origin.get("git"):
        commit = (origin.get("commit") or "")[:12]
        return f"{origin['git']} @ {origin.get('ref')}" + (f" ({commit})" if commit else "")
    if origin.get("path"):
        commit = origin.get("commit")
        suffix = f" ({commit[:12]}{', modified' if origin.get('dirty') else ''})" if commit else ""
        return origin["path"] + suffix
    return origin.get("config", "") or "-"


def _tests_text(tests: dict[str, Any] | None) -> str:
    if not tests:
        return "not tested"
    return f"{tests['passed']}/{tests['total']} passed"


@app.command()
@handle_errors
def show(
    model: str = typer.Argument(..., metavar="OWNER/TITLE"), output: OutputFormat = OutputOption
) -> None:
    """A model's versions: tags, when and from what each was built, its tests."""
    info = client().model(model)
    if output != OutputFormat.table:
        emit(info, output)
        return
    tags = ", ".join(f"{k} → {v}" for k, v in sorted(info["tags"].items())) or "none"
    console.print(f"[bold]{escape(info['model'])}[/]: {escape(tags)}", highlight=False)
    table = Table(title="Versions (newest first)", header_style="bold")
    for column in ("version", "tags", "built", "from", "tests"):
        table.add_column(column, overflow="fold")
    for version in info["versions"]:
        build = [
            f"{version['build_seconds']:.1f}s"
            if version.get("build_seconds") is not None
            else None,
            f"Python {version['python']}" if version.get("python") else None,
            f"{version['requirements']} packages"
            if version.get("requirements") is not None
            else None,
        ]
        table.add_row(
            version["tag"],
            ", ".join(version["tags"]),
            when(version.get("built")) + "\n" + ", ".join(b for b in build if b),
            escape(_origin_text(version.get("origin") or {}))
            + "\n"
            + escape(version.get("model_version") or ""),
            _tests_text(version.get("tests")),
        )
    console.print(table)
    if info["history"]:
        history = Table(title="Tag history (latest 20)", header_style="bold")
        for column in ("when", "tag", "from", "to", "by"):
            history.add_column(column)
        for entry in reversed(info["history"]):
            by = entry.get("action", "move") + (f" {entry['run']}" if entry.get("run") else "")
            history.add_row(
                when(entry["at"]), entry["tag"], _tag_text(entry.get("from")), entry["to"], by
            )
        console.print(history)


def parse_meta(pairs: list[str]) -> dict[str, Any]:
    """``year=2024`` -> ``{"year": 2024}``: values are JSON when they parse as
    JSON (numbers, booleans), text otherwise; strict JSON (``sdk/core/jsonio.py``:
    ``year=NaN`` or ``year=1e400`` is refused, not read as a float), and each
    name once."""
    meta: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        name = key.strip()
        if not sep or not name:
            raise BadInput(f"--meta {jsonio.excerpt(pair)}: expected NAME=VALUE, e.g. year=2024")
        if name in meta:
            raise BadInput(f"--meta {jsonio.excerpt(name)} is given twice")
        what = f"--meta {jsonio.excerpt(name)}"
        try:
            value = jsonio.loads(raw, what)
        except jsonio.NotJSON:  # text; JSON the rules refuse stays an error
            value = raw
        try:  # a value, or the ParamTools form [{"value": ...}]
            normalize_meta_param_dict({name: value})
        except InputsError as exc:
            raise BadInput(f"{what}: {exc.problem}") from None
        meta[name] = value
    return meta


@app.command()
@handle_errors
def inputs(
    model: str = typer.Argument(..., metavar="OWNER/TITLE"),
    meta: list[str] = typer.Option(
        [],
        "--meta",
        "-m",
        metavar="NAME=VALUE",
        help="A meta parameter (repeat for more), e.g. year=2024.",
    ),
    tag: str | None = typer.Option(None, "--tag", "-t", help="Version or tag (default: latest)."),
    output: OutputFormat = OutputOption,
) -> None:
    """A model's inputs (get_version, get_inputs): cached for the defaults, computed otherwise."""
    result = client().inputs(model, parse_meta(meta), tag=tag)
    if output != OutputFormat.table:
        emit(result, output)
        return
    source = (
        "inputs cache"
        if result["source"] == "cache"
        else f"computed in {result.get('seconds', 0):.2f}s"
    )
    console.print(
        f"[bold]{escape(model)}[/] at {escape(result['tag'])}: {escape(result['version'])} "
        f"({source})",
        highlight=False,
    )
    specs = result["inputs"]
    table = Table(title="Meta parameters", header_style="bold")
    for column in ("name", "title", "value"):
        table.add_column(column)
    asked = result.get("meta_param_dict") or {}
    for name, spec in specs.get("meta_parameters", {}).items():
        if name == "schema" or not isinstance(spec, dict):
            continue
        value = asked.get(name, spec.get("value"))
        if isinstance(value, list) and value and isinstance(value[0], dict):
            value = value[0].get("value")
        table.add_row(
            escape(str(name)), escape(str(spec.get("title", ""))), escape(json.dumps(value))
        )
    console.print(table)
    sections = Table(title="Model parameters", header_style="bold")
    for column in ("section", "parameters"):
        sections.add_column(column)
    for section, params in specs.get("model_parameters", {}).items():
        sections.add_row(escape(section), str(len([p for p in params if p != "schema"])))
    console.print(sections)
    console.print("the full inputs: add -o json", style="dim")


@app.command()
@handle_errors
def promote(
    model: str = typer.Argument(..., metavar="OWNER/TITLE"),
    tag: str = typer.Argument(..., help="A version (content tag) or a tag name (staging)."),
    to: str = typer.Option("latest", "--to", help="The tag to move: latest or staging."),
    output: OutputFormat = OutputOption,
) -> None:
    """Point a tag (latest by default) at a version."""
    names.check_tag(tag)
    _moved(client().promote(model, tag, to=to), output)


@app.command()
@handle_errors
def rollback(
    model: str = typer.Argument(..., metavar="OWNER/TITLE"),
    tag: str = typer.Option("latest", "--tag", help="The tag to move back: latest or staging."),
    output: OutputFormat = OutputOption,
) -> None:
    """Move latest (or --tag) back to the version it pointed at before."""
    _moved(client().rollback(model, tag), output)


def _moved(result: dict[str, Any], output: OutputFormat) -> None:
    if output != OutputFormat.table:
        emit(result, output)
        return
    if result["from"] == result["to"]:
        console.print(
            f"{result['model']}: {result['tag']} already points at {result['to']}",
            highlight=False,
            markup=False,
        )
    else:
        console.print(
            f"{result['model']}: {result['tag']} {_tag_text(result['from'])} → {result['to']}",
            highlight=False,
            markup=False,
        )
    if result.get("webapp") not in (None, "not configured"):
        console.print(f"webapp: {result['webapp']}", highlight=False, markup=False)
