"""``secrets`` commands: a model's secrets, and the service's.

- ``csflow models -n OWNER/TITLE secrets set NAME [VALUE] | get NAME | list | delete NAME``
- ``csflow svc secrets set NAME [VALUE] | get NAME | list | delete NAME | sync``

Only ``get`` prints a value. ``set`` reads the value from stdin when VALUE is
left out (a hidden prompt on a terminal), which keeps it out of shell history
and the process list; ``--generate`` stores a random one. ``sync`` delivers
the values to the cluster as Kubernetes Secrets (``sdk/ops/secret_sync.py``).
The backend (local files or Google Secret Manager) comes from settings
(``secrets_backend``).

Mounting: ``models`` mounts ``model_app`` as ``secrets`` and passes the model
with ``-n``; ``model_app`` finds it in ``ctx.meta["csflow.model"]`` or in a
parent command's parameter named ``name``, ``names`` or ``model``, and also
takes ``-n`` itself. ``svc`` mounts ``service_app`` as ``secrets``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer
from rich.markup import escape
from rich.table import Table

from csflow.cli.common import (
    OutputFormat,
    OutputOption,
    console,
    emit,
    err_console,
    handle_errors,
    settings,
)
from csflow.sdk.core import names
from csflow.sdk.core.errors import BadInput
from csflow.sdk.core.fileutil import write_text_atomic
from csflow.sdk.ops import redis_acl

MODEL_KEY = "csflow.model"

model_app = typer.Typer(
    name="secrets",
    help="A model's secrets (values only ever printed by `get`).",
    no_args_is_help=True,
)
service_app = typer.Typer(
    name="secrets",
    help="The service's secrets (webapp token, Redis passwords), and `sync` to the cluster.",
    no_args_is_help=True,
)

ValueArgument = typer.Argument(
    None,
    metavar="[VALUE]",
    show_default=False,
    help="The value. Leave it out to read it from stdin (hidden prompt on a terminal).",
)
GenerateOption = typer.Option(False, "--generate", help="Store a random value (256 bits).")


# -- shared -----------------------------------------------------------------


def _store():
    from csflow.sdk.dataplane.secrets import open_secret_store

    return open_secret_store(settings())


def _model(ctx: typer.Context) -> tuple[str, str]:
    """OWNER/TITLE from our own -n, or from the group we are mounted under."""
    value: Any = ctx.meta.get(MODEL_KEY)
    scope: Any = ctx
    while value is None and scope is not None:
        value = next(
            (scope.params[k] for k in ("name", "names", "model") if scope.params.get(k)), None
        )
        scope = scope.parent
    if value is None and isinstance(ctx.obj, dict):
        value = ctx.obj.get("model") or ctx.obj.get("names")
    if isinstance(value, str):
        value = [v for v in value.split(",") if v.strip()]
    models = [v.strip() for v in value or []]
    if len(models) != 1:
        raise BadInput(
            "secrets act on one model: give -n OWNER/TITLE"
            + (f" (got {', '.join(models)})" if models else "")
        )
    return names.parse_model_name(models[0])


def _read_value(value: str | None, generate: bool) -> str:
    if generate:
        if value is not None:
            raise BadInput("give a VALUE or --generate, not both")
        return redis_acl.generate_password()
    if value is not None:
        return value
    if sys.stdin.isatty():
        return typer.prompt("value", hide_input=True, confirmation_prompt=True)
    text = sys.stdin.read()
    return text[:-1] if text.endswith("\n") else text  # one trailing newline, as `echo` adds


def _emit_rows(rows: list[dict[str, Any]], output: OutputFormat, title: str) -> None:
    if output != OutputFormat.table:
        emit(rows, output)
        return
    if not rows:
        err_console.print(f"no secrets {title}")
        return
    table = Table(title=f"secrets {title}", title_justify="left")
    for column in rows[0]:
        table.add_column(column.upper())
    for row in rows:
        table.add_row(
            *[("yes" if v else "no") if isinstance(v, bool) else str(v) for v in row.values()]
        )
    console.print(table)


def _declared(owner: str, title: str) -> list[str] | None:
    """The model config's declared secrets, or None without a config."""
    from csflow.sdk.core.model_config import find_model_config

    try:
        return find_model_config(owner, title, settings().config_dirs).secrets
    except BadInput:
        return None


# -- csflow models -n OWNER/TITLE secrets ... ---------------------------------


@model_app.callback()
def model_scope(
    ctx: typer.Context,
    name: str | None = typer.Option(
        None,
        "-n",
        "--name",
        metavar="OWNER/TITLE",
        help="The model (or give -n to `csflow models`).",
    ),
) -> None:
    if name:
        ctx.meta[MODEL_KEY] = name


@model_app.command("set")
@handle_errors
def model_set(
    ctx: typer.Context,
    secret_name: str = typer.Argument(..., metavar="NAME", help="An environment variable name."),
    value: str | None = ValueArgument,
    generate: bool = GenerateOption,
) -> None:
    """Set a model secret; its steps see it as a variable if its config declares it."""
    owner, title = _model(ctx)
    _store().set(secret_name, _read_value(value, generate), owner, title)
    err_console.print(f"set secret {secret_name} for {owner}/{title}", highlight=False)
    declared = _declared(owner, title)
    if declared is not None and secret_name not in declared:
        err_console.print(
            f"note: {owner}/{title} does not declare {secret_name} in its config's `secrets:`, "
            "so its steps will not receive it",
            highlight=False,
        )


