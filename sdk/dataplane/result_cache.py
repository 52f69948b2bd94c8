"""The result cache: a successful run's results, kept by what produced them.

A run's results depend only on the model version and the inputs, so they are
kept under a content address, the **cache key** (``cache_key``): the SHA-256 of
one canonical JSON document (sorted keys, no spaces) holding

- the model (``OWNER/TITLE``) and its version: the content tag, and on a
  cluster the image (its reference and, when the registry recorded one, its
  digest): a new version never meets an old entry;
- the inputs in one canonical form (``canonical_inputs``): meta parameters in
  the ParamTools form whichever C/S shape they came in (``{"year": 2024}`` is
  ``{"year": [{"value": 2024}]}``), an adjustment's shorthand value (``{"x": 2}``
  or one value object) as its list of value objects (``[{"value": 2}]``, as
  ParamTools reads it), key order ignored; the order of value objects is kept
  (a later one overrides an earlier one), and ``2`` and ``2.0`` stay distinct;
- ``RESULTS_SCHEMA``: the version of the result files csflow writes
  (``runtime/platform_step.py``); bumping it retires every entry.

An entry lives **beside the results**, in the same storage (``file://`` or
``gs://``), under ``cache/KEY/``: a copy of the run's result files
(``RESULT_FILES``) and ``entry.json`` (written last: an entry without it does
not exist) naming the run it came from, its size and when it was last used. A
hit copies the files to the new run's own prefix, so a run's results never
depend on an entry that eviction may remove. The entries' total size is capped
(``Settings.result_cache_max_bytes``); storing past the cap evicts the least
recently used entries first.

Only ``SUCCESS`` runs are stored (the backends call ``store`` then); ``INVALID``
and ``FAIL`` never are.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from csflow.sdk.core.contract import normalize_meta_param_dict
from csflow.sdk.core.errors import BadInput, CsflowError, NotFound
from csflow.sdk.core.names import check_cache_key, check_job_id
from csflow.sdk.dataplane.storage import RESULT_FILES, Storage, run_prefix

RESULTS_SCHEMA = "1"
CACHE_PREFIX = "cache"
ENTRY_FILE = "entry.json"


def canonical_inputs(inputs: dict[str, Any]) -> dict[str, Any]:
    """A simulation's inputs (``{"meta_param_dict", "adjustment"}``) in the one form
    equal inputs share (see the module's docstring)."""
    meta = normalize_meta_param_dict(dict(inputs.get("meta_param_dict") or {}))
    adjustment: dict[str, dict[str, Any]] = {}
    for section, params in (inputs.get("adjustment") or {}).items():
        adjustment[section] = {
            name: _value_objects(given) for name, given in (params or {}).items()
        }
    return {"meta_param_dict": meta, "adjustment": adjustment}


def _value_objects(given: Any) -> Any:
    if isinstance(given, list):
        return given
    if isinstance(given, dict) and "value" in given:
        return [given]
    return [{"value": given}]


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def cache_key(owner: str, title: str, version: dict[str, str], inputs: dict[str, Any]) -> str:
    """The cache key of a model version (``{"tag", "image", "digest"}``; blank
    fields are left out) run on ``inputs``."""
    document = {
        "model": f"{owner}/{title}",
        "version": {k: v for k, v in sorted(version.items()) if v},
        "inputs": canonical_inputs(inputs),
        "results_schema": RESULTS_SCHEMA,
    }
    return hashlib.sha256(canonical_json(document).encode()).hexdigest()


@dataclass
class Entry:
    """One cached result: the run it came from, and what that run said of itself."""

    key: str
    owner: str
    title: str
    job_id: str  # the run whose results these are
    model_version: str = ""
    errors_warnings: dict[str, Any] = field(default_factory=dict)
    size: int = 0
    stored: float = 0.0
    used: float = 0.0


class ResultCache:
    """The entries under ``cache/`` of one results storage, at most ``max_bytes``."""

    def __init__(self, storage: Storage, max_bytes: int):
        self.storage = storage
        self.max_bytes = max_bytes

    def _folder(self, key: str) -> str:
        return f"{CACHE_PREFIX}/{check_cache_key(key)}"

    def lookup(self, key: str) -> Entry | None:
        """The entry stored under ``key``, or None."""
        try:
            data = json.loads(self.storage.get(f"{self._folder(key)}/{ENTRY_FILE}"))
        except NotFound:
            return None
        except (ValueError, TypeError):  # a broken entry is no entry
            return None
        return Entry(**data)

    def hit(self, key: str, job_id: str) -> Entry | None:
        """The entry under ``key`` with its result files copied to the new run
        ``job_id``'s prefix (and marked used now), or None on a miss."""
        entry = self.lookup(key)
        if entry is None:
            return None
        target = run_prefix(entry.owner, entry.title, check_job_id(job_id))
        try:
            for name in RESULT_FILES:
                data = self.storage.get(f"{self._folder(key)}/{name}")
                self.storage.put(f"{target}/{name}", data, _content_type(name))
        except NotFound:  # evicted under our feet: a miss
            return None
        entry.used = time.time()
        self._write_entry(entry)
        return entry

    def store(
        self,
        key: str,
        owner: str,
        title: str,
        job_id: str,
        model_version: str = "",
        errors_warnings: dict[str, Any] | None = None,
    ) -> Entry:
        """Keep the results of the successful run ``job_id`` under ``key`` (its
        files copied from the run's prefix), then evict past the size cap."""
        source = run_prefix(owner, title, job_id)
        size = 0
        for name in RESULT_FILES:
            data = self.storage.get(f"{source}/{name}")
            size += len(data)
            self.storage.put(f"{self._folder(key)}/{name}", data, _content_type(name))
        now = time.time()
        entry = Entry(
            key, owner, title, job_id, model_version, errors_warnings or {}, size, now, now
        )
        self._write_entry(entry)
        self.evict()
        return entry

    def _write_entry(self, entry: Entry) -> None:
        self.storage.put(
            f"{self._folder(entry.key)}/{ENTRY_FILE}",
            json.dumps(asdict(entry)).encode(),
            "application/json",
        )

    def entries(self) -> list[Entry]:
        """Every complete entry, least recently used first."""
        keys = sorted(
            {
                key.split("/")[1]
                for key in self.storage.list(CACHE_PREFIX)
                if key.endswith("/" + ENTRY_FILE) and key.count("/") == 2
            }
        )
        found = [entry for key in keys if (entry := self._safe_lookup(key)) is not None]
        return sorted(found, key=lambda entry: (entry.used, entry.key))

    def _safe_lookup(self, key: str) -> Entry | None:
        try:
            return self.lookup(key)
        except BadInput:  # a folder under cache/ that no key names
            return None

    def size(self) -> int:
        return sum(entry.size for entry in self.entries())

    def evict(self) -> list[str]:
        """Remove least recently used entries until the rest fit the cap; return
        the keys removed (the entry file first: a half-removed entry is a miss)."""
        entries = self.entries()
        total = sum(entry.size for entry in entries)
        removed = []
        for entry in entries:
            if total <= self.max_bytes:
                break
            self.remove(entry.key)
            total -= entry.size
            removed.append(entry.key)
        return removed

    def remove(self, key: str) -> None:
        folder = self._folder(key)
        for name in (ENTRY_FILE, *RESULT_FILES):
            try:
                self.storage.delete(f"{folder}/{name}")
            except CsflowError:
                pass


def _content_type(name: str) -> str:
    return "application/zip" if name.endswith(".zip") else "application/json"
