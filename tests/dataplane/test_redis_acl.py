"""The ACL users, rendered once and enforced by a real redis-server.

The server loads the ``users.acl`` that ``render_acl_file`` wrote, so every
test here checks the rendered users, not a hand-written copy.
"""

from __future__ import annotations

import pytest
import redis

from csflow.sdk.core.errors import BadInput, NotFound
from csflow.sdk.dataplane.secrets import LocalSecretStore
from csflow.sdk.ops import redis_acl

JOB = "job-2f1c6d1e-8a51-4f7e-9f5e-2c3f4d5e6a7b"
OTHER_JOB = "job-0b9f7a6c-1d2e-4f3a-8b9c-0d1e2f3a4b5c"


def passwords() -> dict[str, str]:
    return {"admin": "a" * 20, "scheduler": "s" * 20, "model": "m" * 20}


# -- rendering ----------------------------------------------------------------


def test_the_acl_file_holds_hashes_never_passwords():
    text = redis_acl.render_acl_file(passwords())
    for password in passwords().values():
        assert password not in text
    lines = {line.split()[1]: line for line in text.splitlines() if line.startswith("user ")}
    assert list(lines) == ["default", "admin", "scheduler", "model"]
    assert " off " in lines["default"] and "#" not in lines["default"]
    assert lines["model"].endswith("resetkeys %R~job-* resetchannels -@all +get")
    assert "+set" not in lines["model"] and "+del" not in lines["model"]


def test_every_enabled_user_needs_a_long_enough_password():
    with pytest.raises(BadInput, match="REDIS_MODEL_PW"):
        redis_acl.render_acl_file({"admin": "a" * 20, "scheduler": "s" * 20})
    with pytest.raises(BadInput, match="shorter than 16"):
        redis_acl.render_acl_file({**passwords(), "model": "short"})
    with pytest.raises(BadInput, match="unknown Redis users: executor"):
        redis_acl.render_acl_file({**passwords(), "executor": "e" * 20})


def test_passwords_come_from_the_service_secret_store(tmp_path):
    store = LocalSecretStore(tmp_path)
    store.set("REDIS_ADMIN_PW", "a" * 20)
    store.set("REDIS_SCHEDULER_PW", "s" * 20)
    with pytest.raises(NotFound, match="REDIS_MODEL_PW"):
        redis_acl.passwords_from(store)
    store.set("REDIS_MODEL_PW", "m" * 20)
    assert redis_acl.passwords_from(store) == passwords()
    env = redis_acl.model_job_store_env(store, "redis://csflow-redis:6379/0")
    assert env == {
        "CSFLOW_JOB_STORE_URL": "redis://csflow-redis:6379/0",
        "CSFLOW_REDIS_USER": "model",
        "CSFLOW_REDIS_PASSWORD": "m" * 20,
    }
    assert redis_acl.model_job_store_env(store, (tmp_path / "jobs").as_uri()) == {}


def test_the_acl_secret_is_a_kubernetes_secret_with_the_file():
    import kubernetes_validate

    secret = redis_acl.acl_secret(passwords(), "csflow")
    kubernetes_validate.validate(secret, "1.30", strict=True)
    assert secret["metadata"]["name"] == redis_acl.ACL_SECRET
    assert secret["stringData"][redis_acl.ACL_FILE_KEY] == redis_acl.render_acl_file(passwords())
    args = redis_acl.redis_server_args()
    assert args[args.index("--aclfile") + 1] == f"{redis_acl.ACL_DIR}/{redis_acl.ACL_FILE_KEY}"


# -- the real server -------------------------------------------------------------


def test_the_server_runs_exactly_the_rendered_users(redis_server, redis_admin):
    import hashlib

    loaded = {line.split()[1]: line for line in redis_admin.acl_list()}
    assert sorted(loaded) == sorted(u.name for u in redis_acl.acl_users())
    digest = {
        u: hashlib.sha256(pw.encode()).hexdigest() for u, pw in redis_server.passwords.items()
    }
    assert loaded["default"] == "user default off resetchannels -@all"
    assert loaded["admin"] == f"user admin on #{digest['admin']} ~* &* +@all"
    head, commands = loaded["scheduler"].split(" -@all ")
    assert head == (
        f"user scheduler on #{digest['scheduler']} ~job-* ~projects* ~cache-* resetchannels"
    )
    # (WATCH, UNWATCH, MULTI, EXEC, DISCARD: Redis shows them as @transaction)
    assert sorted(commands.split()) == ["+@transaction", "+expire", "+get", "+set"]
    assert loaded["model"] == f"user model on #{digest['model']} %R~job-* resetchannels -@all +get"


