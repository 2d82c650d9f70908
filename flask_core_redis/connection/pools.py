"""Connection pools: their reprs, the choice between a pool that fails at once
when every connection is in use and one that waits for a free one, and a
Sentinel master's pool that notices a failover by itself."""

from __future__ import annotations

import functools
import inspect
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from redis import Redis
from redis.connection import BlockingConnectionPool, ConnectionPool
from redis.exceptions import ConnectionError, MaxConnectionsError, RedisError
from redis.sentinel import SentinelConnectionPool

from ..config import Settings

#: What redis-py's blocking pool raises when its wait for a connection ends.
_WAIT_ENDED = "No connection available."
_DISCONNECT_TAKES_INUSE = "inuse_connections" in inspect.signature(
    BlockingConnectionPool.disconnect).parameters
#: How often a Sentinel master's pool in use asks the sentinels whether the
#: master moved (see FollowsTheMaster).
MASTER_CHECK_SECONDS = 1.0


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


class FollowsTheMaster:
    """A Sentinel master's pool that asks the sentinels where the master is
    at most every MASTER_CHECK_SECONDS while it is used, in a thread of its
    own, never in the command's way.

    redis-py asks them only when a connection opens a socket, so pooled
    connections kept writing to a master the sentinels had replaced, until
    the sentinels demoted it, some ten seconds later (their check of a
    replica's role): every write in between was acknowledged, then lost. Once
    the new address is known, redis-py's pool closes the idle connections to
    the old one, and each busy one as it comes back."""

    is_master: bool
    get_master_address: Callable[[], Any]  # redis-py's SentinelConnectionPool's
    _next_check = 0.0
    #: The process whose thread is asking (a fork must not inherit the flag).
    _asking_in: int | None = None

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        if self.is_master:
            self.check_if_due()
        return super().get_connection(*args, **kwargs)  # type: ignore[misc]

    def left_behind(self, connection: Any) -> bool:
        """Whether ``connection`` is open to a master the sentinels replaced."""
        known = getattr(self, "master_address", None)
        return (self.is_master and known is not None and connection._sock is not None
                and (connection.host, connection.port) != tuple(known))

    def check_if_due(self) -> None:
        """Start a thread that asks the sentinels where the master is, unless
        one asked less than MASTER_CHECK_SECONDS ago or is still asking."""
        now = time.monotonic()
        if now < self._next_check or self._asking_in == os.getpid():
            return
        self._next_check = now + MASTER_CHECK_SECONDS
        self._asking_in = os.getpid()
        threading.Thread(target=self._check, name="flask-core-redis master check",
                         daemon=True).start()

    def _check(self) -> None:
        try:
            self.get_master_address()
        except (RedisError, OSError):
            pass  # no sentinel answers: the next connection to open says so
        finally:
            self._asking_in = None


class RedactedConnectionPool(RedactedRepr, ConnectionPool):
    """redis-py's pool: a command that finds every connection in use fails."""


class BlockingPool(WaitsThenRaisesMaxConnections, RedactedRepr, BlockingConnectionPool):
    """redis-py's blocking pool: a command that finds every connection in use
    waits for one, up to the pool timeout."""


class FollowingSentinelPool(FollowsTheMaster, SentinelConnectionPool):
    """A Sentinel master's pool that follows a failover by itself."""


class BlockingSentinelPool(WaitsThenRaisesMaxConnections, FollowsTheMaster,
                           SentinelConnectionPool, BlockingConnectionPool):
    """A Sentinel master's pool that waits for a free connection."""

    def disconnect(self, inuse_connections: bool = True) -> None:
        # On a master change redis-py's sentinel code asks to close the idle
        # connections only; before 7.x the blocking pool takes no argument and
        # closes them all, and those in use reconnect to the new master.
        asked: dict[str, Any] = (
            {"inuse_connections": inuse_connections} if _DISCONNECT_TAKES_INUSE else {})
        super().disconnect(**asked)


def redact_pool(client: Redis) -> None:
    """Give ``client``, built by redis-py with a plain pool and not yet
    connected, a redacted pool with the same connection class and settings."""
    pool = client.connection_pool
    client.connection_pool = RedactedConnectionPool(
        connection_class=pool.connection_class, **pool.connection_kwargs)


def pool_class(settings: Settings, sentinel: bool = False) -> Callable[..., Any]:
    """The pool to build, bound to the pool timeout when it blocks."""
    if settings.pool_timeout is None:
        return FollowingSentinelPool if sentinel else RedactedConnectionPool
    blocking = BlockingSentinelPool if sentinel else BlockingPool
    return functools.partial(blocking, timeout=settings.pool_timeout)


def pool_limits(settings: Settings) -> dict[str, Any]:
    """The pool size keyword, when one is configured (redis-py's default is
    no limit for a plain pool)."""
    if settings.max_connections is None:
        return {}
    return {"max_connections": settings.max_connections}
