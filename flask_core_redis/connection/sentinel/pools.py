"""A Sentinel master's pools: a connection is handed out only to the master
the registration's :class:`~.watch.MasterWatch` vouches for."""

from __future__ import annotations

from typing import Any

from redis.connection import BlockingConnectionPool, ConnectionPool
from redis.sentinel import SentinelConnectionPool

from ..pools import WaitsThenRaisesMaxConnections
from .announcements import Address
from .watch import MasterWatch


class FollowsTheMaster:
    """Hands a connection out only if the watch vouches for its address (the
    sentinels confirmed it as the master within the last two seconds, and no
    failover of it is under way); else waits, as a connect attempt under the
    retry policy, for the watch to confirm the master, and moves the
    connection there if it is elsewhere. Busy and idle pools alike: a pool
    idle across a failover hands out no connection to the old master. A
    connection given back while open to another address than the master's is
    closed."""

    sentinel_manager: MasterWatch  # redis-py's SentinelConnectionPool's

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        connection = super().get_connection(*args, **kwargs)  # type: ignore[misc]
        if self.sentinel_manager.vouches_for(_address_of(connection)):
            return connection
        try:
            connection.retry.call_with_retry(lambda: self._move_to_master(connection),
                                             lambda error: connection.disconnect())
        except BaseException:
            self.release(connection)  # type: ignore[attr-defined]
            raise
        return connection

    def _move_to_master(self, connection: Any) -> None:
        """One connect attempt: wait for the watch to confirm the master, and
        connect there unless the connection already is."""
        with connection.one_attempt():
            master = self.sentinel_manager.master_address(connection.attempt_left())
            if master != _address_of(connection):
                connection.disconnect()
                connection._connect_once()

    @property
    def master_address(self) -> Address | None:
        """The master's address, as the watch last heard it."""
        return self.sentinel_manager.address

    def owns_connection(self, connection: Any) -> bool:
        at = _address_of(connection)
        return at in (None, self.sentinel_manager.address) and bool(
            ConnectionPool.owns_connection(self, connection))  # type: ignore[arg-type]


def _address_of(connection: Any) -> Address | None:
    """Where ``connection`` is open to; None while it is closed."""
    return (connection.host, connection.port) if connection._sock is not None else None


class FollowingSentinelPool(FollowsTheMaster, SentinelConnectionPool):
    """A Sentinel master's pool that follows a failover by itself."""


class BlockingSentinelPool(WaitsThenRaisesMaxConnections, FollowsTheMaster,
                           SentinelConnectionPool, BlockingConnectionPool):
    """A Sentinel master's pool that waits for a free connection."""
