"""Publish and subscribe from asyncio code, on a client of any mode: what
:meth:`CoreRedis.apublish <flask_core_redis.CoreRedis.apublish>` and
:meth:`CoreRedis.asubscribe <flask_core_redis.CoreRedis.asubscribe>` run on.

A subscription reads on the event loop that made it, so it opens an asyncio
client of its own on the running loop when it is first read, and closes it
when the iteration ends (``aclose()``, ``break``, cancellation). In Cluster
mode it uses sharded pub/sub (SSUBSCRIBE, one connection per shard; redis-py's
asyncio Cluster client has no pub/sub), as :mod:`.pubsub` does.

It follows failovers: a connection that is lost (after the retry policy's
attempts), or on Sentinel is left on a master the registration's watch no
longer names, is closed, and its channels are subscribed again, on Cluster
on the shards that own them now (the slot map is read again), with the core's
delays, min(n x 50 ms, 2000 ms), each retry reported as a connection event.
Messages published while a channel is not subscribed are lost, as with any
Redis pub/sub."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any

from redis.asyncio.client import PubSub
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import ConnectionPool
from redis.exceptions import ConnectionError, RedisError, TimeoutError

from .async_clients import AsyncPool
from .events import ConnectionEvents
from .redis_py import as_redis_errors_async
from .retry import LinearBackoff

__all__ = ["AsyncSubscription", "ClientOpener", "apublish", "asubscribe"]

#: How long one read waits before the subscription checks its connection
#: (on Sentinel, that it is still on the master) and reads again.
POLL_SECONDS = 1.0

#: The message kinds a subscription yields.
MESSAGE_KINDS = frozenset({"message", "smessage"})

#: Builds a new asyncio client homed on the loop it is given.
ClientOpener = Callable[[asyncio.AbstractEventLoop], Any]


async def apublish(client: Any, channel: str, message: str | bytes) -> int:
    """Send ``message`` on ``channel`` as named (SPUBLISH on a Cluster
    client, routed to the channel's shard); the number of subscribers that
    got it."""
    if isinstance(client, RedisCluster):
        received = await client.execute_command("SPUBLISH", channel, message)
    else:
        received = await client.publish(channel, message)
    return int(received)


def asubscribe(open_client: ClientOpener, *channels: str, events: ConnectionEvents,
               wait_for_redis: bool = False,
               address: str | None = None) -> AsyncIterator[dict[str, Any]]:
    """The messages published on ``channels`` (names as sent), each a dict
    (``type``: ``message``, or ``smessage`` on Cluster; ``channel``;
    ``data``), on a client ``open_client(running_loop)`` builds when the
    iteration starts. Subscribing the first time fails with the error
    unless ``wait_for_redis``, which retries that too. Its retries are
    reported as events of ``address`` (default: ``subscription:`` and the
    channels)."""
    if not channels:
        raise ValueError("asubscribe() needs at least one channel")
    return _messages(AsyncSubscription(open_client, channels, events,
                                       wait_for_redis=wait_for_redis, address=address))


async def _messages(subscription: AsyncSubscription) -> AsyncIterator[dict[str, Any]]:
    try:
        while True:
            yield await subscription.next_message()
    finally:
        await subscription.aclose()


class _Reader:
    """One connection's subscription: its PubSub, the channels it holds, and
    on Cluster the pool of the shard it reads from."""

    def __init__(self, pubsub: PubSub, channels: frozenset[str],
                 pool: ConnectionPool | None = None) -> None:
        self.pubsub = pubsub
        self.channels = channels
        self.pool = pool

    async def next_message(self) -> dict[str, Any]:
        """The next published message, in turns of ``POLL_SECONDS``; a
        ConnectionError once the connection is off the master."""
        while True:
            _check_on_the_master(self.pubsub.connection)
            # Confirmations are left out here: redis-py 6.4-7.2's asyncio
            # PubSub takes an smessage for one (a workaround in .redis_py).
            message = await self.pubsub.get_message(timeout=POLL_SECONDS)
            if message is not None and message["type"] in MESSAGE_KINDS:
                return message  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        with contextlib.suppress(RedisError, OSError):
            await self.pubsub.aclose()
        if self.pool is not None:
            with contextlib.suppress(RedisError, OSError):
                await self.pool.disconnect()


def _check_on_the_master(connection: Any) -> None:
    """On Sentinel, a ConnectionError if ``connection`` is open to another
    address than the master the registration's watch last heard of."""
    watch = getattr(connection, "watch", None)
    if watch is None or not connection.is_connected:
        return
    master = watch.address
    if master is not None and master != (connection.host, connection.port):
        raise ConnectionError(f"the master moved to {master[0]}:{master[1]}")


class AsyncSubscription:
    """Messages on ``channels`` from readers (one per connection) it keeps
    subscribed: :meth:`next_message` waits on all of them at once, and
    subscribes again the channels of one that failed. Read it from one event
    loop, one task at a time."""

    def __init__(self, open_client: ClientOpener, channels: Iterable[str],
                 events: ConnectionEvents, *, wait_for_redis: bool = False,
                 address: str | None = None) -> None:
        self._open_client = open_client
        self._events = events
        self._wait_for_redis = wait_for_redis
        self._lost: set[str] = set(channels)
        self._address = address or "subscription:" + ",".join(sorted(self._lost))
        self._client: Any = None
        self._reading: dict[asyncio.Task[dict[str, Any]], _Reader] = {}
        self._subscribed_once = False
        self._failures = 0
        self._retry_at = 0.0
        self._backoff = LinearBackoff()

    async def next_message(self) -> dict[str, Any]:
        """The next message on any channel, waiting as long as it takes."""
        while True:
            if self._lost and time.monotonic() >= self._retry_at:
                await self._subscribe_lost()
            wait = max(0.0, self._retry_at - time.monotonic()) if self._lost else None
            if not self._reading:
                await asyncio.sleep(wait or 0)
                continue
            done, _ = await asyncio.wait(self._reading, timeout=wait,
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                message = await self._take(task)
                if message is not None:
                    return message

    async def _take(self, task: asyncio.Task[dict[str, Any]]) -> dict[str, Any] | None:
        """A finished read's message, the reader reading on; or None when
        its connection was lost, its channels to subscribe again."""
        reader = self._reading.pop(task)
        try:
            message = task.result()
        except (ConnectionError, TimeoutError) as error:
            self._lost.update(reader.channels)
            await reader.aclose()
            self._failed(error)
            return None
        self._read(reader)
        return message

    def _read(self, reader: _Reader) -> None:
        self._reading[asyncio.ensure_future(reader.next_message())] = reader

    async def _subscribe_lost(self) -> None:
        try:
            if self._client is None:
                self._client = self._open_client(asyncio.get_running_loop())
            for channels, pool in await self._shards():
                self._read(await _subscribed(self._client, channels, pool))
                self._lost.difference_update(channels)
        except RedisError as error:
            if not (self._subscribed_once or self._wait_for_redis):
                raise
            self._failed(error)
            return
        self._subscribed_once = True
        self._failures = 0

    async def _shards(self) -> list[tuple[frozenset[str], ConnectionPool | None]]:
        """The lost channels by the connection to subscribe them on: one
        connection of the client's pool, or on Cluster a new pool to each
        shard's master (the slot map read again after a loss)."""
        client = self._client
        if not isinstance(client, RedisCluster):
            return [(frozenset(self._lost), None)]
        if self._subscribed_once:
            await as_redis_errors_async(client.nodes_manager.initialize)
        else:
            await as_redis_errors_async(client.initialize)
        by_node: dict[str, set[str]] = {}
        nodes: dict[str, Any] = {}
        for channel in self._lost:
            node = await as_redis_errors_async(_node_of, client, channel)
            nodes[node.name] = node
            by_node.setdefault(node.name, set()).add(channel)
        # The project's pool: its repr shows no password (redis-py 6.4-7.3's does).
        return [(frozenset(channels), AsyncPool(connection_class=nodes[name].connection_class,
                                                **nodes[name].connection_kwargs))
                for name, channels in by_node.items()]

    def _failed(self, error: RedisError) -> None:
        self._failures += 1
        delay = self._backoff.compute(self._failures)
        self._retry_at = time.monotonic() + delay
        self._events.emit("error", address=self._address, error=error)
        self._events.emit("retry", address=self._address, attempt=self._failures,
                          delay_ms=delay * 1000)

    async def aclose(self) -> None:
        """Stop reading, and close every connection and the client."""
        reading, self._reading = self._reading, {}
        for task in reading:
            task.cancel()
        await asyncio.gather(*reading, return_exceptions=True)
        for reader in reading.values():
            await reader.aclose()
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(RedisError, OSError):
                await client.aclose()


async def _node_of(client: Any, channel: str) -> Any:
    return client.get_node_from_key(channel)


async def _subscribed(client: Any, channels: frozenset[str],
                      pool: ConnectionPool | None) -> _Reader:
    """A reader subscribed to ``channels``: on ``client``'s pool, or on
    ``pool``'s shard with one SSUBSCRIBE per slot (a shard refuses one that
    names channels of several slots)."""
    reader = _Reader(client.pubsub() if pool is None else PubSub(pool), channels, pool)
    try:
        if pool is None:
            await reader.pubsub.subscribe(*channels)
        else:
            for same_slot in _by_slot(client, channels):
                await reader.pubsub.execute_command("SSUBSCRIBE", *same_slot)
    except BaseException:
        await reader.aclose()
        raise
    return reader


def _by_slot(client: Any, channels: Iterable[str]) -> list[list[str]]:
    slots: dict[int, list[str]] = {}
    for channel in channels:
        slots.setdefault(client.keyslot(channel), []).append(channel)
    return list(slots.values())