@model_app.command("get")
@handle_errors
def model_get(ctx: typer.Context, secret_name: str = typer.Argument(..., metavar="NAME")) -> None:
    """Print a model secret's value."""
    owner, title = _model(ctx)
    typer.echo(_store().get(secret_name, owner, title))


@model_app.command("list")
@handle_errors
def model_list(ctx: typer.Context, output: OutputFormat = OutputOption) -> None:
    """A model's secrets, by name: set in the store, declared in its config."""
    owner, title = _model(ctx)
    stored = set(_store().list(owner, title))
    declared = _declared(owner, title) or []
    rows = [
        {"name": n, "set": n in stored, "declared": n in declared}
        for n in sorted(stored | set(declared))
    ]
    _emit_rows(rows, output, f"of {owner}/{title}")


@model_app.command("delete")
@handle_errors
def model_delete(
    ctx: typer.Context, secret_name: str = typer.Argument(..., metavar="NAME")
) -> None:
    """Delete a model secret."""
    owner, title = _model(ctx)
    _store().delete(secret_name, owner, title)
    err_console.print(f"deleted secret {secret_name} of {owner}/{title}", highlight=False)


# -- csflow svc secrets ... ---------------------------------------------------


def _service_uses() -> dict[str, str]:
    uses = {
        u.password_secret: f"Redis user {u.name}"
        for u in redis_acl.acl_users()
        if u.password_secret
    }
    uses[settings().webapp_token_secret] = "webapp token"
    return uses


@service_app.command("set")
@handle_errors
def service_set(
    secret_name: str = typer.Argument(..., metavar="NAME"),
    value: str | None = ValueArgument,
    generate: bool = GenerateOption,
) -> None:
    """Set a service secret (e.g. CS_API_TOKEN, REDIS_SCHEDULER_PW)."""
    _store().set(secret_name, _read_value(value, generate))
    err_console.print(f"set service secret {secret_name}", highlight=False)


@service_app.command("get")
@handle_errors
def service_get(secret_name: str = typer.Argument(..., metavar="NAME")) -> None:
    """Print a service secret's value."""
    typer.echo(_store().get(secret_name))


@service_app.command("list")
@handle_errors
def service_list(output: OutputFormat = OutputOption) -> None:
    """The service's secrets, by name, and the ones csflow uses."""
    stored = set(_store().list())
    uses = _service_uses()
    rows = [
        {"name": n, "set": n in stored, "used_for": uses.get(n, "")}
        for n in sorted(stored | set(uses))
    ]
    _emit_rows(rows, output, "of the service")


@service_app.command("delete")
@handle_errors
def service_delete(secret_name: str = typer.Argument(..., metavar="NAME")) -> None:
    """Delete a service secret."""
    _store().delete(secret_name)
    err_console.print(f"deleted service secret {secret_name}", highlight=False)


@service_app.command("sync")
@handle_errors
def service_sync(
    models: list[str] = typer.Option(
        [],
        "-n",
        "--name",
        metavar="OWNER/TITLE",
        help="Only these models' Secrets (repeat). Default: every model, and the service's.",
    ),
    out: str | None = typer.Option(
        None,
        "--out",
        "-o",
        metavar="FILE|-",
        help="Write the Secrets as YAML to FILE (mode 0600), or - for stdout.",
    ),
    apply: bool = typer.Option(
        False, "--apply", help="Create or replace the Secrets in the cluster."
    ),
    kubeconfig: str | None = typer.Option(
        None, "--kubeconfig", help="For --apply (default: ~/.kube/config)."
    ),
    context: str | None = typer.Option(None, "--context", help="kubeconfig context for --apply."),
    output: OutputFormat = typer.Option(
        OutputFormat.table, "--format", help="The summary's format: table, json or yaml."
    ),
) -> None:
    """Deliver secrets to the cluster as Kubernetes Secrets (read by pods through envFrom).
    Without -o or --apply, shows what would be delivered (names only)."""
    from csflow.sdk.ops import secret_sync

    only = [names.parse_model_name(m) for m in models] if models else None
    result = secret_sync.plan(settings(), _store(), only)
    for warning in result.warnings:
        err_console.print(f"warning: {escape(warning)}", highlight=False, soft_wrap=True)
    if out == "-":
        sys.stdout.write(secret_sync.render_yaml(result.secrets))
    elif out:
        write_text_atomic(Path(out), secret_sync.render_yaml(result.secrets), mode=0o600)
        err_console.print(
            f"wrote {len(result.secrets)} Secrets to {out}", highlight=False, markup=False
        )
    if apply:
        api = secret_sync.kubernetes_api(kubeconfig, context)
        for name, action in secret_sync.apply(result.secrets, api):
            err_console.print(f"{action} Secret {name}", highlight=False)
    if out != "-":
        rows = [
            {**row, "keys": ", ".join(row["keys"]) or "-"} if output == OutputFormat.table else row
            for row in secret_sync.summary(result.secrets)
        ]
        if output == OutputFormat.table:
            table = Table(
                title="Kubernetes Secrets"
                + ("" if out or apply else " (dry run: -o FILE or --apply)"),
                title_justify="left",
            )
            for column in rows[0]:
                table.add_column(column.upper())
            for row in rows:
                table.add_row(*[str(v) for v in row.values()])
            console.print(table)
        else:
            emit(rows, output)
