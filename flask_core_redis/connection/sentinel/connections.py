"""The connection to a Sentinel master: it opens its socket where the
registration's :class:`~.watch.MasterWatch` says the master is, within the
same connect attempt's bound as the socket itself. Its overrides are
redis-py workarounds, listed in :mod:`flask_core_redis.connection.redis_py`."""

from __future__ import annotations

from typing import Any

from ..connections import EventedConnection


class EventedSentinelConnection(EventedConnection):
    """A master connection that asks the watch where the master is before
    every socket it opens, the wait for a confirmation counted in the
    connect attempt.

    redis-py asks the sentinels in ``connect()`` only; a reconnect inside a
    retried command (after ``READONLY`` from a demoted master, say) would go
    back to the old address and fail until the retries run out."""

    #: redis-py's pool proxy; its ``sentinel_manager`` is the watch.
    connection_pool: Any

    def _connect_once(self) -> None:
        self._connect_retry()

    def _connect_retry(self) -> None:
        if self._sock:
            return
        if self.connection_pool.is_master:
            self.connect_check_health(check_health=self.connection_pool.check_connection)
            return
        super()._connect_retry()  # type: ignore[misc]  # redis-py's, by the MRO

    def _connect(self) -> Any:
        if self.connection_pool.is_master:
            watch = self.connection_pool.sentinel_manager
            self.host, self.port = watch.master_address(self.attempt_left())
            self._master_found = True
        return super()._connect()

    def _address(self) -> str:
        """Until the sentinels have named a master, the master's name: the
        host and port are still redis-py's placeholders (localhost:6379)."""
        if self.connection_pool.is_master and not getattr(self, "_master_found", False):
            return f"master {self.connection_pool.service_name!r} (not found yet)"
        return super()._address()

    def read_response(self, *args: Any, disconnect_on_error: bool = True,
                      **kwargs: Any) -> Any:
        """As a plain connection does, an error while reading a reply (one that
        fails to decode, say) closes the connection: redis-py 6.4-8.1's
        sentinel connection keeps it by default (8.2 closes it), and the next
        command on it then reads the rest of the failed reply."""
        return super().read_response(  # redis-py's, by the MRO
            *args, disconnect_on_error=disconnect_on_error, **kwargs)
