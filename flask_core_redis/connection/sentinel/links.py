"""Connections from a watch to the sentinels: redis-py's asyncio connections,
RESP2, bounded by the connect timeout, with no retry of their own (the watch
decides when to try again), and closed at once, whatever the server does."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
from collections.abc import Mapping
from typing import Any

from redis.asyncio.connection import Connection as AsyncConnection
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff

from ..redis_py import ASYNC_SSL_CONNECTION, abort_stream, socket_of
from .announcements import Address, MasterAnswer, read_master_answer
from .threads import task_of


def _accepted(kind: type[Any]) -> set[str]:
    """The keyword arguments ``kind``, or a class it passes them up to, takes."""
    return {name for cls in kind.__mro__ if "__init__" in vars(cls)
            for name in inspect.signature(vars(cls)["__init__"]).parameters}


class SentinelLinks:
    """Opens connections to sentinels with ``options`` (credentials, and
    ``ssl`` with the TLS files and options), and keeps track of those open,
    so that a forked child can let go of its parent's."""

    def __init__(self, options: Mapping[str, Any], connect_timeout: float) -> None:
        self._kind = ASYNC_SSL_CONNECTION if options.get("ssl") else AsyncConnection
        self._options = {key: value for key, value in options.items() if key != "ssl"}
        unknown = sorted(set(self._options) - _accepted(self._kind))
        if unknown:
            raise TypeError(
                f"CoreRedis() options {', '.join(unknown)} cannot reach the sentinels: "
                "redis-py's asyncio connections, with which the extension follows them, "
                "do not take them. Leave them out, or reach the sentinels without TLS "
                "(REDIS_SENTINEL_SSL=false).")
        self.connect_timeout = connect_timeout
        self._open: set[AsyncConnection] = set()

    def open(self, sentinel: Address) -> AsyncConnection:
        """A connection to ``sentinel``, not yet connected; :meth:`drop` it."""
        host, port = sentinel
        connection = self._kind(host=host, port=port,
                                socket_connect_timeout=self.connect_timeout,
                                socket_timeout=self.connect_timeout, decode_responses=True,
                                protocol=2, retry=AsyncRetry(NoBackoff(), 0), **self._options)
        self._open.add(connection)
        return connection

    async def connect(self, connection: AsyncConnection) -> None:
        """Connect, within the connect timeout, whatever the server does."""
        try:
            await asyncio.wait_for(task_of(connection.connect()), self.connect_timeout)
        except asyncio.TimeoutError:
            raise asyncio.TimeoutError(
                f"no connection within {self.connect_timeout * 1000:.0f} ms") from None

    async def drop(self, connection: AsyncConnection) -> None:
        """Close ``connection`` at once: a TLS close waits for the server's
        own by default, up to half a minute from a server that hangs."""
        self._open.discard(connection)
        abort_stream(connection)
        await connection.disconnect(nowait=True)
        await asyncio.sleep(0)  # the aborted transport closes its socket in the next turn

    async def ask_master(self, sentinel: Address, master: str) -> MasterAnswer:
        """``SENTINEL MASTER <master>`` on a connection of its own."""
        connection = self.open(sentinel)
        try:
            await self.connect(connection)
            await connection.send_command("SENTINEL", "MASTER", master)
            return read_master_answer(await connection.read_response())
        finally:
            await self.drop(connection)

    def let_go_after_fork(self) -> None:
        """In a forked child: close the child's copies of its parent's
        sockets (the parent's stay open), so that no sentinel keeps a
        subscription that nobody reads for as long as the child lives. The
        objects around them are never used again, nor collected."""
        for connection in self._open:
            sock = socket_of(connection)
            if sock is not None:
                with contextlib.suppress(OSError):
                    os.close(sock.fileno())
        self._open = set()
