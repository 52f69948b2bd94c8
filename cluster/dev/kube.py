"""The few kubectl verbs the dev cluster needs, with the official ``kubernetes`` client.

``kubectl`` is not installed here and building it adds minutes, while the
project's venv already has the Python client. The scripts call this for:

- ``apply FILE|- ...``: server-side apply (what ``kubectl apply
  --server-side`` does) with strict field validation, so the API server
  rejects an unknown field instead of dropping it. Server-side apply also
  takes Argo's multi-megabyte CRDs, which client-side apply cannot (its
  last-applied annotation is capped at 256 KiB).
- ``wait-ready``: until ``/readyz`` answers ok.
- ``token NAMESPACE SECRET``: the token Kubernetes wrote into a
  service-account-token Secret (waits for the token controller);
- ``secret-key NAMESPACE SECRET KEY``: one value of a Secret (for a shell's
  environment, never for a file);
- ``service-ip NAMESPACE NAME``: a Service's cluster IP;
- ``rollout-ready NAMESPACE DEPLOYMENT``: exit 0 once it has a ready pod, else
  say why not (pod phases, waiting reasons) and exit 1;
- ``dev-overlay NAMESPACE --gcs URL``: what the dev node changes
  in csflow's configuration so steps reach the GCS emulator (see ``dev_overlay``).

Kubernetes docs: https://kubernetes.io/docs/reference/using-api/server-side-apply/
"""

from __future__ import annotations

import argparse
import base64
import sys
import time
from pathlib import Path

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException
from kubernetes.dynamic import DynamicClient
from kubernetes.dynamic.exceptions import ResourceNotFoundError

from csflow.runtime import step_env
from csflow.sdk.core.settings import Settings

FIELD_MANAGER = "csflow-dev"


def api(kubeconfig: str) -> client.ApiClient:
    return config.new_client_from_config(config_file=kubeconfig)


def documents(paths: list[str]) -> list[dict]:
    docs = []
    for path in paths:
        text = sys.stdin.read() if path == "-" else Path(path).read_text()
        # libyaml's loader when present: Argo's CRDs are megabytes, 6x faster to read.
        loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
        docs.extend(doc for doc in yaml.load_all(text, Loader=loader) if doc)
    return docs


def apply(
    api_client: client.ApiClient,
    docs: list[dict],
    dry_run: bool = False,
    exclude: frozenset[str] = frozenset(),
) -> list[str]:
    """Server-side apply each document, in order; returns ``kind/name`` of each applied.

    A CRD is waited for (Established) before the next document, so custom
    resources later in the same stream find their API."""
    dynamic = DynamicClient(api_client)
    applied = []
    for doc in docs:
        key = f"{doc['kind']}/{doc['metadata']['name']}"
        if key in exclude:
            continue
        try:
            resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        except ResourceNotFoundError:
            dynamic.resources.invalidate_cache()  # a CRD applied a moment ago
            resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        query = [("fieldValidation", "Strict")]
        if dry_run:
            query.append(("dryRun", "All"))
        try:
            dynamic.server_side_apply(
                resource,
                body=doc,
                field_manager=FIELD_MANAGER,
                force_conflicts=True,
                query_params=query,
            )
        except ApiException as exc:
            raise SystemExit(
                f"kube.py: apply {key} refused: {exc.status} {exc.reason}: {_message(exc)}"
            ) from exc
        applied.append(key)
        if doc["kind"] == "CustomResourceDefinition" and not dry_run:
            wait_established(api_client, doc["metadata"]["name"])
    return applied


def _message(exc: ApiException) -> str:
    try:
        return yaml.safe_load(exc.body).get("message", exc.body)
    except Exception:  # the body is not always JSON
        return str(exc.body)[:500]


def wait_established(api_client: client.ApiClient, name: str, timeout: float = 60) -> None:
    extensions = client.ApiextensionsV1Api(api_client)
    deadline = time.monotonic() + timeout
    while True:
        crd = extensions.read_custom_resource_definition(name)
        conditions = {c.type: c.status for c in (crd.status.conditions or [])}
        if conditions.get("Established") == "True":
            return
        if time.monotonic() > deadline:
            raise SystemExit(
                f"kube.py: CRD {name} not Established after {timeout:g}s: {conditions}"
            )
        time.sleep(0.5)