def test_the_model_user_reads_a_job(redis_server, redis_admin):
    redis_server.client("scheduler").set(JOB, b'{"inputs": {}}', ex=60)
    assert redis_server.client("model").get(JOB) == b'{"inputs": {}}'


def test_the_model_user_cannot_set(redis_server, redis_admin):
    model = redis_server.client("model")
    with pytest.raises(redis.exceptions.NoPermissionError, match="'set' command"):
        model.set(JOB, b"tampered")
    assert redis_admin.exists(JOB) == 0


def test_the_model_user_cannot_delete(redis_server, redis_admin):
    redis_admin.set(JOB, b"x")
    for command in (
        lambda m: m.delete(JOB),
        lambda m: m.unlink(JOB),
        lambda m: m.expire(JOB, 1),
        lambda m: m.getdel(JOB),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            command(redis_server.client("model"))
    assert redis_admin.get(JOB) == b"x" and redis_admin.ttl(JOB) == -1


def test_the_model_user_cannot_read_another_prefix(redis_server, redis_admin):
    redis_admin.set("projects", b"[]")
    redis_admin.set("secret-thing", b"x")
    model = redis_server.client("model")
    for key in ("projects", "secret-thing", "jobs-list"):
        with pytest.raises(redis.exceptions.NoPermissionError, match="access one of the keys"):
            model.get(key)


def test_the_model_user_cannot_list_the_jobs(redis_server, redis_admin):
    redis_admin.set(JOB, b"x")
    redis_admin.set(OTHER_JOB, b"y")
    model = redis_server.client("model")
    for command in (
        lambda m: m.keys("job-*"),
        lambda m: m.scan(0, match="job-*"),
        lambda m: m.mget(JOB, OTHER_JOB),
        lambda m: m.flushall(),
        lambda m: m.config_get("*"),
        lambda m: m.acl_list(),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            command(model)


def test_the_scheduler_gets_sets_and_expires_jobs_and_projects(redis_server, redis_admin):
    scheduler = redis_server.client("scheduler")
    assert scheduler.set(JOB, b"inputs", ex=100)
    assert scheduler.get(JOB) == b"inputs"
    assert scheduler.expire(JOB, 50)
    assert 0 < redis_admin.ttl(JOB) <= 50
    assert scheduler.set("projects", b"[]")
    assert scheduler.get("projects") == b"[]"


def test_the_scheduler_can_do_nothing_else(redis_server, redis_admin):
    redis_admin.set(JOB, b"x")
    scheduler = redis_server.client("scheduler")
    for command in (
        lambda s: s.delete(JOB),
        lambda s: s.keys("*"),
        lambda s: s.flushall(),
        lambda s: s.get("other-key"),
        lambda s: s.set("other-key", b"x"),
        lambda s: s.acl_list(),
    ):
        with pytest.raises(redis.exceptions.NoPermissionError):
            command(scheduler)
    assert redis_admin.get(JOB) == b"x" and redis_admin.exists("other-key") == 0


@pytest.mark.parametrize("user", ["model", "scheduler", "admin"])
def test_a_wrong_password_fails(redis_server, redis_admin, user):
    with pytest.raises(redis.AuthenticationError, match="invalid username-password pair"):
        redis_server.client(user, "not-the-password").get(JOB)


def test_the_default_user_is_disabled(redis_server, redis_admin):
    redis_admin.set(JOB, b"x")
    with pytest.raises((redis.AuthenticationError, redis.ResponseError)):
        redis_server.client(None).get(JOB)
    with pytest.raises(redis.AuthenticationError):
        redis_server.client("default", "").get(JOB)
    with pytest.raises(redis.AuthenticationError):
        redis_server.client("executor", "x" * 20).get(JOB)
