"""What ``csflow models`` shows and does, on a model registry, for every backend.

``RegistryViews`` is mixed into both backends (each brings its ``registry``,
``open_registry``'s, and its ``settings``): the models and their tags, one model's
versions, and the tag moves ``promote`` and ``rollback``. After a move the webapp
is told where the tag points now, as the publish flow's steps tell it.
"""

from __future__ import annotations

from typing import Any

from csflow.sdk.core.errors import BadInput, NotFound
from csflow.sdk.core.settings import Settings
from csflow.sdk.registry.local import MOVING_TAGS, Registry

__all__ = ["RegistryViews", "webapp_token"]


def webapp_token(settings: Settings, secret_store) -> str:
    """The webapp's API token, from the secret store (empty if it holds none)."""
    secret = settings.webapp_token_secret
    return secret_store.values(None, None, [secret]).get(secret, "")


class RegistryViews:
    registry: Registry
    settings: Settings

    def models(self) -> list[dict[str, Any]]:
        rows = []
        for owner, title in self.registry.models():
            doc = self.registry.document(owner, title)
            moves = [h["at"] for h in doc["history"]]
            rows.append(
                {
                    "model": f"{owner}/{title}",
                    "latest": doc["tags"].get("latest"),
                    "staging": doc["tags"].get("staging"),
                    "versions": len(doc["versions"]),
                    "updated": max(moves, default=None),
                }
            )
        return rows

    def model(self, owner: str, title: str) -> dict[str, Any]:
        doc = self.registry.document(owner, title)
        if not doc["versions"]:
            raise NotFound(
                f"{owner}/{title} has no versions; "
                f"publish it with `csflow publish config/{owner}/{title}.yaml`"
            )
        tags_of: dict[str, list[str]] = {}
        for name, target in doc["tags"].items():
            tags_of.setdefault(target, []).append(name)
        versions = []
        for tag, record in sorted(
            doc["versions"].items(), key=lambda kv: kv[1].get("registered", 0), reverse=True
        ):
            versions.append(
                {
                    "tag": tag,
                    "tags": sorted(tags_of.get(tag, [])),
                    "model_version": record.get("model_version", ""),
                    "built": record.get("built"),
                    "build_seconds": record.get("build_seconds"),
                    "pushed": record.get("pushed"),
                    "python": record.get("python"),
                    "origin": record.get("origin", {"config": record.get("source", "")}),
                    "requirements": record.get("requirements"),
                    "lock_sha256": record.get("lock_sha256"),
                    "tests": record.get("tests"),
                    "image": record.get("image"),
                    "publish_run": record.get("publish_run"),
                }
            )
        return {
            "model": f"{owner}/{title}",
            "tags": doc["tags"],
            "versions": versions,
            "history": doc["history"][-20:],
        }

    def promote(self, owner: str, title: str, tag: str, to: str = "latest") -> dict[str, Any]:
        if to not in MOVING_TAGS:
            raise BadInput(f"--to must be one of {', '.join(MOVING_TAGS)}, not {to!r}")
        previous = self.registry.move_tag(owner, title, to, tag, action="promote")
        return self._moved(
            owner, title, to, previous, self.registry.document(owner, title)["tags"][to]
        )

    def rollback(self, owner: str, title: str, tag_name: str = "latest") -> dict[str, Any]:
        if tag_name not in MOVING_TAGS:
            raise BadInput(f"--tag must be one of {', '.join(MOVING_TAGS)}, not {tag_name!r}")
        previous, current = self.registry.rollback(owner, title, tag_name)
        return self._moved(owner, title, tag_name, previous, current)

    def _moved(
        self, owner: str, title: str, tag: str, previous: str | None, current: str
    ) -> dict[str, Any]:
        return {
            "model": f"{owner}/{title}",
            "tag": tag,
            "from": previous,
            "to": current,
            "webapp": self.tell_webapp(owner, title, {f"{tag}_tag": current}),
        }

    def tell_webapp(self, owner: str, title: str, body: dict[str, Any]) -> str:
        """Tell the webapp where a tag points now; the move itself already happened,
        so a webapp that cannot be reached is reported, not raised."""
        if not self.settings.webapp_url:
            return "not configured"
        from csflow.sdk.dataplane.secrets import open_secret_store
        from csflow.sdk.dataplane.webapp import WebappClient, WebappError

        token = webapp_token(self.settings, open_secret_store(self.settings))
        try:
            reply = WebappClient(url=self.settings.webapp_url, token=token).put(
                f"/publish/api/{owner}/{title}/deployments/", body
            )
        except WebappError as exc:
            return f"not told: {exc}"
        return f"told (HTTP {reply.status_code})"
