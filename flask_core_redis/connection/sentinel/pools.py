"""A Sentinel master's pools: a connection is handed out only to the master
the registration's :class:`~.watch.MasterWatch` vouches for."""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import weakref
from typing import Any

from redis.connection import BlockingConnectionPool, ConnectionPool
from redis.sentinel import SentinelConnectionPool

from ..redis_py import WaitsThenRaisesMaxConnections
from .announcements import Address
from .watch import MasterWatch


class FollowsTheMaster:
    """Hands a connection out only if the watch vouches for its address (the
    sentinels confirmed it as the master within the last two seconds, and no
    failover of it is under way); else waits, as a connect attempt under the
    retry policy, for the watch to confirm the master, and moves the
    connection there if it is elsewhere. Busy and idle pools alike: a pool
    idle across a failover hands out no connection to the old master.

    When the master moves, the connections out of the pool that are still on
    the old one (a command stuck on a master that hangs, a subscription) have
    their socket shut down: what the old master answers now is lost with it,
    and the command is retried, or the subscription made again, on the new
    one. A connection given back while open to another address than the
    master's is closed, and kept."""

    sentinel_manager: MasterWatch  # redis-py's SentinelConnectionPool's

    #: The connections handed out and not given back, each pool its own way
    #: in redis-py; kept here for every kind.
    _out: weakref.WeakSet[Any]
    _out_lock: threading.Lock

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sentinel_manager.on_move(self)

    def reset(self) -> None:
        """As redis-py's, at creation and in a forked child (where the lock
        may have been held by a thread that is not there): none out."""
        super().reset()  # type: ignore[misc]
        self._out_lock = threading.Lock()
        self._out = weakref.WeakSet()

    def get_connection(self, *args: Any, **kwargs: Any) -> Any:
        connection = super().get_connection(*args, **kwargs)  # type: ignore[misc]
        with self._out_lock:
            self._out.add(connection)
        if self.sentinel_manager.vouches_for(_address_of(connection)):
            return connection
        try:
            connection.retry.call_with_retry(lambda: self._move_to_master(connection),
                                             lambda error: connection.disconnect())
        except BaseException:
            self.release(connection)
            raise
        return connection

    def release(self, connection: Any) -> None:
        """Take ``connection`` back, closed if it is open to another address
        than the master's (it connects to the master when next used)."""
        with self._out_lock:
            self._out.discard(connection)
        at = _address_of(connection)
        if at is not None and at != self.sentinel_manager.address:
            connection.disconnect()
        super().release(connection)  # type: ignore[misc]

    def get_master_address(self) -> Address:
        """redis-py's: the master's address, once confirmed."""
        return self.sentinel_manager.master_address()

    def master_moved(self, old: Address | None, new: Address) -> None:
        """In the watch's thread: shut down (not close: the thread using it
        may be reading) the socket of each connection out on another master."""
        with self._out_lock:
            out = list(self._out)
        for connection in out:
            sock = connection._sock
            if sock is not None and connection.pid == os.getpid() and (
                    connection.host, connection.port) != new:
                with contextlib.suppress(OSError):
                    socket.socket.shutdown(sock, socket.SHUT_RDWR)  # SSLSocket's would unwrap

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

    def serves_the_master(self, connection: Any) -> bool | None:
        """Whether ``connection`` is open to the master: True while the
        sentinels vouch for its address, False once they name another (or it
        is closed), None while they confirm none (a failover under way)."""
        at = _address_of(connection)
        if at is None or at != self.sentinel_manager.address:
            return False
        return True if self.sentinel_manager.vouches_for(at) else None

    def owns_connection(self, connection: Any) -> bool:
        """Whether ``connection`` is this process's (redis-py's sentinel pool
        also wants it on the master's address, and on redis-py 6.4-8.0
        loses a slot of the pool for each one it turns away)."""
        return bool(ConnectionPool.owns_connection(self, connection))  # type: ignore[arg-type]


def _address_of(connection: Any) -> Address | None:
    """Where ``connection`` is open to; None while it is closed."""
    return (connection.host, connection.port) if connection._sock is not None else None


class FollowingSentinelPool(FollowsTheMaster, SentinelConnectionPool):
    """A Sentinel master's pool that follows a failover by itself."""


class BlockingSentinelPool(WaitsThenRaisesMaxConnections, FollowsTheMaster,
                           SentinelConnectionPool, BlockingConnectionPool):
    """A Sentinel master's pool that waits for a free connection."""
