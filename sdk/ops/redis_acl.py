"""Redis ACL users: who may touch which keys of the job store.

The job store keeps each simulation's inputs under ``job-<uuid>`` with an
expiry (``sdk/dataplane/redis_jobs.py``). Redis ACL users fence it
(https://redis.io/docs/latest/operate/oss_and_stack/management/security/acl/):

- ``default``: disabled, so no connection works without a user and password;
- ``admin``: everything (operators, health checks);
- ``scheduler``: the submitter; may GET, SET and EXPIRE ``job-*``,
  ``projects*`` and the result cache's ``cache-*`` (claims and cached runs), and
  run WATCH/MULTI/EXEC/DISCARD transactions (a claim changes hands in one), nothing else
  (no DEL, no KEYS, no FLUSHALL);
- ``model`` (C/S called it ``executor``): model steps; may only GET
  ``job-*`` (read-only key access), so model code cannot list, change or
  delete jobs. Job ids are UUIDs, so a model can read only the key it is told.

The users are defined once, here, as data (``acl_users()``), and rendered into
everything that needs them: the ``users.acl`` file of the cluster's Redis
(delivered as a Kubernetes Secret by ``csflow svc secrets sync``), and the
test set-up, which starts a real ``redis-server`` with the same file.

Passwords are never written here. Each user's password lives in the service
secret store under ``AclUser.password_secret`` (``REDIS_SCHEDULER_PW`` …) and
is passed in at render time; the file holds only SHA-256 hashes (``#<hex>``).

API (small on purpose; ``cluster/argo`` renders Redis with it):

- ``acl_users() -> list[AclUser]``: the users, in file order;
- ``render_acl_file(passwords: dict[str, str]) -> str``: the ``users.acl``
  text; ``passwords`` maps user name -> password (every enabled user needs one);
- ``passwords_from(store) -> dict[str, str]``: the passwords from a secret store;
- ``acl_secret(passwords, namespace) -> dict``: the Kubernetes Secret
  ``csflow-redis-acl`` holding ``users.acl`` (mount it at ``ACL_DIR``);
- ``redis_server_args() -> list[str]``: the ``redis-server`` arguments that
  load that file;
- ``model_job_store_env(store, job_store_url) -> dict[str, str]``: the
  variables a model step reads the job store with (``runtime/model_step.py``;
  the names are declared in ``runtime/step_env.py``).
"""

from __future__ import annotations

import hashlib
import secrets as _random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from csflow.runtime import step_env
from csflow.sdk.core.errors import BadInput, NotFound

ADMIN, SCHEDULER, MODEL, DEFAULT = "admin", "scheduler", "model", "default"

# The cluster's Redis (its Service is named REDIS_SERVICE in cluster/argo).
REDIS_SERVICE = "csflow-redis"
REDIS_PORT = 6379
CLUSTER_JOB_STORE_URL = f"redis://{REDIS_SERVICE}:{REDIS_PORT}/0"

# The Kubernetes Secret that carries users.acl, and where Redis mounts it.
ACL_SECRET = "csflow-redis-acl"
ACL_FILE_KEY = "users.acl"
ACL_DIR = "/etc/redis/acl"

MIN_PASSWORD_LENGTH = 16


@dataclass(frozen=True)
class AclUser:
    """One Redis user: its ACL rules (without a password) and the name of the
    service secret that holds its password (None for a disabled user)."""

    name: str
    rules: tuple[str, ...]
    password_secret: str | None
    enabled: bool = True
    purpose: str = ""

    @property
    def secret_name(self) -> str:
        """``password_secret`` of a user that logs in (every enabled user has one)."""
        if self.password_secret is None:
            raise BadInput(f"Redis user {self.name!r} has no password secret")
        return self.password_secret

    def acl_line(self, password: str | None) -> str:
        """The ``user ...`` line of an ACL file (``password`` is hashed)."""
        if not self.enabled:
            return " ".join(["user", self.name, "off", "resetpass", *self.rules])
        if not password:
            raise BadInput(
                f"Redis user {self.name!r} needs a password (secret {self.password_secret})"
            )
        digest = hashlib.sha256(password.encode()).hexdigest()
        return " ".join(["user", self.name, "on", "resetpass", f"#{digest}", *self.rules])