def wait_ready(api_client: client.ApiClient, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            method, url, headers, _, _ = api_client.param_serialize(
                "GET", "/readyz", auth_settings=["BearerToken"]
            )
            response = api_client.call_api(method, url, header_params=headers, _request_timeout=5)
            response.read()
            if response.status == 200:
                return
            last = f"HTTP {response.status}"
        except Exception as exc:  # not listening yet, or not ready (HTTP 500)
            last = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"
        time.sleep(0.5)
    raise SystemExit(f"kube.py: API server not ready after {timeout:g}s ({last})")


def token(api_client: client.ApiClient, namespace: str, secret: str, timeout: float) -> str:
    core = client.CoreV1Api(api_client)
    deadline = time.monotonic() + timeout
    while True:
        try:
            data = core.read_namespaced_secret(secret, namespace).data or {}
            if data.get("token"):
                return base64.b64decode(data["token"]).decode()
        except ApiException as exc:
            if exc.status != 404:
                raise
        if time.monotonic() > deadline:
            raise SystemExit(
                f"kube.py: no token in Secret {namespace}/{secret} after {timeout:g}s "
                "(is kube-controller-manager running with --service-account-private-key-file?)"
            )
        time.sleep(0.5)


def service_ip(api_client: client.ApiClient, namespace: str, name: str) -> str:
    return client.CoreV1Api(api_client).read_namespaced_service(name, namespace).spec.cluster_ip


def rollout_ready(api_client: client.ApiClient, namespace: str, name: str) -> bool:
    deployment = client.AppsV1Api(api_client).read_namespaced_deployment(name, namespace)
    if (deployment.status.ready_replicas or 0) >= 1:
        return True
    selector = ",".join(f"{k}={v}" for k, v in deployment.spec.selector.match_labels.items())
    for pod in (
        client.CoreV1Api(api_client).list_namespaced_pod(namespace, label_selector=selector).items
    ):
        waiting = [
            f"{c.name}: {c.state.waiting.reason}: {c.state.waiting.message or ''}"
            for c in pod.status.container_statuses or []
            if c.state and c.state.waiting
        ]
        print(f"{pod.metadata.name}: {pod.status.phase} {'; '.join(waiting)}", file=sys.stderr)
    return False


def dev_overlay(
    api_client: client.ApiClient,
    namespace: str,
    gcs_url: str,
    registry: str,
    model_registry_url: str,
) -> None:
    """The dev node's changes to csflow's configuration, and nothing else: the GCS
    emulator's address for the platform steps (ConfigMap csflow-platform) and for Argo's
    executor (its env in the controller's ConfigMap; Google's storage client talks to
    an emulator without credentials, so artifacts stay keyless as in production), and
    for the publish steps: the model registry in the emulator, and the local
    plain-HTTP registry with its stand-in base images, which the admission policy
    then also admits images from."""
    core = client.CoreV1Api(api_client)
    default_registry = Settings.model_fields["registry"].default
    platform = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "csflow-platform", "namespace": namespace},
        "data": {
            "STORAGE_EMULATOR_HOST": gcs_url,
            step_env.MODEL_REGISTRY_URL.name: model_registry_url,
            step_env.REGISTRY_INSECURE.name: "true",
            step_env.MODEL_BASE_IMAGE.name: f"{registry}/library/python:{{python}}-slim-bookworm",
            step_env.IMAGE_REGISTRIES.name: f"{default_registry} {registry}/csflow",
        },
    }
    controller = core.read_namespaced_config_map("workflow-controller-configmap", namespace)
    executor = yaml.safe_load(controller.data.get("executor") or "{}") or {}
    env = [e for e in executor.get("env") or [] if e.get("name") != "STORAGE_EMULATOR_HOST"]
    executor["env"] = env + [{"name": "STORAGE_EMULATOR_HOST", "value": gcs_url}]
    controller_patch = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "workflow-controller-configmap", "namespace": namespace},
        "data": {"executor": yaml.safe_dump(executor, sort_keys=False)},
    }
    dynamic = DynamicClient(api_client)
    for doc in (platform, controller_patch):
        resource = dynamic.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        dynamic.server_side_apply(
            resource,
            body=doc,
            field_manager="csflow-dev-overlay",
            force_conflicts=True,
            query_params=[("fieldValidation", "Strict")],
        )
        print(f"applied {doc['kind']}/{doc['metadata']['name']} (dev overlay)", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", required=True)
    commands = parser.add_subparsers(dest="command", required=True)
    p_apply = commands.add_parser("apply")
    p_apply.add_argument("files", nargs="+")
    p_apply.add_argument("--dry-run", action="store_true")
    p_apply.add_argument("--exclude", action="append", default=[], metavar="KIND/NAME")
    p_ready = commands.add_parser("wait-ready")
    p_ready.add_argument("--timeout", type=float, default=60)
    p_token = commands.add_parser("token")
    p_token.add_argument("namespace")
    p_token.add_argument("secret")
    p_token.add_argument("--timeout", type=float, default=60)
    p_key = commands.add_parser("secret-key")
    p_key.add_argument("namespace")
    p_key.add_argument("secret")
    p_key.add_argument("key")
    p_ip = commands.add_parser("service-ip")
    p_ip.add_argument("namespace")
    p_ip.add_argument("name")
    p_ready2 = commands.add_parser("rollout-ready")
    p_ready2.add_argument("namespace")
    p_ready2.add_argument("name")
    p_overlay = commands.add_parser("dev-overlay")
    p_overlay.add_argument("namespace")
    p_overlay.add_argument("--gcs", required=True)
    p_overlay.add_argument("--registry", required=True, help="the local registry, HOST:PORT")
    p_overlay.add_argument("--model-registry-url", required=True)
    args = parser.parse_args(argv)

    api_client = api(args.kubeconfig)
    if args.command == "apply":
        for key in apply(api_client, documents(args.files), args.dry_run, frozenset(args.exclude)):
            print(f"applied {key}", file=sys.stderr)
    elif args.command == "wait-ready":
        wait_ready(api_client, args.timeout)
    elif args.command == "token":
        print(token(api_client, args.namespace, args.secret, args.timeout))
    elif args.command == "secret-key":
        data = (
            client.CoreV1Api(api_client).read_namespaced_secret(args.secret, args.namespace).data
            or {}
        )
        if args.key not in data:
            raise SystemExit(f"kube.py: no key {args.key} in Secret {args.namespace}/{args.secret}")
        print(base64.b64decode(data[args.key]).decode())
    elif args.command == "service-ip":
        print(service_ip(api_client, args.namespace, args.name))
    elif args.command == "rollout-ready":
        return 0 if rollout_ready(api_client, args.namespace, args.name) else 1
    elif args.command == "dev-overlay":
        dev_overlay(
            api_client,
            args.namespace,
            args.gcs,
            args.registry,
            args.model_registry_url,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
