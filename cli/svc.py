"""``csflow svc``: the cluster side of csflow (Argo Workflows on Kubernetes).

``csflow svc config -o -`` prints every manifest an operator applies with
``kubectl apply -f -``: the namespace, RBAC, the workflow controller and its
ConfigMap, the Argo Server, Redis with its ACL users, NetworkPolicies, and the
flows' WorkflowTemplates built fresh from ``flows/``. The static parts live in
``cluster/argo/`` (a kustomize base, shipped in the package too). Argo's CRDs
come from Argo's release; before printing, every document is linted, and
checked against its schema when there is one at hand: Argo's CRDs from
``--crds DIR``, ``--kubeconfig PATH`` (the cluster about to get them) or
``$CSFLOW_ARGO_SCHEMA_DIR``, core kinds with kubernetes-validate if installed.
What could not be checked is said in a note (the cluster checks again on apply).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from csflow.cli.common import err_console, fail, handle_errors, settings

app = typer.Typer(
    help="The cluster: manifests for Argo Workflows, service secrets.", no_args_is_help=True
)


@app.command("config")
@handle_errors
def config(
    output: str = typer.Option("-", "--output", "-o", help="File to write, or '-' for stdout."),
    image: str | None = typer.Option(
        None, "--image", help="The csflow platform image (CSFLOW_IMAGE)."
    ),
    artifact_bucket: str | None = typer.Option(
        None,
        "--artifact-bucket",
        help="GCS bucket for Argo's artifacts (default: csflow-artifacts).",
    ),
    artifact_key_secret: str | None = typer.Option(
        None,
        "--artifact-key-secret",
        help="A Secret with a GCS key (key serviceAccountKey) for Argo's artifacts, instead "
        "of the pods' own identity. Argo v4.0.5 logs that key (GHSA-7vf8-2cr6-54mf).",
    ),
    check: bool = typer.Option(True, "--check/--no-check", help="Validate every document first."),
    crds: Path | None = typer.Option(
        None, "--crds", help="Check against Argo's CRDs in this folder (manifests/base/crds/full)."
    ),
    kubeconfig: Path | None = typer.Option(
        None, "--kubeconfig", help="Check against the CRDs of this kubeconfig's cluster."
    ),
    context: str | None = typer.Option(None, "--context", help="The kubeconfig context."),
) -> None:
    """Print every manifest for `kubectl apply -f -`."""
    from csflow.runtime import step_env
    from csflow.sdk.argo import lint, schema
    from csflow.sdk.ops import manifests

    config = settings(image=image)
    # The admission policy admits only Workflows whose images come from these.
    platform_env = {step_env.IMAGE_REGISTRIES.name: config.registry.rstrip("/")}
    if config.storage_url.startswith("gs://"):
        platform_env["CSFLOW_STORAGE_URL"] = config.storage_url
    if config.webapp_url:
        platform_env["CSFLOW_WEBAPP_URL"] = config.webapp_url
    if config.model_registry_url:
        platform_env["CSFLOW_MODEL_REGISTRY_URL"] = config.model_registry_url
    docs, missing = manifests.service_manifests(
        config.image, artifact_bucket, platform_env, artifact_key_secret
    )
    for name in missing:
        err_console.print(
            f"note: flow {name!r} has no module yet; its WorkflowTemplate is left out",
            highlight=False,
        )
    if check:
        findings, notes = schema.check_documents(
            docs, schema.open_schema(crds, kubeconfig, context)
        )
        findings += lint.lint_documents(docs)
        for note in notes:
            err_console.print(f"note: {note}", highlight=False, soft_wrap=True, markup=False)
        if findings:
            for finding in findings:
                err_console.print(str(finding), highlight=False, soft_wrap=True, markup=False)
            raise fail(f"{len(findings)} problem(s) in the generated manifests; nothing written", 1)
    text = schema.dump_documents(docs)
    if output == "-":
        sys.stdout.write(text)
        return
    from csflow.sdk.core.fileutil import write_bytes_atomic

    write_bytes_atomic(Path(output), text.encode())
    err_console.print(f"wrote {len(docs)} manifests to {output}", highlight=False, markup=False)


# The data-plane engineer's `csflow svc secrets ...` group (cli/secrets.py)
# plugs in here when that module exists.
try:
    from csflow.cli import secrets as _secrets
except ModuleNotFoundError as _exc:
    if _exc.name != "csflow.cli.secrets":
        raise
else:
    app.add_typer(_secrets.service_app, name="secrets")
