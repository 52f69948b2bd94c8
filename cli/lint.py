"""``csflow lint FILE|-``: check Argo manifests offline, as a cluster would.

Every document is checked against its schema (Argo kinds against the v4.0.5
CRDs with every object closed, core Kubernetes kinds with
kubernetes-validate), then Argo kinds get the semantic checks ``argo lint``
makes (``sdk/argo/lint.py``). A Workflow that refers to a WorkflowTemplate is
checked against the template if it is in the same input, else against
csflow's own flows. One line per finding; exit 2 if there is any.
"""

from __future__ import annotations

from pathlib import Path

import typer

from csflow.cli.common import EXIT_BAD_INPUT, console, err_console, fail, handle_errors


def _read(path: str) -> str:
    if path == "-":
        return typer.get_text_stream("stdin").read()
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise fail(f"cannot read {path}: {exc.strerror or exc}", EXIT_BAD_INPUT) from None


@handle_errors
def command(
    file: str = typer.Argument(..., help="A YAML or JSON file of manifests, or '-' for stdin."),
    schema: bool = typer.Option(
        True, "--schema/--no-schema", help="Also check each document's schema."
    ),
) -> None:
    """Lint Argo Workflows manifests (schema and semantics) without a cluster."""
    from csflow.sdk.argo import lint, schema
    from csflow.sdk.ops import manifests

    docs = schema.load_documents(_read(file), "stdin" if file == "-" else file)
    if not docs:
        raise fail(f"{file}: no documents", EXIT_BAD_INPUT)
    own_flows, _ = manifests.flow_templates()
    findings = []
    for doc in docs:
        if schema:
            findings.extend(schema.schema_findings(doc))
    findings.extend(lint.lint_documents(docs, library=lint.library_of(own_flows)))
    source = "stdin" if file == "-" else file
    for finding in findings:
        console.print(f"{source}: {finding}", highlight=False, soft_wrap=True, markup=False)
    if findings:
        raise typer.Exit(EXIT_BAD_INPUT)
    err_console.print(f"{source}: {len(docs)} document(s), no problems found", highlight=False)
