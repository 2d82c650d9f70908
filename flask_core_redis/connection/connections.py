"""Connection classes that report to :class:`~flask_core_redis.events.ConnectionEvents`.

redis-py builds connections from a class and keyword arguments, and Cluster
drops keyword arguments it does not know; so the events object is bound into a
subclass made for each registration rather than passed as an argument."""

from __future__ import annotations

import sys
from typing import Any, ClassVar

from redis.connection import AbstractConnection
from redis.exceptions import RedisError

from .events import ConnectionEvents


class EventedConnection(AbstractConnection):
    """Reports connect, disconnect and connection errors; bounds the handshake
    (AUTH, HELLO, SELECT, CLIENT SETNAME) by the connect timeout, not only the
    TCP connect."""

    events: ClassVar[ConnectionEvents]

    def _address(self) -> str:
        path = getattr(self, "path", "")
        if path:
            return f"unix://{path}"
        return f"{getattr(self, 'host', '?')}:{getattr(self, 'port', '?')}"

    def connect(self) -> None:
        """Connect and shake hands under the retry policy, each try one attempt:
        redis-py 6.x connects once here and leaves a failure to the command's
        own retry, which a pool's first connect never reaches."""
        self.retry.call_with_retry(self._connect_once, self.disconnect)

    def _connect_once(self) -> None:
        self.connect_check_health(check_health=True, retry_socket_connect=False)

    def connect_check_health(self, check_health: bool = True,
                             retry_socket_connect: bool = True) -> None:
        if self._sock:
            return
        try:
            # One attempt per call, always: a reconnect inside a retried command
            # would otherwise run a retry loop of its own, and a command cut off
            # mid-flight would make (retries + 1) squared attempts.
            super().connect_check_health(check_health=check_health,
                                         retry_socket_connect=False)
        except (RedisError, OSError) as error:
            self.events.emit("error", address=self._address(), error=error)
            raise
        self.events.emit("connect", address=self._address())

    def _connect(self) -> Any:
        """The socket, TLS handshake included, under the connect timeout:
        redis-py sets the read timeout (unset by default) before the TLS
        handshake, which then waits for ever on a server that hangs."""
        read_timeout = self.socket_timeout
        self.socket_timeout = self.socket_connect_timeout
        try:
            sock = super()._connect()  # type: ignore[safe-super]
        finally:
            self.socket_timeout = read_timeout
        sock.settimeout(read_timeout)
        return sock

    def on_connect_check_health(self, check_health: bool = True) -> None:
        sock = self._sock
        if sock is not None and self.socket_connect_timeout:
            sock.settimeout(self.socket_connect_timeout)
        try:
            super().on_connect_check_health(check_health=check_health)
        finally:
            if self._sock is not None:
                self._sock.settimeout(self.socket_timeout)

    def disconnect(self, *args: Any, **kwargs: Any) -> None:
        was_connected = self._sock is not None
        super().disconnect(*args, **kwargs)
        if was_connected:
            self.events.emit("disconnect", address=self._address(),
                             error=self._disconnect_cause(args, kwargs))

    def _disconnect_cause(self, args: tuple[Any, ...],
                          kwargs: dict[str, Any]) -> BaseException | None:
        """Why this connection is being dropped: the error redis-py passes along
        or, since it often calls ``disconnect()`` bare from an ``except`` block,
        the error being handled if it came out of this very connection (a
        topology refresh closes healthy connections while handling another
        node's error). None for a deliberate close."""
        passed = kwargs.get("error") or next(
            (arg for arg in args if isinstance(arg, BaseException)), None)
        if passed is not None:
            return passed
        handled = sys.exc_info()[1]
        if isinstance(handled, RedisError | OSError) and self._raised_here(handled):
            return handled
        return None

    def _raised_here(self, error: BaseException) -> bool:
        trace = error.__traceback__
        while trace is not None:
            if trace.tb_frame.f_locals.get("self") is self:
                return True
            trace = trace.tb_next
        return False


class EventedSentinelConnection(EventedConnection):
    connection_pool: Any  # set by redis-py's SentinelManagedConnection
    """A master connection that asks the sentinels where the master is before
    every socket it opens.

    redis-py asks them in ``connect()`` only; a reconnect inside a retried
    command (after ``READONLY`` from a demoted master, say) would go back to the
    old address and fail until the retries run out."""

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
            self.host, self.port = self.connection_pool.get_master_address()
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
        fails to decode, say) closes the connection: redis-py's sentinel
        connection keeps it by default, and the next command on it then read
        the rest of the failed reply."""
        return super().read_response(  # redis-py's, by the MRO
            *args, disconnect_on_error=disconnect_on_error, **kwargs)


def evented_class(base: type[AbstractConnection], events: ConnectionEvents,
                  mixin: type[Any] = EventedConnection,
                  ) -> type[AbstractConnection]:
    """A subclass of ``base`` bound to ``events``."""
    return type(f"Evented{base.__name__}", (mixin, base), {"events": events})
