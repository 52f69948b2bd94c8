"""The result cache's pieces (sdk/dataplane/result_cache.py): its keys, its entries
beside the results (file:// and gs:// on the emulator) with LRU eviction past the
size cap, and the job stores' single-flight claims (files; the real redis-server
as the scheduler ACL user)."""

from __future__ import annotations

import time
import uuid

import pytest

from csflow.sdk.core.contract import JobInputs
from csflow.sdk.dataplane import result_cache
from csflow.sdk.dataplane.jobstore import FileJobStore
from csflow.sdk.dataplane.redis_jobs import RedisJobStore
from csflow.sdk.dataplane.result_cache import ResultCache, cache_key
from csflow.sdk.dataplane.storage import RESULT_FILES, open_storage, run_prefix
from csflow.sdk.ops import redis_acl

VERSION = {"tag": "a1b2c3d4e5f6", "image": "", "digest": ""}


def key_of(inputs: dict, version: dict | None = None, owner="tests", title="ToyOk") -> str:
    # As a submission computes it: from the inputs the client parsed.
    parsed = JobInputs.model_validate(inputs).model_dump()
    return cache_key(owner, title, version or VERSION, parsed)


# -- keys -----------------------------------------------------------------------------


def test_equal_inputs_in_any_shape_or_order_share_a_key():
    flat = {"meta_param_dict": {"year": 2024, "data": "cps"}, "adjustment": {"K": {"x": 2}}}
    same = [
        {
            "meta_param_dict": {"data": "cps", "year": [{"value": 2024}]},
            "adjustment": {"K": {"x": 2}},
        },
        {
            "adjustment": {"K": {"x": [{"value": 2}]}},
            "meta_param_dict": {"year": 2024, "data": "cps"},
        },
        {
            "meta_param_dict": {"year": 2024, "data": "cps"},
            "adjustment": {"K": {"x": {"value": 2}}},
        },
    ]
    assert {key_of(inputs) for inputs in same} == {key_of(flat)}
    labelled = {"K": {"x": [{"value": 2, "year": 2024}]}}
    reordered = {"K": {"x": [{"year": 2024, "value": 2}]}}
    assert key_of({"adjustment": labelled}) == key_of({"adjustment": reordered})
    assert len(key_of(flat)) == 64 and set(key_of(flat)) <= set("0123456789abcdef")


def test_unequal_inputs_versions_and_schemas_do_not(monkeypatch):
    base = {"meta_param_dict": {"year": 2024}, "adjustment": {"K": {"x": [{"value": 2}]}}}
    keys = {
        key_of(base),
        key_of({**base, "meta_param_dict": {"year": 2025}}),
        key_of({**base, "adjustment": {"K": {"x": [{"value": 3}]}}}),
        key_of({**base, "adjustment": {"K": {"x": [{"value": 2.0}]}}}),  # not assumed equal
        key_of({**base, "adjustment": {"K": {"x": [{"value": 2}, {"value": 3}]}}}),
        key_of({**base, "adjustment": {"K": {"x": [{"value": 3}, {"value": 2}]}}}),
        key_of({**base, "adjustment": {}}),
        key_of(base, {**VERSION, "tag": "ffffffffffff"}),
        key_of(base, {**VERSION, "image": "gcr.io/x/tests_toyok:a1b2c3d4e5f6"}),
        key_of(base, {**VERSION, "digest": "sha256:" + "0" * 64}),
        key_of(base, title="ToyNap"),
    }
    assert len(keys) == 11
    before = key_of(base)
    monkeypatch.setattr(result_cache, "RESULTS_SCHEMA", "2")
    assert key_of(base) != before


# -- entries and eviction ---------------------------------------------------------------


@pytest.fixture(params=["file", "gs"])
def storage(request, tmp_path):
    if request.param == "file":
        return open_storage((tmp_path / "results").as_uri())
    return open_storage(request.getfixturevalue("gcs"))


