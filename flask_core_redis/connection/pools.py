"""Connection pools: what every pool the extension builds has in common."""

from __future__ import annotations

from redis import Redis
from redis.connection import ConnectionPool


class RedactedConnectionPool(ConnectionPool):
    """A pool whose repr shows where it connects, never its credentials:
    redis-py before 7.x prints every connection keyword, the password too, and
    embeds that repr in errors (a sentinel's, in MasterNotFoundError)."""

    def __repr__(self) -> str:
        kwargs = self.connection_kwargs
        address = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        return (f"<{type(self).__name__}({self.connection_class.__name__} {address}"
                f" db={kwargs.get('db', 0)})>")


def redact_pool(client: Redis) -> None:
    """Give ``client``, built by redis-py with a plain pool and not yet
    connected, a redacted pool with the same connection class and settings."""
    pool = client.connection_pool
    client.connection_pool = RedactedConnectionPool(
        connection_class=pool.connection_class, **pool.connection_kwargs)
