"""asyncio connections that report to
:class:`~flask_core_redis.connection.events.ConnectionEvents`, as the blocking
ones of :mod:`.connections` do, and the one that follows a Sentinel master.

Like the blocking connection, one connect attempt (socket, TLS handshake,
AUTH, HELLO, SELECT, CLIENT SETNAME) is bounded as a whole by the connect
timeout, and the attempts are made under the retry policy. Their overrides
are redis-py workarounds, listed in :mod:`.redis_py`."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar

from redis.asyncio.connection import AbstractConnection
from redis.exceptions import RedisError, TimeoutError

from .connections import address_of
from .events import ConnectionEvents
from .redis_py import abort_stream, disconnect_cause
from .sentinel import MasterWatch


class EventedAsyncConnection(AbstractConnection):
    """Reports connect, disconnect and connection errors; bounds one connect
    attempt, handshake included, by the connect timeout."""

    events: ClassVar[ConnectionEvents]

    async def connect(self) -> None:
        """Connect and shake hands under the retry policy, each try one
        bounded attempt (redis-py 6.4-7.1 connects once here)."""
        if self.is_connected:
            return
        await self.retry.call_with_retry(self._connect_once, self._drop)

    async def _connect_once(self) -> None:
        try:
            await self._within_connect_timeout(self._open())
        except (RedisError, OSError) as error:
            self.events.emit("error", address=address_of(self), error=error)
            raise
        self.events.emit("connect", address=address_of(self))

    async def connect_check_health(self, check_health: bool = True,
                                   retry_socket_connect: bool = True) -> None:
        """redis-py 7.x connects here, not through connect(), before sending a
        command on a closed connection: the same attempts, bounded and
        reported."""
        await self.connect()

    async def _open(self) -> None:
        await super().connect_check_health(check_health=True, retry_socket_connect=False)

    async def _within_connect_timeout(self, opening: Any) -> None:
        timeout = self.socket_connect_timeout
        if not timeout:
            await opening
            return
        try:
            await asyncio.wait_for(opening, timeout)
        except asyncio.TimeoutError:
            raise TimeoutError("Timeout connecting to server") from None

    async def _drop(self, error: BaseException, *failures: int) -> None:
        """After a failed attempt: close at once, not waiting for a TLS close
        from a server that may hang."""
        abort_stream(self)  # type: ignore[arg-type]
        await self.disconnect(nowait=True)

    async def disconnect(self, *args: Any, **kwargs: Any) -> None:
        was_connected = self.is_connected
        cause = disconnect_cause(self, args, kwargs)
        await super().disconnect(*args, **kwargs)
        if was_connected:
            self.events.emit("disconnect", address=address_of(self), error=cause)


class FollowingAsyncConnection(EventedAsyncConnection):
    """A connection to a Sentinel master: before every socket it opens it
    asks the registration's :class:`~.sentinel.MasterWatch` where the master
    is (no I/O while the watch vouches for it; else a bounded lookup in a
    worker thread), within the connect attempt's bound."""

    watch: ClassVar[MasterWatch]
    _master_found = False

    async def _open(self) -> None:
        watch = self.watch
        address = watch.address
        if not watch.vouches_for(address):
            address = await asyncio.to_thread(watch.master_address,
                                              self.socket_connect_timeout)
        self.host, self.port = address  # type: ignore[misc]
        self._master_found = True
        await super()._open()

    def on_the_master(self) -> bool:
        """Whether it is closed, or open to the address the watch vouches for."""
        if not self.is_connected:
            return True
        address = (self.host, self.port)
        return self.watch.vouches_for(address)


def evented_async_class(base: type[AbstractConnection], events: ConnectionEvents,
                        mixin: type[Any] = EventedAsyncConnection,
                        **bound: Any) -> type[AbstractConnection]:
    """A subclass of ``base`` bound to ``events`` (and ``bound``: a watch)."""
    return type(f"Evented{base.__name__}", (mixin, base), {"events": events, **bound})