def a_run(storage, size: int = 100) -> str:
    job_id = str(uuid.uuid4())
    for name in RESULT_FILES:
        storage.put(f"{run_prefix('tests', 'ToyOk', job_id)}/{name}", name.encode() * (size // 40))
    return job_id


def test_a_stored_run_is_a_hit_copied_to_the_new_run(storage):
    cache = ResultCache(storage, max_bytes=10**6)
    key = key_of({"meta_param_dict": {"year": 2024}})
    assert cache.lookup(key) is None and cache.hit(key, str(uuid.uuid4())) is None
    source = a_run(storage)
    cache.store(key, "tests", "ToyOk", source, "toy 1.0", {"K": {"errors": {}, "warnings": {}}})
    new = str(uuid.uuid4())
    entry = cache.hit(key, new)
    assert entry is not None and entry.job_id == source and entry.model_version == "toy 1.0"
    for name in RESULT_FILES:
        assert storage.get(f"{run_prefix('tests', 'ToyOk', new)}/{name}") == storage.get(
            f"{run_prefix('tests', 'ToyOk', source)}/{name}"
        )
    assert all(k.startswith(f"cache/{key}/") for k in storage.list("cache"))


def test_past_the_cap_the_least_recently_used_entries_go(storage):
    one = sum(len(name.encode() * 10) for name in RESULT_FILES)  # an entry's bytes
    cache = ResultCache(storage, max_bytes=3 * one)
    keys = [key_of({"meta_param_dict": {"year": 2020 + i}}) for i in range(4)]
    for key in keys[:3]:
        cache.store(key, "tests", "ToyOk", a_run(storage, 400))
        time.sleep(0.01)
    assert cache.size() == 3 * one
    assert cache.hit(keys[0], str(uuid.uuid4())) is not None  # the oldest, used now
    cache.store(keys[3], "tests", "ToyOk", a_run(storage, 400))
    assert cache.lookup(keys[1]) is None  # least recently used: evicted
    assert all(cache.lookup(k) is not None for k in (keys[0], keys[2], keys[3]))
    assert not [k for k in storage.list("cache") if k.startswith(f"cache/{keys[1]}/")]
    assert cache.size() <= 3 * one
    ResultCache(storage, max_bytes=0).evict()
    assert storage.list("cache") == []


# -- single-flight claims in the job stores --------------------------------------------------


@pytest.fixture(params=["file", "redis"])
def jobs(request, tmp_path, monkeypatch):
    if request.param == "file":
        return FileJobStore((tmp_path / "jobs").as_uri())
    server = request.getfixturevalue("redis_server")
    server.client("admin").flushall()
    return RedisJobStore(server.url, redis_acl.SCHEDULER, server.passwords[redis_acl.SCHEDULER])


def test_one_claim_per_key_handed_over_only_from_its_holder(jobs):
    key = key_of({"meta_param_dict": {"year": 2024}})
    first, second, third = (str(uuid.uuid4()) for _ in range(3))
    assert jobs.claim(key, first, 60) == first
    assert jobs.claim(key, second, 60) == first  # in flight: the first holds it
    assert not jobs.replace_claim(key, second, third, 60)  # only from its holder
    assert jobs.replace_claim(key, first, second, 60)  # the first ended: taken over
    assert jobs.claim(key, third, 60) == second
    jobs.release(key, first)  # not its claim any more: left alone
    assert jobs.claim(key, third, 60) == second
    jobs.release(key, second)
    assert jobs.claim(key, third, 60) == third


def test_a_claim_expires(jobs):
    key = key_of({"meta_param_dict": {"year": 2024}})
    first, second = str(uuid.uuid4()), str(uuid.uuid4())
    assert jobs.claim(key, first, 1) == first
    time.sleep(1.2)
    assert jobs.claim(key, second, 60) == second


def test_a_cached_runs_record(jobs):
    job_id = str(uuid.uuid4())
    assert jobs.get_run(job_id) is None
    jobs.put_run(job_id, {"id": job_id, "status": "SUCCESS"})
    assert jobs.get_run(job_id) == {"id": job_id, "status": "SUCCESS"}
