"""Connection pools: their reprs, and the choice between a pool that fails at
once when every connection is in use and one that waits for a free one (a
Sentinel master's pools are in :mod:`.sentinel.pools`)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from redis.connection import BlockingConnectionPool, ConnectionPool
from redis.exceptions import ConnectionError, MaxConnectionsError

from ..config import Settings

#: What redis-py's blocking pool raises when its wait for a connection ends.
_WAIT_ENDED = "No connection available."


class RedactedRepr:
    """A pool repr that shows where it connects, never its credentials:
    redis-py before 7.x prints every connection keyword, the password too, and
    embeds that repr in errors (a sentinel's, in MasterNotFoundError)."""

    connection_kwargs: dict[str, Any]
    connection_class: type

    def __repr__(self) -> str:
        kwargs = self.connection_kwargs
        address = kwargs.get("path") or f"{kwargs.get('host')}:{kwargs.get('port')}"
        return (f"<{type(self).__name__}({self.connection_class.__name__} {address}"
                f" db={kwargs.get('db', 0)})>")


class WaitsThenRaisesMaxConnections:
    """A blocking pool whose ended wait raises MaxConnectionsError, as a full
    plain pool does: redis-py raises a bare ConnectionError, which the retry
    policy would take for an outage and Cluster for a failed node."""

    max_connections: int
    timeout: float | None

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().get_connection(*args, **kwargs)  # type: ignore[misc]
        except ConnectionError as error:
            if isinstance(error, MaxConnectionsError) or str(error) != _WAIT_ENDED:
                raise
            raise MaxConnectionsError(
                f"all {self.max_connections} connections of the pool stayed in use "
                f"for {self.timeout} s") from None


class RedactedConnectionPool(RedactedRepr, ConnectionPool):
    """redis-py's pool: a command that finds every connection in use fails."""


class BlockingPool(WaitsThenRaisesMaxConnections, RedactedRepr, BlockingConnectionPool):
    """redis-py's blocking pool: a command that finds every connection in use
    waits for one, up to the pool timeout."""


def pool_class(settings: Settings,
               failing: Callable[..., Any] = RedactedConnectionPool,
               waiting: Callable[..., Any] = BlockingPool) -> Callable[..., Any]:
    """The pool to build: ``failing`` fails at once when every connection is
    in use; ``waiting``, when the pool timeout is set, waits that long."""
    if settings.pool_timeout is None:
        return failing
    return functools.partial(waiting, timeout=settings.pool_timeout)


def pool_limits(settings: Settings) -> dict[str, Any]:
    """The pool size keyword, when one is configured (redis-py's default is
    no limit for a plain pool)."""
    if settings.max_connections is None:
        return {}
    return {"max_connections": settings.max_connections}