# Each rule list starts from nothing (resetkeys, resetchannels, -@all) and adds
# only what the user needs.
_USERS = (
    AclUser(
        DEFAULT,
        ("resetkeys", "resetchannels", "-@all"),
        password_secret=None,
        enabled=False,
        purpose="disabled: every client must log in",
    ),
    AclUser(
        ADMIN,
        ("~*", "&*", "+@all"),
        password_secret="REDIS_ADMIN_PW",
        purpose="operators",
    ),
    AclUser(
        SCHEDULER,
        (
            "resetkeys",
            "~job-*",
            "~projects*",
            "~cache-*",
            "resetchannels",
            "-@all",
            "+get",
            "+set",
            "+expire",
            "+watch",
            "+unwatch",
            "+multi",
            "+exec",
            "+discard",
        ),
        password_secret="REDIS_SCHEDULER_PW",
        purpose="submitter: get, set and expire job-*, projects* and cache-*",
    ),
    AclUser(
        MODEL,
        ("resetkeys", "%R~job-*", "resetchannels", "-@all", "+get"),
        password_secret="REDIS_MODEL_PW",
        purpose="model steps: GET job-* only",
    ),
)


def acl_users() -> list[AclUser]:
    return list(_USERS)


def acl_user(name: str) -> AclUser:
    for user in _USERS:
        if user.name == name:
            return user
    raise BadInput(f"no Redis user {name!r} (users: {', '.join(u.name for u in _USERS)})")


def password_secret_names() -> list[str]:
    """The service secrets that hold Redis passwords."""
    return [u.password_secret for u in _USERS if u.password_secret]


def generate_password() -> str:
    """A random password (256 bits), as ``ACL GENPASS`` would make."""
    return _random.token_hex(32)


def check_password(user: AclUser, password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise BadInput(
            f"the password of Redis user {user.name!r} ({user.password_secret}) is shorter than "
            f"{MIN_PASSWORD_LENGTH} characters; set a random one with "
            f"`csflow svc secrets set {user.password_secret} --generate`"
        )
    return password


def render_acl_file(passwords: Mapping[str, str]) -> str:
    """The ``users.acl`` text for ``redis-server --aclfile``. Every enabled user
    needs a password in ``passwords`` (keyed by user name); only its SHA-256
    hash is written."""
    unknown = sorted(set(passwords) - {u.name for u in _USERS})
    if unknown:
        raise BadInput(f"passwords given for unknown Redis users: {', '.join(unknown)}")
    missing = [u.secret_name for u in _USERS if u.enabled and not passwords.get(u.name)]
    if missing:
        raise BadInput(f"Redis passwords not set: {', '.join(missing)}")
    lines = []  # redis-server refuses comments in an ACL file
    for user in _USERS:
        password = check_password(user, passwords[user.name]) if user.enabled else None
        lines.append(user.acl_line(password))
    return "\n".join(lines) + "\n"


class _SecretReader(Protocol):
    def get(self, name: str, owner: str | None = None, title: str | None = None) -> str: ...


def passwords_from(store: _SecretReader) -> dict[str, str]:
    """Each enabled user's password from the service secret store."""
    passwords, missing = {}, []
    for user in _USERS:
        if not user.password_secret:
            continue
        try:
            passwords[user.name] = store.get(user.password_secret)
        except NotFound:
            missing.append(user.password_secret)
    if missing:
        raise NotFound(
            f"Redis passwords not set: {', '.join(missing)} "
            "(csflow svc secrets set NAME --generate)"
        )
    return passwords


def acl_secret(passwords: Mapping[str, str], namespace: str) -> dict[str, Any]:
    """The Kubernetes Secret holding ``users.acl`` (password hashes only)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": ACL_SECRET,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "csflow",
                "app.kubernetes.io/component": "redis",
            },
        },
        "type": "Opaque",
        "stringData": {ACL_FILE_KEY: render_acl_file(passwords)},
    }


def redis_server_args(acl_dir: str = ACL_DIR, port: int = REDIS_PORT) -> list[str]:
    """``redis-server`` arguments: listen on ``port``, load the users from the
    mounted ACL file. Jobs expire and are re-submittable, so nothing is saved."""
    return [
        "--port",
        str(port),
        "--aclfile",
        f"{acl_dir}/{ACL_FILE_KEY}",
        "--save",
        "",
        "--appendonly",
        "no",
    ]


def model_job_store_env(store: _SecretReader, job_store_url: str) -> dict[str, str]:
    """What a model step needs to read its job: the store's URL and the
    ``model`` user's credentials. Empty for a ``file://`` store."""
    if not job_store_url.startswith(("redis://", "rediss://")):
        return {}
    user = acl_user(MODEL)
    try:
        password = store.get(user.secret_name)
    except NotFound:
        raise NotFound(
            f"the job store {job_store_url} needs the model user's password: "
            f"csflow svc secrets set {user.password_secret} --generate"
        ) from None
    return job_store_env(job_store_url, MODEL, password)


def job_store_env(job_store_url: str, user: str, password: str) -> dict[str, str]:
    """The variables a job store client reads: the store's URL, a Redis user and its
    password (``runtime/step_env.py``)."""
    return {
        step_env.JOB_STORE_URL.name: job_store_url,
        step_env.REDIS_USER.name: user,
        step_env.REDIS_PASSWORD.name: password,
    }
