"""Local servers the tests start (importable from any test module): a free
port, and the handle of the real ``redis-server`` that the ``redis_server``
fixture (tests/conftest.py) starts once per session."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path

import redis


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class RedisServer:
    port: int
    passwords: dict[str, str]
    acl_file: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, user: str | None, password: str | None = None) -> redis.Redis:
        if user is not None and password is None:
            password = self.passwords[user]
        # from_url, as the job stores connect (redis-py's Redis(host=...) retries
        # a refused login for seconds).
        return redis.Redis.from_url(self.url, username=user, password=password, socket_timeout=5)
