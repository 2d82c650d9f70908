"""Connection classes that report to :class:`~flask_core_redis.events.ConnectionEvents`.

redis-py builds connections from a class and keyword arguments, and Cluster
drops keyword arguments it does not know; so the events object is bound into a
subclass made for each registration rather than passed as an argument.
The overrides of redis-py's methods here are workarounds, listed in
:mod:`.redis_py`."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from typing import Any, ClassVar

from redis.connection import AbstractConnection
from redis.exceptions import RedisError

from .events import ConnectionEvents
from .redis_py import disconnect_cause


def address_of(connection: object) -> str:
    """Where a connection, blocking or asyncio, connects: ``host:port`` or
    ``unix://path``, for its events."""
    path = getattr(connection, "path", "")
    if path:
        return f"unix://{path}"
    return f"{getattr(connection, 'host', '?')}:{getattr(connection, 'port', '?')}"


class EventedConnection(AbstractConnection):
    """Reports connect, disconnect and connection errors; bounds one connect
    attempt, TCP connect and handshake (AUTH, HELLO, SELECT, CLIENT SETNAME)
    together, by the connect timeout."""

    events: ClassVar[ConnectionEvents]
    #: When the connect attempt under way must end (monotonic seconds).
    _attempt_ends: float | None = None

    @contextlib.contextmanager
    def one_attempt(self) -> Iterator[None]:
        """Bound what runs inside, with the connect attempts it makes, by one
        connect timeout; inside another, the outer one's bound holds."""
        if self._attempt_ends is not None:
            yield
            return
        self._attempt_ends = time.monotonic() + (self.socket_connect_timeout or math.inf)
        try:
            yield
        finally:
            self._attempt_ends = None

    def attempt_left(self) -> float | None:
        """Seconds left to the connect attempt under way (at least a
        millisecond: a socket timeout of 0 would not block at all); None
        without a connect timeout."""
        if self._attempt_ends is None:
            return self.socket_connect_timeout
        if self._attempt_ends == math.inf:
            return None
        return max(0.001, self._attempt_ends - time.monotonic())

    def _address(self) -> str:
        return address_of(self)

    def connect(self) -> None:
        """Connect and shake hands under the retry policy, each try one attempt,
        as redis-py does from 7.2: redis-py 6.4-7.1 connects once here and
        leaves a failure to the command's own retry, which a pool's first
        connect never reaches."""
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
            with self.one_attempt():
                super().connect_check_health(check_health=check_health,
                                             retry_socket_connect=False)
        except (RedisError, OSError) as error:
            self.events.emit("error", address=self._address(), error=error)
            raise
        self.events.emit("connect", address=self._address())

    def _connect(self) -> Any:
        """The socket, TLS handshake included, within what is left of the
        attempt: redis-py 6.4-8.1 sets the read timeout (unset by default)
        before the TLS handshake, which then waits for ever on a server that
        hangs (8.2 shakes hands under the connect timeout)."""
        read_timeout, connect_timeout = self.socket_timeout, self.socket_connect_timeout
        self.socket_timeout = self.socket_connect_timeout = self.attempt_left()
        try:
            sock = super()._connect()  # type: ignore[safe-super]
        finally:
            self.socket_timeout, self.socket_connect_timeout = read_timeout, connect_timeout
        sock.settimeout(read_timeout)
        return sock

    def on_connect_check_health(self, check_health: bool = True) -> None:
        sock = self._sock
        if sock is not None and self.socket_connect_timeout:
            sock.settimeout(self.attempt_left())
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
                             error=disconnect_cause(self, args, kwargs))


def evented_class(base: type[AbstractConnection], events: ConnectionEvents,
                  mixin: type[Any] = EventedConnection,
                  ) -> type[AbstractConnection]:
    """A subclass of ``base`` bound to ``events``."""
    return type(f"Evented{base.__name__}", (mixin, base), {"events": events})
