"""Publish and subscribe on a client of any mode: what
:meth:`CoreRedis.publish <flask_core_redis.CoreRedis.publish>` and
:meth:`CoreRedis.subscribe <flask_core_redis.CoreRedis.subscribe>` run on.

In Cluster mode both sides use sharded pub/sub (SPUBLISH / SSUBSCRIBE, Redis
7): a message goes only to the shard that owns its channel instead of being
broadcast over the cluster bus to every node. The subscription reads the same
way in every mode (``get_message``); in Cluster messages have the type
``smessage`` instead of ``message``."""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from typing import Any

from redis.client import PubSub
from redis.cluster import RedisCluster
from redis.exceptions import ConnectionError, RedisError, TimeoutError

from .redis_py import as_redis_errors

__all__ = ["ShardedPubSub", "publish", "subscribe"]


def publish(client: Any, channel: str, message: str | bytes) -> int:
    """Send ``message`` on ``channel`` as named (SPUBLISH on a Cluster
    client); the number of subscribers that got it."""
    # Typed Any: redis-py 6.x annotates every reply as possibly awaitable.
    received: Any = (client.spublish(channel, message) if isinstance(client, RedisCluster)
                     else client.publish(channel, message))
    return int(received)


#: How long a read waits on one node before trying the next.
NODE_TURN_SECONDS = 0.01


#: The replies that confirm a (un)subscription rather than carry a message.
SUBSCRIPTION_KINDS = frozenset({"ssubscribe", "sunsubscribe"})


class ShardedPubSub:
    """A Cluster PubSub that reads like any other: ``get_message``, ``listen``,
    ``subscribe`` and ``unsubscribe`` use the sharded commands; the rest is
    redis-py's ``ClusterPubSub``.

    A node that fails while it is read raises the error, as redis-py does, but
    its channels are not lost with it: the next read refreshes the slot map and
    subscribes them again on their current masters (redis-py 6.4-7.4 keeps
    reading the dead node, so a failover silences them for good)."""

    def __init__(self, pubsub: Any) -> None:
        #: redis-py's ``ClusterPubSub`` underneath.
        self.pubsub = pubsub
        #: Channels of a node that failed, to subscribe again.
        self.lost: set[Any] = set()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.pubsub, name)

    def get_message(self, ignore_subscribe_messages: bool = False,
                    timeout: float | None = 0.0) -> dict[str, Any] | None:
        """The next message from any node (a dict: ``type``, ``channel``,
        ``data``...), waiting up to ``timeout`` seconds (None: until one
        comes); None if none came.

        Each node is read by name, in turn, and subscription confirmations are
        left out here: redis-py 6.4-7.4's own round robin ignores the timeout,
        and asked to leave them out returns None for every message."""
        deadline = time.monotonic() + (math.inf if timeout is None else timeout)
        while True:
            self._subscribe_lost_channels()
            names = list(self.pubsub.node_pubsub_mapping)
            # One node: wait on its socket; several: take turns in short waits.
            wait = max(0.0, deadline - time.monotonic())
            turn: float | None = min(wait, NODE_TURN_SECONDS)
            if len(names) == 1:
                turn = None if timeout is None else wait
            for name in names:
                message = self._read(name, turn)
                if message is not None and not (
                        ignore_subscribe_messages and _confirms_a_subscription(message)):
                    return message
            if time.monotonic() >= deadline:
                return None
            if not names:  # nothing subscribed (yet): nothing to wait on
                time.sleep(min(wait, NODE_TURN_SECONDS))

    def _read(self, name: str, timeout: float | None) -> dict[str, Any] | None:
        node = self.pubsub.cluster.get_node(node_name=name)
        try:
            if node is None:  # gone from the slot map
                raise ConnectionError(f"{name} is no longer in the cluster")
            message: dict[str, Any] | None = self.pubsub.get_sharded_message(
                timeout=timeout, target_node=node)
            return message
        except (ConnectionError, TimeoutError):
            self._drop_node(name)
            raise

    def _drop_node(self, name: str) -> None:
        node_pubsub = self.pubsub.node_pubsub_mapping.pop(name, None)
        if node_pubsub is not None:
            self.lost.update(node_pubsub.shard_channels)
            with contextlib.suppress(RedisError, OSError):
                node_pubsub.close()

    def _subscribe_lost_channels(self) -> None:
        if self.lost:
            as_redis_errors(self.pubsub.cluster.nodes_manager.initialize)
            self.pubsub.ssubscribe(*self.lost)
            self.lost.clear()

    def listen(self) -> Iterator[dict[str, Any]]:
        """Every message as it arrives, subscription confirmations included."""
        while True:
            message = self.get_message(timeout=1.0)
            if message is not None:
                yield message

    def subscribe(self, *channels: str) -> Any:
        """Subscribe to ``channels`` too (SSUBSCRIBE, on each channel's shard)."""
        return self.pubsub.ssubscribe(*channels)

    def unsubscribe(self, *channels: str) -> Any:
        """Unsubscribe from ``channels`` (SUNSUBSCRIBE); from every channel
        when none is named."""
        return self.pubsub.sunsubscribe(*channels)


def _confirms_a_subscription(message: dict[str, Any]) -> bool:
    kind = message["type"]
    return (kind.decode() if isinstance(kind, bytes) else kind) in SUBSCRIPTION_KINDS


def subscribe(client: Any, *channels: str) -> PubSub | ShardedPubSub:
    """A PubSub on ``client`` (give it a client of its own, such as
    ``ext.duplicate()``), subscribed to ``channels`` as named: redis-py's
    ``PubSub``, or on a Cluster client a :class:`ShardedPubSub`."""
    if not channels:
        raise ValueError("subscribe() needs at least one channel")
    pubsub = client.pubsub()
    # The PubSub keeps only the pool; without this the client could be
    # collected, and closing it would close the subscription's connection.
    pubsub.owner = client
    subscription: PubSub | ShardedPubSub = (
        ShardedPubSub(pubsub) if isinstance(client, RedisCluster) else pubsub)
    subscription.subscribe(*channels)
    return subscription
