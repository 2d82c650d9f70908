"""Connection pools: their reprs, and the choice between a pool that fails at
once when every connection is in use and one that waits for a free one (a
Sentinel master's pools are in :mod:`.sentinel.pools`). The reprs and the
wait's error are redis-py workarounds, in :mod:`.redis_py`."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from redis.connection import BlockingConnectionPool, ConnectionPool

from ..config import Settings
from .redis_py import RedactedRepr, WaitsThenRaisesMaxConnections


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
