"""``csflow lint FILE|-``: check Argo manifests offline, as a cluster would.

Every document is checked against its schema: Argo kinds against Argo's CRDs
with every object closed, core Kubernetes kinds with kubernetes-validate (when
installed: ``pip install 'csflow[lint]'``; else a note says they were not
checked). The CRDs come from where they are published, never from a copy in
csflow: a folder of Argo's CRD files (``--crds DIR``), the cluster of a
kubeconfig (``--kubeconfig PATH [--context NAME]``), else
``$CSFLOW_ARGO_SCHEMA_DIR``; with none of these and Argo documents to check,
one line says what to give (exit 2). Then Argo kinds get the semantic checks
``argo lint`` makes (``sdk/argo/lint.py``, no schema needed; ``--no-schema``
runs these alone). A Workflow that refers to a WorkflowTemplate is checked
against the template if it is in the same input, else against csflow's own
flows. One line per finding; exit 2 if there is any.
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
    crds: Path | None = typer.Option(
        None,
        "--crds",
        help="A folder with Argo's CRDs (argoproj.io_workflows.yaml, "
        "argoproj.io_workflowtemplates.yaml), as Argo publishes them in manifests/base/crds/full.",
    ),
    kubeconfig: Path | None = typer.Option(
        None, "--kubeconfig", help="Read Argo's CRDs from this kubeconfig's cluster."
    ),
    context: str | None = typer.Option(
        None, "--context", help="The kubeconfig context (default: its current one)."
    ),
) -> None:
    """Lint Argo Workflows manifests (schema and semantics) without running anything."""
    from csflow.sdk.argo import lint
    from csflow.sdk.argo import schema as argo_schema
    from csflow.sdk.ops import manifests

    source = "stdin" if file == "-" else file
    docs = argo_schema.load_documents(_read(file), source)
    if not docs:
        raise fail(f"{file}: no documents", EXIT_BAD_INPUT)
    findings: list[argo_schema.Finding] = []
    notes: list[str] = []
    if schema:
        crd_source = argo_schema.open_schema(crds, kubeconfig, context)
        if crd_source is None and any(
            argo_schema.is_argo_document(d) and d.get("kind") in argo_schema.ARGO_KINDS
            for d in docs
        ):
            raise fail(
                f"{source}: no Argo CRDs to check against: {argo_schema.GIVE_CRDS} "
                "(or --no-schema for the semantic checks alone)",
                EXIT_BAD_INPUT,
            )
        findings, notes = argo_schema.check_documents(docs, crd_source)
    own_flows, _ = manifests.flow_templates()
    findings.extend(lint.lint_documents(docs, library=lint.library_of(own_flows)))
    for finding in findings:
        console.print(f"{source}: {finding}", highlight=False, soft_wrap=True, markup=False)
    for note in notes:
        err_console.print(f"note: {note}", highlight=False, soft_wrap=True, markup=False)
    if findings:
        raise typer.Exit(EXIT_BAD_INPUT)
    err_console.print(
        f"{source}: {len(docs)} document(s), no problems found",
        highlight=False,
        soft_wrap=True,
        markup=False,
    )
